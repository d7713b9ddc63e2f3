package proxy_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/proxy"
)

// loopSessions returns how many sessions the event loop serves.
func loopSessions(p *testProxy) int {
	return int(testutil.ToFloat64(p.metrics.EventLoopSessions))
}

// handovers returns how many times the event loop handed a session over.
func handovers(p *testProxy) int {
	return int(testutil.ToFloat64(p.metrics.EventLoopHandovers))
}

// backInLoop runs queries on c until the event loop serves want sessions
// again: a handed-over session returns after a few quiet requests.
func backInLoop(t *testing.T, p *testProxy, c *pgx.Conn, want int) {
	t.Helper()
	for range 20 {
		var n int
		if err := c.QueryRow(context.Background(), "select 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if loopSessions(p) == want {
			return
		}
	}
	t.Fatalf("event loop serves %d sessions after 20 quiet requests, want %d", loopSessions(p), want)
}

func skipWithoutLoop(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the event loop is Linux-only")
	}
}

// Plain sessions on the transparent path are served by the event loop;
// whatever it does not handle itself, it hands back to the session's
// goroutines without losing a byte, and gets the session back once things
// are quiet.
func TestEventLoopServesAndHandsBack(t *testing.T) {
	skipWithoutLoop(t)
	p := startProxy(t, nil)
	ctx := context.Background()
	c := connect(t, p.url("app", "app-pass", "shop"))
	var n int
	if err := c.QueryRow(ctx, "select 41 + $1::int", 1).Scan(&n); err != nil || n != 42 {
		t.Fatalf("query: %v %d", err, n)
	}
	if got := loopSessions(p); got != 1 {
		t.Fatalf("event loop serves %d sessions, want 1", got)
	}
	// While a query runs the loop's waits are waits for an answer (its
	// busy polling judges those apart); after it, waits for the client.
	// The loop counts after it forwarded the answer: the client may see
	// the answer first.
	eventually(t, "no session awaiting an answer while idle", func() bool { return proxy.LoopAwaiting(p.srv) == 0 })
	sleeping := make(chan error, 1)
	go func() { _, err := c.Exec(ctx, "select pg_sleep(0.5)"); sleeping <- err }()
	eventually(t, "the loop to count the sleeping query", func() bool { return proxy.LoopAwaiting(p.srv) == 1 })
	if err := <-sleeping; err != nil {
		t.Fatal(err)
	}
	eventually(t, "no session awaiting an answer after it came", func() bool { return proxy.LoopAwaiting(p.srv) == 0 })

	// A pipeline whose middle message is larger than the loop's buffer:
	// the loop forwards what comes before it and hands the session over
	// at that message.
	big := strings.Repeat("x", 1<<20)
	b := &pgx.Batch{}
	b.Queue("select 1")
	b.Queue("select length($1::text)", big)
	b.Queue("select 3")
	br := c.SendBatch(ctx, b)
	for i, want := range []int{1, len(big), 3} {
		if err := br.QueryRow().Scan(&n); err != nil || n != want {
			t.Fatalf("batch result %d: %v %d, want %d", i, err, n, want)
		}
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if got := handovers(p); got != 1 {
		t.Fatalf("event loop handed over %d sessions after a large message, want 1", got)
	}
	if err := c.QueryRow(ctx, "select 7").Scan(&n); err != nil || n != 7 {
		t.Fatalf("after hand-over: %v %d", err, n)
	}
	backInLoop(t, p, c, 1)
	// And again: the loop hands it over and takes it back as often as
	// needed, mid-transaction too.
	if _, err := c.Exec(ctx, "begin"); err != nil {
		t.Fatal(err)
	}
	for round := 2; round <= 4; round++ {
		if err := c.QueryRow(ctx, "select length($1::text)", big).Scan(&n); err != nil || n != len(big) {
			t.Fatalf("round %d: %v %d", round, err, n)
		}
		if got := handovers(p); got != round {
			t.Fatalf("round %d: %d hand-overs", round, got)
		}
		backInLoop(t, p, c, 1)
	}
	if _, err := c.Exec(ctx, "commit"); err != nil {
		t.Fatal(err)
	}
	// A session leaving the loop in the middle of a request is not left
	// counted as awaiting an answer.
	go func() { _, err := c.Exec(ctx, "select pg_sleep(0.3), length($1::text)", big); sleeping <- err }()
	if err := <-sleeping; err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	eventually(t, "the session to leave the loop", func() bool { return loopSessions(p) == 0 })
	if got := proxy.LoopAwaiting(p.srv); got != 0 {
		t.Fatalf("%d sessions awaiting an answer with none in the loop", got)
	}
}

// A client that reads slowly fills its socket: the loop never waits for
// it, the session's goroutine finishes the write.
func TestEventLoopSlowReader(t *testing.T) {
	skipWithoutLoop(t)
	p := startProxy(t, nil)
	ctx := context.Background()
	c := connect(t, p.url("app", "app-pass", "shop"))
	// Rows small enough for the loop's buffer, many enough to fill the
	// client's socket while it sleeps.
	rows, err := c.Query(ctx, "select g, repeat('y', 200) from generate_series(1, 100000) g")
	if err != nil {
		t.Fatal(err)
	}
	// Another session keeps working while this one is stuck.
	other := connect(t, p.url("app", "app-pass", "shop"))
	time.Sleep(300 * time.Millisecond)
	var one int
	if err := other.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		t.Fatalf("other session while one client is slow: %v", err)
	}
	var count, sum int64
	for rows.Next() {
		var g int64
		var s string
		if err := rows.Scan(&g, &s); err != nil {
			t.Fatal(err)
		}
		if count == 0 {
			time.Sleep(300 * time.Millisecond)
		}
		count++
		sum += g
	}
	if rows.Err() != nil || count != 100000 || sum != 100000*100001/2 {
		t.Fatalf("slow reader got %d rows (sum %d): %v", count, sum, rows.Err())
	}
	// The slow session went to its goroutines, and comes back.
	if got := handovers(p); got != 1 {
		t.Fatalf("event loop handed over %d sessions, want 1", got)
	}
	backInLoop(t, p, c, 2)
}

// Sessions of a proxy with an idle timeout are ended by the loop, those
// in a transaction are not; shutdown drains loop sessions like the others.
func TestEventLoopIdleAndDrain(t *testing.T) {
	skipWithoutLoop(t)
	p := startProxy(t, func(c *config.Config) { c.Limits.IdleTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	idle := connect(t, p.url("app", "app-pass", "shop"))
	busy := connect(t, p.url("app", "app-pass", "shop"))
	if _, err := busy.Exec(ctx, "begin"); err != nil {
		t.Fatal(err)
	}
	if got := loopSessions(p); got != 2 {
		t.Fatalf("event loop serves %d sessions, want 2", got)
	}
	time.Sleep(600 * time.Millisecond)
	_, err := idle.Exec(ctx, "select 1")
	wantCode(t, err, "57P05")
	if _, err := busy.Exec(ctx, "select 1"); err != nil {
		t.Fatalf("session in a transaction: %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.srv.Shutdown(sctx) }()
	time.Sleep(100 * time.Millisecond)
	// Draining waits for the transaction, then ends the session.
	if _, err := busy.Exec(ctx, "commit"); err != nil {
		t.Fatalf("commit while draining: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := busy.Exec(ctx, "select 1"); err == nil {
		t.Fatal("session still usable after shutdown")
	}
}
