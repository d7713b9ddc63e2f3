package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

const shadowSchema = `create table items (id int primary key, name text, price numeric(10,2), ok bool, at timestamptz, tags jsonb, code uuid, pad char(8), note text);`

func report(t *testing.T, p *proxyProc) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/report?format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func readSuite(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"select * from items", nil},
		{"select id, name, price from items order by price desc, id", nil},
		{"select name, ok from items where id = $1", []any{2}},
		{"select count(*), sum(price), min(price), max(price) from items", nil},
		{"select ok, count(*) from items group by ok", nil},
		{"select id, at, tags, code, pad from items order by id limit 2", nil},
		{"select note from items order by note nulls first, id", nil},
	} {
		// Prepared (pgx's Describe of the statement), unnamed with a
		// Describe of the portal (libpq's way) and simple.
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
			rows, err := c.Query(ctx, q.sql, append([]any{mode}, q.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			rows.Close()
			if rows.Err() != nil {
				t.Fatalf("%s: %v", q.sql, rows.Err())
			}
		}
	}
}

func TestShadowReadPostgres(t *testing.T) {
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	old.Exec(t, shadowSchema)
	nw.Exec(t, shadowSchema)
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + nw.URL("postgres", "", "postgres")},
		"--phase", "shadow-read", "--report-dir", t.TempDir())
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// The data reaches the new database through the mirror.
	if _, err := c.Exec(ctx, `insert into items values
		(1, 'Apple', 1.50, true, now(), '{"b":1,"a":2}', gen_random_uuid(), 'ab', null),
		(2, 'banana', 0.25, false, now(), null, gen_random_uuid(), 'x', 'n'),
		(3, 'Cherry', 1.50, null, null, '[1,2]', null, null, 'z')`); err != nil {
		t.Fatal(err)
	}
	p.waitMirrored(30 * time.Second)
	// Reads run while other clients keep writing through the proxy: the
	// shadow waits for the mirror, so these are not mismatches.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		w, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
		if err != nil {
			t.Error(err)
			return
		}
		defer w.Close(ctx)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Exec(ctx, "update items set note = $1 where id = 3", fmt.Sprint("note ", i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 3 {
		readSuite(t, p.url("postgres", "postgres"))
	}
	close(stop)
	<-done
	// A temporary table is the session's own: the new database has no such
	// table, and reading it is not shadowed.
	if _, err := c.Exec(ctx, "create temp table mine (id int)"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Exec(ctx, "select * from mine join items on items.id = mine.id"); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.metric(`shadowproxy_shadow_not_shadowed_total{reason="read of a temporary table"}`); got != 3 {
		t.Errorf("%d reads of a temporary table not shadowed, want 3", got)
	}
	waitFor(t, "the comparisons", func() bool {
		r := report(t, p)
		return r["compared"].(float64)+r["noise"].(float64) >= 63
	})
	r := report(t, p)
	if r["mismatched"] != 0.0 {
		t.Fatalf("mismatches on identical data: %v", r)
	}
	// A divergence made directly in the new database is reported.
	nw.Exec(t, "update items set price = 9.99 where id = 2")
	if _, err := c.Exec(ctx, "select name, price from items where id = 2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mismatch", func() bool { return report(t, p)["mismatched"].(float64) >= 1 })
	r = report(t, p)
	classes, _ := r["classes"].([]any)
	found := false
	for _, c := range classes {
		cl := c.(map[string]any)
		if cl["mismatched"].(float64) > 0 {
			d, _ := cl["differences"].(map[string]any)
			if d["value"] == nil {
				t.Fatalf("mismatch without a value difference: %v", cl)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("no class with a mismatch: %v", r)
	}
}

func TestShadowReadMariaDB(t *testing.T) {
	old := testdb.StartPostgres(t)
	my := testdb.StartMariaDB(t)
	old.Exec(t, shadowSchema)
	my.Exec(t, "create database app")
	my.Exec(t, "create table app.items (id int primary key, name text, price decimal(10,2), ok tinyint(1), at datetime(6), tags json, code char(36), pad char(8), note text) collate utf8mb4_bin")
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + my.URL("root", "", "app")},
		"--phase", "shadow-read", "--report-dir", t.TempDir())
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `insert into items values
		(1, 'Apple', 1.50, true, now(), '{"b":1,"a":2}', gen_random_uuid(), 'ab', null),
		(2, 'banana', 0.25, false, now(), null, gen_random_uuid(), 'x', 'n'),
		(3, 'Cherry', 1.50, null, null, '[1,2]', null, null, 'z')`); err != nil {
		t.Fatal(err)
	}
	p.waitMirrored(30 * time.Second)
	readSuite(t, p.url("postgres", "postgres"))
	waitFor(t, "the comparisons", func() bool { return report(t, p)["compared"].(float64) >= 10 })
	time.Sleep(500 * time.Millisecond)
	r := report(t, p)
	if r["mismatched"] != 0.0 {
		b, _ := json.MarshalIndent(r, "", " ")
		t.Fatalf("mismatches on identical data:\n%s", b)
	}
	// A missing row on the new side is a row_count difference.
	my.Exec(t, "delete from app.items where id = 3")
	if _, err := c.Exec(ctx, "select id, name from items where price > 1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mismatch", func() bool { return report(t, p)["mismatched"].(float64) >= 1 })
	// MySQL has no search_path: a session with its own does not have its
	// unqualified reads compared.
	for _, q := range []string{"set search_path to public, pg_catalog", "select id, name from items where id = 1"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if got := p.metric(`shadowproxy_shadow_not_shadowed_total{reason="read in a session with its own search_path (MySQL target)"}`); got != 1 {
		t.Errorf("%d reads with a search_path not shadowed on MySQL, want 1", got)
	}
}
