package proxy_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/internal/testdb"
	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/proxy"
)

// pg is the old database shared by this package's tests: a throwaway
// server with TLS and one role per password method.
var pg *testdb.Postgres

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	pg, err = testdb.NewPostgres(ctx, testdb.WithSSL(), testdb.WithHBA(
		"host all md5user 127.0.0.1/32 md5",
		"host all clearuser 127.0.0.1/32 password",
	))
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting postgres:", err)
		return 1
	}
	defer pg.Close()
	for _, sql := range []string{
		`CREATE ROLE scramuser LOGIN PASSWORD 'scram-pass'`,
		`SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'md5-pass'`,
		`CREATE ROLE clearuser LOGIN PASSWORD 'clear-pass'`,
		`CREATE ROLE app LOGIN SUPERUSER PASSWORD 'app-pass'`,
		`CREATE DATABASE shop OWNER app`,
	} {
		if err := pg.ExecContext(ctx, sql); err != nil {
			fmt.Fprintln(os.Stderr, "setup:", err)
			return 1
		}
	}
	return m.Run()
}

// testProxy is a proxy serving on a loopback port for one test.
type testProxy struct {
	srv     *proxy.Server
	addr    string
	metrics *metrics.Metrics
	cfg     *config.Config
}

// startProxy starts a proxy in front of pg. mutate adjusts the default
// test configuration before it is validated.
func startProxy(t *testing.T, mutate func(*config.Config)) *testProxy {
	t.Helper()
	cfg := config.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = ""
	cfg.Old = pg.URL("postgres", "", "postgres")
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	srv, err := proxy.New(proxy.Options{Config: cfg, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testProxy{srv: srv, addr: ln.Addr().String(), metrics: m, cfg: cfg}
}

// url returns a client connection URL through the proxy.
func (p *testProxy) url(user, password, db string, params ...string) string {
	u := &url.URL{Scheme: "postgres", Host: p.addr, Path: "/" + db}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	q := url.Values{"sslmode": {"disable"}}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (p *testProxy) host() (string, string) {
	h, port, _ := net.SplitHostPort(p.addr)
	return h, port
}
