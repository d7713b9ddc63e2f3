package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/compare"
	"github.com/shadowproxy/shadowproxy/config"
)

func TestPromSum(t *testing.T) {
	// As promhttp writes them, with the oddities the format allows.
	const text = `# HELP shadowproxy_shadow_dropped_total Shadow requests dropped before comparison, by reason.
# TYPE shadowproxy_shadow_dropped_total counter
shadowproxy_shadow_dropped_total{reason="closed"} 0
shadowproxy_shadow_dropped_total{reason="invalid"} 2
shadowproxy_shadow_dropped_total{reason="queue_full"} 1840
shadowproxy_shadow_queue_length 1023
shadowproxy_shadow_queue_length_max 99
shadowproxy_shadow_new_latency_seconds_bucket{le="0.001"} 5
shadowproxy_shadow_new_latency_seconds_sum 0.25
shadowproxy_shadow_new_latency_seconds_count 7
odd_total{a="}",b="say \"hi}\""} 1.5e3
odd_total{a="x"} 2 1700000000000
spaced_total	4
`
	tests := []struct {
		name    string
		text    string
		metric  string
		want    float64
		ok      bool
		wantErr string
	}{
		{name: "labels summed", text: text, metric: "shadowproxy_shadow_dropped_total", want: 1842, ok: true},
		{name: "no labels, longer name left alone", text: text, metric: "shadowproxy_shadow_queue_length", want: 1023, ok: true},
		{name: "histogram series are other names", text: text, metric: "shadowproxy_shadow_new_latency_seconds", ok: false},
		{name: "quoted braces, escapes, timestamp", text: text, metric: "odd_total", want: 1502, ok: true},
		{name: "tab separated", text: text, metric: "spaced_total", want: 4, ok: true},
		{name: "absent", text: text, metric: "shadowproxy_shadow_timeouts_total", ok: false},
		{name: "a prefix is not the name", text: text, metric: "shadowproxy_shadow", ok: false},
		{name: "empty", text: "", metric: "x", ok: false},
		{name: "bad value", text: "x_total{a=\"b\"} lots\n", metric: "x_total", wantErr: `line 1: value "lots"`},
		{name: "no value", text: "a\nx_total{a=\"b\"}\n", metric: "x_total", wantErr: "line 2: no value"},
		{name: "unterminated labels", text: "x_total{a=\"}\n", metric: "x_total", wantErr: "unterminated labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := promSum(tt.text, tt.metric)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || ok != tt.ok {
				t.Errorf("promSum(%s) = %v, %v; want %v, %v", tt.metric, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// shadowState is what a fake admin server answers at one poll: the JSON of
// /report and the figures behind /metrics.
type shadowState struct {
	compared, ignored, mismatched int64
	dropped, timeouts             float64
	queue, rechecks               float64
}

func (s shadowState) report() string {
	return fmt.Sprintf(`{"generated":"2026-01-02T03:04:05Z","compared":%d,"matched":%d,"mismatched":%d,"noise":0,
		"ignored":%d,"errors_one_side":0,"errors_both":0,"timeouts":0,"differences":{},"classes":[],
		"series_bucket_ns":60000000000,"series":[]}`, s.compared, s.compared-s.mismatched, s.mismatched, s.ignored)
}

func (s shadowState) metrics() string {
	return fmt.Sprintf(`# TYPE shadowproxy_shadow_dropped_total counter
shadowproxy_shadow_dropped_total{reason="closed"} 0
shadowproxy_shadow_dropped_total{reason="queue_full"} %g
shadowproxy_shadow_timeouts_total{what="mirror_wait"} 0
shadowproxy_shadow_timeouts_total{what="query"} %g
shadowproxy_shadow_queue_length %g
shadowproxy_shadow_pending_rechecks %g
shadowproxy_queries_total{kind="read"} 123
`, s.dropped, s.timeouts, s.queue, s.rechecks)
}

// shadowAdmin serves the states in turn (the last one from then on), one
// per poll: a poll reads /report, then /metrics, which moves to the next.
// It returns a bgProc pointing at it and the count of polls.
func shadowAdmin(t *testing.T, states ...shadowState) (*bgProc, *atomic.Int32) {
	t.Helper()
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := states[min(int(polls.Load()), len(states)-1)]
		switch {
		case r.URL.Path == "/report" && r.URL.Query().Get("format") == "json":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, st.report())
		case r.URL.Path == "/metrics":
			polls.Add(1)
			fmt.Fprint(w, st.metrics())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return &bgProc{name: "proxy t", adminPort: srv.Listener.Addr().(*net.TCPAddr).Port}, &polls
}

func TestShadowStatus(t *testing.T) {
	p, _ := shadowAdmin(t, shadowState{compared: 50, ignored: 2, mismatched: 1, dropped: 7, timeouts: 3, queue: 4, rechecks: 1})
	st, err := p.shadowStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Report.Compared != 50 || st.Report.Matched != 49 || st.Report.Mismatched != 1 || st.Report.Ignored != 2 ||
		st.Dropped != 7 || st.Timeouts != 3 || st.QueueLength != 4 || st.PendingRechecks != 1 {
		t.Errorf("got %+v", st)
	}
	if st.idle() || st.recorded() != 52 {
		t.Errorf("idle %v, recorded %d; want busy, 52", st.idle(), st.recorded())
	}

	// A proxy that does not shadow: no /report (cmd/shadowproxy has it
	// only with a new database), or no shadower's metrics.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	p = &bgProc{name: "old-only", adminPort: srv.Listener.Addr().(*net.TCPAddr).Port}
	if _, err := p.shadowStatus(context.Background()); err == nil || !strings.Contains(err.Error(), "404") ||
		!strings.Contains(err.Error(), "shadowing") {
		t.Errorf("no /report: err = %v", err)
	}
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/report" {
			fmt.Fprint(w, shadowState{}.report())
			return
		}
		fmt.Fprint(w, "shadowproxy_queries_total{kind=\"read\"} 5\n")
	}))
	defer srv2.Close()
	p = &bgProc{name: "p", adminPort: srv2.Listener.Addr().(*net.TCPAddr).Port}
	if _, err := p.shadowStatus(context.Background()); err == nil || !strings.Contains(err.Error(), "no shadowproxy_shadow_dropped_total") {
		t.Errorf("no shadow metrics: err = %v", err)
	}
	if _, err := (&bgProc{name: "p"}).shadowStatus(context.Background()); err == nil {
		t.Error("a proxy without an admin server answered")
	}
}

func TestWaitShadowDrained(t *testing.T) {
	ctx := context.Background()
	busy := shadowState{compared: 10, queue: 30}
	working := shadowState{compared: 35, queue: 0} // queue empty, workers still finishing
	done := shadowState{compared: 40}

	p, polls := shadowAdmin(t, busy, working, done, done)
	st, ok, err := waitShadowDrained(ctx, p, shadowStatus{}, 10*time.Second)
	if err != nil || !ok || st.Report.Compared != 40 {
		t.Errorf("draining: compared %d, %v, %v; want 40, drained", st.Report.Compared, ok, err)
	}
	// Idle at the third poll, but 35 → 40 reads finished since the
	// second: only the fourth, with nothing moving, is done.
	if polls.Load() != 4 {
		t.Errorf("done after %d polls, want 4", polls.Load())
	}

	// A re-check pending keeps it waiting, even with nothing moving.
	p, polls = shadowAdmin(t, shadowState{compared: 40, rechecks: 1}, shadowState{compared: 40, rechecks: 1}, done, done)
	if _, ok, err := waitShadowDrained(ctx, p, shadowStatus{}, 10*time.Second); !ok || err != nil || polls.Load() != 4 {
		t.Errorf("pending re-check: %v, %v after %d polls; want drained after 4", ok, err, polls.Load())
	}

	// Never: gives up after the wait with the last figures.
	p, _ = shadowAdmin(t, busy)
	start := time.Now()
	st, ok, err = waitShadowDrained(ctx, p, shadowStatus{}, 300*time.Millisecond)
	if ok || err != nil || st.QueueLength != 30 {
		t.Errorf("never draining: %+v, %v, %v", st, ok, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %v, want about the 300ms wait", took)
	}

	// The context ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := waitShadowDrained(cctx, p, shadowStatus{}, time.Minute); err == nil {
		t.Error("a cancelled wait returned no error")
	}
}

func TestCheckShadowed(t *testing.T) {
	if err := checkShadowed(shadowStatus{Report: compare.Report{Compared: 1}}); err != nil {
		t.Error(err)
	}
	err := checkShadowed(shadowStatus{Report: compare.Report{Ignored: 3}, Dropped: 9})
	if err == nil || !strings.Contains(err.Error(), "did not shadow") || !strings.Contains(err.Error(), "ignored 3, dropped 9") {
		t.Errorf("nothing compared: err = %v", err)
	}
}

func TestSRRunMismatches(t *testing.T) {
	live := shadowStatus{Report: compare.Report{Compared: 100, Mismatched: 2, Timeouts: 1}}
	tests := []struct {
		name          string
		logged        *compare.Report
		all, timeouts int64
	}{
		{name: "no log", all: 2, timeouts: 1},
		// The log has a mismatch settled at shutdown that the live
		// report had not seen.
		{name: "log has more", logged: &compare.Report{Mismatched: 3, Timeouts: 1}, all: 3, timeouts: 1},
		// An event that could not be written is in the live report only.
		{name: "log has fewer", logged: &compare.Report{Mismatched: 1}, all: 2, timeouts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all, to := srRun{Final: live, Logged: tt.logged}.mismatches()
			if all != tt.all || to != tt.timeouts {
				t.Errorf("mismatches = %d (%d time-outs), want %d (%d)", all, to, tt.all, tt.timeouts)
			}
		})
	}
}

func TestShadowReadArgs(t *testing.T) {
	const newURL = "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"
	got := shadowReadArgs(newURL, "/w/report")
	want := []string{"--new", newURL, "--phase", "shadow-read", "--report-dir", "/w/report"}
	if !slices.Equal(got, want) {
		t.Errorf("args %q, want %q", got, want)
	}
	// With the bench's configuration file, the flags make a valid
	// shadow-read configuration that samples at the scenario's rate.
	conf, err := proxyConfig(proxySpec{Name: "sr", Configure: func(c *config.Config) { c.Shadow.SampleRate = 0.1 }},
		4321, 9187, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "p.toml")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Shadow.SampleRate != 0.1 {
		t.Errorf("sample_rate %v in the file, want 0.1", cfg.Shadow.SampleRate)
	}
	// As `shadowproxy serve` applies them.
	for i := 0; i < len(got); i += 2 {
		switch got[i] {
		case "--new":
			cfg.New = got[i+1]
		case "--phase":
			if cfg.Phase, err = config.ParsePhase(got[i+1]); err != nil {
				t.Fatal(err)
			}
		case "--report-dir":
			cfg.ReportDir = got[i+1]
		default:
			t.Fatalf("unexpected flag %s", got[i])
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("shadow-read configuration: %v", err)
	}
	if cfg.Phase != config.ShadowRead {
		t.Errorf("phase %v", cfg.Phase)
	}
}

func TestSelectArgs(t *testing.T) {
	got := selectArgs(6543, 5*time.Second)
	want := []string{
		"-h", "127.0.0.1", "-p", "6543", "-U", "postgres",
		"-n", "-S", "-M", "extended", "-c", "8", "-j", "2", "-T", "5", "postgres",
	}
	if !slices.Equal(got, want) {
		t.Errorf("selectArgs\n got %q\nwant %q", got, want)
	}
}

// srFixtureRuns builds a scenario's runs: tps per round, each run 5 s long
// with 40 µs of proxy CPU per transaction, and for a shadowing scenario a
// tenth of its reads (all of them at rate 1) compared and matched, drops
// and time-outs as given.
func srFixtureRuns(tgt srTarget, tps []float64, dropped, timeouts float64) []srRun {
	var runs []srRun
	for _, x := range tps {
		r := srRun{pgbenchResult: pgbenchResult{TPS: x, LatencyMS: 1000 * srClients / x, Txns: int64(x * 5)}}
		r.ProxyCPU = time.Duration(r.Txns) * 40 * time.Microsecond
		r.OldCPU = time.Duration(r.Txns) * 60 * time.Microsecond
		r.NewCPU = time.Duration(r.Txns) * 7 * time.Microsecond
		if tgt.shadows() {
			n := int64(float64(r.Txns) * tgt.rate)
			r.End = shadowStatus{Report: compare.Report{Compared: n, Matched: n}, Dropped: dropped, Timeouts: timeouts}
			r.Final = r.End
			r.Drained = tgt.waitsForDrain()
			r.Logged = &compare.Report{}
		}
		runs = append(runs, r)
	}
	return runs
}

var srFixtureTargets = []srTarget{
	{kind: srOldOnly, name: "old-only"},
	{kind: srSampled, name: "shadow-read 10%", rate: 0.1, newURL: "a"},
	{kind: srFull, name: "shadow-read 100%", rate: 1, newURL: "a"},
	{kind: srDelayed, name: "shadow-read 10%, new +50 ms", rate: 0.1, newURL: "b"},
}

// srFixture is the section's four scenarios with the given tps per round.
func srFixture(oldTPS, sampledTPS, fullTPS, slowTPS []float64) []srRow {
	return []srRow{
		summarizeShadowRead(srFixtureTargets[0], srFixtureRuns(srFixtureTargets[0], oldTPS, 0, 0)),
		summarizeShadowRead(srFixtureTargets[1], srFixtureRuns(srFixtureTargets[1], sampledTPS, 0, 0)),
		summarizeShadowRead(srFixtureTargets[2], srFixtureRuns(srFixtureTargets[2], fullTPS, 10, 0)),
		summarizeShadowRead(srFixtureTargets[3], srFixtureRuns(srFixtureTargets[3], slowTPS, 1800, 1)),
	}
}

func TestSummarizeAndFormatShadowRead(t *testing.T) {
	rows := srFixture(
		[]float64{16000, 17000, 10000}, // median 16000: the outlier does not count
		[]float64{15000, 14000, 14500},
		[]float64{8000, 7000, 7500},
		[]float64{15000, 14800, 14400},
	)
	old, sampled, full, slow := rows[0], rows[1], rows[2], rows[3]
	if old.TPS != 16000 || old.TPSMin != 10000 || old.TPSMax != 17000 || old.Compared != 0 || old.Reads != 215000 {
		t.Errorf("old-only %+v", old)
	}
	// 43500 transactions over three 5 s runs, a tenth compared.
	if sampled.TPS != 14500 || sampled.Reads != 217500 || sampled.Compared != 21750 || sampled.Matched != 21750 ||
		sampled.Mismatched != 0 || sampled.ProxyCPUMicros != 40 || sampled.OldCPUMicros != 60 || sampled.NewCPUMicros != 7 || sampled.Undrained != 0 {
		t.Errorf("10%% %+v", sampled)
	}
	if full.Compared != full.Reads || full.Dropped != 30 {
		t.Errorf("100%% %+v", full)
	}
	if slow.Dropped != 5400 || slow.Timeouts != 3 || slow.Undrained != 0 {
		t.Errorf("slow %+v (a run with the slow new database is not waited for: never undrained)", slow)
	}
	if got := srRatio(rows, srSampled, srOldOnly); got != 14500.0/16000 {
		t.Errorf("10%%/old-only = %v", got)
	}
	if got := srRatio(rows, srDelayed, srSampled); got != 14800.0/14500 {
		t.Errorf("slow/prompt = %v, want 14800/14500", got)
	}
	// Old-only's rounds spread over 7000/16000 of its median: wider than
	// 5%, so that is the noise.
	if got := slowTolerance(rows); math.Abs(got-7000.0/16000) > 1e-12 {
		t.Errorf("tolerance %v", got)
	}

	text := formatShadowReadTable(rows, 3, 5)
	t.Logf("\n%s", text)
	for _, re := range []string{
		`(?m)^shadow-read: pgbench -S -M extended -c 8 -j 2 through the proxy, median of 3 interleaved 5 s runs$`,
		`(?m)^  a fresh proxy and report directory per run; shadow defaults: max_concurrent 4, timeout 5s, queue 1024, batch_window 5ms, batch_size 32$`,
		`(?m)^target +tps +×old-only +tps range +CPU µs/txn: proxy +old DB +new DB +compared +% of reads +matched +mismatched +dropped +timeouts$`,
		`(?m)^old-only +16000 +1\.00 +10000–17000 +40 +60 +7 +- +- +- +- +- +-$`,
		`(?m)^shadow-read 10% +14500 +0\.91 +14000–15000 +40 +60 +7 +21750 +10\.0 +21750 +0 +0 +0$`,
		`(?m)^shadow-read 100% +7500 +0\.47 +7000–8000 +40 +60 +7 +112500 +100\.0 +112500 +0 +30 +0$`,
		`(?m)^shadow-read 10%, new \+50 ms +14800 +0\.93 +14400–15000 +40 +60 +7 +22100 +10\.0 +22100 +0 +5400 +3$`,
		`(?m)^shadow-read/old-only tps: 0\.91 at 10% sampling, 0\.47 at 100% \(measured, no goal: the shadow queries run on the same (\d+ CPUs|CPU)\), 0\.93 at 10% with the new database 50 ms late$`,
		`(?m)^10% with the new database 50 ms late vs prompt: ×1\.02 tps \(unchanged down to ×0\.56: 5% or the baselines' spread of rounds\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("table does not match %s", re)
		}
	}
	for _, bad := range []string{"MISMATCH", "not finished", "timed out", "noise"} {
		if strings.Contains(text, bad) {
			t.Errorf("nothing went wrong, yet the table says %q", bad)
		}
	}
}

func TestFormatShadowReadTrouble(t *testing.T) {
	rows := srFixture([]float64{16000}, []float64{15000}, []float64{8000}, []float64{15000})
	// A mismatch in the 100% scenario's event log, settled at shutdown
	// (the live report never saw it), and a time-out with the slow new
	// database, which is a mismatch to compare but no difference.
	runs := srFixtureRuns(srFixtureTargets[2], []float64{8000}, 0, 0)
	runs[0].Drained = false
	runs[0].Final.Report.Noise = 2
	runs[0].Logged = &compare.Report{Mismatched: 3, Classes: []compare.ClassReport{
		{Fingerprint: "0123456789abcdef", Query: "SELECT abalance\n  FROM pgbench_accounts WHERE aid = $1", Mismatched: 3,
			Differences: map[compare.DiffType]int64{compare.DiffFloat: 1, compare.DiffValue: 2}},
		{Fingerprint: "fedcba9876543210", Query: "SELECT 1", Mismatched: 0, Compared: 9},
	}}
	rows[2] = summarizeShadowRead(srFixtureTargets[2], runs)
	runs = srFixtureRuns(srFixtureTargets[3], []float64{15000}, 0, 1)
	runs[0].Logged = &compare.Report{Mismatched: 1, Timeouts: 1, Classes: []compare.ClassReport{
		{Fingerprint: "aaaa", Query: "SELECT 2", Mismatched: 1, Timeouts: 1, Differences: map[compare.DiffType]int64{compare.DiffTimeout: 1}},
	}}
	rows[3] = summarizeShadowRead(srFixtureTargets[3], runs)
	if rows[2].Undrained != 1 || rows[2].Mismatched != 3 || rows[2].dataMismatches() != 3 || len(rows[2].Classes) != 1 {
		t.Errorf("100%% %+v", rows[2])
	}
	if rows[3].Mismatched != 1 || rows[3].TimedOut != 1 || rows[3].dataMismatches() != 0 || len(rows[3].Classes) != 0 {
		t.Errorf("slow %+v", rows[3])
	}
	if got := dataMismatches(rows); got != 3 {
		t.Errorf("data mismatches %d, want 3", got)
	}

	text := formatShadowReadTable(rows, 1, 5)
	t.Logf("\n%s", text)
	for _, re := range []string{
		`(?m)^shadow-read 100% +8000 +0\.50 +8000–8000 +40 +60 +7 +40000 +100\.0 +40000 +3 +0 +0$`,
		`(?m)^shadow-read 100%: after 1 of 1 runs the shadower had not finished within 10s; their counts miss what was left$`,
		`(?m)^note: shadow-read 100%: 2 mismatches were explained away as noise by their re-check, on data that does not change$`,
		`(?m)^shadow-read 10%, new \+50 ms: 1 of the mismatches are shadow queries that timed out \(slowness, not a difference\)$`,
		`(?m)^!!! MISMATCH: 3 shadow reads differed between the old and the new database, which hold the same data\.$`,
		`(?m)^!!!   shadow-read 100%: 3$`,
		`(?m)^!!!   class 0123456789abcdef \(3 mismatched\): SELECT abalance FROM pgbench_accounts WHERE aid = \$1; differences: value 2, float 1$`,
		`(?m)^!!! Run with --keep`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("table does not match %s", re)
		}
	}
	if strings.Contains(text, "aaaa") || strings.Contains(text, "fedcba") {
		t.Error("a class without differences in the answers is listed as mismatching")
	}
	g := shadowReadGoals(rows)
	if g[2].met || g[2].got != "3 mismatched of 55000 compared" {
		t.Errorf("mismatch goal %+v", g[2])
	}
}

func TestShadowReadGoals(t *testing.T) {
	one := func(x float64) []float64 { return []float64{x} }
	tests := []struct {
		name                   string
		rows                   []srRow
		sampled, slow, correct bool
	}{
		{"all met", srFixture(one(16000), one(15000), one(8000), one(15500)), true, true, true},
		{"sampled at exactly 0.9", srFixture(one(10000), one(9000), one(5000), one(9000)), true, true, true},
		{"sampled too slow", srFixture(one(10000), one(8900), one(5000), one(8900)), false, true, true},
		// One round each: no spread, so the tolerance is 5%.
		{"slow within 5%", srFixture(one(10000), one(10000), one(5000), one(9500)), true, true, true},
		{"slow beyond 5%", srFixture(one(10000), one(10000), one(5000), one(9400)), true, false, true},
		// 8% down, but the prompt scenario's own rounds spread over 10%.
		{"slow within the baseline's spread", srFixture([]float64{10000, 10000, 10000}, []float64{9500, 10000, 10500},
			one(5000), []float64{9200, 9200, 9200}), true, true, true},
		// 8% down beyond the baselines' 4% spread; the slow scenario's
		// own wide spread is no excuse.
		{"slow beyond the baseline's spread", srFixture([]float64{10000, 10000, 10000}, []float64{9800, 10000, 10200},
			one(5000), []float64{6000, 9200, 11000}), true, false, true},
		{"faster with the slow new database", srFixture(one(10000), one(9500), one(5000), one(12000)), true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := shadowReadGoals(tt.rows)
			if len(g) != 3 {
				t.Fatalf("%d goals, want 3", len(g))
			}
			for i, want := range []bool{tt.sampled, tt.slow, tt.correct} {
				if g[i].met != want {
					t.Errorf("goal %q met = %v, want %v (got %s)", g[i].what, g[i].met, want, g[i].got)
				}
			}
		})
	}

	rows := srFixture(one(10000), one(9500), one(5000), one(9400))
	g := shadowReadGoals(rows)
	for i, want := range []string{"×0.95", "×0.99 of prompt (≥ ×0.95)", "0 mismatched of 34450 compared"} {
		if g[i].got != want {
			t.Errorf("goal %q got %q, want %q", g[i].what, g[i].got, want)
		}
	}
	// A scenario that did not run cannot meet its goal, nor can shadow
	// reads that compared nothing.
	for _, g := range shadowReadGoals(rows[:1]) {
		if g.met {
			t.Errorf("goal %q met without its scenarios (%s)", g.what, g.got)
		}
	}
}

func TestDiffText(t *testing.T) {
	tests := []struct {
		d    map[compare.DiffType]int64
		want string
	}{
		{map[compare.DiffType]int64{compare.DiffTimeout: 1, compare.DiffRowCount: 2, "zeta": 1, "alpha": 4, compare.DiffValue: 0},
			"row_count 2, timeout 1, alpha 4, zeta 1"},
		{nil, "none recorded"},
		{map[compare.DiffType]int64{compare.DiffValue: 0}, "none recorded"},
	}
	for _, tt := range tests {
		if got := diffText(tt.d); got != tt.want {
			t.Errorf("diffText(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := clip(oneLine(" SELECT\n\t a,  b "), 8); got != "SELECT …" {
		t.Errorf("clip(oneLine) = %q", got)
	}
	if got := clip("héllo", 5); got != "héllo" {
		t.Errorf("clip at the length = %q", got)
	}
}

func TestNeedBinary(t *testing.T) {
	tests := []struct {
		name     string
		sections []string
		explicit bool
		want     []string // substrings of the error; nil for none
	}{
		{"none needed", []string{"pgbench", "idle"}, false, nil},
		{"one, explicit", []string{"shadowread"}, true, []string{"section shadowread needs", "--proxy"}},
		{"defaults", []string{"pgbench", "dualwrite", "shadowread", "idle"}, false,
			[]string{"sections dualwrite, shadowread need", "--sections pgbench,idle"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := needBinary(tt.sections, tt.explicit)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want %q in it", err, w)
				}
			}
			if tt.explicit && strings.Contains(err.Error(), "leave them out") {
				t.Errorf("sections asked for explicitly, yet told to leave them out: %v", err)
			}
		})
	}
	in := []string{"dualwrite", "idle"}
	_ = needBinary(in, false)
	if !slices.Equal(in, []string{"dualwrite", "idle"}) {
		t.Errorf("needBinary changed its argument: %q", in)
	}
}

func TestAdminGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RequestURI() == "/report?format=json" {
			fmt.Fprint(w, "{}")
			return
		}
		http.Error(w, "unknown format", http.StatusBadRequest)
	}))
	defer srv.Close()
	p := &bgProc{name: "p", adminPort: srv.Listener.Addr().(*net.TCPAddr).Port}
	if b, err := p.adminGet(context.Background(), "/report?format=json"); err != nil || string(b) != "{}" {
		t.Errorf("got %q, %v", b, err)
	}
	_, err := p.adminGet(context.Background(), "/report?format=xml")
	if err == nil || !strings.Contains(err.Error(), "400 Bad Request: unknown format") {
		t.Errorf("bad request: err = %v, want the status and the body", err)
	}
}
