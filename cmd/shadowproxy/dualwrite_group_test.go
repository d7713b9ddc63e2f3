package main

import (
	"testing"
	"time"
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
