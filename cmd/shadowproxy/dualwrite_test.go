package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// proxyProc is the shadowproxy binary serving for a test.
type proxyProc struct {
	t        *testing.T
	bin      string
	args     []string
	env      []string
	cmd      *exec.Cmd
	logs     *syncBuffer
	listen   string
	admin    string
	waitDone chan error
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shadowproxy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "shadowproxy")
		out, err := exec.Command("go", "build", "-race", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func startProxyProc(t *testing.T, env []string, args ...string) *proxyProc {
	t.Helper()
	p := &proxyProc{t: t, bin: buildBinary(t), listen: freePort(t), admin: freePort(t), env: env}
	p.args = append([]string{"serve", "--listen", p.listen, "--admin", p.admin, "--log-format", "json"}, args...)
	p.start()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proxyProc) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	if p.logs == nil {
		p.logs = &syncBuffer{}
	}
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.waitDone = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(p.cmd, p.waitDone)
	waitFor(p.t, "the proxy to serve", func() bool {
		resp, err := http.Get("http://" + p.admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (p *proxyProc) kill() {
	if p.cmd != nil && p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		<-p.waitDone
	}
}

func (p *proxyProc) url(user, db string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, p.listen, db)
}

func (p *proxyProc) status() map[string]any {
	p.t.Helper()
	resp, err := http.Get("http://" + p.admin + "/status")
	if err != nil {
		p.t.Fatalf("/status: %v\n%s", err, p.logs.String())
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		p.t.Fatal(err)
	}
	return st
}

// waitMirrored waits until every committed transaction reached the new
// database.
func (p *proxyProc) waitMirrored(timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := p.status()
		m, _ := st["mirror"].(map[string]any)
		if m != nil && m["applied_seq"] == m["last_seq"] && m["queued"] == 0.0 && m["spooled"] == 0.0 && m["pending"] == 0.0 {
			return m
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("mirror did not catch up: %v\n%s", m, tail(p.logs.String(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

const dualWriteSchema = `
create table accounts (id serial primary key, name text not null, balance numeric(12,2) default 0,
  created timestamptz default now(), token uuid default gen_random_uuid(), r float8 default random(), active bool default true);
create table composite (a text, b int, v text, primary key (a, b));
create table nokey (msg text, n int, at timestamptz default now());
create table trig (id bigint generated always as identity primary key, v text, upper_v text, touched timestamptz);
create table kinds (k uuid primary key, j jsonb, arr int[], raw bytea, d date, ts timestamp, tz timestamptz, nums numeric, f4 real);
create table scratch (id int primary key, v text);
`

// newSchema is the same tables without defaults or triggers: every value
// must come from the old database's row images. The ids keep their
// sequences, which the mirror must move past the ids it writes.
const newSchema = `
create table accounts (id serial primary key, name text not null, balance numeric(12,2), created timestamptz, token uuid, r float8, active bool);
create table composite (a text, b int, v text, primary key (a, b));
create table nokey (msg text, n int, at timestamptz);
create table trig (id bigint generated always as identity primary key, v text, upper_v text, touched timestamptz);
create table kinds (k uuid primary key, j jsonb, arr int[], raw bytea, d date, ts timestamp, tz timestamptz, nums numeric, f4 real);
create table scratch (id int primary key, v text);
`

const trigSQL = `create function trig_fn() returns trigger language plpgsql as $$
begin new.upper_v := upper(new.v); new.touched := clock_timestamp(); return new; end $$;
create trigger trig_upper before insert or update on trig for each row execute function trig_fn();`

// workload runs every kind of write the mirror must reproduce.
func workload(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`insert into accounts (name) values ('ann'), ('bob'), ('cy')`)
	exec(`insert into accounts (name, balance) values ($1, $2)`, "dee", 12.5) // binary parameters
	var id int
	if err := c.QueryRow(ctx, `insert into accounts (name) values ('eve') returning id`).Scan(&id); err != nil || id != 5 {
		t.Fatalf("client RETURNING through the proxy: %d %v", id, err)
	}
	exec(`insert into accounts (id, name) values (1, 'ann2') on conflict (id) do update set name = excluded.name, balance = accounts.balance + 1`)
	exec(`insert into accounts (id, name) values (2, 'bob') on conflict do nothing`)
	exec(`update accounts set balance = balance + 10, created = now() where name like 'b%'`)
	exec(`update accounts set balance = 0 where id = 999`) // matches nothing
	exec(`insert into composite values ('x', 1, 'one'), ('x', 2, 'two'), ('y', 1, 'three')`)
	exec(`update composite set b = b + 10 where a = 'x'`) // changes the key
	exec(`update composite c set v = a.name from accounts a where a.id = c.b and c.a = 'y'`)
	exec(`delete from accounts a using composite c where c.v = a.name`)
	exec(`insert into nokey (msg, n) values ('a', 1), ('b', 2), ('c', 3)`)
	exec(`update nokey set n = n * 10 where msg = $1`, "b")
	exec(`delete from nokey where msg = 'c'`)
	exec(`insert into trig (v) values ('lower'), ('mixed Case')`)
	exec(`update trig set v = 'changed' where id = 1`)
	exec(`insert into kinds values (gen_random_uuid(), '{"b":1,"a":[1,2]}', '{1,NULL,3}', '\xdeadbeef', '2024-02-29', '2024-01-02 03:04:05.123456', now(), 1.50, 1.25)`)

	// COPY in all three formats; the columns it omits get volatile
	// defaults (serial, now(), gen_random_uuid(), random()).
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"accounts"}, []string{"name", "balance"},
		pgx.CopyFromRows([][]any{{"copy-bin-1", 1.25}, {"copy-bin-2", nil}})); err != nil {
		t.Fatalf("binary COPY: %v", err)
	}
	if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader("copy-text-1\t3.50\ncopy-text-2\t\\N\n"), "copy accounts (name, balance) from stdin"); err != nil {
		t.Fatalf("text COPY: %v", err)
	}
	if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader("name,balance\n\"copy, csv\",7\n"), "copy accounts (name, balance) from stdin with (format csv, header true)"); err != nil {
		t.Fatalf("csv COPY: %v", err)
	}
	if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader("bad\tnot-a-number\n"), "copy accounts (name, balance) from stdin"); err == nil {
		t.Fatal("a COPY with bad data succeeded")
	}
	tx0, _ := c.Begin(ctx)
	if _, err := tx0.Conn().PgConn().CopyFrom(ctx, strings.NewReader("in-tx\t1\n"), "copy accounts (name, balance) from stdin"); err != nil {
		t.Fatalf("COPY in a transaction: %v", err)
	}
	if err := tx0.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// TRUNCATE, autocommit and inside a transaction.
	exec(`insert into scratch values (1, 'a'), (2, 'b'), (3, 'c')`)
	exec(`truncate scratch`)
	exec(`insert into scratch values (4, 'd')`)

	// Transactions: a rollback, a savepoint rolled back to, a commit.
	tx, _ := c.Begin(ctx)
	tx.Exec(ctx, `insert into accounts (name) values ('rolled back')`)
	tx.Rollback(ctx)
	tx, _ = c.Begin(ctx)
	tx.Exec(ctx, `insert into accounts (name) values ('kept')`)
	tx.Exec(ctx, `savepoint s1`)
	tx.Exec(ctx, `insert into accounts (name) values ('undone')`)
	tx.Exec(ctx, `rollback to savepoint s1`)
	tx.Exec(ctx, `update accounts set name = 'kept2' where name = 'kept'`)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// A failed statement inside an autocommit pipeline rolls back all of it.
	b := &pgx.Batch{}
	b.Queue(`insert into accounts (name) values ('batch ok')`)
	b.Queue(`insert into accounts (id, name) values (1, 'duplicate')`)
	_ = c.SendBatch(ctx, b).Close()
	// A whole transaction in one pipeline: its COMMIT reaches the proxy
	// while the rows of the writes before it are still on their way.
	b = &pgx.Batch{}
	b.Queue(`begin`)
	b.Queue(`insert into accounts (name) values ('pipelined')`)
	b.Queue(`update accounts set balance = 42 where name = 'pipelined'`)
	b.Queue(`commit`)
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		t.Fatalf("pipelined transaction: %v", err)
	}
	// Simple protocol, several statements in one query.
	if _, err := c.Exec(ctx, `insert into accounts (name) values ('multi1'); update accounts set r = 0.5 where name = 'multi1'; insert into nokey values ('m', 9)`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
}

// tableRows returns a table's rows as text, sorted, for comparison.
func tableRows(t *testing.T, url, table string) []string {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "select t::text from "+table+" t", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	sort.Strings(out)
	return out
}

func compareTables(t *testing.T, oldURL, newURL string, tables ...string) {
	t.Helper()
	for _, table := range tables {
		o, n := tableRows(t, oldURL, table), tableRows(t, newURL, table)
		if strings.Join(o, "\n") != strings.Join(n, "\n") {
			t.Errorf("table %s differs:\nold (%d rows):\n%s\nnew (%d rows):\n%s", table, len(o), strings.Join(o, "\n"), len(n), strings.Join(n, "\n"))
		}
	}
}

func TestDualWritePostgres(t *testing.T) {
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	old.Exec(t, dualWriteSchema)
	old.Exec(t, trigSQL)
	nw.Exec(t, newSchema)

	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + nw.URL("postgres", "", "postgres")},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	workload(t, p.url("postgres", "postgres"))
	m := p.waitMirrored(30 * time.Second)
	compareTables(t, old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres"), "accounts", "composite", "nokey", "trig", "kinds", "scratch")
	if m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("mirror status %v\n%s", m, tail(p.logs.String(), 3000))
	}
	nm, _ := m["not_mirrored"].([]any)
	if len(nm) != 0 {
		t.Errorf("statements not mirrored: %v", nm)
	}
	mo, _ := m["verified_by_multiset_only"].([]any)
	if len(mo) != 1 || mo[0] != "public.nokey" {
		t.Errorf("verified_by_multiset_only = %v, want [public.nokey]", mo)
	}
	// The new database's sequences hand out ids past the mirrored ones.
	for _, tc := range []struct{ table, seq string }{{"accounts", "accounts_id_seq"}, {"trig", "trig_id_seq"}} {
		var maxID, next int64
		if err := queryRow(t, old.URL("postgres", "", "postgres"), "select max(id) from "+tc.table, &maxID); err != nil {
			t.Fatal(err)
		}
		if err := queryRow(t, nw.URL("postgres", "", "postgres"), "select nextval('"+tc.seq+"')", &next); err != nil {
			t.Fatal(err)
		}
		if next != maxID+1 {
			t.Errorf("%s on the new database gives %d next, want %d (past the mirrored ids)", tc.seq, next, maxID+1)
		}
	}
	_ = syscall.SIGTERM
}
