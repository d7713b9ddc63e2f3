package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// TestDualWritePgbench mirrors pgbench's TPC-B-like transactions from
// concurrent clients in the three query modes.
func TestDualWritePgbench(t *testing.T) {
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	for _, db := range []*testdb.Postgres{old, nw} {
		out, err := exec.Command(filepath.Join(db.BinDir, "pgbench"), "-i", "-s", "1", "-q", db.URL("postgres", "", "postgres")).CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench -i: %v\n%s", err, out)
		}
	}
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + nw.URL("postgres", "", "postgres")},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	for _, mode := range []string{"prepared", "extended", "simple"} {
		out, err := exec.Command(filepath.Join(old.BinDir, "pgbench"), "-c", "4", "-j", "2", "-t", "60", "-M", mode, p.url("postgres", "postgres")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "number of failed transactions: 0") {
			t.Fatalf("pgbench -M %s: %v\n%s", mode, err, out)
		}
	}
	m := p.waitMirrored(60 * time.Second)
	compareTables(t, old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres"),
		"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")
	if m["dead_lettered"] != 0.0 {
		t.Errorf("mirror %v", m)
	}
	// pgbench truncates pgbench_history before each run (through the
	// proxy, so the TRUNCATE is mirrored too): the last run's rows remain.
	if rows := tableRows(t, nw.URL("postgres", "", "postgres"), "pgbench_history"); len(rows) != 4*60 {
		t.Errorf("new pgbench_history has %d rows, want %d", len(rows), 4*60)
	}
}

// TestPhaseSwitchAtTransactionBoundary: a SIGHUP to dual-write in the
// middle of a transaction takes effect only after it ends.
func TestPhaseSwitchAtTransactionBoundary(t *testing.T) {
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	old.Exec(t, "create table items (id int primary key, v text)")
	nw.Exec(t, "create table items (id int primary key, v text)")
	cfgPath := filepath.Join(t.TempDir(), "shadowproxy.toml")
	write := func(phase string) {
		body := fmt.Sprintf("phase = %q\nreport_dir = %q\n", phase, filepath.Dir(cfgPath))
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("old-only")
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + nw.URL("postgres", "", "postgres")},
		"--config", cfgPath)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "insert into items values (1, 'before the switch')"); err != nil {
		t.Fatal(err)
	}
	write("dual-write")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return p.status()["phase"] == "dual-write" })
	if _, err := tx.Exec(ctx, "insert into items values (2, 'same transaction')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "insert into items values (3, 'next transaction')"); err != nil {
		t.Fatal(err)
	}
	p.waitMirrored(30 * time.Second)
	got := tableRows(t, nw.URL("postgres", "", "postgres"), "items")
	if strings.Join(got, "|") != "(3,\"next transaction\")" {
		t.Fatalf("new database has %v; want only the row of the transaction that began after the switch", got)
	}
	// DDL during dual-write is reported as schema drift, not mirrored.
	if _, err := c.Exec(ctx, "create index items_v on items (v)"); err != nil {
		t.Fatal(err)
	}
	m := p.status()["mirror"].(map[string]any)
	drift, _ := m["schema_drift"].([]any)
	if len(drift) != 1 || !strings.Contains(fmt.Sprint(drift[0]), "CREATE INDEX") {
		t.Fatalf("schema_drift = %v", drift)
	}
}
