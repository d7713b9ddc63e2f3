package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Fatalf("want SQLSTATE %s, got %v", code, err)
	}
}

func TestMaxClientConnections(t *testing.T) {
	p := startProxy(t, func(c *config.Config) { c.Limits.MaxClientConns = 2 })
	ctx := context.Background()
	connect(t, p.url("app", "app-pass", "shop"))
	c2 := connect(t, p.url("app", "app-pass", "shop"))
	_, err := pgx.Connect(ctx, p.url("app", "app-pass", "shop"))
	wantCode(t, err, "53300")
	// A slot frees when a client leaves.
	c2.Close(ctx)
	eventually(t, "a free connection slot", func() bool {
		c, err := pgx.Connect(ctx, p.url("app", "app-pass", "shop"))
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	})
}

func TestMaxMessageSize(t *testing.T) {
	p := startProxy(t, func(c *config.Config) { c.Limits.MaxMessageSize = 64 << 10 })
	c := connect(t, p.url("app", "app-pass", "shop"))
	ctx := context.Background()
	_, err := c.Exec(ctx, "select '"+strings.Repeat("x", 100<<10)+"'", pgx.QueryExecModeSimpleProtocol)
	wantCode(t, err, "08P01")
	if _, err := c.Exec(ctx, "select 1"); err == nil {
		t.Fatal("connection still usable after an oversized message")
	}
	// Messages under the limit are fine.
	c2 := connect(t, p.url("app", "app-pass", "shop"))
	if _, err := c2.Exec(ctx, "select '"+strings.Repeat("x", 60<<10)+"'"); err != nil {
		t.Fatal(err)
	}
}

func TestIdleTimeout(t *testing.T) {
	p := startProxy(t, func(c *config.Config) { c.Limits.IdleTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	idle := connect(t, p.url("app", "app-pass", "shop"))
	inTx := connect(t, p.url("app", "app-pass", "shop"))
	tx, err := inTx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(900 * time.Millisecond)
	_, err = idle.Exec(ctx, "select 1")
	if err == nil {
		t.Fatal("idle session was not closed")
	}
	// A session inside a transaction is not idle: it keeps working.
	if _, err := tx.Exec(ctx, "select 1"); err != nil {
		t.Fatalf("session in a transaction was closed: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStartupTimeout(t *testing.T) {
	p := startProxy(t, func(c *config.Config) { c.Limits.StartupTimeout = 200 * time.Millisecond })
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("silent client: read returned %v, want EOF from the proxy closing", err)
	}
}

func TestStartupNegotiation(t *testing.T) {
	p := startProxy(t, nil)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	one := make([]byte, 1)
	for _, req := range []pgproto3.FrontendMessage{&pgproto3.GSSEncRequest{}, &pgproto3.SSLRequest{}} {
		b, _ := req.Encode(nil)
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, one); err != nil || one[0] != 'N' {
			t.Fatalf("%T: answer %q, %v; want 'N'", req, one, err)
		}
	}
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "scramuser", "database": "postgres"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	sasl, ok := msg.(*pgproto3.AuthenticationSASL)
	if !ok {
		t.Fatalf("got %T, want AuthenticationSASL relayed from the server", msg)
	}
	for _, m := range sasl.AuthMechanisms {
		if strings.HasSuffix(m, "-PLUS") {
			t.Fatalf("mechanism %s offered through the proxy", m)
		}
	}

	// An unsupported protocol version gets a clear error.
	conn2, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	_ = conn2.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn2.Write([]byte{0, 0, 0, 8, 0, 2, 0, 0}); err != nil {
		t.Fatal(err)
	}
	msg, err = pgproto3.NewFrontend(conn2, conn2).Receive()
	if er, ok := msg.(*pgproto3.ErrorResponse); err != nil || !ok || er.Code != "08P01" {
		t.Fatalf("protocol 2.0: got %#v, %v", msg, err)
	}
}

func TestClientDisconnectCancelsQuery(t *testing.T) {
	p := startProxy(t, nil)
	// Its own application_name: other tests' sessions of the same user may
	// still be open on the server.
	c := connect(t, p.url("app", "app-pass", "shop", "application_name", "disconnect-test"))
	go func() { _, _ = c.Exec(context.Background(), "select pg_sleep(30) /* abandoned */") }()
	direct := connect(t, pg.URL("postgres", "", "postgres"))
	eventually(t, "the query to start", func() bool {
		var n int
		_ = direct.QueryRow(context.Background(), "select count(*) from pg_stat_activity where query like '%abandoned%' and state = 'active' and pid <> pg_backend_pid()").Scan(&n)
		return n == 1
	})
	c.PgConn().Conn().Close() // the client vanishes mid-query
	waitNoQuery(t, direct, "abandoned")
	eventually(t, "the upstream connection to be released", func() bool {
		var n int
		_ = direct.QueryRow(context.Background(), "select count(*) from pg_stat_activity where application_name = 'disconnect-test'").Scan(&n)
		return n == 0
	})
}

func TestUpstreamGone(t *testing.T) {
	own := testdb.StartPostgres(t)
	p := startProxy(t, func(c *config.Config) { c.Old = own.URL("postgres", "", "postgres") })
	ctx := context.Background()

	// The backend is terminated: the client sees the server's own error.
	c := connect(t, p.url("postgres", "", "postgres"))
	var pid int
	if err := c.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	own.Exec(t, "select pg_terminate_backend("+itoa(pid)+")")
	if _, err := c.Exec(ctx, "select 1"); err == nil {
		t.Fatal("query on a terminated backend succeeded")
	}

	// The whole server dies mid-query: the client gets an error, not a hang.
	c2 := connect(t, p.url("postgres", "", "postgres"))
	errc := make(chan error, 1)
	go func() {
		_, err := c2.Exec(ctx, "select pg_sleep(30)")
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	own.Kill(t)
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("query succeeded although the server was killed")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("client hung after the old database died")
	}
	// New connections fail cleanly while it is down.
	_, err := pgx.Connect(ctx, p.url("postgres", "", "postgres", "connect_timeout", "5"))
	wantCode(t, err, "08006")
	own.Restart(t)
	c3 := connect(t, p.url("postgres", "", "postgres"))
	if _, err := c3.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownDrains(t *testing.T) {
	p := startProxy(t, nil)
	ctx := context.Background()
	idle := connect(t, p.url("app", "app-pass", "shop"))
	busy := connect(t, p.url("app", "app-pass", "shop"))
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "create temp table drain_t (x int)"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		done <- p.srv.Shutdown(sctx)
	}()
	eventually(t, "the proxy to stop accepting", func() bool {
		c, err := pgx.Connect(ctx, p.url("app", "app-pass", "shop", "connect_timeout", "2"))
		if err == nil {
			c.Close(ctx)
		}
		return err != nil
	})
	// The idle session was told and closed (a query sent before Shutdown
	// reached it would still be answered, then the session ended).
	eventually(t, "the idle session to end", func() bool { return p.srv.Status().Connections == 1 })
	if _, err := idle.Exec(ctx, "select 1"); err == nil {
		t.Fatal("idle session survived shutdown")
	}
	// The transaction in flight finishes.
	if _, err := tx.Exec(ctx, "insert into drain_t values (1)"); err != nil {
		t.Fatalf("transaction cut off by the drain: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during drain: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	_, err = busy.Exec(ctx, "select 1")
	if err == nil {
		t.Fatal("session still open after its transaction ended during the drain")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
