package main

import (
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// A backlog that built up in the spool while the new database was down is
// applied in groups of transactions, several per round trip, once it is
// back, and old and new end equal.
func TestDualWriteBacklogAppliedInGroups(t *testing.T) {
	old, nw, p := startFaultProxy(t, "", t.TempDir())
	backlogInGroups(t, p, nw.Stop, nw.Restart)
	compareTables(t, old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres"), "ledger", "balances")
}

// faultMySQLSchema is faultNewSchema for MySQL/MariaDB.
const faultMySQLSchema = `create table ledger (id int primary key, acct int not null, amount decimal(12,2), at datetime(6));
create table balances (acct int primary key, total decimal(14,2) not null, touched datetime(6));`

// The same with MariaDB as the new database: its backlog is applied in
// groups of transactions, one multi-statement query each, and the
// databases end equal.
func TestDualWriteBacklogAppliedInGroupsMariaDB(t *testing.T) {
	old := testdb.StartPostgres(t)
	my := testdb.StartMariaDB(t)
	old.Exec(t, faultSchema)
	my.Exec(t, "create database app; use app;\n"+faultMySQLSchema)
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + my.URL("root", "", "app")},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	backlogInGroups(t, p, my.Stop, my.Restart)
	compareAcrossEngines(t, old.URL("postgres", "", "postgres"), my.DSN("app"), map[string][2]string{
		"ledger":   {"id, acct, amount, at", "id, acct, amount, at"},
		"balances": {"acct, total, touched", "acct, total, touched"},
	})
}

// backlogInGroups seeds the fault schema's balances through the dual-write
// proxy p, stops the new database, runs the fault workload for a second,
// starts the new database again and waits for the mirror. The clients saw
// no error, the backlog was spooled, and it was applied in groups without
// a dead letter.
func backlogInGroups(t *testing.T, p *proxyProc, stopNew, restartNew func(testing.TB)) {
	t.Helper()
	seedBalances(t, p.url("postgres", "postgres"))
	p.waitMirrored(60 * time.Second)
	stopNew(t)

	stop := make(chan struct{})
	wait := faultWorkload(t, func() string { return p.url("postgres", "postgres") }, 4, stop)
	time.Sleep(time.Second)
	close(stop)
	ok, errs := wait()
	if errs != 0 || ok < 20 {
		t.Fatalf("%d transactions, %d client errors", ok, errs)
	}
	if st := p.status()["mirror"].(map[string]any); st["spooled"] == 0.0 {
		t.Fatalf("nothing spooled while the new database was down: %v", st)
	}
	restartNew(t)
	m := p.waitMirrored(60 * time.Second)
	if m["dead_lettered"] != 0.0 {
		t.Errorf("dead letters: %v", m)
	}
	groups, grouped := m["groups"].(float64), m["grouped_batches"].(float64)
	if groups == 0 || grouped < 2*groups {
		t.Errorf("backlog of %d transactions not applied in groups: %v groups, %v batches in them", ok, groups, grouped)
	}
	t.Logf("%d transactions; mirror %v", ok, m)
}
