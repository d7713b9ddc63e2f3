package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// Temporary tables belong to one session: writes to them are reported as
// not mirrored and never reach the new database's permanent tables, even
// when a temporary table hides a permanent one of the same name (with a
// key, and without one, whose statements are otherwise mirrored as
// statements). Making them costs neither a catalog reload nor the event
// loop, and a permanent table created on the old database behind the
// proxy's back is found with one reload and mirrored.
func TestDualWriteTemporaryTables(t *testing.T) {
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	old.Exec(t, "create table items (id serial primary key, v text)")
	old.Exec(t, "create table nokey (v text, n int)")
	nw.Exec(t, "create table items (id int primary key, v text)")
	nw.Exec(t, "create table nokey (v text, n int)")
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + nw.URL("postgres", "", "postgres")},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	tx := func(stmts ...string) {
		t.Helper()
		exec("begin")
		for _, s := range stmts {
			exec(s)
		}
		exec("commit")
	}

	// Permanent rows first, mirrored.
	tx("insert into items (v) values ('a'), ('b')", "insert into nokey values ('x', 1), ('y', 2)")

	// Temporary tables hiding both permanent ones.
	exec("create temp table items (id int primary key, v text)")
	exec("create temp table nokey (v text, n int)")
	tx("insert into items values (100, 'temp'), (101, 'temp')", "update items set v = 'temp2' where id = 100", "delete from items where id = 101")
	tx("insert into nokey values ('temp', 1)", "update nokey set n = 99", "delete from nokey where v = 'nothing'")
	exec("truncate nokey")
	exec("insert into items values ($1, $2)", 102, "autocommit") // the proxy's own transaction
	exec("drop table items")
	exec("drop table nokey")

	// Temporary tables made and dropped many times, as per request, all
	// in the event loop: neither the DDL nor the rows make it hand the
	// session over.
	inLoop := runtime.GOOS == "linux"
	handovers := 0
	if inLoop {
		for i := 0; p.loopSessions() != 1; i++ {
			if i == 20 {
				t.Fatalf("event loop serves %d sessions, want 1", p.loopSessions())
			}
			exec("select 1")
		}
		handovers = p.metric("shadowproxy_event_loop_handovers_total")
	}
	for i := range 30 {
		tx("create temp table scratch (id int primary key, v text) on commit drop",
			fmt.Sprintf("insert into scratch select g, 'r%d' from generate_series(1, 3) g", i),
			"update scratch set v = v || '!'")
	}
	if inLoop {
		if got := p.metric("shadowproxy_event_loop_handovers_total"); got != handovers || p.loopSessions() != 1 {
			t.Errorf("temporary tables made the event loop hand the session over %d times", got-handovers)
		}
	}
	// Back to the permanent tables, which are mirrored again.
	tx("insert into items (v) values ('c')", "update nokey set n = n + 10 where v = 'x'")
	exec("delete from nokey where v = 'y'")
	tx("insert into nokey values ('z', 3)")

	// A table made on the old database directly, then written through the
	// proxy.
	old.Exec(t, "create table later (id int primary key, v text)")
	nw.Exec(t, "create table later (id int primary key, v text)")
	tx("insert into later values (1, 'one'), (2, 'two')")

	m := p.waitMirrored(30 * time.Second)
	oldURL, newURL := old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres")
	compareTables(t, oldURL, newURL, "items", "nokey", "later")
	if rows := tableRows(t, newURL, "items"); len(rows) != 3 {
		t.Errorf("new items has %d rows, want 3:\n%s", len(rows), strings.Join(rows, "\n"))
	}
	if m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("mirror status %v\n%s", m, tail(p.logs.String(), 3000))
	}
	// One reload, for "later". DDL on temporary tables is no drift.
	if got := m["catalog_reloads"]; got != 1.0 {
		t.Errorf("catalog reloads = %v, want 1", got)
	}
	if d, _ := m["schema_drift"].([]any); len(d) != 0 {
		t.Errorf("schema drift reported for temporary tables: %v", d)
	}
	var reasons []string
	nm, _ := m["not_mirrored"].([]any)
	for _, x := range nm {
		e, _ := x.(map[string]any)
		reasons = append(reasons, fmt.Sprint(e["reason"]))
		if r := e["reason"]; r != "write to a temporary table" && r != "TRUNCATE of a temporary table" {
			t.Errorf("not mirrored: %v", e)
		}
	}
	for _, want := range []string{"write to a temporary table", "TRUNCATE of a temporary table"} {
		if !slices.Contains(reasons, want) {
			t.Errorf("no %q among the statements not mirrored: %v", want, nm)
		}
	}
}
