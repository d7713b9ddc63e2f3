package rewrite

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// s is shorthand for a list of names in the expectations below.
func s(names ...string) []string { return names }

// classifyCases is the table behind TestClassify. Expected statements list
// only what matters for the case; compareStatement explains which zero
// values are ignored.
var classifyCases = []struct {
	sql  string
	want []Statement
}{
	// Reads.
	{"SELECT 1", []Statement{{Kind: Read, Command: "SELECT"}}},
	// Reads about the server or the session, not the data.
	{"SELECT t.oid, t.typelem AS elemtype FROM pg_catalog.pg_type AS t WHERE t.oid = $1",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("pg_catalog.pg_type"), Params: 1, ServerInfo: true}}},
	{"select relname from pg_class join pg_namespace n on n.oid = relnamespace",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("pg_class", "pg_namespace"), ServerInfo: true}}},
	{"select column_name from information_schema.columns where table_name = $1",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("information_schema.columns"), Params: 1, ServerInfo: true}}},
	{"select version()", []Statement{{Kind: Read, Command: "SELECT", HasVolatile: true, ServerInfo: true}}},
	// System columns: the server's bookkeeping (EF Core's xmin token).
	{"SELECT a.id, a.xmin FROM accounts a WHERE id = $1", []Statement{{Kind: Read, Command: "SELECT", Tables: s("accounts"), Params: 1, ServerInfo: true}}},
	{"SELECT tableoid::regclass, * FROM events", []Statement{{Kind: Read, Command: "SELECT", Tables: s("events"), ServerInfo: true}}},
	{`SELECT "ctid", id FROM t`, []Statement{{Kind: Read, Command: "SELECT", Tables: s("t"), ServerInfo: true}}},
	{"SELECT xmin_at, id FROM t", []Statement{{Kind: Read, Command: "SELECT", Tables: s("t")}}},
	{"SELECT lastval()", []Statement{{Kind: Read, Command: "SELECT", HasVolatile: true, ServerInfo: true}}},
	{"SELECT current_user, current_setting('TimeZone')", []Statement{{Kind: Read, Command: "SELECT", ServerInfo: true}}},
	{"select pg_size_pretty(pg_relation_size('users'))", []Statement{{Kind: Read, Command: "SELECT", ServerInfo: true}}},
	{"select has_table_privilege('users', 'select')", []Statement{{Kind: Read, Command: "SELECT", ServerInfo: true}}},
	{"select * from users where id = $1", []Statement{{Kind: Read, Command: "SELECT", Tables: s("users"), Params: 1}}},
	{"SELECT u.name, o.total FROM public.users u JOIN orders o ON o.user_id = u.id WHERE u.id = $2 AND o.x = $1",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("public.users", "orders"), Params: 2}}},
	{`SELECT * FROM "Users" JOIN "MySchema"."Order Items" oi USING (id)`,
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("Users", "MySchema.Order Items")}}},
	{`SELECT * FROM MySchema.Users`, []Statement{{Kind: Read, Command: "SELECT", Tables: s("myschema.users")}}},
	{"SELECT * FROM db.sch.tbl", []Statement{{Kind: Read, Command: "SELECT", Tables: s("db.sch.tbl")}}},
	{"SELECT * FROM a WHERE id IN (SELECT a_id FROM b WHERE EXISTS (SELECT 1 FROM c))",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("a", "b", "c")}}},
	{"SELECT * FROM a UNION ALL SELECT * FROM b EXCEPT SELECT * FROM a", []Statement{{Kind: Read, Command: "SELECT", Tables: s("a", "b")}}},
	{"VALUES (1, 'a'), (2, 'b')", []Statement{{Kind: Read, Command: "SELECT"}}},
	{"TABLE users", []Statement{{Kind: Read, Command: "SELECT", Tables: s("users")}}},
	{"SELECT * FROM users u, LATERAL (SELECT * FROM orders o WHERE o.uid = u.id LIMIT 1) x",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("users", "orders")}}},
	{"SELECT * FROM generate_series(1, 10) g", []Statement{{Kind: Read, Command: "SELECT", Functions: s("generate_series")}}},
	{"SELECT lower(name), count(*) FROM users GROUP BY 1", []Statement{{Kind: Read, Command: "SELECT", Tables: s("users"), Functions: s("lower", "count")}}},
	{"SELECT * FROM jobs WHERE id = $1 FOR UPDATE SKIP LOCKED", []Statement{{Kind: Read, Command: "SELECT", Tables: s("jobs"), Params: 1, ForUpdate: true}}},
	{"SELECT * FROM a JOIN b ON a.id = b.id FOR SHARE OF a", []Statement{{Kind: Read, Command: "SELECT", Tables: s("a", "b"), ForUpdate: true}}},
	{"SELECT * FROM a WHERE id IN (SELECT id FROM b FOR UPDATE)", []Statement{{Kind: Read, Command: "SELECT", Tables: s("a", "b"), ForUpdate: true}}},

	// CTEs: names that refer to a CTE are not tables; scoping follows PG.
	{"WITH recent AS (SELECT * FROM orders WHERE ts > now() - interval '1 day') SELECT * FROM recent JOIN users ON users.id = recent.uid",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("orders", "users"), Functions: s("now"), HasVolatile: true}}},
	{"WITH users AS (SELECT * FROM users WHERE active) SELECT * FROM users",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("users")}}},
	{"WITH x AS (SELECT 1), y AS (SELECT * FROM x) SELECT * FROM y, public.x",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("public.x")}}},
	{"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT * FROM t",
		[]Statement{{Kind: Read, Command: "SELECT"}}},
	{"SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) s, c",
		[]Statement{{Kind: Read, Command: "SELECT", Tables: s("c")}}},
	{"WITH moved AS (DELETE FROM queue WHERE id = $1 RETURNING *) INSERT INTO done SELECT * FROM moved",
		[]Statement{{Kind: Write, Command: "INSERT", Tables: s("queue", "done"), WriteTables: s("queue", "done"), Params: 1, HasReturning: true}}},
	{"WITH u AS (UPDATE accounts SET balance = balance - 1 WHERE id = 1 RETURNING id) SELECT * FROM u",
		[]Statement{{Kind: Write, Command: "SELECT", Tables: s("accounts"), WriteTables: s("accounts"), HasReturning: true}}},

	{"WITH t AS (SELECT 1 AS a) INSERT INTO t SELECT a FROM t",
		[]Statement{{Kind: Write, Command: "INSERT", Tables: s("t"), WriteTables: s("t")}}},

	// Writes.
	{"INSERT INTO users (id, name) VALUES ($1, $2)", []Statement{{Kind: Write, Command: "INSERT", Tables: s("users"), WriteTables: s("users"), Params: 2}}},
	{"INSERT INTO s1.t (a) VALUES (1), (2), (DEFAULT) RETURNING id", []Statement{{Kind: Write, Command: "INSERT", Tables: s("s1.t"), WriteTables: s("s1.t"), HasReturning: true}}},
	{"INSERT INTO t (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v, ts = now()",
		[]Statement{{Kind: Write, Command: "INSERT", Tables: s("t"), WriteTables: s("t"), Params: 2, Functions: s("now"), HasVolatile: true}}},
	{"INSERT INTO archive SELECT * FROM events WHERE ts < $1", []Statement{{Kind: Write, Command: "INSERT", Tables: s("archive", "events"), WriteTables: s("archive"), Params: 1}}},
	{"INSERT INTO t (id) VALUES (gen_random_uuid())", []Statement{{Kind: Write, Command: "INSERT", Tables: s("t"), WriteTables: s("t"), HasVolatile: true}}},
	{"INSERT INTO t (id) VALUES (nextval('t_id_seq'))", []Statement{{Kind: Write, Command: "INSERT", Tables: s("t"), WriteTables: s("t"), HasVolatile: true, HasSideEffects: true}}},
	{"UPDATE users SET name = $1, updated_at = CURRENT_TIMESTAMP WHERE id = $2",
		[]Statement{{Kind: Write, Command: "UPDATE", Tables: s("users"), WriteTables: s("users"), Params: 2, HasVolatile: true}}},
	{"UPDATE t SET x = u.x FROM u WHERE t.id = u.id", []Statement{{Kind: Write, Command: "UPDATE", Tables: s("t", "u"), WriteTables: s("t")}}},
	{"DELETE FROM sessions WHERE expires < now() RETURNING id", []Statement{{Kind: Write, Command: "DELETE", Tables: s("sessions"), WriteTables: s("sessions"), HasReturning: true, HasVolatile: true}}},
	{"DELETE FROM t USING u WHERE t.uid = u.id AND u.banned", []Statement{{Kind: Write, Command: "DELETE", Tables: s("t", "u"), WriteTables: s("t")}}},
	{"MERGE INTO stock s USING deliveries d ON s.item = d.item WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty WHEN NOT MATCHED THEN INSERT VALUES (d.item, d.qty)",
		[]Statement{{Kind: Write, Command: "MERGE", Tables: s("stock", "deliveries"), WriteTables: s("stock")}}},
	{"TRUNCATE a, b RESTART IDENTITY", []Statement{{Kind: Write, Command: "TRUNCATE TABLE", Tables: s("a", "b"), WriteTables: s("a", "b")}}},
	{"COPY users (id, name) FROM STDIN WITH (FORMAT csv)", []Statement{{Kind: Write, Command: "COPY FROM", Tables: s("users"), WriteTables: s("users")}}},
	{"COPY users TO STDOUT", []Statement{{Kind: Read, Command: "COPY TO", Tables: s("users")}}},
	{"COPY (SELECT * FROM users WHERE active) TO STDOUT WITH CSV HEADER", []Statement{{Kind: Read, Command: "COPY TO", Tables: s("users")}}},
	{"COPY (DELETE FROM jobs RETURNING *) TO STDOUT", []Statement{{Kind: Write, Command: "COPY TO", Tables: s("jobs"), WriteTables: s("jobs"), HasReturning: true}}},

	// SELECT INTO and CREATE TABLE AS create a table and fill it.
	{"SELECT * INTO backup_users FROM users", []Statement{{Kind: DDL, Command: "SELECT INTO", Tables: s("backup_users", "users"), WriteTables: s("backup_users")}}},
	{"CREATE TABLE t2 AS SELECT * FROM t1", []Statement{{Kind: DDL, Command: "CREATE TABLE AS", Tables: s("t2", "t1"), WriteTables: s("t2")}}},
	{"CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM t", []Statement{{Kind: DDL, Command: "CREATE MATERIALIZED VIEW", Tables: s("mv", "t"), WriteTables: s("mv")}}},

	// Temporary relations belong to one session.
	{"CREATE TEMP TABLE scratch (id int PRIMARY KEY, v text)", []Statement{{Kind: DDL, Command: "CREATE TABLE", Tables: s("scratch"), WriteTables: s("scratch"), Temporary: true}}},
	{"create temporary table scratch (id int) on commit drop", []Statement{{Kind: DDL, Command: "CREATE TABLE", Tables: s("scratch"), WriteTables: s("scratch"), Temporary: true, TempDropOnCommit: true}}},
	{"CREATE TABLE pg_temp.scratch (id int)", []Statement{{Kind: DDL, Command: "CREATE TABLE", Tables: s("pg_temp.scratch"), WriteTables: s("pg_temp.scratch"), Temporary: true}}},
	{"CREATE UNLOGGED TABLE logs (id int)", []Statement{{Kind: DDL, Command: "CREATE TABLE", Tables: s("logs"), WriteTables: s("logs")}}},
	{"CREATE TEMP TABLE ids ON COMMIT DROP AS SELECT id FROM users", []Statement{{Kind: DDL, Command: "CREATE TABLE AS", Tables: s("ids", "users"), WriteTables: s("ids"), Temporary: true, TempDropOnCommit: true}}},
	{"SELECT id INTO TEMP ids FROM users", []Statement{{Kind: DDL, Command: "SELECT INTO", Tables: s("ids", "users"), WriteTables: s("ids"), Temporary: true}}},
	{"CREATE TEMP VIEW v AS SELECT 1", []Statement{{Kind: DDL, Command: "CREATE VIEW", Tables: s("v"), WriteTables: s("v"), Temporary: true}}},
	{"CREATE TEMP SEQUENCE seq", []Statement{{Kind: DDL, Command: "CREATE SEQUENCE", Tables: s("seq"), WriteTables: s("seq"), Temporary: true}}},

	// DDL.
	{"CREATE TABLE app.items (id bigserial PRIMARY KEY, owner int REFERENCES users(id))",
		[]Statement{{Kind: DDL, Command: "CREATE TABLE", Tables: s("app.items", "users"), WriteTables: s("app.items")}}},
	{"ALTER TABLE users ADD COLUMN email text", []Statement{{Kind: DDL, Command: "ALTER TABLE", Tables: s("users"), WriteTables: s("users")}}},
	{"ALTER TABLE users RENAME COLUMN a TO b", []Statement{{Kind: DDL, Command: "ALTER TABLE", Tables: s("users"), WriteTables: s("users")}}},
	{"ALTER TABLE users RENAME TO people", []Statement{{Kind: DDL, Command: "ALTER TABLE", Tables: s("users"), WriteTables: s("users")}}},
	{"DROP TABLE IF EXISTS a, s.b CASCADE", []Statement{{Kind: DDL, Command: "DROP TABLE", Tables: s("a", "s.b"), WriteTables: s("a", "s.b")}}},
	{"DROP INDEX CONCURRENTLY idx_a", []Statement{{Kind: DDL, Command: "DROP INDEX"}}},
	{"DROP FUNCTION f(int)", []Statement{{Kind: DDL, Command: "DROP FUNCTION"}}},
	{"CREATE UNIQUE INDEX CONCURRENTLY ON users (lower(email))", []Statement{{Kind: DDL, Command: "CREATE INDEX", Tables: s("users"), WriteTables: s("users"), Functions: s("lower")}}},
	{"CREATE VIEW v AS SELECT * FROM t WHERE x", []Statement{{Kind: DDL, Command: "CREATE VIEW", Tables: s("v", "t"), WriteTables: s("v")}}},
	{"COMMENT ON TABLE users IS 'people'", []Statement{{Kind: DDL, Command: "COMMENT", Tables: s("users"), WriteTables: s("users")}}},
	{"COMMENT ON COLUMN s.users.email IS 'x'", []Statement{{Kind: DDL, Command: "COMMENT", Tables: s("s.users"), WriteTables: s("s.users")}}},
	{"GRANT SELECT ON users TO reader", []Statement{{Kind: DDL, Command: "GRANT", Tables: s("users")}}},
	{"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM app", []Statement{{Kind: DDL, Command: "REVOKE"}}},
	{"CREATE SCHEMA billing", []Statement{{Kind: DDL, Command: "CREATE SCHEMA"}}},
	{"CREATE SEQUENCE s.seq START 10", []Statement{{Kind: DDL, Command: "CREATE SEQUENCE", Tables: s("s.seq"), WriteTables: s("s.seq")}}},
	{"CREATE TYPE mood AS ENUM ('sad', 'ok')", []Statement{{Kind: DDL, Command: "CREATE TYPE"}}},
	{"CREATE TYPE pair AS (a int, b text)", []Statement{{Kind: DDL, Command: "CREATE TYPE"}}},
	{"CREATE EXTENSION IF NOT EXISTS pgcrypto", []Statement{{Kind: DDL, Command: "CREATE EXTENSION"}}},
	{"CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS $$ SELECT a + b $$", []Statement{{Kind: DDL, Command: "CREATE FUNCTION"}}},
	{"CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO log VALUES (1); END", []Statement{{Kind: DDL, Command: "CREATE PROCEDURE"}}},
	{"CREATE TRIGGER trg BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch()",
		[]Statement{{Kind: DDL, Command: "CREATE TRIGGER", Tables: s("users"), WriteTables: s("users")}}},
	{"ALTER SEQUENCE users_id_seq RESTART WITH 100", []Statement{{Kind: DDL, Command: "ALTER SEQUENCE", Tables: s("users_id_seq"), WriteTables: s("users_id_seq")}}},
	{"CREATE ROLE app LOGIN", []Statement{{Kind: DDL, Command: "CREATE ROLE"}}},
	{"DROP ROLE app", []Statement{{Kind: DDL, Command: "DROP ROLE"}}},
	{"CREATE PUBLICATION p FOR TABLE users", []Statement{{Kind: DDL, Command: "CREATE PUBLICATION", Tables: s("users")}}},

	// Transaction control.
	{"BEGIN", []Statement{{Kind: Tx, TxOp: Begin, Command: "BEGIN"}}},
	{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", []Statement{{Kind: Tx, TxOp: Begin, Command: "START TRANSACTION", TxReadOnly: true}}},
	{"BEGIN READ WRITE", []Statement{{Kind: Tx, TxOp: Begin, Command: "BEGIN"}}},
	{"COMMIT", []Statement{{Kind: Tx, TxOp: Commit, Command: "COMMIT"}}},
	{"END", []Statement{{Kind: Tx, TxOp: Commit, Command: "COMMIT"}}},
	{"COMMIT AND CHAIN", []Statement{{Kind: Tx, TxOp: Commit, Command: "COMMIT", TxChain: true}}},
	{"ROLLBACK", []Statement{{Kind: Tx, TxOp: Rollback, Command: "ROLLBACK"}}},
	{"ABORT", []Statement{{Kind: Tx, TxOp: Rollback, Command: "ROLLBACK"}}},
	{"SAVEPOINT sp1", []Statement{{Kind: Tx, TxOp: Savepoint, Command: "SAVEPOINT", Name: "sp1"}}},
	{`RELEASE SAVEPOINT "Sp1"`, []Statement{{Kind: Tx, TxOp: Release, Command: "RELEASE", Name: "Sp1"}}},
	{"ROLLBACK TO sp1", []Statement{{Kind: Tx, TxOp: RollbackTo, Command: "ROLLBACK TO", Name: "sp1"}}},
	{"PREPARE TRANSACTION 'tx-42'", []Statement{{Kind: Tx, TxOp: Prepare, Command: "PREPARE TRANSACTION", Name: "tx-42"}}},
	{"COMMIT PREPARED 'tx-42'", []Statement{{Kind: Tx, TxOp: CommitPrepared, Command: "COMMIT PREPARED", Name: "tx-42"}}},
	{"ROLLBACK PREPARED 'tx-42'", []Statement{{Kind: Tx, TxOp: RollbackPrepared, Command: "ROLLBACK PREPARED", Name: "tx-42"}}},

	// Session state.
	{"SET search_path TO app, public", []Statement{{Kind: Session, Command: "SET", Name: "search_path", SetValue: "app, public"}}},
	{`SET search_path = "$user", "My Schema", app2`, []Statement{{Kind: Session, Command: "SET", Name: "search_path", SetValue: `"$user", "My Schema", app2`}}},
	{"SET search_path TO DEFAULT", []Statement{{Kind: Session, Command: "SET", Name: "search_path"}}},
	{"SET search_path FROM CURRENT", []Statement{{Kind: Session, Command: "SET", Name: "search_path", SetUnknown: true}}},
	{"RESET search_path", []Statement{{Kind: Session, Command: "RESET", Name: "search_path"}}},
	{"SET LOCAL statement_timeout = '5s'", []Statement{{Kind: Session, Command: "SET", Name: "statement_timeout", SetLocal: true, SetValue: "5s"}}},
	{"SET extra_float_digits = 3", []Statement{{Kind: Session, Command: "SET", Name: "extra_float_digits", SetValue: "3"}}},
	{"SET TIME ZONE 'UTC'", []Statement{{Kind: Session, Command: "SET", Name: "timezone", SetValue: "UTC"}}},
	{"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", []Statement{{Kind: Session, Command: "SET", Name: "transaction"}}},
	{"RESET ALL", []Statement{{Kind: Session, Command: "RESET", Name: "all"}}},
	{"RESET work_mem", []Statement{{Kind: Session, Command: "RESET", Name: "work_mem"}}},
	{"SHOW server_version", []Statement{{Kind: Session, Command: "SHOW", Name: "server_version"}}},
	{"DISCARD ALL", []Statement{{Kind: Session, Command: "DISCARD ALL"}}},
	{"DEALLOCATE ALL", []Statement{{Kind: Session, Command: "DEALLOCATE ALL"}}},
	{"DEALLOCATE PREPARE q1", []Statement{{Kind: Session, Command: "DEALLOCATE", Name: "q1"}}},
	{"PREPARE q1 (int) AS UPDATE t SET x = x + 1 WHERE id = $1",
		[]Statement{{Kind: Session, Command: "PREPARE", Name: "q1", Tables: s("t"), Params: 1,
			Body: &Statement{Kind: Write, Command: "UPDATE", Tables: s("t"), WriteTables: s("t"), Params: 1}}}},
	{"LISTEN jobs", []Statement{{Kind: Session, Command: "LISTEN", Name: "jobs"}}},
	{"UNLISTEN *", []Statement{{Kind: Session, Command: "UNLISTEN", Name: "*"}}},
	{"DECLARE c CURSOR WITH HOLD FOR SELECT * FROM big", []Statement{{Kind: Session, Command: "DECLARE CURSOR", Name: "c", Tables: s("big")}}},
	{"FETCH 100 FROM c", []Statement{{Kind: Session, Command: "FETCH", Name: "c"}}},
	{"MOVE LAST IN c", []Statement{{Kind: Session, Command: "MOVE", Name: "c"}}},
	{"CLOSE ALL", []Statement{{Kind: Session, Command: "CLOSE CURSOR ALL"}}},
	{"SET CONSTRAINTS ALL DEFERRED", []Statement{{Kind: Session, Command: "SET CONSTRAINTS"}}},

	// EXPLAIN: only ANALYZE executes the statement.
	// Its answer, a plan, is about the server: not compared.
	{"EXPLAIN SELECT * FROM t", []Statement{{Kind: Read, Command: "EXPLAIN", Tables: s("t"), ServerInfo: true}}},
	{"EXPLAIN DELETE FROM t", []Statement{{Kind: Read, Command: "EXPLAIN", Tables: s("t"), ServerInfo: true}}},
	{"EXPLAIN ANALYZE DELETE FROM t RETURNING *", []Statement{{Kind: Write, Command: "EXPLAIN", Tables: s("t"), WriteTables: s("t"), HasReturning: true, ServerInfo: true}}},
	{"EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", []Statement{{Kind: Write, Command: "EXPLAIN", Tables: s("t"), WriteTables: s("t"), ServerInfo: true}}},
	{"EXPLAIN (ANALYZE off) UPDATE t SET a = 1", []Statement{{Kind: Read, Command: "EXPLAIN", Tables: s("t"), ServerInfo: true}}},
	{"EXPLAIN ANALYZE SELECT * FROM t", []Statement{{Kind: Read, Command: "EXPLAIN", Tables: s("t"), ServerInfo: true}}},

	// Other: effects not visible in the text.
	{"CALL refresh_totals($1)", []Statement{{Kind: Other, Command: "CALL", Functions: s("refresh_totals"), Params: 1}}},
	{"DO $$ BEGIN DELETE FROM t; END $$", []Statement{{Kind: Other, Command: "DO"}}},
	{"DO LANGUAGE plpgsql $body$ BEGIN PERFORM 1; END $body$", []Statement{{Kind: Other, Command: "DO"}}},
	{"EXECUTE q1 (42)", []Statement{{Kind: Other, Command: "EXECUTE", Name: "q1"}}},
	{"NOTIFY jobs, 'payload'", []Statement{{Kind: Other, Command: "NOTIFY", Name: "jobs"}}},
	{"VACUUM (ANALYZE) users", []Statement{{Kind: Other, Command: "VACUUM", Tables: s("users")}}},
	{"ANALYZE users", []Statement{{Kind: Other, Command: "ANALYZE", Tables: s("users")}}},
	{"LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE", []Statement{{Kind: Other, Command: "LOCK TABLE", Tables: s("accounts")}}},
	{"REFRESH MATERIALIZED VIEW CONCURRENTLY mv", []Statement{{Kind: Other, Command: "REFRESH MATERIALIZED VIEW", Tables: s("mv"), WriteTables: s("mv")}}},
	{"CHECKPOINT", []Statement{{Kind: Other, Command: "CHECKPOINT"}}},
	{"SELECT pg_advisory_lock(42)", []Statement{{Kind: Read, Command: "SELECT", Functions: s("pg_advisory_lock"), HasSideEffects: true, ServerInfo: true}}},
	{"SELECT pg_catalog.set_config('app.user', $1, true)", []Statement{{Kind: Read, Command: "SELECT", Functions: s("pg_catalog.set_config"), Params: 1, HasSideEffects: true}}},
	{"SELECT 'now'::timestamptz, random()", []Statement{{Kind: Read, Command: "SELECT", Functions: s("random"), HasVolatile: true}}},

	// Multi-statement strings: one Statement each, with its own text.
	{"BEGIN; UPDATE a SET x = 1; COMMIT;", []Statement{
		{Kind: Tx, TxOp: Begin, Command: "BEGIN", SQL: "BEGIN"},
		{Kind: Write, Command: "UPDATE", Tables: s("a"), WriteTables: s("a"), SQL: "UPDATE a SET x = 1"},
		{Kind: Tx, TxOp: Commit, Command: "COMMIT", SQL: "COMMIT"},
	}},
	{"SET application_name = 'x';\nSELECT * FROM t -- trailing\n;  SELECT 2", []Statement{
		{Kind: Session, Command: "SET", Name: "application_name", SQL: "SET application_name = 'x'", SetValue: "x"},
		{Kind: Read, Command: "SELECT", Tables: s("t"), SQL: "SELECT * FROM t -- trailing"},
		{Kind: Read, Command: "SELECT", SQL: "SELECT 2"},
	}},
	{"select 'a;b' as \"x;y\"; select $$;$$", []Statement{
		{Kind: Read, Command: "SELECT", SQL: `select 'a;b' as "x;y"`},
		{Kind: Read, Command: "SELECT", SQL: "select $$;$$"},
	}},
	{"INSERT INTO ü (name) VALUES ('日本'); DELETE FROM ü", []Statement{
		{Kind: Write, Command: "INSERT", Tables: s("ü"), WriteTables: s("ü"), SQL: "INSERT INTO ü (name) VALUES ('日本')"},
		{Kind: Write, Command: "DELETE", Tables: s("ü"), WriteTables: s("ü"), SQL: "DELETE FROM ü"},
	}},

	// Parse errors: one Unparsed statement for the whole string.
	{"SELEC 1", []Statement{{Kind: Unparsed, SQL: "SELEC 1"}}},
	{"SELECT 1; SELECT FROM WHERE;", []Statement{{Kind: Unparsed, SQL: "SELECT 1; SELECT FROM WHERE;"}}},
	{"SELECT 'unterminated", []Statement{{Kind: Unparsed, SQL: "SELECT 'unterminated"}}},
	{"SELECT 1\x00; DROP TABLE x", []Statement{{Kind: Unparsed, SQL: "SELECT 1\x00; DROP TABLE x"}}},

	// Nothing to run.
	{"", nil},
	{"   ", nil},
	{";;", nil},
	{"-- just a comment", nil},
	{"/* block */ ;", nil},
}

// compareStatement reports how got differs from want. Fingerprint and
// ParseError are checked by presence (they come from pg_query); SQL, Body
// and Functions are checked only when the expectation sets them.
func compareStatement(got *Statement, want Statement) string {
	g := *got
	if want.SQL == "" {
		g.SQL = ""
	}
	if want.Functions == nil {
		g.Functions = nil
	}
	if (g.Fingerprint == "") != (want.Kind == Unparsed) {
		return fmt.Sprintf("fingerprint %q for kind %v", g.Fingerprint, g.Kind)
	}
	if (g.ParseError == "") != (want.Kind != Unparsed) {
		return fmt.Sprintf("parse error %q for kind %v", g.ParseError, g.Kind)
	}
	g.Fingerprint, g.ParseError = "", ""
	if want.Body != nil {
		if g.Body == nil {
			return "no Body"
		}
		if d := compareStatementNoFP(g.Body, *want.Body); d != "" {
			return "Body: " + d
		}
		g.Body, want.Body = nil, nil
	}
	if !reflect.DeepEqual(g, want) {
		return fmt.Sprintf("\n got %+v\nwant %+v", g, want)
	}
	return ""
}

// compareStatementNoFP compares a nested Statement, which has neither text
// nor fingerprint.
func compareStatementNoFP(got *Statement, want Statement) string {
	g := *got
	if want.Functions == nil {
		g.Functions = nil
	}
	if !reflect.DeepEqual(g, want) {
		return fmt.Sprintf("\n got %+v\nwant %+v", g, want)
	}
	return ""
}

func TestClassify(t *testing.T) {
	c, err := NewClassifier(1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range classifyCases {
		t.Run(tc.sql, func(t *testing.T) {
			got, err := c.Classify(tc.sql)
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d statements, want %d: %+v", len(got), len(tc.want), got)
			}
			for i := range got {
				if d := compareStatement(got[i], tc.want[i]); d != "" {
					t.Errorf("statement %d: %s", i, d)
				}
				if !strings.Contains(tc.sql, got[i].SQL) {
					t.Errorf("statement %d: SQL %q is not part of the input", i, got[i].SQL)
				}
			}
		})
	}
}

func TestClassifyCaseCount(t *testing.T) {
	// The brief asks for a broad table; keep it from shrinking silently.
	if n := len(classifyCases); n < 60 {
		t.Fatalf("only %d classification cases", n)
	}
}

func TestFingerprint(t *testing.T) {
	c, err := NewClassifier(10)
	if err != nil {
		t.Fatal(err)
	}
	fp := func(sql string) string {
		t.Helper()
		st, err := c.ClassifyOne(sql)
		if err != nil || st == nil {
			t.Fatalf("ClassifyOne(%q) = %v, %v", sql, st, err)
		}
		return st.Fingerprint
	}
	a := fp("SELECT * FROM users WHERE id = 1")
	if b := fp("select *   from users where id = 42 -- hi"); a != b {
		t.Errorf("constants and spacing changed the fingerprint: %s vs %s", a, b)
	}
	if b := fp("SELECT * FROM users WHERE id = $1"); a != b {
		t.Errorf("a parameter changed the fingerprint: %s vs %s", a, b)
	}
	if b := fp("SELECT * FROM orders WHERE id = 1"); a == b {
		t.Errorf("different tables share fingerprint %s", a)
	}
	if len(a) != 16 {
		t.Errorf("fingerprint %q is not 16 hex digits", a)
	}
	// In a multi-statement string each statement has its own fingerprint,
	// equal to the one it has alone.
	stmts, err := c.Classify("SELECT * FROM users WHERE id = 7; SELECT * FROM orders WHERE id = 1")
	if err != nil {
		t.Fatal(err)
	}
	if stmts[0].Fingerprint != a || stmts[1].Fingerprint == a {
		t.Errorf("multi-statement fingerprints %s, %s; want %s first", stmts[0].Fingerprint, stmts[1].Fingerprint, a)
	}
}

func TestClassifyOne(t *testing.T) {
	c, err := NewClassifier(10)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.ClassifyOne(" ; "); st != nil || err != nil {
		t.Errorf("empty query: %v, %v", st, err)
	}
	if _, err := c.ClassifyOne("SELECT 1; SELECT 2"); err == nil {
		t.Error("two statements: no error")
	}
	st, err := c.ClassifyOne("DELETE FROM t")
	if err != nil || st.Kind != Write {
		t.Errorf("DELETE: %+v, %v", st, err)
	}
}

func TestNewClassifierSize(t *testing.T) {
	if _, err := NewClassifier(-1); err == nil {
		t.Error("negative size accepted")
	}
	c, err := NewClassifier(0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Classify("SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Hits != 0 || st.Misses != 3 || st.Len != 0 {
		t.Errorf("uncached classifier stats %+v", st)
	}
}

func TestCache(t *testing.T) {
	c, err := NewClassifier(2)
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Classify("SELECT * FROM a")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Classify("SELECT * FROM a")
	if err != nil {
		t.Fatal(err)
	}
	if &first[0] != &again[0] || first[0] != again[0] {
		t.Error("second call did not return the cached statements")
	}
	if st := c.Stats(); st.Hits != 1 || st.Misses != 1 || st.Len != 1 {
		t.Errorf("after one hit: %+v", st)
	}

	// The cache is bounded: two more texts evict the least recently used.
	for _, q := range []string{"SELECT * FROM b", "SELECT * FROM c"} {
		if _, err := c.Classify(q); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Len != 2 {
		t.Errorf("cache holds %d entries, want 2", st.Len)
	}
	evicted, err := c.Classify("SELECT * FROM a")
	if err != nil {
		t.Fatal(err)
	}
	if evicted[0] == first[0] {
		t.Error("evicted entry was still served from the cache")
	}
	if st := c.Stats(); st.Hits != 1 || st.Misses != 4 {
		t.Errorf("after eviction: %+v", st)
	}

	// Parse errors are cached too: the proxy sees the same bad text again
	// and again when a client retries.
	for i := 0; i < 2; i++ {
		if _, err := c.Classify("SELEC 1"); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Hits != 2 {
		t.Errorf("unparsed text not cached: %+v", st)
	}

	// Texts beyond maxCachedSQL are classified but never stored.
	long := "SELECT 1" + strings.Repeat(" ", maxCachedSQL)
	before := c.Stats()
	for i := 0; i < 2; i++ {
		stmts, err := c.Classify(long)
		if err != nil || len(stmts) != 1 || stmts[0].Kind != Read {
			t.Fatalf("long text: %v, %v", stmts, err)
		}
	}
	if st := c.Stats(); st.Hits != before.Hits || st.Misses != before.Misses+2 {
		t.Errorf("long text was cached: before %+v after %+v", before, st)
	}
}

func TestClassifyConcurrent(t *testing.T) {
	c, err := NewClassifier(16) // smaller than the working set: hits, misses and evictions race
	if err != nil {
		t.Fatal(err)
	}
	queries := make([]string, 0, 40)
	for i := 0; i < 40; i++ {
		queries = append(queries, fmt.Sprintf("UPDATE t%d SET x = $1 WHERE id = %d", i%20, i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				q := queries[(g*7+i)%len(queries)]
				stmts, err := c.Classify(q)
				if err != nil {
					errs <- err
					return
				}
				want := fmt.Sprintf("t%d", ((g*7+i)%len(queries))%20)
				if len(stmts) != 1 || stmts[0].Kind != Write || stmts[0].WriteTables[0] != want {
					errs <- fmt.Errorf("%q: got %+v", q, stmts)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := c.Stats(); st.Hits+st.Misses != 8*200 || st.Len > 16 {
		t.Errorf("stats %+v", st)
	}
}

func TestKindAndTxOpStrings(t *testing.T) {
	if Write.String() != "write" || Unparsed.String() != "unparsed" || Kind(0).String() != "kind(0)" {
		t.Error("Kind.String")
	}
	if RollbackTo.String() != "rollback_to" || NotTx.String() != "none" || TxOp(99).String() != "txop(99)" {
		t.Error("TxOp.String")
	}
}

func TestIsWrite(t *testing.T) {
	c, err := NewClassifier(10)
	if err != nil {
		t.Fatal(err)
	}
	for sql, want := range map[string]bool{
		"INSERT INTO t VALUES (1)":           true,
		"CREATE TABLE t2 AS SELECT 1":        true,
		"SELECT 1 INTO t3":                   true,
		"CREATE TABLE t4 (a int)":            false,
		"SELECT * FROM t FOR UPDATE":         false,
		"EXPLAIN ANALYZE DELETE FROM t":      true,
		"EXPLAIN DELETE FROM t":              false,
		"WITH d AS (DELETE FROM t) SELECT 1": true,
	} {
		st, err := c.ClassifyOne(sql)
		if err != nil {
			t.Fatal(err)
		}
		if st.IsWrite() != want {
			t.Errorf("%q: IsWrite() = %v", sql, !want)
		}
	}
}

func BenchmarkClassifyCached(b *testing.B) {
	c, err := NewClassifier(100)
	if err != nil {
		b.Fatal(err)
	}
	const q = "SELECT u.id, u.name FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = $1 AND o.status = $2"
	if _, err := c.Classify(q); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Classify(q); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClassifyMiss(b *testing.B) {
	c, err := NewClassifier(100)
	if err != nil {
		b.Fatal(err)
	}
	// Every text is new (the constant differs), so each call parses,
	// analyses and fingerprints.
	queries := make([]string, b.N)
	for i := range queries {
		queries[i] = fmt.Sprintf("INSERT INTO t (k, v) VALUES (%d, $1) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Classify(queries[i]); err != nil {
			b.Fatal(err)
		}
	}
}
