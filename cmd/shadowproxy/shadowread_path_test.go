package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// TestShadowReadSearchPath: a schema-per-tenant application's reads are
// compared with the tables its session's search_path names, whether set
// by a startup parameter, SET or SET LOCAL; a search_path the proxy cannot
// follow leaves the read uncompared rather than compared with the wrong
// tables.
func TestShadowReadSearchPath(t *testing.T) {
	const tables = `
create schema t1; create schema t2;
create table public.items (id int primary key, v text);
create table t1.items (id int primary key, v text);
create table t2.items (id int primary key, v text);
insert into public.items select g, 'public ' || g from generate_series(1, 2) g;
insert into t1.items select g, 'one ' || g from generate_series(1, 3) g;
insert into t2.items select g, 'two ' || g from generate_series(1, 4) g;`
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	old.Exec(t, tables)
	nw.Exec(t, tables)
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + nw.URL("postgres", "", "postgres")},
		"--phase", "shadow-read", "--report-dir", t.TempDir())
	ctx := context.Background()
	connect := func(params map[string]string) *pgx.Conn {
		t.Helper()
		cfg, err := pgx.ParseConfig(p.url("postgres", "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range params {
			cfg.RuntimeParams[k] = v
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	read := func(c *pgx.Conn, want int) {
		t.Helper()
		var n int
		if err := c.QueryRow(ctx, "select count(*) from (select id, v from items order by id) x").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("read %d rows, want %d", n, want)
		}
	}
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	startup := connect(map[string]string{"search_path": "t1"})
	read(startup, 3)
	read(startup, 3)

	c := connect(nil)
	read(c, 2)
	exec(c, "set search_path to t2")
	read(c, 4)
	exec(c, "begin")
	exec(c, "set local search_path to t1")
	read(c, 3)
	exec(c, "commit")
	read(c, 4)
	exec(c, "begin")
	exec(c, "set search_path to t1")
	exec(c, "rollback")
	read(c, 4)

	unknown := connect(nil)
	exec(unknown, "select set_config('search_path', 't2', false)")
	read(unknown, 4)

	const compared = 7 // all but the read with set_config
	defer func() {
		if t.Failed() {
			resp, err := http.Get("http://" + p.admin + "/metrics")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, "shadow") && !strings.HasPrefix(l, "#") {
						t.Log(l)
					}
				}
			}
			t.Logf("report %v", report(t, p))
		}
	}()
	waitFor(t, "the comparisons", func() bool {
		r := report(t, p)
		return r["compared"].(float64)+r["noise"].(float64) >= compared
	})
	if r := report(t, p); r["compared"] != float64(compared) || r["mismatched"] != 0.0 || r["noise"] != 0.0 {
		t.Fatalf("compared %v mismatched %v noise %v, want %d compared and nothing else: %v", r["compared"], r["mismatched"], r["noise"], compared, r)
	}
	if got := p.metric(`shadowproxy_shadow_not_shadowed_total{reason="read in a session whose search_path the proxy does not know"}`); got != 1 {
		t.Errorf("%d reads with an unknown search_path not shadowed, want 1", got)
	}
}
