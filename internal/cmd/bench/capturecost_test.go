package main

import (
	"math"
	"strings"
	"testing"
)

// The captured script is the built-in one with the proxy's RETURNING lists
// on its four writes and pgbench's variables where they were; everything
// else is unchanged.
func TestCapturedScript(t *testing.T) {
	got, err := capturedScript(tpcbScript)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", got)
	plain := strings.Split(strings.TrimSpace(tpcbScript), "\n")
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != len(plain) {
		t.Fatalf("%d lines, want %d", len(lines), len(plain))
	}
	writes := 0
	for i, l := range lines {
		if !strings.HasPrefix(plain[i], "UPDATE") && !strings.HasPrefix(plain[i], "INSERT") {
			if l != plain[i] {
				t.Errorf("line %d: %q, want it unchanged: %q", i+1, l, plain[i])
			}
			continue
		}
		writes++
		const ret = " RETURNING pg_current_xact_id() AS __shadowproxy_xid, "
		if !strings.Contains(l, ret) || !strings.HasSuffix(l, ";") {
			t.Errorf("line %d: no capture RETURNING list: %q", i+1, l)
		}
		if strings.Contains(l, "$") {
			t.Errorf("line %d: a placeholder left: %q", i+1, l)
		}
		// The variables, in the statement's order.
		if g, w := pgbenchVar.FindAllString(l, -1), pgbenchVar.FindAllString(plain[i], -1); strings.Join(g, " ") != strings.Join(w, " ") {
			t.Errorf("line %d: variables %v, want %v", i+1, g, w)
		}
	}
	if writes != 4 {
		t.Errorf("%d writes captured, want 4", writes)
	}
	for _, want := range []string{
		`UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid RETURNING pg_current_xact_id() AS __shadowproxy_xid, pgbench_accounts.tableoid AS __shadowproxy_tableoid, pgbench_accounts.*;`,
		`pgbench_history.tableoid AS __shadowproxy_tableoid, pgbench_history.*;`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in the captured script", want)
		}
	}
}

func TestCaptureCostFormat(t *testing.T) {
	if s := (captureCost{}).format(5); s != "" {
		t.Errorf("not measured: %q, want nothing", s)
	}
	s := captureCost{
		PlainTPS: 6000, CapturedTPS: 5100, LogicalTPS: 4800,
		PlainCPUMicros: 210, CapturedCPUMicros: 245, LogicalCPUMicros: 262, ConsumerCPUMicros: 14.6,
		Rounds: 4,
	}.format(5)
	for _, want := range []string{
		"the capture's cost to the old database alone (no proxy; pgbench -f, median of 4 interleaved 5 s runs):\n",
		"  TPC-B-like with the RETURNING lists the proxy appends: 5100 tps, 0.85× the script as written (6000 tps);\n",
		"  old DB CPU 245 µs/txn against 210\n",
		"  4800 tps, 0.80× as written; old DB CPU 262 µs/txn, its walsender included, and the consumer's 15 µs/txn\n",
		"  (all with wal_level = logical, set for these runs only)\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in\n%s", want, s)
		}
	}
	if r := ratio(5100, 6000); math.Abs(r-0.85) > 1e-9 {
		t.Errorf("ratio %v", r)
	}
}
