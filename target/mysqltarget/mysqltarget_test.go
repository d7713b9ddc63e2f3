package mysqltarget

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
	"github.com/shadowproxy/shadowproxy/target/internal/targettest"
)

// One Postgres (the old database) and one MariaDB (the new one) shared by
// the package's tests; each test uses its own databases.
var (
	pg    *testdb.Postgres
	maria *testdb.MariaDB
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	var err error
	if pg, err = testdb.NewPostgres(ctx); err == nil {
		maria, err = testdb.NewMariaDB(ctx)
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mysqltarget tests: start servers:", err)
		if pg != nil {
			pg.Close()
		}
		os.Exit(1)
	}
	code := m.Run()
	pg.Close()
	maria.Close()
	os.Exit(code)
}

type env struct {
	ctx    context.Context
	old    *pgx.Conn
	cat    *schema.Catalog
	my     *sql.DB // plain connection to the new database: values read as text
	dbName string
	url    string
	target *Target
}

// setup creates the fixture on a fresh old database, the same tables on a
// fresh MariaDB database with CreateTableSQL (plus extraDDL), and a target.
func setup(t testing.TB, srv *testdb.MariaDB, opts Options, extraDDL string) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{ctx: ctx, dbName: targettest.DBName("new", t)}
	oldName := targettest.DBName("old", t)
	pg.Exec(t, "DROP DATABASE IF EXISTS "+oldName)
	pg.Exec(t, "CREATE DATABASE "+oldName)
	var err error
	if e.old, err = pgx.Connect(ctx, pg.URL("postgres", "", oldName)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.old.Close(context.Background()) })
	if _, err := e.old.Exec(ctx, targettest.Schema+targettest.Rows); err != nil {
		t.Fatal(err)
	}
	if e.cat, err = schema.Load(ctx, e.old); err != nil {
		t.Fatal(err)
	}
	srv.Exec(t, "DROP DATABASE IF EXISTS "+e.dbName+"; CREATE DATABASE "+e.dbName)
	if e.my, err = sql.Open("mysql", srv.DSN(e.dbName)+"?multiStatements=true"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.my.Close() })
	for _, tb := range e.cat.SortedTables() {
		ddl, err := CreateTableSQL(tb)
		if err != nil {
			t.Fatal(err)
		}
		mustParseMySQL(t, ddl)
		if _, err := e.my.ExecContext(ctx, ddl); err != nil {
			t.Fatalf("%v\n%s", err, ddl)
		}
	}
	if extraDDL != "" {
		if _, err := e.my.ExecContext(ctx, extraDDL); err != nil {
			t.Fatal(err)
		}
	}
	if opts.Catalog == nil {
		opts.Catalog = e.cat
	}
	e.url = srv.URL("root", "", e.dbName)
	if e.target, err = New(ctx, e.url, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.target.Close() })
	return e
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

// query returns rows as strings ("NULL" for NULL), from either side.
func query(t testing.TB, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, sqlText string) [][]string {
	t.Helper()
	rows, err := q.QueryContext(context.Background(), sqlText)
	if err != nil {
		t.Fatalf("%s: %v", sqlText, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = "NULL"
			if v.Valid {
				row[i] = v.String
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// pgQuery is query for the old database.
func pgQuery(t testing.TB, conn *pgx.Conn, sqlText string) [][]string {
	t.Helper()
	res := conn.PgConn().ExecParams(context.Background(), sqlText, nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("%s: %v", sqlText, res.Err)
	}
	out := make([][]string, len(res.Rows))
	for i, r := range res.Rows {
		out[i] = make([]string, len(r))
		for j, v := range r {
			out[i][j] = "NULL"
			if v != nil {
				out[i][j] = string(v)
			}
		}
	}
	return out
}

// everyColumns says, for each column of "every", how the old database
// computes the form MySQL must show (pg), how MySQL is read (my), and how
// the two compare. Array columns have hand-written expectations instead
// (arrayWant), so that the JSON mapping is checked against intent, not
// against itself.
var everyColumns = []struct {
	name, pg, my, cmp string
}{
	{"id", "id::text", "id", ""},
	{"b", "b::int::text", "b", ""},
	{"i2", "i2::text", "i2", ""},
	{"i4", "i4::text", "i4", ""},
	{"i8", "i8::text", "i8", ""},
	{"o", "o::text", "o", ""},
	{"num", "num::text", "num", ""},
	{"numu", "round(numu, 30)::text", "numu", ""},
	{"f4", "f4::text", "f4", "float32"},
	{"f8", "f8::text", "f8", "float64"},
	{"t", "t", "t", ""},
	{"vc", "vc", "vc", ""},
	{"bp", "rtrim(bp)", "bp", ""}, // MySQL CHAR drops trailing spaces
	{"nm", "nm::text", "nm", ""},
	{"ci", "ci::text", "ci", ""},
	{"by", "encode(by, 'hex')", "LOWER(HEX(`by`))", ""},
	{"u", "u::text", "u", ""},
	{"j", "j::text", "j", "json"},
	{"jb", "jb::text", "jb", "json"},
	{"d", "d::text", "d", ""},
	{"ts", "to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US')", "ts", ""},
	{"tstz", "to_char(tstz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')", "tstz", ""},
	{"tm", "to_char(date '2000-01-01' + tm, 'HH24:MI:SS.US')", "tm", ""},
	{"ttz", "to_char(date '2000-01-01' + (ttz AT TIME ZONE 'UTC')::time, 'HH24:MI:SS.US')", "ttz", ""},
	{"iv", "iv::text", "iv", ""},
	{"ai", "", "ai", "json"},
	{"at", "", "at", "json"},
	{"a2", "", "a2", "json"},
	{"ae", "", "ae", "json"},
	{"ats", "", "ats", "json"},
	{"ab", "", "ab", "json"},
	{"an", "", "an", "json"},
	{"e", "e::text", "e", ""},
	{"pi", "pi::text", "pi", ""},
	{"ip", "ip", "ip", ""}, // the output form, not inet::text (which adds /128)
	{"cidr", "cidr::text", "cidr", ""},
	{"mac", "mac::text", "mac", ""},
	{"bits", "bits::int::text", "CAST(`bits` AS UNSIGNED)", ""},
	{"vbits", "vbits::text", "vbits", ""},
	{"doubled", "doubled::text", "doubled", ""},
}

// arrayWant holds the expected JSON of the array columns, by row id.
var arrayWant = map[string]map[string]string{
	"1": {
		"ai": `[1, 2, null]`, "at": `["a b", "c\"d", null, "NULL", ""]`, "a2": `[[1, 2], [3, 4]]`,
		"ae": `["sad", "happy"]`, "ats": `["2023-12-31 18:30:00"]`, "ab": `[true, false]`, "an": `[1.5, -2]`,
	},
	"2": {"ai": "NULL", "at": "NULL", "a2": "NULL", "ae": "NULL", "ats": "NULL", "ab": "NULL", "an": "NULL"},
	"3": {
		"ai": `[]`, "at": `["{x}", "a,b", " lead"]`, "a2": `[[null, 2], [3, null]]`,
		"ae": `[]`, "ats": `[]`, "ab": `[]`, "an": `[]`,
	},
}

func same(cmp, want, got string) bool {
	if want == "NULL" || got == "NULL" {
		return want == got
	}
	switch cmp {
	case "float32", "float64":
		bits := 64
		if cmp == "float32" {
			bits = 32
		}
		w, err1 := strconv.ParseFloat(want, bits)
		g, err2 := strconv.ParseFloat(got, bits)
		return err1 == nil && err2 == nil && (w == g || cmp == "float32" && float32(w) == float32(g))
	case "json":
		var w, g any
		return json.Unmarshal([]byte(want), &w) == nil && json.Unmarshal([]byte(got), &g) == nil && reflect.DeepEqual(w, g)
	}
	return want == got
}

// checkEvery compares every row of "every" on the new side with the old.
func (e *env) checkEvery(t testing.TB) {
	t.Helper()
	var pgCols, myCols []string
	for _, c := range everyColumns {
		if c.pg == "" {
			pgCols = append(pgCols, "NULL")
		} else {
			pgCols = append(pgCols, c.pg)
		}
		myCols = append(myCols, c.my)
	}
	want := pgQuery(t, e.old, "SELECT "+strings.Join(pgCols, ", ")+" FROM every ORDER BY id")
	got := query(t, e.my, "SELECT "+strings.Join(myCols, ", ")+" FROM `every` ORDER BY id")
	if len(got) != len(want) {
		t.Fatalf("every: %d rows on the new side, want %d", len(got), len(want))
	}
	for r := range want {
		id := want[r][0]
		for i, c := range everyColumns {
			w := want[r][i]
			if c.pg == "" {
				w = arrayWant[id][c.name]
			}
			if !same(c.cmp, w, got[r][i]) {
				t.Errorf("every id %s column %s: got %q, want %q", id, c.name, got[r][i], w)
			}
		}
	}
}

func TestApplyEveryType(t *testing.T) {
	e := setup(t, maria, Options{}, "")
	batch := &mirror.Batch{Changes: e.capture(t, "public.every", "")}
	if err := e.target.Apply(e.ctx, batch); err != nil {
		t.Fatal(err)
	}
	e.checkEvery(t)
	// Idempotent: the same batch again leaves the same state.
	if err := e.target.Apply(e.ctx, batch); err != nil {
		t.Fatal(err)
	}
	e.checkEvery(t)
}

func TestApplyWithoutCatalog(t *testing.T) {
	// Without the old catalog, user types fall back on their names: the
	// enum array (TypeName "mood[]") still becomes a JSON array.
	e := setup(t, maria, Options{}, "")
	tg, err := New(e.ctx, e.url, Options{Lazy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if err := tg.Apply(e.ctx, &mirror.Batch{Changes: e.capture(t, "public.every", "")}); err != nil {
		t.Fatal(err)
	}
	e.checkEvery(t)
}

// tableRows compares a table's rows (as text) on both sides.
func (e *env) checkRows(t testing.TB, pgSQL, mySQL string) {
	t.Helper()
	want, got := pgQuery(t, e.old, pgSQL), query(t, e.my, mySQL)
	if !reflect.DeepEqual(want, got) {
		t.Errorf("rows differ:\nold %q\nnew %q", want, got)
	}
}

func (e *env) checkItems(t testing.TB) {
	t.Helper()
	e.checkRows(t, "SELECT sku, n::text, qty::text, serial_no::text FROM items ORDER BY sku COLLATE \"C\", n",
		"SELECT sku, n, qty, serial_no FROM items ORDER BY sku, n")
	e.checkRows(t, "SELECT id::text, v FROM tokens ORDER BY id", "SELECT id, v FROM tokens ORDER BY id")
}

func TestUpdatesDeletesAndKeyChanges(t *testing.T) {
	e := setup(t, maria, Options{}, "")
	e.apply(t, slices.Concat(e.capture(t, "public.items", ""), e.capture(t, "public.tokens", ""))...)
	e.checkItems(t)

	if _, err := e.old.Exec(e.ctx, `
UPDATE items SET qty = qty + 1 WHERE sku = 'A-1' AND n = 2;
DELETE FROM items WHERE sku = 'b 2';
UPDATE items SET n = 99 WHERE sku = 'A-1' AND n = 1;
INSERT INTO items (sku, n) VALUES ('new', 7);
UPDATE tokens SET v = NULL WHERE v = 'one';
DELETE FROM tokens WHERE v = 'two';`); err != nil {
		t.Fatal(err)
	}
	pk := []string{"sku", "n"}
	changes := slices.Concat(
		e.capture(t, "public.items", "sku = 'A-1' AND n = 2"),
		[]mirror.Change{
			targettest.Delete("public.items", pk, "b 2", "-5"),
			// Key change: delete of the old key, upsert of the new row.
			targettest.Delete("public.items", pk, "A-1", "1"),
			targettest.Delete("public.items", pk, "never", "0"),
		},
		e.capture(t, "public.items", "n IN (99, 7)"),
		e.capture(t, "public.tokens", ""),
		[]mirror.Change{targettest.Delete("public.tokens", []string{"id"}, "6BA7B811-9DAD-11D1-80B4-00C04FD430C8")},
	)
	e.apply(t, changes...)
	e.checkItems(t)
	e.apply(t, changes...)
	e.checkItems(t)

	t.Run("ungrouped", func(t *testing.T) {
		// Grouping off: the same result statement by statement.
		e2 := setup(t, maria, Options{MaxRowsPerStatement: 1}, "")
		e2.apply(t, slices.Concat(e.capture(t, "public.items", ""), e.capture(t, "public.tokens", ""))...)
		e2.old = e.old
		e2.checkItems(t)
	})
}

func TestStatements(t *testing.T) {
	e := setup(t, maria, Options{}, "")
	if _, err := e.old.Exec(e.ctx, `INSERT INTO log VALUES ('a', '2024-01-01 10:00:00+05:30'), ('b', NULL)`); err != nil {
		t.Fatal(err)
	}
	cols := []mirror.Column{{Name: "msg", TypeOID: 25}, {Name: "at", TypeOID: 1184}}
	e.apply(t,
		mirror.Change{Op: mirror.OpStatement, Table: "public.log", SQL: "INSERT INTO `log` (`msg`, `at`) VALUES (?, ?)",
			Columns: cols, Args: []mirror.Value{mirror.Text("a"), mirror.Text("2024-01-01 10:00:00+05:30")}},
		mirror.Change{Op: mirror.OpStatement, Table: "public.log", SQL: "INSERT INTO `log` (`msg`, `at`) VALUES (?, ?)",
			Columns: cols, Args: []mirror.Value{mirror.Text("b"), mirror.Null}},
		// Undescribed arguments go as strings.
		mirror.Change{Op: mirror.OpStatement, Table: "public.log", SQL: "INSERT INTO `log` (`msg`) VALUES (?)", Args: []mirror.Value{mirror.Text("c")}},
		mirror.Change{Op: mirror.OpStatement, Table: "public.log", SQL: "DELETE FROM `log` WHERE `msg` = ?", Args: []mirror.Value{mirror.Text("c")}},
	)
	e.checkRows(t, "SELECT msg, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM log ORDER BY msg",
		"SELECT msg, at FROM log ORDER BY msg")
}

func TestSession(t *testing.T) {
	e := setup(t, maria, Options{}, "")
	// Every pooled connection gets the session settings: hold two at once.
	c1, err := e.target.DB().Conn(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := e.target.DB().Conn(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for _, c := range []*sql.Conn{c1, c2} {
		got := query(t, c, "SELECT @@SESSION.sql_mode, @@SESSION.time_zone, @@character_set_client")
		mode := got[0][0]
		for _, m := range strings.Split(SQLMode, ",") {
			if !strings.Contains(mode, m) {
				t.Errorf("sql_mode %q lacks %s", mode, m)
			}
		}
		if got[0][1] != "+00:00" || got[0][2] != "utf8mb4" {
			t.Errorf("session: %q", got[0])
		}
	}
	if e.target.Converter() == nil {
		t.Error("Converter")
	}
}

func TestRejects(t *testing.T) {
	e := setup(t, maria, Options{}, `
ALTER TABLE child ADD FOREIGN KEY (parent_id) REFERENCES parent (id);
ALTER TABLE every MODIFY vc VARCHAR(3);`)
	tokens := e.capture(t, "public.tokens", "")
	good := tokens[0]
	every := e.capture(t, "public.every", "id = 1")[0]
	child := e.capture(t, "public.child", "")[0] // references parent 1, absent on the new side
	okChild := targettest.Set(targettest.Set(child, "id", mirror.Text("11")), "parent_id", mirror.Null)
	missing := good
	missing.Table = "public.missing"
	insertTokenSQL := "INSERT INTO `tokens` (`id`, `v`) VALUES (?, ?)"
	tokenArgs := []mirror.Value{targettest.Value(good, "id"), mirror.Text("dup")}

	tests := []struct {
		name     string
		changes  []mirror.Change
		sqlState string
		index    int
	}{
		{"duplicate key", []mirror.Change{good, {Op: mirror.OpStatement, Table: "public.tokens", SQL: insertTokenSQL,
			Columns: []mirror.Column{{Name: "id", TypeOID: 2950}, {Name: "v", TypeOID: 25}}, Args: tokenArgs}}, "23000", 1},
		{"foreign key", []mirror.Change{good, child}, "23000", 1},
		// The bad row is the second of a grouped statement: the target
		// finds it by running the changes one by one.
		{"foreign key in a group", []mirror.Change{good, okChild, child}, "23000", 2},
		{"missing table", []mirror.Change{good, missing}, "42S02", 1},
		{"missing column", []mirror.Change{good, func() mirror.Change {
			c := good
			c.Columns = append(slices.Clone(c.Columns), mirror.Column{Name: "nope", TypeOID: 25})
			c.Row = append(slices.Clone(c.Row), mirror.Text("x"))
			return c
		}()}, "42S22", 1},
		{"data too long", []mirror.Change{good, every}, "22001", 1},
		{"NaN", []mirror.Change{good, targettest.Set(every, "f8", mirror.Text("NaN"))}, "", 1},
		{"numeric infinity", []mirror.Change{targettest.Set(every, "numu", mirror.Text("Infinity"))}, "", 0},
		{"date infinity", []mirror.Change{good, targettest.Set(every, "d", mirror.Text("infinity"))}, "", 1},
		{"bad SQL", []mirror.Change{good, {Op: mirror.OpStatement, Table: "public.log", SQL: "INSERT INTO log VALUES (1"}}, "42000", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.my.ExecContext(e.ctx, "DELETE FROM child; DELETE FROM tokens"); err != nil {
				t.Fatal(err)
			}
			err := e.target.Apply(e.ctx, &mirror.Batch{Changes: tc.changes})
			var rej *mirror.RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("got %v, want a RejectError", err)
			}
			if rej.SQLState != tc.sqlState || rej.ChangeIndex != tc.index {
				t.Errorf("SQLState %q index %d, want %q %d (%v)", rej.SQLState, rej.ChangeIndex, tc.sqlState, tc.index, err)
			}
			// One transaction: nothing of the batch stays.
			if n := query(t, e.my, "SELECT (SELECT COUNT(*) FROM tokens) + (SELECT COUNT(*) FROM child)"); n[0][0] != "0" {
				t.Errorf("rejected batch left %s rows", n[0][0])
			}
			e.apply(t, good)
		})
	}
}

func TestServerDownIsTransient(t *testing.T) {
	srv := testdb.StartMariaDB(t)
	e := setup(t, srv, Options{Timeout: 10 * time.Second}, "")
	items := e.capture(t, "public.items", "")
	e.apply(t, items[0])

	srv.Stop(t)
	for range 2 {
		err := e.target.Apply(e.ctx, &mirror.Batch{Changes: items[1:]})
		var rej *mirror.RejectError
		if err == nil || errors.As(err, &rej) {
			t.Fatalf("server down: got %v, want a transient error", err)
		}
	}
	srv.Restart(t)
	e.apply(t, items...)
	e.checkRows(t, "SELECT sku, n::text FROM items ORDER BY sku COLLATE \"C\", n", "SELECT sku, n FROM items ORDER BY sku, n")
}

func TestNewErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, maria.URL("root", "", ""), Options{}); err == nil {
		t.Error("a URL without a database must fail")
	}
	if _, err := New(ctx, "mysql://root@127.0.0.1:1/x?timeout=2s", Options{}); err == nil {
		t.Error("an unreachable server must fail unless Lazy")
	}
	tg, err := New(ctx, "mysql://root@127.0.0.1:1/x?timeout=2s", Options{Lazy: true})
	if err != nil {
		t.Fatal(err)
	}
	err = tg.Apply(ctx, &mirror.Batch{Changes: []mirror.Change{targettest.Delete("public.t", []string{"id"}, "1")}})
	var rej *mirror.RejectError
	if err == nil || errors.As(err, &rej) {
		t.Errorf("unreachable: %v, want transient", err)
	}
	tg.Close()
	if err := tg.Apply(ctx, &mirror.Batch{Changes: []mirror.Change{targettest.Delete("public.t", []string{"id"}, "1")}}); !errors.Is(err, errClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func BenchmarkApply1000(b *testing.B) {
	e := setup(b, maria, Options{}, "")
	tmpl := e.capture(b, "public.items", "")[0]
	for _, mixed := range []bool{false, true} {
		name := "upsert"
		if mixed {
			name = "mixed"
		}
		b.Run(name, func(b *testing.B) {
			batch := &mirror.Batch{}
			for i := range 1000 {
				c := targettest.Set(tmpl, "n", mirror.Text(strconv.Itoa(i)))
				if mixed && i%2 == 1 {
					c = targettest.Delete("public.items", []string{"sku", "n"}, "A-1", strconv.Itoa(i-1))
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

func TestCheckSchema(t *testing.T) {
	e := setup(t, maria, Options{}, "")
	problems, err := e.target.CheckSchema(e.ctx, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 0 {
		t.Fatalf("tables made by CreateTableSQL have problems: %v", problems)
	}
	if _, err := e.my.ExecContext(e.ctx, `DROP TABLE tokens;
ALTER TABLE items DROP COLUMN qty, ADD COLUMN note varchar(10) NOT NULL, ADD COLUMN opt int NOT NULL DEFAULT 0,
  MODIFY sku VARCHAR(255) COLLATE utf8mb4_general_ci;
ALTER TABLE parent DROP PRIMARY KEY;
ALTER TABLE child DROP PRIMARY KEY, ADD UNIQUE KEY child_id (id);`); err != nil {
		t.Fatal(err)
	}
	if problems, err = e.target.CheckSchema(e.ctx, e.cat); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, fmt.Sprintf("%s %s %s", p.Table, p.Column, p.Kind))
	}
	want := []string{
		"public.items sku type_differs",
		"public.items qty missing_column",
		"public.items note required_column",
		"public.parent  no_key",
		"public.tokens  missing_table",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Types that hold less than the old columns' values; and two that
	// hold them in another family (i2 in a DECIMAL, d in a DATETIME).
	if _, err := e.my.ExecContext(e.ctx, `ALTER TABLE every
  MODIFY i2 DECIMAL(10,0), MODIFY i4 SMALLINT, MODIFY i8 INT UNSIGNED, MODIFY num DECIMAL(10,4), MODIFY f8 FLOAT,
  MODIFY t VARCHAR(255), MODIFY vc VARCHAR(10), MODIFY tstz DATETIME, MODIFY ts TIMESTAMP(6) NULL,
  MODIFY e ENUM('sad', 'ok'), MODIFY `+"`by`"+` BLOB, MODIFY u BINARY(16), MODIFY d DATETIME`); err != nil {
		t.Fatal(err)
	}
	if problems, err = e.target.CheckSchema(e.ctx, e.cat); err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, p := range problems {
		if p.Table == "public.every" {
			got = append(got, p.Column+": "+p.Detail)
		}
	}
	want = []string{
		"i4: smallint(6) on the new database for integer: a narrower integer: values out of its range are refused",
		"i8: int(10) unsigned on the new database for bigint: a narrower integer: values out of its range are refused",
		"num: decimal(10,4) on the new database for numeric(12,4): fewer integer digits (8, here 6): larger values are refused",
		"f8: float on the new database for double precision: single precision: values are rounded",
		"t: varchar(255) on the new database for text: at most 255 characters (the old column has no such limit): longer values are refused",
		"vc: varchar(10) on the new database for character varying(20): at most 10 characters (the old column takes 20): longer values are refused",
		"by: blob on the new database for bytea: at most 65535 bytes (the old column has no such limit): longer values are refused",
		"u: binary(16) on the new database for uuid: a binary column for values the old database keeps as char",
		"ts: timestamp(6) on the new database for timestamp without time zone: TIMESTAMP holds 1970 to 2038 only, and converts by the session's time zone",
		"tstz: datetime on the new database for timestamp with time zone: 0 fractional digits of seconds (the old column has 6): values are rounded",
		`e: enum('sad','ok') on the new database for mood: no label "happy": rows with it are refused`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("type problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
