package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
	"github.com/shadowproxy/shadowproxy/mirror"
)

const faultSchema = `create table ledger (id serial primary key, acct int not null, amount numeric(12,2), at timestamptz default clock_timestamp());
create table balances (acct int primary key, total numeric(14,2) not null default 0, touched timestamptz default now());`

const faultNewSchema = `create table ledger (id int primary key, acct int not null, amount numeric(12,2), at timestamptz);
create table balances (acct int primary key, total numeric(14,2) not null, touched timestamptz);`

// faultWorkload runs clients that move money in explicit transactions and
// append to the ledger in autocommit, until stop is closed. Connection
// errors are counted, not fatal: fault tests cause some on purpose.
func faultWorkload(t *testing.T, url func() string, clients int, stop <-chan struct{}) (done func() (ok, connErrs int64)) {
	var wg sync.WaitGroup
	var okN, errN atomic.Int64
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 42))
			ctx := context.Background()
			var c *pgx.Conn
			for {
				select {
				case <-stop:
					if c != nil {
						c.Close(ctx)
					}
					return
				default:
				}
				if c == nil {
					var err error
					if c, err = pgx.Connect(ctx, url()); err != nil {
						errN.Add(1)
						c = nil
						time.Sleep(50 * time.Millisecond)
						continue
					}
				}
				a, b := 1+r.IntN(20), 1+r.IntN(20)
				amt := fmt.Sprintf("%d.%02d", r.IntN(100), r.IntN(100))
				err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "update balances set total = total - $1, touched = now() where acct = $2", amt, a); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, "update balances set total = total + $1, touched = now() where acct = $2", amt, b)
					return err
				})
				if err == nil {
					_, err = c.Exec(ctx, "insert into ledger (acct, amount) values ($1, $2)", a, amt)
				}
				var pgErr *pgconn.PgError
				switch {
				case err == nil:
					okN.Add(1)
				case errors.As(err, &pgErr) && pgErr.Code == "40P01": // deadlock between transfers: retried
				default:
					errN.Add(1)
					c.Close(ctx)
					c = nil
				}
			}
		}(i)
	}
	return func() (int64, int64) {
		wg.Wait()
		return okN.Load(), errN.Load()
	}
}

// seedBalances creates the accounts through the proxy, so the new
// database gets them by mirroring.
func seedBalances(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "insert into balances (acct) select g from generate_series(1, 20) g"); err != nil {
		t.Fatal(err)
	}
}

// startFaultProxy starts an old and a new server with the fault schemas
// (newExtra run after the new one's) and a dual-write proxy in front of
// them that reports to reportDir.
func startFaultProxy(t *testing.T, newExtra, reportDir string) (old, nw *testdb.Postgres, p *proxyProc) {
	t.Helper()
	old = testdb.StartPostgres(t)
	nw = testdb.StartPostgres(t)
	old.Exec(t, faultSchema)
	nw.Exec(t, faultNewSchema+newExtra)
	p = startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + nw.URL("postgres", "", "postgres")},
		"--phase", "dual-write", "--report-dir", reportDir)
	return old, nw, p
}

func TestDualWriteNewDatabaseDown(t *testing.T) {
	old, nw, p := startFaultProxy(t, "", t.TempDir())
	seedBalances(t, p.url("postgres", "postgres"))

	stop := make(chan struct{})
	wait := faultWorkload(t, func() string { return p.url("postgres", "postgres") }, 4, stop)
	time.Sleep(500 * time.Millisecond)
	nw.Stop(t) // the new database goes away mid-workload
	time.Sleep(1500 * time.Millisecond)
	st := p.status()["mirror"].(map[string]any)
	if st["spooled"] == 0.0 && st["pending"] == 0.0 && st["queued"] == 0.0 {
		t.Logf("mirror while the new database is down: %v", st)
	}
	nw.Restart(t)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	ok, errs := wait()
	if errs != 0 {
		t.Errorf("%d client errors while the new database was down (want none)", errs)
	}
	if ok < 20 {
		t.Fatalf("only %d transactions ran", ok)
	}
	m := p.waitMirrored(60 * time.Second)
	compareTables(t, old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres"), "ledger", "balances")
	if m["dead_lettered"] != 0.0 {
		t.Errorf("dead letters: %v", m)
	}
	if m["failed"] == 0.0 {
		t.Errorf("the mirror never failed to apply while the new database was down: %v", m)
	}
	t.Logf("%d transactions; mirror %v", ok, m)
}

func TestDualWriteProxyKilled(t *testing.T) {
	reportDir := t.TempDir()
	old, nw, p := startFaultProxy(t, "", reportDir)
	seedBalances(t, p.url("postgres", "postgres"))

	stop := make(chan struct{})
	wait := faultWorkload(t, func() string { return p.url("postgres", "postgres") }, 4, stop)
	time.Sleep(700 * time.Millisecond)
	// SIGKILL: nothing is flushed, nothing closed. Transactions whose
	// COMMIT was in flight are resolved from the old database on restart.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.waitDone
	time.Sleep(200 * time.Millisecond)
	p.start() // same address, same mirror directory
	time.Sleep(700 * time.Millisecond)
	close(stop)
	ok, errs := wait()
	t.Logf("%d transactions, %d client errors (connections of the killed proxy)", ok, errs)
	if ok < 20 {
		t.Fatalf("only %d transactions ran", ok)
	}
	m := p.waitMirrored(60 * time.Second)
	compareTables(t, old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres"), "ledger", "balances")
	if m["dead_lettered"] != 0.0 {
		t.Errorf("dead letters: %v", m)
	}
}

func TestDualWriteRejectedWriteIsDeadLettered(t *testing.T) {
	reportDir := t.TempDir()
	// The new schema is stricter: a check the old one does not have.
	_, nw, p := startFaultProxy(t, "alter table ledger add constraint small check (amount < 50);", reportDir)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, amt := range []string{"10", "99", "20"} {
		if _, err := c.Exec(ctx, "insert into ledger (acct, amount) values (1, $1)", amt); err != nil {
			t.Fatalf("the client must not see the new database's refusal: %v", err)
		}
	}
	m := p.waitMirrored(30 * time.Second)
	if m["dead_lettered"] != 1.0 {
		t.Fatalf("dead_lettered = %v, want 1: %v", m["dead_lettered"], m)
	}
	dirty, _ := m["dirty_tables"].([]any)
	if len(dirty) != 1 || dirty[0] != "public.ledger" {
		t.Fatalf("dirty tables %v, want [public.ledger]", dirty)
	}
	dl := onlyDeadLetter(t, reportDir)
	if dl.SQLState != "23514" || len(dl.Changes) != 1 || dl.Changes[0].Fingerprint == "" || !strings.Contains(dl.Error, "small") {
		t.Fatalf("dead letter %+v", dl)
	}
	// The others were applied.
	if rows := tableRows(t, nw.URL("postgres", "", "postgres"), "ledger"); len(rows) != 2 {
		t.Fatalf("new ledger has %d rows, want 2: %v", len(rows), rows)
	}
}

// TestDualWriteTransactionTooLarge: a transaction whose row images outgrow
// mirror.max_tx_bytes is journaled in chunks while it is open and mirrored
// whole once it commits; the transactions around it are mirrored too.
// TestDualWriteBigTransactions covers how else such a transaction may end.
func TestDualWriteTransactionTooLarge(t *testing.T) {
	p, oldURL, newURL, _ := startDualWriteProc(t, faultSchema, faultNewSchema, "[mirror]\nmax_tx_bytes = 20000\n")
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range []string{
		"insert into ledger (acct, amount) values (1, 10)",
		"insert into ledger (acct, amount) select g, g from generate_series(1, 500) g",
		"insert into balances values (7, 70)",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	m := p.waitMirrored(30 * time.Second)
	if m["dead_lettered"] != 0.0 || len(m["dirty_tables"].([]any)) != 0 {
		t.Fatalf("mirror %v", m)
	}
	if m["applied"].(float64) < 4 {
		t.Fatalf("%v batches applied for 3 transactions: not journaled in chunks", m["applied"])
	}
	compareTables(t, oldURL, newURL, "ledger", "balances")
}

const bigTxSchema = `create table big (id int primary key, v text, n int);
create table small (id serial primary key, v text);
create table uniq (id int primary key, u int, constraint uniq_u unique (u) deferrable initially deferred);`

const bigTxNewSchema = `create table big (id int primary key, v text, n int);
create table small (id int primary key, v text);
create table uniq (id int primary key, u int);`

// TestDualWriteBigTransactions: transactions whose row images outgrow
// mirror.max_tx_bytes are journaled in chunks while they are open. The
// subtests share one proxy and run in order.
func TestDualWriteBigTransactions(t *testing.T) {
	p, oldURL, newURL, reportDir := startDualWriteProc(t, bigTxSchema, bigTxNewSchema, "[mirror]\nmax_tx_bytes = 20000\n")
	ctx := context.Background()
	connect := func(t *testing.T) *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	exec := func(t *testing.T, c *pgx.Conn, sql string, args ...any) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	c := connect(t)
	// mirrored waits for the mirror, requires the tables to be equal and
	// returns the mirror's status.
	mirrored := func(t *testing.T, deadLetters float64) map[string]any {
		t.Helper()
		m := p.waitMirrored(30 * time.Second)
		compareTables(t, oldURL, newURL, "big", "small", "uniq")
		if m["dead_lettered"] != deadLetters {
			t.Fatalf("dead_lettered = %v, want %v: %v", m["dead_lettered"], deadLetters, m)
		}
		return m
	}

	t.Run("committed", func(t *testing.T) {
		// About 900 kB of images: some 45 chunks of 20000 bytes.
		exec(t, c, "insert into big select g, 'v' || g, g from generate_series(1, 5000) g")
		if _, err := c.Exec(ctx, "update big set n = n + 1 where id <= 2500", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"insert into big select g, 'tx' || g, g from generate_series(10001, 13000) g",
			"update big set v = v || '+', n = -n where id % 2 = 0",
			"insert into small (v) values ('in the big one')",
			"delete from big where id % 7 = 0",
			"update big set id = id + 100000 where id between 12001 and 12100", // changes the key
			// A ROLLBACK TO that stays within what is still in memory is
			// honoured as usual.
			"savepoint s",
			"insert into big values (99999, 'undone', 0)",
			"rollback to savepoint s",
			"insert into big values (99998, 'kept', 0) on conflict (id) do update set v = excluded.v",
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		m := mirrored(t, 0)
		if m["applied"].(float64) < 100 {
			t.Fatalf("%v batches applied for 3 transactions: not journaled in chunks", m["applied"])
		}
	})

	t.Run("rolled back", func(t *testing.T) {
		before := p.status()["mirror"].(map[string]any)["aborted"].(float64)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, tx.Conn(), "insert into big select g, 'rb', g from generate_series(20001, 23000) g")
		exec(t, tx.Conn(), "update big set v = 'rolled back' where id < 20000")
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		// The transactions after it are applied: its chunks do not hold
		// the mirror back.
		exec(t, c, "insert into small (v) values ('after the rollback')")
		m := mirrored(t, 0)
		if m["aborted"].(float64)-before < 10 {
			t.Fatalf("aborted %v → %v: the chunks were not skipped as aborted", before, m["aborted"])
		}
	})

	t.Run("commit fails", func(t *testing.T) {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, tx.Conn(), "insert into big select g, 'cf', g from generate_series(30001, 33000) g")
		exec(t, tx.Conn(), "insert into uniq values (1, 1), (2, 1)") // checked at COMMIT
		var pgErr *pgconn.PgError
		if err := tx.Commit(ctx); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			t.Fatalf("COMMIT = %v, want a unique violation", err)
		}
		exec(t, c, "insert into small (v) values ('after the failed commit')")
		mirrored(t, 0)
	})

	t.Run("client gone", func(t *testing.T) {
		gone := connect(t)
		exec(t, gone, "begin")
		exec(t, gone, "insert into big select g, 'gone', g from generate_series(40001, 43000) g")
		// The client vanishes mid-transaction, without a Terminate.
		if err := gone.PgConn().Conn().Close(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the proxy to see the client gone", func() bool {
			return strings.Contains(p.logs.String(), "the session ended inside a transaction journaled in chunks")
		})
		exec(t, c, "insert into small (v) values ('after the client left')")
		mirrored(t, 0)
	})

	t.Run("rollback to savepoint into chunks", func(t *testing.T) {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, tx.Conn(), "insert into small (v) values ('before the savepoint')")
		exec(t, tx.Conn(), "savepoint s")
		exec(t, tx.Conn(), "insert into big select g, 'sp', g from generate_series(50001, 53000) g")
		exec(t, tx.Conn(), "rollback to savepoint s")
		exec(t, tx.Conn(), "insert into big values (50000, 'after the rollback to', 0)")
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		exec(t, c, "insert into small (v) values ('after the fallback')")
		m := p.waitMirrored(30 * time.Second)
		if m["dead_lettered"] != 1.0 {
			t.Fatalf("dead_lettered = %v, want 1: %v", m["dead_lettered"], m)
		}
		dl := onlyDeadLetter(t, reportDir)
		if dl.Reason != mirror.ReasonTooLarge || len(dl.Changes) != 0 || !slices.Equal(dl.Tables, []string{"public.small", "public.big"}) {
			t.Fatalf("dead letter %+v", dl)
		}
		if dirty, _ := m["dirty_tables"].([]any); len(dirty) != 2 {
			t.Fatalf("dirty tables %v, want big and small", dirty)
		}
		// Nothing of the transaction was applied, not even what the
		// ROLLBACK TO kept; the transaction after it was.
		var n int
		if err := queryRow(t, newURL, "select count(*) from big where id >= 50000 and id < 60000", &n); err != nil || n != 0 {
			t.Fatalf("%d rows of the fallen back transaction applied (%v)", n, err)
		}
		newSmall := tableRows(t, newURL, "small")
		if slices.ContainsFunc(newSmall, func(r string) bool { return strings.Contains(r, "before the savepoint") }) ||
			!slices.ContainsFunc(newSmall, func(r string) bool { return strings.Contains(r, "after the fallback") }) {
			t.Fatalf("new small: %v", newSmall)
		}
	})
}

// oneLoss is what dualWriteOneLoss leaves to check.
type oneLoss struct {
	p              *proxyProc
	oldURL, newURL string
	status         map[string]any // /status's "mirror" once caught up
	deadLetter     mirror.DeadLetter
}

// dualWriteOneLoss runs queries, each in autocommit, through a proxy in
// dual-write with config (TOML, may be empty) between a new old and new
// Postgres, and requires the mirror to have dead-lettered exactly one
// record.
func dualWriteOneLoss(t *testing.T, oldSchema, newSchema, config string, queries ...string) oneLoss {
	t.Helper()
	var r oneLoss
	var reportDir string
	r.p, r.oldURL, r.newURL, reportDir = startDualWriteProc(t, oldSchema, newSchema, config)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, r.p.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range queries {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r.status = r.p.waitMirrored(30 * time.Second)
	if r.status["dead_lettered"] != 1.0 {
		t.Fatalf("dead_lettered = %v, want 1: %v", r.status["dead_lettered"], r.status)
	}
	r.deadLetter = onlyDeadLetter(t, reportDir)
	return r
}

// startDualWriteProc starts a new old and new Postgres with their schemas and
// a proxy in dual-write between them with config (TOML, may be empty).
func startDualWriteProc(t *testing.T, oldSchema, newSchema, config string) (p *proxyProc, oldURL, newURL, reportDir string) {
	t.Helper()
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	old.Exec(t, oldSchema)
	nw.Exec(t, newSchema)
	oldURL, newURL = old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres")
	reportDir = t.TempDir()
	cfg := filepath.Join(t.TempDir(), "shadowproxy.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p = startProxyProc(t, []string{"SHADOWPROXY_OLD=" + oldURL, "SHADOWPROXY_NEW=" + newURL},
		"--config", cfg, "--phase", "dual-write", "--report-dir", reportDir)
	return p, oldURL, newURL, reportDir
}

// onlyDeadLetter returns the one dead letter under reportDir's mirror.
func onlyDeadLetter(t *testing.T, reportDir string) mirror.DeadLetter {
	t.Helper()
	f, err := os.Open(filepath.Join(reportDir, "mirror", "deadletter.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dls, err := mirror.ReadDeadLetters(f)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters: %v %v", dls, err)
	}
	return dls[0]
}

// TestDualWriteTriggerWrites: the writes a trigger makes with SQL of its
// own are in no row image. The first transaction that writes the trigger's
// table dead-letters a record naming the trigger and marks the tables it
// writes dirty, once; the rows of the statements themselves are mirrored.
func TestDualWriteTriggerWrites(t *testing.T) {
	r := dualWriteOneLoss(t, `
create table items (id int primary key, qty int);
create table audit (id serial primary key, item int, at timestamptz default now());
create table plain (id int primary key);
create function audit_fn() returns trigger language plpgsql as $$
begin insert into audit (item) values (new.id); return null; end $$;
create trigger items_audit after insert or update on items for each row execute function audit_fn();`, `
create table items (id int primary key, qty int);
create table audit (id int primary key, item int, at timestamptz);
create table plain (id int primary key);`, "",
		"insert into plain values (1)",
		"insert into items values (1, 10), (2, 20)",
		"update items set qty = qty + 1",
		"insert into plain values (2)")
	if dirty, _ := r.status["dirty_tables"].([]any); len(dirty) != 1 || dirty[0] != "public.audit" {
		t.Fatalf("dirty tables %v, want [public.audit]", dirty)
	}
	if dl := r.deadLetter; !strings.Contains(dl.Reason, "trigger items_audit on public.items") || !slices.Equal(dl.Tables, []string{"public.audit"}) || len(dl.Changes) != 0 {
		t.Fatalf("dead letter %+v", dl)
	}
	compareTables(t, r.oldURL, r.newURL, "items", "plain")
	if !strings.Contains(r.p.logs.String(), "a transaction wrote a table whose triggers write tables themselves") {
		t.Errorf("no warning in the log:\n%s", tail(r.p.logs.String(), 3000))
	}
}

// TestDualWriteNotMirroredReasons: what the proxy cannot capture runs on
// the old database as always and is listed under not_mirrored with the
// reason, never skipped silently.
func TestDualWriteNotMirroredReasons(t *testing.T) {
	const schema = `create table items (id int primary key, n int);
create procedure bump() language sql as $$ update items set n = n + 1 $$;
create function bump_fn() returns int language sql as $$ update items set n = n + 1 returning 1 $$;`
	p, oldURL, _, _ := startDualWriteProc(t, schema, "create table items (id int primary key, n int);", "")
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	steps := []struct{ sql, reason string }{
		{"insert into items values (1, 0)", ""},
		{"explain analyze update items set n = n + 1", "EXPLAIN ANALYZE of a write (it runs the write; its rows cannot be captured)"},
		{"call bump()", "CALL (effects unknown)"},
		{"do $$ begin update items set n = n + 1; end $$", "DO (effects unknown)"},
		{"select bump_fn()", "calls a function that may write tables (public.bump_fn: it writes items)"},
		{"with u as (update items set n = n + 1 returning id) select count(*) from u", "write inside a data-modifying WITH (its rows are not captured)"},
	}
	for _, s := range steps {
		if _, err := c.Exec(ctx, s.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", s.sql, err)
		}
	}
	var n int
	if err := queryRow(t, oldURL, "select n from items where id = 1", &n); err != nil || n != 5 {
		t.Fatalf("old database: n = %d, %v; want every statement to have run", n, err)
	}
	got := notMirrored(p.waitMirrored(30 * time.Second))
	for _, s := range steps {
		if s.reason != "" && !slices.Contains(got, s.reason) {
			t.Errorf("%s: reason %q not in not_mirrored %q", s.sql, s.reason, got)
		}
	}
	if len(got) != 5 {
		t.Errorf("not_mirrored = %q, want an entry for each of the 5 statements that were not captured", got)
	}
}
