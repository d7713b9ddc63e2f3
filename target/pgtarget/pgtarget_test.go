package pgtarget

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
	"github.com/shadowproxy/shadowproxy/target/internal/targettest"
)

// pg is one server shared by the package's tests; each test uses its own
// pair of databases, old_<test> and new_<test>.
var pg *testdb.Postgres

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	var err error
	pg, err = testdb.NewPostgres(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtarget tests: start postgres:", err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Close()
	os.Exit(code)
}

// env is an old and a new database with the fixture, the old one's
// catalog, and a target on the new one.
type env struct {
	ctx      context.Context
	old, new *pgx.Conn
	newURL   string
	cat      *schema.Catalog
	target   *Target
}

func setup(t testing.TB, srv *testdb.Postgres, opts Options, newDDL string) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{ctx: ctx}
	oldName, newName := targettest.DBName("old", t), targettest.DBName("new", t)
	for _, n := range []string{oldName, newName} {
		srv.Exec(t, "DROP DATABASE IF EXISTS "+n)
		srv.Exec(t, "CREATE DATABASE "+n)
	}
	e.newURL = srv.URL("postgres", "", newName)
	e.old, e.new = connect(t, srv.URL("postgres", "", oldName)), connect(t, e.newURL)
	exec(t, e.old, targettest.Schema+targettest.Rows)
	exec(t, e.new, targettest.Schema+newDDL)
	var err error
	if e.cat, err = schema.Load(ctx, e.old); err != nil {
		t.Fatal(err)
	}
	if e.target, err = New(ctx, e.newURL, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.target.Close() })
	return e
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(t testing.TB, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) capture(t testing.TB, table, where string) []mirror.Change {
	return targettest.Capture(e.ctx, t, e.old, e.cat, table, where)
}

func (e *env) apply(t testing.TB, changes ...mirror.Change) {
	t.Helper()
	if err := e.target.Apply(e.ctx, &mirror.Batch{Changes: changes}); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// dump returns the rows of table in text format, in the same TimeZone on
// both sides, so that equal values print equally.
func dump(t testing.TB, conn *pgx.Conn, table string) []string {
	t.Helper()
	ctx := context.Background()
	exec(t, conn, "SET TimeZone = 'UTC'")
	res := conn.PgConn().ExecParams(ctx, "SELECT * FROM "+table+" t ORDER BY t::text", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	var out []string
	for _, row := range res.Rows {
		var b strings.Builder
		for i, v := range row {
			if i > 0 {
				b.WriteString(" | ")
			}
			if v == nil {
				b.WriteString("NULL")
			} else {
				fmt.Fprintf(&b, "%q", v)
			}
		}
		out = append(out, b.String())
	}
	return out
}

func (e *env) assertSame(t testing.TB, tables ...string) {
	t.Helper()
	for _, tb := range tables {
		old, new := dump(t, e.old, tb), dump(t, e.new, tb)
		if !slices.Equal(old, new) {
			t.Errorf("table %s differs:\nold:\n  %s\nnew:\n  %s", tb, strings.Join(old, "\n  "), strings.Join(new, "\n  "))
		}
	}
}

func TestApplyEveryType(t *testing.T) {
	e := setup(t, pg, Options{}, "")
	var changes []mirror.Change
	for _, tb := range []string{"public.every", "public.items", "public.tokens", "public.parent", "public.child"} {
		changes = append(changes, e.capture(t, tb, "")...)
	}
	batch := &mirror.Batch{Changes: changes}
	if err := e.target.Apply(e.ctx, batch); err != nil {
		t.Fatal(err)
	}
	e.assertSame(t, "every", "items", "tokens", "parent", "child")
	// At-least-once delivery: the same batch again changes nothing.
	if err := e.target.Apply(e.ctx, batch); err != nil {
		t.Fatal(err)
	}
	e.assertSame(t, "every", "items", "tokens", "parent", "child")
	if !e.target.ReplicaRole() {
		t.Error("the superuser may set the replica role")
	}
}

func TestUpdatesDeletesAndKeyChanges(t *testing.T) {
	e := setup(t, pg, Options{}, "")
	e.apply(t, e.capture(t, "public.items", "")...)

	// Real writes on the old database, then their row images.
	exec(t, e.old, `
UPDATE items SET qty = qty + 1 WHERE sku = 'A-1' AND n = 2;
DELETE FROM items WHERE sku = 'b 2';
UPDATE items SET n = 99 WHERE sku = 'A-1' AND n = 1;
INSERT INTO items (sku, n) VALUES ('new', 7);
UPDATE tokens SET v = NULL WHERE v = 'one';`)
	pk := []string{"sku", "n"}
	changes := []mirror.Change{}
	changes = append(changes, e.capture(t, "public.items", "sku = 'A-1' AND n = 2")...)
	changes = append(changes, targettest.Delete("public.items", pk, "b 2", "-5"))
	// A key-changing update: delete of the old key, upsert of the new row.
	changes = append(changes, targettest.Delete("public.items", pk, "A-1", "1"))
	changes = append(changes, e.capture(t, "public.items", "n IN (99, 7)")...)
	changes = append(changes, e.capture(t, "public.tokens", "")...)
	// Deleting a row that is not there is not an error (idempotency).
	changes = append(changes, targettest.Delete("public.items", pk, "never", "0"))
	e.apply(t, changes...)
	e.assertSame(t, "items", "tokens")
	e.apply(t, changes...)
	e.assertSame(t, "items", "tokens")
}

func TestStatements(t *testing.T) {
	e := setup(t, pg, Options{}, "")
	exec(t, e.old, `INSERT INTO log VALUES ('a', '2024-01-01 10:00:00+05:30'), ('b', NULL), ('a', '2024-01-01 10:00:00+05:30')`)
	cols := []mirror.Column{{Name: "msg", TypeOID: 25}, {Name: "at", TypeOID: 1184}}
	ins := func(msg, at mirror.Value) mirror.Change {
		return mirror.Change{Op: mirror.OpStatement, Table: "public.log", SQL: "INSERT INTO log (msg, at) VALUES ($1, $2)",
			Columns: cols, Args: []mirror.Value{msg, at}}
	}
	e.apply(t,
		ins(mirror.Text("a"), mirror.Text("2024-01-01 10:00:00+05:30")),
		ins(mirror.Text("b"), mirror.Null),
		ins(mirror.Text("a"), mirror.Text("2024-01-01 04:30:00+00")),
		// Without argument descriptions the server infers the types.
		mirror.Change{Op: mirror.OpStatement, Table: "public.log", SQL: "INSERT INTO log (msg) VALUES ($1)", Args: []mirror.Value{mirror.Text("c")}},
		mirror.Change{Op: mirror.OpStatement, Table: "public.log", SQL: "DELETE FROM log WHERE msg = $1", Args: []mirror.Value{mirror.Text("c")}},
	)
	e.assertSame(t, "log")
	// With the built-in OID given, "$1 + 1" is integer arithmetic.
	e.apply(t, mirror.Change{Op: mirror.OpStatement, Table: "public.tokens",
		SQL:     "INSERT INTO tokens VALUES ('6ba7b812-9dad-11d1-80b4-00c04fd430c8', ($1 + 1)::text)",
		Columns: []mirror.Column{{Name: "$1", TypeOID: 23}}, Args: []mirror.Value{mirror.Text("41")}})
	var v string
	if err := e.new.QueryRow(e.ctx, "SELECT v FROM tokens WHERE id = '6ba7b812-9dad-11d1-80b4-00c04fd430c8'").Scan(&v); err != nil || v != "42" {
		t.Errorf("statement with typed argument: %q %v", v, err)
	}
}

func TestRejects(t *testing.T) {
	e := setup(t, pg, Options{}, "CREATE UNIQUE INDEX tokens_v ON tokens (v);")
	tokens := e.capture(t, "public.tokens", "")
	good := tokens[0]
	dupV := targettest.Set(tokens[1], "v", targettest.Value(good, "v"))
	every := e.capture(t, "public.every", "id = 1")[0]
	missing := good
	missing.Table = "public.missing"

	tests := []struct {
		name     string
		changes  []mirror.Change
		sqlState string
		index    int
	}{
		{"unique violation", []mirror.Change{good, dupV}, "23505", 1},
		{"missing table", []mirror.Change{good, missing}, "42P01", 1},
		{"missing column", []mirror.Change{good, func() mirror.Change {
			c := good
			c.Columns = append(slices.Clone(c.Columns), mirror.Column{Name: "nope", TypeOID: 25})
			c.Row = append(slices.Clone(c.Row), mirror.Text("x"))
			return c
		}()}, "42703", 1},
		{"invalid value", []mirror.Change{good, targettest.Set(every, "i4", mirror.Text("not a number"))}, "22P02", 1},
		{"out of range", []mirror.Change{targettest.Set(every, "i2", mirror.Text("70000")), good}, "22003", 0},
		{"bad statement", []mirror.Change{good, {Op: mirror.OpStatement, Table: "public.log", SQL: "INSERT INTO nowhere VALUES (1)"}}, "42P01", 1},
		{"malformed change", []mirror.Change{good, {Op: mirror.OpUpsert, Table: "public.tokens", Columns: good.Columns}}, "", 1},
		{"delete without key", []mirror.Change{{Op: mirror.OpDelete, Table: "public.log"}}, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exec(t, e.new, "TRUNCATE tokens")
			err := e.target.Apply(e.ctx, &mirror.Batch{Changes: tc.changes})
			var rej *mirror.RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("got %v, want a RejectError", err)
			}
			if rej.SQLState != tc.sqlState || rej.ChangeIndex != tc.index {
				t.Errorf("SQLState %q index %d, want %q %d (%v)", rej.SQLState, rej.ChangeIndex, tc.sqlState, tc.index, err)
			}
			// The batch is one transaction: nothing of it stays.
			if rows := dump(t, e.new, "tokens"); len(rows) != 0 {
				t.Errorf("rejected batch left rows: %q", rows)
			}
			// The target keeps working after a rejection.
			e.apply(t, good)
		})
	}
}

func TestForeignKeyRejectWithoutReplicaRole(t *testing.T) {
	e := setup(t, pg, Options{NoReplicaRole: true}, "")
	if e.target.ReplicaRole() {
		t.Error("NoReplicaRole must leave the role alone")
	}
	orphan := e.capture(t, "public.child", "")[0]
	err := e.target.Apply(e.ctx, &mirror.Batch{Changes: []mirror.Change{orphan}})
	var rej *mirror.RejectError
	if !errors.As(err, &rej) || rej.SQLState != "23503" || rej.ChangeIndex != 0 {
		t.Fatalf("got %v, want a foreign key RejectError", err)
	}
	// With the replica role, foreign keys are the old database's business.
	replica, err := New(e.ctx, e.newURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	if err := replica.Apply(e.ctx, &mirror.Batch{Changes: []mirror.Change{orphan}}); err != nil {
		t.Fatalf("replica role apply: %v", err)
	}
}

const triggerDDL = `
CREATE TABLE trigger_log (msg text);
CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO trigger_log VALUES (TG_OP); RETURN NEW; END $$;
CREATE TRIGGER t_log AFTER INSERT OR UPDATE OR DELETE ON tokens FOR EACH ROW EXECUTE FUNCTION log_it();
`

func TestTriggersDoNotFireWithReplicaRole(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		fired int
	}{
		{"replica role", Options{}, 0},
		{"no replica role", Options{NoReplicaRole: true}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, pg, tc.opts, triggerDDL)
			tokens := e.capture(t, "public.tokens", "")
			e.apply(t, tokens[0], tokens[1], targettest.Delete("public.tokens", []string{"id"}, targettest.Value(tokens[0], "id").Text))
			var n int
			if err := e.new.QueryRow(e.ctx, "SELECT count(*) FROM trigger_log").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != tc.fired {
				t.Errorf("trigger fired %d times, want %d", n, tc.fired)
			}
		})
	}
}

func TestReplicaRoleNotPermitted(t *testing.T) {
	e := setup(t, pg, Options{}, "")
	pg.Exec(t, "DROP ROLE IF EXISTS mirror_user")
	pg.Exec(t, "CREATE ROLE mirror_user LOGIN PASSWORD 'pw'")
	exec(t, e.new, "GRANT ALL ON ALL TABLES IN SCHEMA public TO mirror_user")
	url := pg.URL("mirror_user", "pw", targettest.DBName("new", t))
	tg, err := New(e.ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if tg.ReplicaRole() {
		t.Error("an ordinary role may not set the replica role")
	}
	if err := tg.Apply(e.ctx, &mirror.Batch{Changes: e.capture(t, "public.items", "")}); err != nil {
		t.Fatal(err)
	}
	e.assertSame(t, "items")
}

func TestServerDownIsTransient(t *testing.T) {
	srv := testdb.StartPostgres(t)
	e := setup(t, srv, Options{Timeout: 5 * time.Second}, "")
	items := e.capture(t, "public.items", "")
	e.apply(t, items[0])

	srv.Stop(t)
	err := e.target.Apply(e.ctx, &mirror.Batch{Changes: items[1:2]})
	var rej *mirror.RejectError
	if err == nil || errors.As(err, &rej) {
		t.Fatalf("server down: got %v, want a transient error", err)
	}
	// Still down: connecting fails, still transient.
	err = e.target.Apply(e.ctx, &mirror.Batch{Changes: items[1:2]})
	if err == nil || errors.As(err, &rej) {
		t.Fatalf("server still down: got %v, want a transient error", err)
	}
	srv.Restart(t)
	e.new = connect(t, e.newURL)
	e.old = connect(t, srv.URL("postgres", "", targettest.DBName("old", t)))
	e.apply(t, items...)
	e.assertSame(t, "items")
}

func TestLazyConnect(t *testing.T) {
	tg, err := New(context.Background(), "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", Options{Lazy: true})
	if err != nil {
		t.Fatalf("lazy New must not connect: %v", err)
	}
	defer tg.Close()
	err = tg.Apply(context.Background(), &mirror.Batch{Changes: []mirror.Change{targettest.Delete("public.t", []string{"id"}, "1")}})
	var rej *mirror.RejectError
	if err == nil || errors.As(err, &rej) {
		t.Fatalf("unreachable server: got %v, want a transient error", err)
	}
	if _, err := New(context.Background(), "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", Options{}); err == nil {
		t.Error("eager New must fail on an unreachable server")
	}
	if _, err := New(context.Background(), "::not a url", Options{Lazy: true}); err == nil {
		t.Error("a bad URL must fail")
	}
}

func TestStatementCacheEviction(t *testing.T) {
	e := setup(t, pg, Options{StatementCacheSize: 2}, "")
	items, tokens := e.capture(t, "public.items", ""), e.capture(t, "public.tokens", "")
	shapes := slices.Concat(items, tokens, []mirror.Change{
		targettest.Delete("public.items", []string{"sku", "n"}, "zz", "1"),
		targettest.Delete("public.tokens", []string{"id"}, "6ba7b812-9dad-11d1-80b4-00c04fd430c8"),
	})
	for round := 0; round < 3; round++ {
		// All four shapes in one batch: the cache evicts statements this
		// batch still uses; they must stay prepared until it is done.
		e.apply(t, shapes...)
	}
	var n int
	if err := e.target.conn.QueryRow(e.ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'shadowproxy_%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d statements prepared, want the cache size 2", n)
	}
	e.assertSame(t, "items", "tokens")
}

func TestApplyAfterClose(t *testing.T) {
	e := setup(t, pg, Options{}, "")
	e.target.Close()
	if err := e.target.Apply(e.ctx, &mirror.Batch{Changes: e.capture(t, "public.items", "")}); !errors.Is(err, errClosed) {
		t.Errorf("Apply after Close = %v", err)
	}
}

func TestPlanSQL(t *testing.T) {
	tg := &Target{tables: map[string]*tableInfo{
		"public.t":     {exists: true, primaryKey: []string{"id"}, generated: map[string]bool{"g": true}, identityAlways: map[string]bool{"ia": true}},
		"app.My Table": {exists: true, primaryKey: []string{"a", "b"}},
	}}
	cols := func(names ...string) []mirror.Column {
		var cs []mirror.Column
		for _, n := range names {
			cs = append(cs, mirror.Column{Name: n})
		}
		return cs
	}
	vals := func(n int) []mirror.Value { return slices.Repeat([]mirror.Value{mirror.Text("1")}, n) }
	tests := []struct {
		c    mirror.Change
		want string
	}{
		{mirror.Change{Op: mirror.OpUpsert, Table: "public.t", Columns: cols("id", "v", "g", "ia"), Row: vals(4)},
			`INSERT INTO "public"."t" ("id", "v", "ia") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v"`},
		{mirror.Change{Op: mirror.OpUpsert, Table: "app.My Table", Columns: cols("a", "b"), Row: vals(2), KeyCols: []string{"x"}},
			`INSERT INTO "app"."My Table" ("a", "b") VALUES ($1, $2) ON CONFLICT ("a", "b") DO NOTHING`},
		{mirror.Change{Op: mirror.OpUpsert, Table: "public.unknown", Columns: cols("k", `we"ird`), Row: vals(2), KeyCols: []string{"k"}},
			`INSERT INTO "public"."unknown" ("k", "we""ird") VALUES ($1, $2) ON CONFLICT ("k") DO UPDATE SET "we""ird" = EXCLUDED."we""ird"`},
		// No key on either side: a table without a primary key, whose
		// row images are inserts.
		{mirror.Change{Op: mirror.OpUpsert, Table: "public.unknown", Columns: cols("a"), Row: vals(1)},
			`INSERT INTO "public"."unknown" ("a") VALUES ($1)`},
		{mirror.Change{Op: mirror.OpDelete, Table: "app.My Table", Key: vals(2)},
			`DELETE FROM "app"."My Table" WHERE "a" = $1 AND "b" = $2`},
		{mirror.Change{Op: mirror.OpDelete, Table: "public.t", KeyCols: []string{"k"}, Key: []mirror.Value{mirror.Null}},
			`DELETE FROM "public"."t" WHERE "k" = $1`},
	}
	for _, tc := range tests {
		st, err := tg.plan(&tc.c)
		if err != nil {
			t.Errorf("%+v: %v", tc.c, err)
			continue
		}
		if st.sql != tc.want {
			t.Errorf("plan:\n got %s\nwant %s", st.sql, tc.want)
		}
	}
	bad := []mirror.Change{
		{Op: mirror.OpUpsert, Table: "public.t", Columns: cols("g"), Row: vals(1)},
		{Op: mirror.OpUpsert, Table: "public.t", Columns: cols("id", "v"), Row: vals(1)},
		{Op: mirror.OpDelete, Table: "public.t", Key: vals(2)},
		{Op: mirror.OpStatement, Table: "public.t", SQL: "  "},
		{Op: 0, Table: "public.t"},
	}
	for _, c := range bad {
		if _, err := tg.plan(&c); err == nil {
			t.Errorf("plan(%+v) must fail", c)
		}
	}

	// Statements are kept per table, column list and key: another column
	// order is another statement, and the values follow their columns.
	row := []mirror.Value{mirror.Text("1"), mirror.Text("2"), mirror.Text("3"), mirror.Text("4")}
	first := mirror.Change{Op: mirror.OpUpsert, Table: "public.t", Columns: cols("id", "v", "g", "ia"), Row: row}
	reordered := mirror.Change{Op: mirror.OpUpsert, Table: "public.t", Columns: cols("v", "id", "ia", "g"), Row: row}
	for _, tc := range []struct {
		c      mirror.Change
		sql    string
		params string
	}{
		{first, `INSERT INTO "public"."t" ("id", "v", "ia") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v"`, "1 2 4"},
		{reordered, `INSERT INTO "public"."t" ("v", "id", "ia") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v"`, "1 2 3"},
		{first, `INSERT INTO "public"."t" ("id", "v", "ia") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v"`, "1 2 4"},
	} {
		st, err := tg.plan(&tc.c)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(bytes.Join(st.params, []byte(" "))); st.sql != tc.sql || got != tc.params {
			t.Errorf("plan %v:\n got %s (%s)\nwant %s (%s)", tc.c.Columns, st.sql, got, tc.sql, tc.params)
		}
	}
	if n := len(tg.tables["public.t"].shapes); n != 3 {
		t.Errorf("public.t keeps %d statement shapes, want 3 (its two column lists, one without generated columns from bad)", n)
	}
}

func BenchmarkApply1000(b *testing.B) {
	e := setup(b, pg, Options{}, "")
	tmpl := e.capture(b, "public.items", "")[0]
	for _, delete := range []bool{false, true} {
		name := "upsert"
		if delete {
			name = "mixed"
		}
		b.Run(name, func(b *testing.B) {
			batch := &mirror.Batch{}
			for i := range 1000 {
				c := targettest.Set(tmpl, "n", mirror.Text(fmt.Sprint(i)))
				if delete && i%2 == 1 {
					c = targettest.Delete("public.items", []string{"sku", "n"}, "A-1", fmt.Sprint(i-1))
				}
				batch.Changes = append(batch.Changes, c)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := e.target.Apply(e.ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/change")
		})
	}
}

func TestSequencesMovedPastMirroredValues(t *testing.T) {
	var logs bytes.Buffer
	e := setup(t, pg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, "")
	ddl := `
CREATE TABLE ser (id bigserial PRIMARY KEY, v text);
CREATE TABLE down (id int PRIMARY KEY, v text);
CREATE SEQUENCE down_seq INCREMENT -1 MINVALUE -1000 MAXVALUE -1 START -1 OWNED BY down.id;
ALTER TABLE down ALTER id SET DEFAULT nextval('down_seq');`
	exec(t, e.old, ddl)
	exec(t, e.new, ddl)
	exec(t, e.old, `INSERT INTO ser (v) SELECT 'x' || g FROM generate_series(1, 5) g;
INSERT INTO down (v) SELECT 'y' || g FROM generate_series(1, 3) g;
INSERT INTO ser VALUES (-7, 'below the range');`)
	var err error
	if e.cat, err = schema.Load(e.ctx, e.old); err != nil {
		t.Fatal(err)
	}
	next := func(seq string) int64 {
		t.Helper()
		var v int64
		if err := e.new.QueryRow(e.ctx, "SELECT nextval($1)", seq).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	var maxSerial int64
	if err := e.old.QueryRow(e.ctx, "SELECT max(serial_no) FROM items").Scan(&maxSerial); err != nil {
		t.Fatal(err)
	}

	// A role that may write the tables but not touch their sequences gets
	// its batches applied all the same, sequences left alone.
	pg.Exec(t, "DROP ROLE IF EXISTS seq_user")
	pg.Exec(t, "CREATE ROLE seq_user LOGIN PASSWORD 'pw'")
	exec(t, e.new, "GRANT ALL ON ALL TABLES IN SCHEMA public TO seq_user")
	limited, err := New(e.ctx, pg.URL("seq_user", "pw", targettest.DBName("new", t)), Options{Logger: e.target.log})
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()
	if err := limited.Apply(e.ctx, &mirror.Batch{Changes: e.capture(t, "public.ser", "id = 1")}); err != nil {
		t.Fatalf("apply without sequence privileges: %v", err)
	}
	var called bool
	if err := e.new.QueryRow(e.ctx, "SELECT is_called FROM ser_id_seq").Scan(&called); err != nil || called {
		t.Fatalf("ser_id_seq moved by a role without the privilege (is_called %v, %v)", called, err)
	}

	// So does a target told to leave sequences alone.
	off, err := New(e.ctx, e.newURL, Options{NoSequences: true})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if err := off.Apply(e.ctx, &mirror.Batch{Changes: e.capture(t, "public.ser", "id = 2")}); err != nil {
		t.Fatal(err)
	}
	if err := e.new.QueryRow(e.ctx, "SELECT is_called FROM ser_id_seq").Scan(&called); err != nil || called {
		t.Fatalf("ser_id_seq moved with NoSequences (is_called %v, %v)", called, err)
	}

	// -7 is below ser_id_seq's range: skipped, without failing the batch.
	e.apply(t, e.capture(t, "public.ser", "id = -7")...)
	for _, want := range []string{"sequence=ser_id_seq reason=denied", "sequence=ser_id_seq reason=\"out of range\""} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning with %s in the log:\n%s", want, logs.String())
		}
	}

	// Ascending, descending and identity sequences move past the values.
	var all []mirror.Change
	for _, tb := range []string{"public.ser", "public.down", "public.items"} {
		all = append(all, e.capture(t, tb, "")...)
	}
	e.apply(t, all...)
	e.assertSame(t, "ser", "down", "items")
	if got := next("ser_id_seq"); got != 6 {
		t.Errorf("ser_id_seq next = %d, want 6", got)
	}
	if got := next("down_seq"); got != -4 {
		t.Errorf("down_seq next = %d, want -4", got)
	}
	if got := next("items_serial_no_seq"); got != maxSerial+1 {
		t.Errorf("items_serial_no_seq next = %d, want %d", got, maxSerial+1)
	}

	// A sequence already past a value stays where it is.
	exec(t, e.new, "SELECT setval('ser_id_seq', 100)")
	exec(t, e.old, "INSERT INTO ser VALUES (50, 'behind the new sequence')")
	e.apply(t, e.capture(t, "public.ser", "id = 50")...)
	if got := next("ser_id_seq"); got != 101 {
		t.Errorf("ser_id_seq next = %d after a value behind it, want 101", got)
	}
	// A value past it moves it again, in the batch's transaction.
	exec(t, e.old, "INSERT INTO ser VALUES (500, 'ahead of the new sequence')")
	e.apply(t, e.capture(t, "public.ser", "id = 500")...)
	if got := next("ser_id_seq"); got != 501 {
		t.Errorf("ser_id_seq next = %d, want 501", got)
	}

	// Should the sequences' statement fail after all (here a function it
	// calls is made off limits), the batch is applied without it.
	exec(t, e.new, "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO seq_user; "+
		"REVOKE EXECUTE ON FUNCTION pg_sequence_last_value(regclass) FROM PUBLIC")
	failing, err := New(e.ctx, pg.URL("seq_user", "pw", targettest.DBName("new", t)), Options{Logger: e.target.log})
	if err != nil {
		t.Fatal(err)
	}
	defer failing.Close()
	exec(t, e.old, "INSERT INTO ser VALUES (600, 'with the statement failing')")
	if err := failing.Apply(e.ctx, &mirror.Batch{Changes: e.capture(t, "public.ser", "id = 600")}); err != nil {
		t.Fatalf("apply with the sequences' statement failing: %v", err)
	}
	e.assertSame(t, "ser")
	if !strings.Contains(logs.String(), "cannot move the new database's sequences") {
		t.Errorf("the failure is not logged:\n%s", logs.String())
	}
	if got := next("ser_id_seq"); got != 502 {
		t.Errorf("ser_id_seq next = %d, want 502 (not moved)", got)
	}

	// In a group the batch comes back to be applied again, and the
	// connection, which keeps sequences off, with it: the next try applies.
	grouped, err := New(e.ctx, pg.URL("seq_user", "pw", targettest.DBName("new", t)), Options{Logger: e.target.log})
	if err != nil {
		t.Fatal(err)
	}
	defer grouped.Close()
	exec(t, e.old, "INSERT INTO ser VALUES (700, 'grouped with the statement failing')")
	b := &mirror.Batch{Changes: e.capture(t, "public.ser", "id = 700")}
	if errs := grouped.ApplyGroup(e.ctx, []*mirror.Batch{b}); !errors.Is(errs[0], errSequencesFailed) {
		t.Fatalf("ApplyGroup: %v, want the sequences' statement's failure", errs[0])
	}
	if errs := grouped.ApplyGroup(e.ctx, []*mirror.Batch{b}); errs[0] != nil {
		t.Fatalf("ApplyGroup again: %v", errs[0])
	}
	e.assertSame(t, "ser")
}

func TestCheckSchema(t *testing.T) {
	e := setup(t, pg, Options{}, "")
	problems, err := e.target.CheckSchema(e.ctx, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 0 {
		t.Fatalf("identical tables have problems: %v", problems)
	}
	exec(t, e.new, `DROP TABLE tokens;
ALTER TABLE items DROP COLUMN qty, ADD COLUMN note text NOT NULL, ADD COLUMN opt int NOT NULL DEFAULT 0;
ALTER TABLE every ALTER COLUMN vc TYPE varchar(5);
ALTER TABLE child DROP CONSTRAINT child_pkey, ADD CONSTRAINT child_id UNIQUE (id);
ALTER TABLE parent DROP CONSTRAINT parent_pkey CASCADE;`)
	if problems, err = e.target.CheckSchema(e.ctx, e.cat); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	want := []string{
		"public.every.vc: type_differs: character varying(20) on the old database, character varying(5) on the new",
		"public.items.qty: missing_column: the new table has no column qty (integer)",
		"public.items.note: required_column: the new table's column note is NOT NULL without a default, and the old table has no such column",
		"public.parent: no_key: the new table has no primary key, nor a unique key on (id), the old table's primary key",
		"public.tokens: missing_table: no table public.tokens on the new database",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// ApplyGroup runs each batch as its own transaction, in one round trip,
// and stops at the first that the server refuses: that batch is rolled
// back as a whole, the batches before it stay committed and the ones
// behind it do not run (ErrNotApplied). A batch refused before the
// pipeline (a table that does not exist) does not stop the others. Each
// batch moves its sequences.
func TestApplyGroup(t *testing.T) {
	e := setup(t, pg, Options{}, "CREATE UNIQUE INDEX tokens_v ON tokens (v);")
	ddl := "CREATE TABLE ser (id bigserial PRIMARY KEY, v text);"
	exec(t, e.old, ddl+"INSERT INTO ser (v) SELECT 'x' || g FROM generate_series(1, 5) g;")
	exec(t, e.new, ddl)
	var err error
	if e.cat, err = schema.Load(e.ctx, e.old); err != nil {
		t.Fatal(err)
	}
	good := e.capture(t, "public.tokens", "")[0]
	token := func(n int, v string) mirror.Change {
		c := targettest.Set(good, "id", mirror.Text(fmt.Sprintf("00000000-0000-0000-0000-%012d", n)))
		return targettest.Set(c, "v", mirror.Text(v))
	}
	missing := token(9, "nine")
	missing.Table = "public.missing"
	bs := []*mirror.Batch{
		{Changes: []mirror.Change{token(1, "one"), token(2, "two")}},
		{Changes: []mirror.Change{token(5, "five"), missing}},
		{Changes: []mirror.Change{token(3, "three"), token(4, "one")}}, // duplicate v
		{Changes: e.capture(t, "public.ser", "id <= 2")},
		{},
		{Changes: append(e.capture(t, "public.ser", "id > 2"), token(6, "six"))},
	}
	errs := e.target.ApplyGroup(e.ctx, bs)
	if len(errs) != len(bs) {
		t.Fatalf("%d results for %d batches", len(errs), len(bs))
	}
	for i, want := range []struct {
		sqlState   string
		index      int
		notApplied bool
	}{{}, {sqlState: "42P01", index: 1}, {sqlState: "23505", index: 1}, {notApplied: true}, {}, {notApplied: true}} {
		var rej *mirror.RejectError
		switch {
		case want.notApplied:
			if !errors.Is(errs[i], mirror.ErrNotApplied) {
				t.Errorf("batch %d: %v, want ErrNotApplied", i, errs[i])
			}
		case want.sqlState == "" && errs[i] != nil:
			t.Errorf("batch %d: %v", i, errs[i])
		case want.sqlState == "":
		case !errors.As(errs[i], &rej):
			t.Errorf("batch %d: got %v, want a RejectError", i, errs[i])
		case rej.SQLState != want.sqlState || rej.ChangeIndex != want.index:
			t.Errorf("batch %d: SQLState %q index %d, want %q %d", i, rej.SQLState, rej.ChangeIndex, want.sqlState, want.index)
		}
	}
	if got := tokenValues(t, e.new); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("tokens %q after the first group: the batches behind the refused one ran", got)
	}
	if n := count(t, e.new, "ser"); n != 0 {
		t.Fatalf("%d rows in ser after the first group, want 0", n)
	}
	// The mirror sends the batches that did not run again.
	for i, err := range e.target.ApplyGroup(e.ctx, []*mirror.Batch{bs[3], bs[5]}) {
		if err != nil {
			t.Fatalf("again, batch %d: %v", i, err)
		}
	}
	var vs []string
	var xids []string
	rows, err := e.new.Query(e.ctx, "SELECT v, xmin::text FROM tokens ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v, x string
		if err := rows.Scan(&v, &x); err != nil {
			t.Fatal(err)
		}
		vs, xids = append(vs, v), append(xids, x)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	// The refused batches left nothing; the others committed, each in its
	// own transaction.
	if !slices.Equal(vs, []string{"one", "two", "six"}) {
		t.Fatalf("tokens %q", vs)
	}
	if xids[0] != xids[1] || xids[1] == xids[2] {
		t.Errorf("transaction ids %v: want the first batch in one transaction, the last in another", xids)
	}
	e.assertSame(t, "ser")
	var next int64
	if err := e.new.QueryRow(e.ctx, "SELECT nextval('ser_id_seq')").Scan(&next); err != nil || next != 6 {
		t.Errorf("ser_id_seq gave %d (%v), want 6", next, err)
	}
	// The target goes on, grouped or not.
	e.apply(t, token(7, "seven"))
	if errs := e.target.ApplyGroup(e.ctx, []*mirror.Batch{{Changes: []mirror.Change{token(8, "eight")}}, {Changes: []mirror.Change{token(1, "one again")}}}); errs[0] != nil || errs[1] != nil {
		t.Fatalf("second group: %v", errs)
	}
	e.target.Close()
	for _, err := range e.target.ApplyGroup(e.ctx, bs[:2]) {
		if !errors.Is(err, errClosed) {
			t.Errorf("after Close: %v", err)
		}
	}
}

// A batch that fails for a passing reason (a lock wait that times out)
// stops the group there: it is transient, the batch behind it does not
// run, and nothing is left of either until they are sent again. Had the
// one behind it committed, the failed batch would be applied after it,
// out of order (over its rows, had it touched the same ones).
func TestApplyGroupTransient(t *testing.T) {
	e := setup(t, pg, Options{}, "")
	tmpl := e.capture(t, "public.tokens", "")[0]
	token := func(n int, v string) mirror.Change { return targettest.TokenChange(tmpl, n, v) }
	e.apply(t, token(2, "two before"))
	// The target's sessions wait at most half a second for a lock.
	tgt, err := New(e.ctx, e.newURL+"&lock_timeout=500", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	holder, err := e.new.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(e.ctx, "SELECT v FROM tokens WHERE id = $1 FOR UPDATE", targettest.TokenID(2)); err != nil {
		t.Fatal(err)
	}
	bs := []*mirror.Batch{
		{Changes: []mirror.Change{token(1, "one")}},
		{Changes: []mirror.Change{token(2, "two")}}, // waits for the lock
		{Changes: []mirror.Change{token(3, "three")}},
	}
	errs := tgt.ApplyGroup(e.ctx, bs)
	if err := holder.Rollback(e.ctx); err != nil {
		t.Fatal(err)
	}
	targettest.CheckStoppedAt(t, errs, 1)
	if got := tokenValues(t, e.new); !slices.Equal(got, []string{"one", "two before"}) {
		t.Fatalf("tokens %q", got)
	}
	for i, err := range tgt.ApplyGroup(e.ctx, bs[1:]) {
		if err != nil {
			t.Errorf("again, batch %d: %v", i+1, err)
		}
	}
	if got := tokenValues(t, e.new); !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Fatalf("tokens %q", got)
	}
}

// tokenValues returns the v of every token, by id.
func tokenValues(t testing.TB, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT v FROM tokens ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// count returns the number of rows in table.
func count(t testing.TB, conn *pgx.Conn, table string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A connection lost in the middle of a group fails that batch and every
// one after it as transient (their outcome is unknown to the caller); the
// batches before it stay committed and the next call reconnects.
func TestApplyGroupConnectionLost(t *testing.T) {
	e := setup(t, pg, Options{}, "")
	good := e.capture(t, "public.tokens", "")[0]
	token := func(n int) mirror.Change {
		return targettest.Set(good, "id", mirror.Text(fmt.Sprintf("00000000-0000-0000-0000-%012d", n)))
	}
	kill := mirror.Change{Op: mirror.OpStatement, Table: "public.log", SQL: "SELECT pg_terminate_backend(pg_backend_pid())"}
	errs := e.target.ApplyGroup(e.ctx, []*mirror.Batch{
		{Changes: []mirror.Change{token(1)}},
		{Changes: []mirror.Change{token(2), kill}},
		{Changes: []mirror.Change{token(3)}},
	})
	if errs[0] != nil {
		t.Fatalf("batch before the loss: %v", errs[0])
	}
	for i, err := range errs[1:] {
		var rej *mirror.RejectError
		if err == nil || errors.As(err, &rej) {
			t.Errorf("batch %d: got %v, want a transient error", i+1, err)
		}
	}
	if errs := e.target.ApplyGroup(e.ctx, []*mirror.Batch{{Changes: []mirror.Change{token(4)}}, {Changes: []mirror.Change{token(5)}}}); errs[0] != nil || errs[1] != nil {
		t.Fatalf("after reconnecting: %v", errs)
	}
	rows, err := e.new.Query(e.ctx, "SELECT right(id::text, 1) FROM tokens ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"1", "4", "5"}) {
		t.Fatalf("tokens %v, want 1, 4 and 5", ids)
	}
}
