package main

import (
	"bufio"
	"context"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// loopSessions reads shadowproxy_event_loop_sessions from /metrics.
func (p *proxyProc) loopSessions() int {
	p.t.Helper()
	return p.metric("shadowproxy_event_loop_sessions")
}

// metric reads an unlabelled metric from /metrics.
func (p *proxyProc) metric(name string) int {
	p.t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.t.Fatal(err)
			}
			return int(n)
		}
	}
	p.t.Fatalf("no %s in /metrics", name)
	return 0
}

// In dual-write the event loop captures writes itself as long as nothing
// makes it wait: explicit transactions in both protocols, prepared
// statements with binary results, reads. An autocommit write (which the
// proxy runs in a transaction of its own, waiting for its outcome) hands
// the session to its goroutines at that message, capture goes on there
// without a gap, and the session returns to the loop once quiet.
func TestDualWriteEventLoop(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the event loop is Linux-only")
	}
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	const ddl = "create table loop_items (id serial primary key, v text, n int, at timestamptz default clock_timestamp())"
	old.Exec(t, ddl)
	nw.Exec(t, "create table loop_items (id int primary key, v text, n int, at timestamptz)")
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + nw.URL("postgres", "", "postgres")},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	ctx := context.Background()
	conn := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	ext, simple := conn(), conn()
	if got := p.loopSessions(); got != 2 {
		t.Fatalf("event loop serves %d sessions, want 2", got)
	}

	// Extended protocol, prepared statements, binary results, a RETURNING
	// of the client's own, an update and a delete, in one transaction.
	for i := range 5 {
		tx, err := ext.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var id int
		var at time.Time
		if err := tx.QueryRow(ctx, "insert into loop_items (v, n) values ($1, $2) returning id, at", "ext", i).Scan(&id, &at); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "update loop_items set n = n * 10 where id = $1", id); err != nil {
			t.Fatal(err)
		}
		if i == 4 {
			if _, err := tx.Exec(ctx, "delete from loop_items where id = $1", id); err != nil {
				t.Fatal(err)
			}
		}
		var count int
		if err := tx.QueryRow(ctx, "select count(*) from loop_items").Scan(&count); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Simple protocol: a transaction, and one rolled back.
	for _, q := range []string{
		"begin", "insert into loop_items (v, n) values ('simple', 1), ('simple', 2)", "commit",
		"begin", "insert into loop_items (v, n) values ('rolled back', 3)", "rollback",
	} {
		if _, err := simple.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if got := p.loopSessions(); got != 2 {
		t.Fatalf("event loop serves %d sessions after transactions, want 2 (logs:\n%s)", got, tail(p.logs.String(), 3000))
	}

	if got := p.metric("shadowproxy_event_loop_handovers_total"); got != 0 {
		t.Fatalf("%d hand-overs after transactions, want 0", got)
	}

	// An autocommit write: the session leaves the loop, at that message.
	if _, err := ext.Exec(ctx, "insert into loop_items (v, n) values ($1, $2)", "autocommit", 7); err != nil {
		t.Fatal(err)
	}
	if got := p.metric("shadowproxy_event_loop_handovers_total"); got != 1 {
		t.Fatalf("%d hand-overs after an autocommit write, want 1", got)
	}
	if _, err := ext.Exec(ctx, "update loop_items set v = 'after' where v = 'autocommit'"); err != nil {
		t.Fatal(err)
	}
	// Back in the loop after a few quiet requests, and still capturing.
	for i := 0; p.loopSessions() != 2; i++ {
		if i == 20 {
			t.Fatalf("event loop serves %d sessions after 20 quiet requests, want 2", p.loopSessions())
		}
		var n int
		if err := ext.QueryRow(ctx, "select count(*) from loop_items").Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := ext.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "update loop_items set n = n + 1 where v = 'simple'"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	m := p.waitMirrored(30 * time.Second)
	if m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("mirror status %v", m)
	}
	compareTables(t, old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres"), "loop_items")
	if rows := tableRows(t, nw.URL("postgres", "", "postgres"), "loop_items"); len(rows) != 4+2+1 {
		t.Errorf("new loop_items has %d rows, want 7:\n%s", len(rows), strings.Join(rows, "\n"))
	}
}
