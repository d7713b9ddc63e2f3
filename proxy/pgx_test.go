package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestPgxQueriesAndPipeline(t *testing.T) {
	p := startProxy(t, nil)
	ctx := context.Background()
	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			c := connect(t, p.url("app", "app-pass", "shop", "default_query_exec_mode", mode))
			var n int
			var s string
			if err := c.QueryRow(ctx, "select $1::int + 1, $2::text", 41, "it's").Scan(&n, &s); err != nil {
				t.Fatal(err)
			}
			if n != 42 || s != "it's" {
				t.Fatalf("got %d %q", n, s)
			}
			// A batch is sent as one pipeline: many Parse/Bind/Execute then Sync.
			b := &pgx.Batch{}
			for i := range 50 {
				b.Queue("select $1::int * 2", i)
			}
			br := c.SendBatch(ctx, b)
			for i := range 50 {
				var got int
				if err := br.QueryRow().Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != i*2 {
					t.Fatalf("batch item %d: got %d", i, got)
				}
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}
			// An error inside a pipeline, then recovery on the same connection.
			_, err := c.Exec(ctx, "select 1/0")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "22012" {
				t.Fatalf("want division_by_zero, got %v", err)
			}
			if err := c.QueryRow(ctx, "select 7").Scan(&n); err != nil || n != 7 {
				t.Fatalf("after error: %v %d", err, n)
			}
		})
	}
}

func TestPgxPipelineMode(t *testing.T) {
	p := startProxy(t, nil)
	c := connect(t, p.url("app", "app-pass", "shop"))
	ctx := context.Background()
	pl := c.PgConn().StartPipeline(ctx)
	for i := range 20 {
		pl.SendQueryParams("select $1::int", [][]byte{[]byte(fmt.Sprint(i))}, nil, nil, nil)
		if i%5 == 4 {
			pl.SendFlushRequest()
			if err := pl.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		res, err := pl.GetResults()
		if err != nil {
			t.Fatal(err)
		}
		rr := res.(*pgconn.ResultReader).Read()
		if rr.Err != nil || string(rr.Rows[0][0]) != fmt.Sprint(i) {
			t.Fatalf("pipeline result %d: %v %q", i, rr.Err, rr.Rows)
		}
	}
	if _, err := pl.GetResults(); err != nil {
		t.Fatal(err)
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPgxCopyFromAndLargeValues(t *testing.T) {
	p := startProxy(t, nil)
	c := connect(t, p.url("app", "app-pass", "shop"))
	ctx := context.Background()
	if _, err := c.Exec(ctx, "drop table if exists copy_t; create table copy_t (id int primary key, body text)"); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789", 200_000) // 2 MB: larger than any buffer, streamed
	rows := [][]any{{1, "a"}, {2, big}, {3, "c"}}
	for i := 4; i <= 5000; i++ {
		rows = append(rows, []any{i, fmt.Sprint("row ", i)})
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"copy_t"}, []string{"id", "body"}, pgx.CopyFromRows(rows))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(rows)) {
		t.Fatalf("copied %d rows", n)
	}
	var got string
	if err := c.QueryRow(ctx, "select body from copy_t where id = 2").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != big {
		t.Fatalf("large value came back with %d bytes", len(got))
	}
	// A large parameter goes the other way.
	if err := c.QueryRow(ctx, "select length($1::text)", big).Scan(&n); err != nil || n != int64(len(big)) {
		t.Fatalf("large parameter: %v %d", err, n)
	}
	// A large result set streams through.
	var count, sum int64
	r, err := c.Query(ctx, "select g, repeat('x', 500) from generate_series(1, 200000) g")
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var g int64
		var s string
		if err := r.Scan(&g, &s); err != nil {
			t.Fatal(err)
		}
		count++
		sum += g
	}
	if r.Err() != nil || count != 200000 || sum != 200000*200001/2 {
		t.Fatalf("large result: %v %d %d", r.Err(), count, sum)
	}
}

func TestPgxListenNotifyAndNotices(t *testing.T) {
	p := startProxy(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var notices []string
	cfg, err := pgx.ParseConfig(p.url("app", "app-pass", "shop"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		notices = append(notices, n.Message)
		mu.Unlock()
	}
	listener, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "listen shadow_events"); err != nil {
		t.Fatal(err)
	}
	if _, err := listener.Exec(ctx, "do $$ begin raise notice 'hello from %', 'plpgsql'; end $$"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(notices) != 1 || notices[0] != "hello from plpgsql" {
		t.Fatalf("notices %q", notices)
	}
	mu.Unlock()

	sender := connect(t, p.url("app", "app-pass", "shop"))
	if _, err := sender.Exec(ctx, "select pg_notify('shadow_events', 'payload-1')"); err != nil {
		t.Fatal(err)
	}
	// The notification arrives while the listener is idle: the proxy must
	// forward it without waiting for the client to send anything.
	n, err := listener.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "shadow_events" || n.Payload != "payload-1" {
		t.Fatalf("notification %+v", n)
	}
}

func TestPgxCancel(t *testing.T) {
	p := startProxy(t, nil)
	c := connect(t, p.url("app", "app-pass", "shop"))
	// The client holds the proxy's key data, not the server's.
	var serverPID uint32
	if err := c.QueryRow(context.Background(), "select pg_backend_pid()").Scan(&serverPID); err != nil {
		t.Fatal(err)
	}
	if serverPID == c.PgConn().PID() {
		t.Fatalf("client got the upstream backend PID %d; want the proxy's own", serverPID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Exec(ctx, "select pg_sleep(20)")
	if err == nil {
		t.Fatal("pg_sleep(20) was not cancelled")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code != "57014" {
		t.Fatalf("want query_canceled, got %v", err)
	}
	eventually(t, "a cancel request forwarded", func() bool { return counterValue(t, p.metrics.CancelsForwarded) >= 1 })
	// The connection may have been closed by pgx after the cancel; a new
	// one through the proxy works and the old query is gone.
	c2 := connect(t, p.url("app", "app-pass", "shop"))
	waitNoQuery(t, c2, "pg_sleep(20)")
}

func TestPgxProtocol32(t *testing.T) {
	p := startProxy(t, nil)
	// The server (15) answers 3.2 with NegotiateProtocolVersion; the proxy
	// must pass that through and give a key of the negotiated length.
	c := connect(t, p.url("app", "app-pass", "shop", "max_protocol_version", "latest"))
	var v string
	if err := c.QueryRow(context.Background(), "show server_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if c.PgConn().ParameterStatus("server_version") != v {
		t.Fatalf("ParameterStatus server_version %q, SHOW says %q", c.PgConn().ParameterStatus("server_version"), v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Exec(ctx, "select pg_sleep(20) /* 3.2 */"); err == nil {
		t.Fatal("not cancelled")
	}
	// Cancelled on the server too, not only given up by the client.
	waitNoQuery(t, connect(t, pg.URL("postgres", "", "postgres")), "pg_sleep(20) /* 3.2 */")
}

// waitNoQuery waits until no backend runs a query containing text.
func waitNoQuery(t *testing.T, c *pgx.Conn, text string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := c.QueryRow(context.Background(),
			"select count(*) from pg_stat_activity where state = 'active' and query like '%' || $1 || '%' and pid <> pg_backend_pid()", text).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends still running %q", n, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
