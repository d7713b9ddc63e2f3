package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Lines as pgbench 15 writes them with --log (no --rate: no schedule lag;
// with failures possible, "failed" in the time column).
const txnLog = `0 0 2241 0 1763731127 995598
0 1 1500 0 1763731127 997101
1 0 3000 0 1763731127 998002
1 1 failed 0 1763731127 999000
2 0 skipped 0 1763731128 1000
2 1 999 0 1763731128 2000 0
`

func TestParseTxnLog(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantMS  []float64
		failed  int
		skipped int
		wantErr string
	}{
		{name: "pg15", in: txnLog, wantMS: []float64{2.241, 1.5, 3.0, 0.999}, failed: 1, skipped: 1},
		{name: "blank lines", in: "\n0 0 10 0 1 2\n\n", wantMS: []float64{0.01}},
		{name: "empty", in: ""},
		{name: "short line", in: "0 0 2241 0 1763731127\n", wantErr: "line 1: want at least 6 fields"},
		{name: "not a number", in: txnLog + "3 0 1.5 0 1 2\n", wantErr: `line 7: latency "1.5"`},
		{name: "negative", in: "0 0 -5 0 1 2\n", wantErr: "line 1: latency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l txnLatencies
			err := parseTxnLog(strings.NewReader(tt.in), &l)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(l.MS, tt.wantMS) || l.Failed != tt.failed || l.Skipped != tt.skipped {
				t.Errorf("got %+v, want MS %v failed %d skipped %d", l, tt.wantMS, tt.failed, tt.skipped)
			}
		})
	}
}

func TestReadTxnLogs(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "txn")
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := readTxnLogs(prefix); err == nil || !strings.Contains(err.Error(), "no pgbench transaction logs") {
		t.Errorf("no logs: err = %v", err)
	}
	// One file per pgbench thread; both count.
	write("txn.4242", "0 0 1000 0 1 2\n0 1 2000 0 1 3\n")
	write("txn.4242.1", "1 0 4000 0 1 2\n")
	write("other.4242", "9 9 999999 0 1 2\n") // another prefix: not read
	l, err := readTxnLogs(prefix)
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(l.MS))
	if want := []float64{1, 2, 4}; !slices.Equal(got, want) {
		t.Errorf("latencies %v, want %v", got, want)
	}

	write("txn.4242.1", "1 0 failed 0 1 2\n")
	if _, err := readTxnLogs(prefix); err == nil || !strings.Contains(err.Error(), "1 failed") {
		t.Errorf("failed transaction: err = %v", err)
	}
	write("txn.4242", "")
	write("txn.4242.1", "")
	if _, err := readTxnLogs(prefix); err == nil || !strings.Contains(err.Error(), "no transactions") {
		t.Errorf("empty logs: err = %v", err)
	}
	write("txn.4242", "garbage\n")
	if _, err := readTxnLogs(prefix); err == nil || !strings.Contains(err.Error(), "txn.4242: line 1") {
		t.Errorf("bad log: err = %v, want the file and line named", err)
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100 … 1, unsorted on purpose
	}
	thousand := make([]float64, 1000)
	for i := range thousand {
		thousand[i] = float64(i + 1)
	}
	tests := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"p99 of 1..100", hundred, 99, 99},
		{"p50 of 1..100", hundred, 50, 50},
		{"p100 is the max", hundred, 100, 100},
		{"p1 of 1..100", hundred, 1, 1},
		{"p99.9 of 1..1000", thousand, 99.9, 999},
		{"p99 of 1..1000", thousand, 99, 990},
		{"a rank between values rounds up", []float64{1, 2, 3}, 50, 2},
		{"tiny p is the min", []float64{5, 3, 9}, 0.001, 3},
		{"one value", []float64{7}, 99, 7},
		{"p99 of few is the max", []float64{1, 2, 3, 50}, 99, 50},
		{"none", nil, 99, math.NaN()},
		{"p0", hundred, 0, math.NaN()},
		{"p over 100", hundred, 101, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := percentile(tt.xs, tt.p)
			if got != tt.want && !(math.IsNaN(got) && math.IsNaN(tt.want)) {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	if hundred[0] != 100 {
		t.Error("percentile sorted its argument in place")
	}
}

func TestReservePort(t *testing.T) {
	port, release, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Refused, as by a stopped server.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("a connection to the reserved port was accepted")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial: %v, want connection refused", err)
	}
	// Held: a server cannot take it, even with SO_REUSEADDR (which Go's
	// listeners, like Postgres's, set).
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatal("another listener took the reserved port")
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the port is still held after release: %v", err)
	}
	ln.Close()
}

func TestTPCBArgs(t *testing.T) {
	got := tpcbArgs(6543, 5*time.Second, "/w/txn")
	want := []string{
		"-h", "127.0.0.1", "-p", "6543", "-U", "postgres",
		"-n", "-M", "prepared", "-c", "4", "-j", "2", "-T", "5",
		"--log", "--log-prefix", "/w/txn", "postgres",
	}
	if !slices.Equal(got, want) {
		t.Errorf("tpcbArgs\n got %q\nwant %q", got, want)
	}
	if slices.Contains(got, "-S") {
		t.Error("the TPC-B-like run must not be select-only")
	}
}

func TestCheckMirrored(t *testing.T) {
	live := dwTarget{kind: dwLive, newURL: "postgres://x"}
	stopped := dwTarget{kind: dwStopped, newURL: "postgres://y"}
	tests := []struct {
		name    string
		t       dwTarget
		m       mirrorStatus
		wantErr string
	}{
		{"live, applied", live, mirrorStatus{LastSeq: 10, Applied: 10, AppliedSeq: 10}, ""},
		{"stopped, spooled", stopped, mirrorStatus{LastSeq: 10, Spooled: 10}, ""},
		{"nothing captured", live, mirrorStatus{}, "did not dual-write"},
		{"stopped but applied", stopped, mirrorStatus{LastSeq: 10, Applied: 3}, "should be down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkMirrored(tt.t, tt.m)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMirrorStatusCaughtUp(t *testing.T) {
	tests := []struct {
		m    mirrorStatus
		want bool
	}{
		{mirrorStatus{LastSeq: 5, AppliedSeq: 5, Applied: 5}, true},
		{mirrorStatus{}, true},
		{mirrorStatus{LastSeq: 5, AppliedSeq: 4}, false},
		{mirrorStatus{LastSeq: 5, AppliedSeq: 5, Queued: 1}, false},
		{mirrorStatus{LastSeq: 5, AppliedSeq: 5, Spooled: 1}, false},
		{mirrorStatus{LastSeq: 5, AppliedSeq: 5, Pending: 1}, false},
	}
	for _, tt := range tests {
		if got := tt.m.caughtUp(); got != tt.want {
			t.Errorf("%+v caughtUp = %v, want %v", tt.m, got, tt.want)
		}
	}
	if got := (mirrorStatus{DeadLettered: 2, Dropped: 3, Failed: 7}).lost(); got != 5 {
		t.Errorf("lost = %d, want 5 (failed attempts are retried, not lost)", got)
	}
}

// adminServer serves /status bodies in turn (the last one from then on) as
// a proxy's admin server, and returns a bgProc pointing at it.
func adminServer(t *testing.T, bodies ...string) (*bgProc, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		i := min(int(calls.Add(1))-1, len(bodies)-1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, bodies[i])
	}))
	t.Cleanup(srv.Close)
	return &bgProc{name: "proxy t", adminPort: srv.Listener.Addr().(*net.TCPAddr).Port}, &calls
}

func TestMirrorStatus(t *testing.T) {
	// As cmd/shadowproxy serves it: the proxy's own figures, and "mirror".
	p, _ := adminServer(t, `{"phase":"dual-write","sessions":0,"mirror":{"queued":2,"spooled":30,"spool_bytes":4096,
		"applied":100,"failed":1,"dead_lettered":0,"dropped":0,"pending":1,"aborted":0,"lag_seconds":0.5,
		"applied_seq":100,"last_seq":133,"spooling":true,"overflowed":false,"dirty_tables":[]}}`)
	got, err := p.mirrorStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := mirrorStatus{Queued: 2, Spooled: 30, Applied: 100, Failed: 1, Pending: 1, AppliedSeq: 100, LastSeq: 133, Spooling: true}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}

	p, _ = adminServer(t, `{"phase":"old-only"}`)
	if _, err := p.mirrorStatus(context.Background()); err == nil || !strings.Contains(err.Error(), "not dual-writing") {
		t.Errorf("no mirror: err = %v", err)
	}
	if _, err := (&bgProc{name: "p"}).mirrorStatus(context.Background()); err == nil {
		t.Error("a proxy without an admin server answered")
	}
}

func TestWaitCaughtUp(t *testing.T) {
	behind := `{"mirror":{"applied_seq":5,"last_seq":9,"queued":4}}`
	done := `{"mirror":{"applied_seq":9,"last_seq":9,"applied":9}}`
	ctx := context.Background()

	p, calls := adminServer(t, behind, behind, done)
	st, ok, err := waitCaughtUp(ctx, p, mirrorStatus{AppliedSeq: 1, LastSeq: 9}, 10*time.Second)
	if err != nil || !ok || st.Applied != 9 || calls.Load() != 3 {
		t.Errorf("catching up: %+v, %v, %v after %d polls; want caught up after 3", st, ok, err, calls.Load())
	}

	// Already caught up: no poll.
	p, calls = adminServer(t, behind)
	if _, ok, err := waitCaughtUp(ctx, p, mirrorStatus{LastSeq: 3, AppliedSeq: 3}, time.Second); !ok || err != nil || calls.Load() != 0 {
		t.Errorf("caught up at once: %v, %v, %d polls", ok, err, calls.Load())
	}

	// Never: gives up after the wait with the last figures.
	p, _ = adminServer(t, behind)
	start := time.Now()
	st, ok, err = waitCaughtUp(ctx, p, mirrorStatus{LastSeq: 9}, 300*time.Millisecond)
	if ok || err != nil || st.AppliedSeq != 5 {
		t.Errorf("never catching up: %+v, %v, %v", st, ok, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %v, want about the 300ms wait", took)
	}
}

// dwFixture is the section's four scenarios with runs whose medians are
// known: tps[i] per round for each, p99 likewise.
func dwFixture(oldTPS, liveTPS, stoppedTPS, slowTPS []float64, liveP99, stoppedP99, slowP99 []float64) []dwRow {
	targets := []dwTarget{
		{kind: dwOldOnly, name: "old-only"},
		{kind: dwLive, name: "dual-write", newURL: "a"},
		{kind: dwStopped, name: "dual-write, new stopped", newURL: "b"},
		{kind: dwDelayed, name: "dual-write, new +50 ms", newURL: "c"},
	}
	mk := func(t dwTarget, tps, p99 []float64) dwRow {
		var runs []dwRun
		for i := range tps {
			r := dwRun{pgbenchResult: pgbenchResult{TPS: tps[i], LatencyMS: 1000 * dwClients / tps[i], Txns: int64(tps[i] * 5)}}
			// The proxy 200 µs per transaction in old-only, 300 with
			// dual-write; the old database 250 and 260; the new one 0 and
			// 90 (applying), 2 when stopped (its background processes).
			r.ProxyCPU = time.Duration(r.Txns) * 200 * time.Microsecond
			r.OldCPU = time.Duration(r.Txns) * 250 * time.Microsecond
			if t.newURL != "" {
				r.ProxyCPU = time.Duration(r.Txns) * 300 * time.Microsecond
				r.OldCPU = time.Duration(r.Txns) * 260 * time.Microsecond
				r.NewCPU = time.Duration(r.Txns) * 90 * time.Microsecond
			}
			if t.kind == dwStopped {
				r.NewCPU = time.Duration(r.Txns) * 2 * time.Microsecond
			}
			if p99 != nil {
				r.P99MS = p99[i]
			} else {
				r.P99MS = 3
			}
			if t.newURL != "" {
				n := uint64(tps[i] * 5)
				r.Mirror = mirrorStatus{LastSeq: n}
				switch t.kind {
				case dwLive:
					r.Mirror.Applied, r.Mirror.AppliedSeq = n, n
					r.CaughtUp, r.CatchUp = true, time.Duration(i+1)*100*time.Millisecond
				case dwStopped:
					r.Mirror.Spooled = int(n)
				case dwDelayed:
					r.Mirror.Applied, r.Mirror.AppliedSeq = 80, 80
					r.Mirror.Queued, r.Mirror.Spooled = i+7, int(n-80)-(i+7)
				}
				r.Final = r.Mirror
			}
			runs = append(runs, r)
		}
		return summarizeDualWrite(t, runs)
	}
	return []dwRow{
		mk(targets[0], oldTPS, nil),
		mk(targets[1], liveTPS, liveP99),
		mk(targets[2], stoppedTPS, stoppedP99),
		mk(targets[3], slowTPS, slowP99),
	}
}

func TestSummarizeAndFormatDualWrite(t *testing.T) {
	rows := dwFixture(
		[]float64{2000, 2200, 1000}, // median 2000: the outlier does not count
		[]float64{1400, 1500, 1600},
		[]float64{1900, 1850, 1800},
		[]float64{1800, 1700, 1750},
		[]float64{5, 6, 4},
		[]float64{4, 4.5, 3.5},
		[]float64{4.2, 4.4, 4.3},
	)
	old, live, stopped, slow := rows[0], rows[1], rows[2], rows[3]
	if old.TPS != 2000 || !math.IsNaN(old.Mirrored) || !math.IsNaN(old.CatchUpS) {
		t.Errorf("old-only %+v", old)
	}
	if live.TPS != 1500 || live.P99MS != 5 || live.Mirrored != 7500 || live.Applied != 7500 || live.Spooled != 0 ||
		math.Abs(live.CatchUpS-0.2) > 1e-9 || live.Behind != 0 {
		t.Errorf("dual-write %+v", live)
	}
	if stopped.TPS != 1850 || stopped.Applied != 0 || stopped.Spooled != 9250 || !math.IsNaN(stopped.CatchUpS) {
		t.Errorf("stopped %+v", stopped)
	}
	if got := tpsRatio(rows, dwStopped); got != 0.925 {
		t.Errorf("stopped/old-only = %v, want 0.925", got)
	}
	if d, allowed := p99Increase(rows, dwLive); math.Abs(d-(4.3-5)) > 1e-9 || allowed != 1 {
		t.Errorf("p99 increase vs prompt %v (allowed %v)", d, allowed)
	}
	if d, allowed := p99Increase(rows, dwStopped); math.Abs(d-0.3) > 1e-9 || allowed != 1 {
		t.Errorf("p99 increase vs stopped %v (allowed %v)", d, allowed)
	}
	if live.P99Min != 4 || live.P99Max != 6 {
		t.Errorf("dual-write p99 spread %v–%v, want 4–6", live.P99Min, live.P99Max)
	}
	_ = slow

	text := formatDualWriteTable(rows, 3, 5)
	t.Logf("\n%s", text)
	for _, re := range []string{
		`(?m)^dual-write: pgbench TPC-B-like \(-c 4 -j 2 -M prepared\) through the proxy, median of 3 interleaved 5 s runs$`,
		`(?m)^old-only +2000 +1\.00 +2\.00 +3\.00 +3\.0–3\.0 +200 +250 +0 +- +- +- +- +-$`,
		`(?m)^dual-write +1500 +0\.75 +2\.67 +5\.00 +4\.0–6\.0 +300 +260 +90 +7500 +7500 +0 +0 +0\.20 s$`,
		`(?m)^dual-write, new stopped +1850 +0\.93 +2\.16 +4\.00 +3\.5–4\.5 +300 +260 +2 +9250 +0 +0 +9250 +-$`,
		`(?m)^dual-write, new \+50 ms +1750 +0\.88 +2\.29 +4\.30 +4\.2–4\.4 +300 +260 +90 +8750 +80 +8 +8661 +-$`,
		`(?m)^dual-write/old-only tps: 0\.75 with the new database up, 0\.93 with it stopped, 0\.88 with it 50 ms late$`,
		`(?m)^p99 with the new database 50 ms late: 4\.30 ms, -0\.70 ms vs it prompt, \+0\.30 ms vs it stopped$`,
		`(?m)^  \(measurable beyond 10%, 1 ms and the baseline's spread: here \+1\.00 and \+1\.00 ms\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("table does not match %s", re)
		}
	}
	if strings.Contains(text, "LOST") {
		t.Error("nothing was lost, yet the table says so")
	}
}

func TestDualWriteGoals(t *testing.T) {
	tps := func(x float64) []float64 { return []float64{x} }
	tps3 := func(x float64) []float64 { return []float64{x, x, x} }
	p99 := tps
	tests := []struct {
		name               string
		rows               []dwRow
		lost               uint64
		stopped, p99, safe bool
	}{
		{"all met", dwFixture(tps(2000), tps(1500), tps(1900), tps(1800), p99(5), p99(4), p99(4.5)), 0, true, true, true},
		{"stopped at exactly 0.9", dwFixture(tps(2000), tps(1500), tps(1800), tps(1800), p99(5), p99(4), p99(4.5)), 0, true, true, true},
		{"stopped too slow", dwFixture(tps(2000), tps(1500), tps(1700), tps(1800), p99(5), p99(4), p99(4.5)), 0, false, true, true},
		{"p99 up vs prompt", dwFixture(tps(2000), tps(1500), tps(1900), tps(1800), p99(5), p99(5), p99(6.5)), 0, true, false, true},
		// 10% of a 20 ms p99 is 2 ms: 21.5 ms is no measurable increase.
		{"within 10%", dwFixture(tps(2000), tps(1500), tps(1900), tps(1800), p99(20), p99(20), p99(21.5)), 0, true, true, true},
		// Better than with the prompt new database (which competes for
		// the CPUs), worse than with it stopped: an increase.
		{"p99 up vs stopped only", dwFixture(tps(2000), tps(1500), tps(1900), tps(1800), p99(9), p99(3), p99(5)), 0, true, false, true},
		{"lost", dwFixture(tps(2000), tps(1500), tps(1900), tps(1800), p99(5), p99(4), p99(4.5)), 2, true, true, false},
		// +2 ms over the stopped median of 4 ms, but one stopped round
		// had a p99 of 9 ms: within the noise.
		{"within the baseline's spread", dwFixture(tps3(2000), tps3(1500), tps3(1900), tps3(1800),
			[]float64{8, 8, 8}, []float64{3, 4, 9}, []float64{6, 6, 6}), 0, true, true, true},
		{"beyond the baseline's spread", dwFixture(tps3(2000), tps3(1500), tps3(1900), tps3(1800),
			[]float64{8, 8, 8}, []float64{3, 4, 5}, []float64{6, 6, 7}), 0, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rows[3].Lost = tt.lost
			g := dualWriteGoals(tt.rows)
			if len(g) != 3 {
				t.Fatalf("%d goals, want 3", len(g))
			}
			for i, want := range []bool{tt.stopped, tt.p99, tt.safe} {
				if g[i].met != want {
					t.Errorf("goal %q met = %v, want %v (got %s)", g[i].what, g[i].met, want, g[i].got)
				}
			}
		})
	}
	// A scenario that did not run cannot meet its goal.
	rows := dwFixture(tps(2000), tps(1500), tps(1900), tps(1800), p99(5), p99(4), p99(4.5))[:2]
	for _, g := range dualWriteGoals(rows)[:2] {
		if g.met {
			t.Errorf("goal %q met without its scenario (%s)", g.what, g.got)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name, stat string
		want       procStat
		wantErr    string
	}{
		{name: "cat", stat: "3156 (cat) R 3099 3099 12026 0 -1 4194304 100 0 0 0 250 31 4 2 20 0 1 0 583791 3133440 377",
			want: procStat{ppid: 3099, cpu: 2810 * time.Millisecond, children: 60 * time.Millisecond}},
		// The command name may hold spaces and parentheses.
		{name: "odd name", stat: "42 (a) b (c)) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 6 7", want: procStat{ppid: 1, cpu: 100 * time.Millisecond}},
		{name: "no name", stat: "42 S 1", wantErr: "no command name"},
		{name: "short", stat: "42 (x) S 1 2 3", wantErr: "fields after the command name"},
		{name: "not a number", stat: "42 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3 0 0", wantErr: `field 14 "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(tt.stat)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if cpu, err := parseProcStatCPU(tt.stat); err != nil || cpu != tt.want.cpu {
				t.Errorf("parseProcStatCPU = %v, %v; want %v", cpu, err, tt.want.cpu)
			}
		})
	}
	// The real thing: this process has used some CPU.
	self, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	p := &bgProc{cmd: &exec.Cmd{Process: self}}
	if d, err := p.cpuTime(); err != nil || d <= 0 {
		t.Errorf("own CPU time %v, %v", d, err)
	}
}

// TestServerCPU plays the postmaster: this process, named in a
// postmaster.pid, with a child that burns CPU. The child's time counts
// while it runs and, once it has ended and been waited for, through this
// process's children's time.
func TestServerCPU(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), fmt.Appendf(nil, "%d\n%s\n", os.Getpid(), dir), 0o600); err != nil {
		t.Fatal(err)
	}
	own := func() procStat {
		b, err := os.ReadFile("/proc/self/stat")
		if err != nil {
			t.Fatal(err)
		}
		st, err := parseProcStat(string(b))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// Spin until the shell itself has used 300 ms of CPU time (its cut
	// processes add more), then wait to be killed.
	child := exec.Command("sh", "-c", `while [ $(cut -d' ' -f14 /proc/$$/stat) -lt 30 ]; do :; done; exec sleep 60`)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	const burnt = 250 * time.Millisecond // below the 300 ms: ticks are coarse
	deadline := time.Now().Add(30 * time.Second)
	for {
		before := own()
		got, err := serverCPU(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got-before.cpu-before.children >= burnt {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server CPU %v, own %v: the running child's CPU time is missing", got, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	st := own()
	got, err := serverCPU(dir) // read second: CPU time only grows
	if err != nil {
		t.Fatal(err)
	}
	if st.children < burnt || got < st.cpu+st.children {
		t.Errorf("after the child ended: server CPU %v, own %v, children %v: want the child's %v in it", got, st.cpu, st.children, burnt)
	}
	if _, err := serverCPU(t.TempDir()); err == nil {
		t.Error("serverCPU of a directory without postmaster.pid succeeded")
	}
}
