package main

import (
	"database/sql"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// A backlog that built up in the spool while the new database was down is
// applied in groups of transactions, several per round trip, once it is
// back, and old and new end equal.
func TestDualWriteBacklogAppliedInGroups(t *testing.T) {
	old, nw, p := startFaultProxy(t, "", t.TempDir())
	seedBalances(t, p.url("postgres", "postgres"))
	p.waitMirrored(60 * time.Second)
	nw.Stop(t)

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
	nw.Restart(t)
	m := p.waitMirrored(60 * time.Second)
	compareTables(t, old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres"), "ledger", "balances")
	if m["dead_lettered"] != 0.0 {
		t.Errorf("dead letters: %v", m)
	}
	groups, grouped := m["groups"].(float64), m["grouped_batches"].(float64)
	if groups == 0 || grouped < 2*groups {
		t.Errorf("backlog of %d transactions not applied in groups: %v groups, %v batches in them", ok, groups, grouped)
	}
	t.Logf("%d transactions; mirror %v", ok, m)
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
	my.Exec(t, "create database app")
	db, err := sql.Open("mysql", my.DSN("app")+"?multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(faultMySQLSchema); err != nil {
		t.Fatal(err)
	}
	db.Close()
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + my.URL("root", "", "app")},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	seedBalances(t, p.url("postgres", "postgres"))
	p.waitMirrored(60 * time.Second)
	my.Stop(t)

	stop := make(chan struct{})
	wait := faultWorkload(t, func() string { return p.url("postgres", "postgres") }, 4, stop)
	time.Sleep(time.Second)
	close(stop)
	ok, errs := wait()
	if errs != 0 || ok < 20 {
		t.Fatalf("%d transactions, %d client errors", ok, errs)
	}
	my.Restart(t)
	m := p.waitMirrored(60 * time.Second)
	compareAcrossEngines(t, old.URL("postgres", "", "postgres"), my.DSN("app"), map[string][2]string{
		"ledger":   {"id, acct, amount, at", "id, acct, amount, at"},
		"balances": {"acct, total, touched", "acct, total, touched"},
	})
	if m["dead_lettered"] != 0.0 {
		t.Errorf("dead letters: %v", m)
	}
	groups, grouped := m["groups"].(float64), m["grouped_batches"].(float64)
	if groups == 0 || grouped < 2*groups {
		t.Errorf("backlog of %d transactions not applied in groups: %v groups, %v batches in them", ok, groups, grouped)
	}
	t.Logf("%d transactions; mirror %v", ok, m)
}
