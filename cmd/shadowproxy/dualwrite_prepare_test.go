package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// transcript sends msgs (ending with Sync or Query) and returns every
// answer up to the ReadyForQuery of the last, in full: column names of a
// RowDescription, every value of a DataRow, command tags, and the
// SQLSTATE and message of errors. Two servers that answer alike give the
// same transcript.
func transcript(t *testing.T, c *pgconn.PgConn, msgs ...pgproto3.FrontendMessage) string {
	t.Helper()
	return converse(t, c, func(m pgproto3.BackendMessage) string {
		switch m := m.(type) {
		case *pgproto3.ParseComplete:
			return "1"
		case *pgproto3.BindComplete:
			return "2"
		case *pgproto3.NoData:
			return "n"
		case *pgproto3.ParameterDescription:
			return fmt.Sprintf("t %v", m.ParameterOIDs)
		case *pgproto3.DataRow:
			vals := make([]string, len(m.Values))
			for i, v := range m.Values {
				vals[i] = string(v)
			}
			return "D " + strings.Join(vals, "|")
		case *pgproto3.RowDescription:
			names := make([]string, len(m.Fields))
			for i, f := range m.Fields {
				names[i] = string(f.Name)
			}
			return "T " + strings.Join(names, ",")
		case *pgproto3.ErrorResponse:
			return "E " + m.Code + " " + m.Message
		}
		return commonAnswer(m)
	}, msgs...)
}

// sqlStep is one request of a test client: a simple Query, or extended
// messages.
type sqlStep struct {
	name string
	msgs []pgproto3.FrontendMessage
	want string // the transcript; empty: only the same as directly
}

func query(sql string) []pgproto3.FrontendMessage {
	return []pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}
}

// extended runs sql as pgx's QueryExecModeExec would: Parse, Bind,
// Describe of the portal, Execute, Sync.
func extended(sql string) []pgproto3.FrontendMessage {
	return []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: sql},
		&pgproto3.Bind{},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	}
}

// runSteps runs each step directly and through the proxy and requires the
// same transcript from both (and the expected one, where given).
func runSteps(t *testing.T, direct, proxied *pgconn.PgConn, steps []sqlStep) {
	t.Helper()
	for _, s := range steps {
		d, v := transcript(t, direct, s.msgs...), transcript(t, proxied, s.msgs...)
		if d != v || s.want != "" && d != s.want {
			t.Errorf("%s:\ndirect: %s\nproxy:  %s\nwant:   %s", s.name, d, v, s.want)
		}
	}
}

// notMirrored returns the reasons /status lists under not_mirrored.
func notMirrored(m map[string]any) []string {
	var out []string
	nm, _ := m["not_mirrored"].([]any)
	for _, x := range nm {
		e, _ := x.(map[string]any)
		out = append(out, fmt.Sprint(e["reason"]))
	}
	return out
}

const prepareSchema = `create table items (id serial primary key, v text, at timestamptz not null default now());
create table nokey (k int, v text);`

// TestDualWriteSQLPrepare runs writes prepared with SQL PREPARE and run
// with EXECUTE, in autocommit and in transactions with savepoints, in
// simple Queries (one or several statements) and in the extended protocol,
// and requires the client's answers to be those of Postgres directly, the
// new database to end with the old one's rows (serial ids and now()
// defaults as stored), and nothing reported as not mirrored but the
// UPDATE of a table without a primary key.
func TestDualWriteSQLPrepare(t *testing.T) {
	oldURL, directURL, newURL, p := directAndMirrored(t, "dual-write", prepareSchema, prepareSchema)
	steps := []sqlStep{
		{"prepare insert", query("PREPARE ins(text) AS INSERT INTO items (v) VALUES ($1)"), "C PREPARE; Z I"},
		{"execute insert, autocommit", query("EXECUTE ins('a')"), "C INSERT 0 1; Z I"},
		{"prepare and execute with returning", query("PREPARE insr(text) AS INSERT INTO items (v) VALUES ($1) RETURNING id, v; EXECUTE insr('b')"),
			"C PREPARE; T id,v; D 2|b; C INSERT 0 1; Z I"},
		{"begin", query("BEGIN"), "C BEGIN; Z T"},
		{"execute in a transaction", query("EXECUTE ins('c')"), "C INSERT 0 1; Z T"},
		{"savepoint", query("SAVEPOINT s"), "C SAVEPOINT; Z T"},
		{"execute rolled back", query("EXECUTE insr('rolled back')"), "T id,v; D 4|rolled back; C INSERT 0 1; Z T"},
		{"rollback to savepoint", query("ROLLBACK TO SAVEPOINT s"), "C ROLLBACK; Z T"},
		{"prepare update in a transaction", query("PREPARE up(int, text) AS UPDATE items SET v = $2 WHERE id = $1"), "C PREPARE; Z T"},
		{"execute update", query("EXECUTE up(1, 'a2')"), "C UPDATE 1; Z T"},
		{"execute in the extended protocol, in a transaction", extended("EXECUTE insr('ext in tx')"),
			"1; 2; T id,v; D 5|ext in tx; C INSERT 0 1; Z T"},
		{"commit", query("COMMIT"), "C COMMIT; Z I"},
		{"prepare and execute delete", query("PREPARE del AS DELETE FROM items WHERE id = $1; EXECUTE del(2)"), "C PREPARE; C DELETE 1; Z I"},
		{"execute in the extended protocol, autocommit", extended("EXECUTE insr('ext')"), "1; 2; T id,v; D 6|ext; C INSERT 0 1; Z I"},
		{"execute update in the extended protocol", extended("EXECUTE up(3, 'c2')"), "1; 2; n; C UPDATE 1; Z I"},
		{"describe a statement prepared with SQL", []pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'S', Name: "insr"}, &pgproto3.Sync{}},
			"t [25]; T id,v; Z I"},
		{"bind a statement prepared with SQL", []pgproto3.FrontendMessage{
			&pgproto3.Bind{PreparedStatement: "insr", Parameters: [][]byte{[]byte("bound")}},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}, "2; T id,v; D 7|bound; C INSERT 0 1; Z I"},
		{"bind it with binary results", []pgproto3.FrontendMessage{
			&pgproto3.Bind{PreparedStatement: "insr", Parameters: [][]byte{[]byte("binary")}, ResultFormatCodes: []int16{1}},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}, "2; D \x00\x00\x00\b|binary; C INSERT 0 1; Z I"},
		{"deallocate and prepare the name again", query("DEALLOCATE ins; PREPARE ins(int) AS UPDATE items SET v = v || '!' WHERE id = $1 RETURNING v; EXECUTE ins(1)"),
			"C DEALLOCATE; C PREPARE; T v; D a2!; C UPDATE 1; Z I"},
		{"key-changing update", query("PREPARE mv(int, int) AS UPDATE items SET id = $2 WHERE id = $1; EXECUTE mv(1, 100)"), "C PREPARE; C UPDATE 1; Z I"},
		{"wrong number of parameters", query("EXECUTE up(1)"), ""},
		{"no such statement", query("EXECUTE nosuch(1)"), ""},
		{"duplicate name", query("PREPARE up AS DELETE FROM items"), ""},
		{"failed prepare leaves the name free", query("PREPARE bad AS INSERT INTO items (nosuch) VALUES (1)"), ""},
		{"prepare the failed name", query("PREPARE bad AS INSERT INTO items (v) VALUES ('good') RETURNING v"), "C PREPARE; Z I"},
		{"execute it", query("EXECUTE bad"), "T v; D good; C INSERT 0 1; Z I"},
		{"execute after an error in one query", query("EXECUTE ins(100); SELECT 1/0; EXECUTE ins(100)"), ""},
		{"deallocate all", query("DEALLOCATE ALL"), "C DEALLOCATE ALL; Z I"},
		{"execute after deallocate all", query("EXECUTE up(3, 'gone')"), ""},
		{"prepare after deallocate all", query("PREPARE up AS UPDATE items SET v = 'again' WHERE id = $1 RETURNING id, v, at IS NOT NULL"), "C PREPARE; Z I"},
		{"execute it", query("EXECUTE up(3)"), "T id,v,?column?; D 3|again|t; C UPDATE 1; Z I"},
		{"a read", query("PREPARE rd AS SELECT id, v FROM items WHERE id = $1; EXECUTE rd(100)"), "C PREPARE; T id,v; D 100|a2!; C SELECT 1; Z I"},
		{"insert into a table without a key", query("PREPARE nk(int) AS INSERT INTO nokey VALUES ($1, 'k'); EXECUTE nk(1); EXECUTE nk(2)"), "C PREPARE; C INSERT 0 1; C INSERT 0 1; Z I"},
		{"update of a table without a key", query("PREPARE nku AS UPDATE nokey SET v = 'none' WHERE k < 0; EXECUTE nku"), "C PREPARE; C UPDATE 0; Z I"},
		{"discard all", query("DISCARD ALL"), "C DISCARD ALL; Z I"},
	}
	direct, proxied := pgconnPair(t, directURL, p)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(tail(p.logs.String(), 6000))
		}
	})
	runSteps(t, direct, proxied, steps)

	m := p.waitMirrored(30 * time.Second)
	compareTables(t, oldURL, newURL, "items", "nokey")
	if got := notMirrored(m); len(got) != 1 || !strings.Contains(got[0], "without a primary key") {
		t.Errorf("not_mirrored = %v, want only the UPDATE of the table without a key", got)
	}
	if m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("mirror status %v\n%s", m, tail(p.logs.String(), 3000))
	}
}

// TestDualWriteSQLPrepareAcrossPhases prepares writes in old-only and
// runs them after a switch to dual-write (prepared again with capture
// columns by the proxy), then after a switch back to old-only (stripped of
// them): the client's answers stay those of Postgres directly, and the
// writes made in dual-write reach the new database.
func TestDualWriteSQLPrepareAcrossPhases(t *testing.T) {
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	oldURL, directURL := oldWithDirect(t, old, prepareSchema)
	newURL := nw.URL("postgres", "", "postgres")
	nw.Exec(t, prepareSchema)
	cfgPath, setPhase := phaseFile(t, "old-only")
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + oldURL, "SHADOWPROXY_NEW=" + newURL}, "--config", cfgPath)

	direct, proxied := pgconnPair(t, directURL, p)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(tail(p.logs.String(), 6000))
		}
	})

	runSteps(t, direct, proxied, []sqlStep{
		{"prepare in old-only", query("PREPARE ins(text) AS INSERT INTO items (v) VALUES ($1)"), "C PREPARE; Z I"},
		{"prepare with returning in old-only", query("PREPARE insr(text) AS INSERT INTO items (v) VALUES ($1) RETURNING id, v"), "C PREPARE; Z I"},
		{"prepare twice in old-only", query("PREPARE twice AS DELETE FROM items WHERE id = 0; PREPARE twice AS DELETE FROM items WHERE id = 0"), ""},
		{"execute in old-only", query("EXECUTE ins('old-only')"), "C INSERT 0 1; Z I"},
	})
	// What old-only wrote is not mirrored: copy it, as a migration's
	// initial copy would.
	copyRows(t, oldURL, newURL, "true")

	setPhase(p, "dual-write")
	runSteps(t, direct, proxied, []sqlStep{
		{"extended protocol, prepared in old-only", extended("EXECUTE insr('not captured')"), "1; 2; T id,v; D 2|not captured; C INSERT 0 1; Z I"},
		{"simple protocol, prepared in old-only", query("EXECUTE ins('dual-write')"), "C INSERT 0 1; Z I"},
		{"begin", query("BEGIN"), "C BEGIN; Z T"},
		{"in a transaction, prepared in old-only", query("EXECUTE insr('in tx')"), "T id,v; D 4|in tx; C INSERT 0 1; Z T"},
		{"commit", query("COMMIT"), "C COMMIT; Z I"},
		{"extended protocol, prepared again by the proxy", extended("EXECUTE insr('ext')"), "1; 2; T id,v; D 5|ext; C INSERT 0 1; Z I"},
		{"prepared twice in old-only", query("EXECUTE twice"), "C DELETE 0; Z I"},
	})
	m := p.waitMirrored(30 * time.Second)
	got := notMirrored(m)
	sort.Strings(got)
	want := []string{"EXECUTE in the extended protocol of a statement prepared without row capture (before dual-write)",
		"EXECUTE of a name prepared more than once before dual-write (which PREPARE the server kept is unknown)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("not_mirrored = %q, want %q", got, want)
	}
	copyRows(t, oldURL, newURL, "v = 'not captured'") // reported above

	setPhase(p, "old-only")
	runSteps(t, direct, proxied, []sqlStep{
		{"prepared with capture, run in old-only", query("EXECUTE insr('old-only again')"), "T id,v; D 6|old-only again; C INSERT 0 1; Z I"},
		{"extended protocol", extended("EXECUTE insr('old-only ext')"), "1; 2; T id,v; D 7|old-only ext; C INSERT 0 1; Z I"},
	})
	execIn(t, oldURL, "delete from items where id > 5") // old-only: not mirrored
	compareTables(t, oldURL, newURL, "items")
}

// copyRows copies the rows of items that match cond from the old database
// to the new one, as they are.
func copyRows(t *testing.T, oldURL, newURL, cond string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgconn.Connect(ctx, oldURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	res, err := c.Exec(ctx, "select coalesce(json_agg(t), '[]')::text from items t where "+cond).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	execIn(t, newURL, "insert into items select * from json_populate_recordset(null::items, "+quoteLiteral(string(res[0].Rows[0][0]))+")")
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestDualWriteSQLPrepareMariaDB mirrors EXECUTEs of prepared writes into
// a MariaDB new database: serial ids and now() defaults as the old
// database stored them, an UPDATE that changes the key, a DELETE, in
// autocommit and in a transaction.
func TestDualWriteSQLPrepareMariaDB(t *testing.T) {
	old := testdb.StartPostgres(t)
	my := testdb.StartMariaDB(t)
	old.Exec(t, "create table items (id serial primary key, v text, at timestamptz not null default now())")
	my.Exec(t, "create database app")
	my.Exec(t, "create table app.items (id int primary key, v text, at datetime(6) not null)")
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + my.URL("root", "", "app")},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgconn.Connect(ctx, p.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, s := range []struct{ sql, want string }{
		{"PREPARE ins(text) AS INSERT INTO items (v) VALUES ($1) RETURNING id", "C PREPARE; Z I"},
		{"EXECUTE ins('a'); EXECUTE ins('b')", "T id; D 1; C INSERT 0 1; T id; D 2; C INSERT 0 1; Z I"},
		{"BEGIN", "C BEGIN; Z T"},
		{"EXECUTE ins('c')", "T id; D 3; C INSERT 0 1; Z T"},
		{"PREPARE mv(int, int) AS UPDATE items SET id = $2, v = v || '!' WHERE id = $1", "C PREPARE; Z T"},
		{"EXECUTE mv(1, 10)", "C UPDATE 1; Z T"},
		{"COMMIT", "C COMMIT; Z I"},
		{"PREPARE del AS DELETE FROM items WHERE id = $1; EXECUTE del(2)", "C PREPARE; C DELETE 1; Z I"},
	} {
		if got := transcript(t, c, query(s.sql)...); got != s.want {
			t.Errorf("%s:\ngot  %s\nwant %s", s.sql, got, s.want)
		}
	}
	m := p.waitMirrored(30 * time.Second)
	compareAcrossEngines(t, old.URL("postgres", "", "postgres"), my.DSN("app"), map[string][2]string{"items": {"id, v, at", "id, v, at"}})
	if got := notMirrored(m); len(got) != 0 || m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("not_mirrored = %v; mirror status %v\n%s", got, m, tail(p.logs.String(), 3000))
	}
}
