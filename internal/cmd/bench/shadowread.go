package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/compare"
	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/internal/delayproxy"
	"github.com/shadowproxy/shadowproxy/shadow"
)

// The shadowread section measures what phase shadow-read costs the proxy's
// clients. The proxy serves every read from the old database; for a sample
// of them it copies the answer off the wire and hands it to the shadower,
// whose workers run the read on the new database and compare, off the
// client's path. The client pays for the copy and the hand-over. On this
// machine it also pays for the shadow queries themselves, which the new
// database runs on the same CPUs as the old one, the proxy and pgbench: so
// the cost grows with the sample rate. What the client must not pay for is
// a slow new database: the shadower's queue is bounded and drops what does
// not fit.

const (
	// The workload: select-only pgbench (one primary-key read per
	// transaction) in extended mode, from eight clients on two threads.
	srClients = 8
	srThreads = 2
	// srDrainWait bounds the wait, after a run against the prompt new
	// database, for the shadower's queue and re-checks to be done, so that
	// the run's figures hold every read it sampled (and no mismatch waits
	// unseen for its re-check). The wait is not made with the new
	// database late: its backlog (a full queue at shimDelay a query)
	// would take many seconds.
	srDrainWait = 10 * time.Second
	// The names of the shadower's metrics the bench reads from /metrics.
	metricDropped         = "shadowproxy_shadow_dropped_total"
	metricTimeouts        = "shadowproxy_shadow_timeouts_total"
	metricQueueLength     = "shadowproxy_shadow_queue_length"
	metricPendingRechecks = "shadowproxy_shadow_pending_rechecks"
)

// The shadowread section's goals.
const (
	// goalSampledRatio: shadowing a tenth of the reads keeps this share of
	// old-only's throughput, shadow queries on the shared CPUs included.
	goalSampledRatio = 0.9
	// goalSlowTol is the least drop in throughput, relative to the prompt
	// new database at the same sample rate, that the slow new database may
	// cause and still count as "unchanged": select-only runs of a few
	// seconds on a shared 2-core machine differ by this much without any
	// cause in the proxy. When the baselines' own rounds spread wider, that
	// spread is the tolerance instead (see slowTolerance).
	goalSlowTol = 0.05
)

// srKind is one scenario of the section.
type srKind int

const (
	srOldOnly srKind = iota // phase old-only: the baseline
	srSampled               // shadow-read, 10% of the reads shadowed
	srFull                  // shadow-read, every read shadowed
	srDelayed               // shadow-read, 10%, the new database shimDelay late
)

// srTarget is a scenario's proxy configuration.
type srTarget struct {
	kind   srKind
	name   string  // in the table
	slug   string  // in file names
	rate   float64 // [shadow] sample_rate
	newURL string  // the proxy's new database; "" in old-only
	// oldDir and newDir are the data directories of the two Postgres
	// servers, whose CPU time each run measures (the new one's idles in
	// old-only).
	oldDir, newDir string
}

// shadows reports whether the scenario's proxy is in phase shadow-read.
func (t srTarget) shadows() bool { return t.newURL != "" }

// waitsForDrain reports whether the shadower is expected to finish its
// backlog soon after a run: only with the prompt new database (see
// srDrainWait).
func (t srTarget) waitsForDrain() bool { return t.shadows() && t.kind != srDelayed }

// shadowStatus is what a shadowing proxy's admin server says about its
// shadow reads: the live report (/report?format=json) and the shadower's
// metrics (/metrics).
type shadowStatus struct {
	Report compare.Report
	// Dropped and Timeouts are the sums over their labels of
	// shadowproxy_shadow_dropped_total (requests not compared: queue
	// full, shutting down) and shadowproxy_shadow_timeouts_total (queries
	// and mirror waits that ran out of time).
	Dropped, Timeouts float64
	// QueueLength and PendingRechecks are the shadower's backlog: requests
	// waiting for a worker and mismatches waiting for their re-check.
	QueueLength, PendingRechecks float64
}

// idle reports whether nothing waits in the shadower.
func (s shadowStatus) idle() bool { return s.QueueLength == 0 && s.PendingRechecks == 0 }

// recorded is how many reads the shadower has finished with, compared or
// not; while it moves, workers are busy.
func (s shadowStatus) recorded() int64 { return s.Report.Compared + s.Report.Ignored }

// shadowStatus reads the shadow figures from the proxy's admin server.
func (p *bgProc) shadowStatus(ctx context.Context) (shadowStatus, error) {
	var st shadowStatus
	body, err := p.adminGet(ctx, "/report?format=json")
	if err != nil {
		return st, fmt.Errorf("%w (is the proxy shadowing reads?)", err)
	}
	if err := json.Unmarshal(body, &st.Report); err != nil {
		return st, fmt.Errorf("%s /report: %w", p.name, err)
	}
	text, err := p.adminGet(ctx, "/metrics")
	if err != nil {
		return st, err
	}
	for _, m := range []struct {
		name string
		v    *float64
	}{
		{metricDropped, &st.Dropped},
		{metricTimeouts, &st.Timeouts},
		{metricQueueLength, &st.QueueLength},
		{metricPendingRechecks, &st.PendingRechecks},
	} {
		v, ok, err := promSum(string(text), m.name)
		if err != nil {
			return st, fmt.Errorf("%s /metrics: %w", p.name, err)
		}
		if !ok {
			return st, fmt.Errorf("%s /metrics has no %s: the proxy has no shadower", p.name, m.name)
		}
		*m.v = v
	}
	return st, nil
}

// promSum sums the samples of the metric name, over all its label sets, in
// Prometheus's text exposition format; ok is false when there is none.
// Only name's own samples count, not those of name_bucket and the like.
func promSum(text, name string) (sum float64, ok bool, err error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		rest, found := strings.CutPrefix(l, name)
		if !found || rest == "" || (rest[0] != '{' && rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		if rest[0] == '{' {
			end := labelsEnd(rest)
			if end < 0 {
				return 0, false, fmt.Errorf("line %d: unterminated labels: %q", line, l)
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest) // the value, then perhaps a timestamp
		if len(f) == 0 {
			return 0, false, fmt.Errorf("line %d: no value: %q", line, l)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("line %d: value %q: %w", line, f[0], err)
		}
		sum += v
		ok = true
	}
	if err := sc.Err(); err != nil {
		return 0, false, err
	}
	return sum, ok, nil
}

// labelsEnd returns the index of the "}" that closes the label set s
// starts with, -1 for none. Label values are quoted and may hold "}" and
// escaped quotes.
func labelsEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++ // the escaped character
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i
		}
	}
	return -1
}

// srRun is one pgbench run through one scenario's proxy.
type srRun struct {
	pgbenchResult
	// ProxyCPU is the CPU time the proxy used during the run, the copies
	// of sampled answers and the shadow workers included.
	ProxyCPU time.Duration
	// OldCPU and NewCPU are the CPU time the old and the new Postgres
	// servers used during the run: where the shadow reads' cost lands
	// besides the proxy.
	OldCPU, NewCPU time.Duration
	// End is the shadow status at the end of the run, Final after the wait
	// for the backlog to drain (the same when not waited for); Drained
	// says whether it did. Zero in old-only.
	End, Final shadowStatus
	Drained    bool
	// Logged is the event log the proxy left in its report directory,
	// read after it stopped: every mismatch, those settled at shutdown
	// included. Nil in old-only.
	Logged *compare.Report
}

// mismatches is the run's mismatch count and how many of those are
// time-outs (which compare counts as mismatches) rather than answers that
// differ. The larger of the live report's and the event log's counts is
// taken: the log also has the mismatches settled at shutdown, the live
// report those whose event could not be written.
func (r srRun) mismatches() (all, timeouts int64) {
	all, timeouts = r.Final.Report.Mismatched, r.Final.Report.Timeouts
	if r.Logged != nil {
		all, timeouts = max(all, r.Logged.Mismatched), max(timeouts, r.Logged.Timeouts)
	}
	return all, timeouts
}

// shadowreadSection compares select-only throughput through the proxy in
// old-only and in shadow-read at two sample rates and with a slow new
// database, and reports the shadower's figures for each.
func shadowreadSection(ctx context.Context, e *env) (rep *report, err error) {
	if e.opts.proxyBin == "" {
		return nil, errors.New("needs the shadowproxy binary (--proxy): shadow reads are wired up in cmd/shadowproxy")
	}
	nw, err := e.startNewPostgres(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := nw.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	// Any difference between the databases' answers must be the proxy's
	// doing, so they must hold the same rows. The old database's were
	// changed by the dualwrite section's TPC-B-like runs (which the new
	// database of that section, stopped or late in some of them, did not
	// all receive): both are loaded afresh, at once.
	e.logf("new Postgres on port %d; loading pgbench data set, scale %d, into both databases", nw.Port, e.opts.scale)
	if err := e.loadBoth(ctx, e.pg.Port, nw.Port); err != nil {
		return nil, err
	}
	// Both then start with the whole data set in shared buffers: the old
	// database would otherwise warm up faster than the new one, which gets
	// only the sampled reads, and a shadow read would cost the new database
	// more than the same read costs the old one.
	for _, port := range []int{e.pg.Port, nw.Port} {
		if err := prewarm(ctx, port); err != nil {
			return nil, err
		}
	}

	shim, err := delayproxy.New("127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", nw.Port), shimDelay)
	if err != nil {
		return nil, err
	}
	defer shim.Close()

	targets := []srTarget{
		{kind: srOldOnly, name: "old-only", slug: "old-only"},
		{kind: srSampled, name: "shadow-read 10%", slug: "sr10", rate: 0.1, newURL: pgURL(nw.Port)},
		{kind: srFull, name: "shadow-read 100%", slug: "sr100", rate: 1, newURL: pgURL(nw.Port)},
		{kind: srDelayed, name: fmt.Sprintf("shadow-read 10%%, new +%d ms", shimDelay.Milliseconds()), slug: "sr10-delayed",
			rate: 0.1, newURL: pgURL(shim.Addr().Port)},
	}
	for i := range targets {
		targets[i].oldDir, targets[i].newDir = e.pg.Dir, nw.Dir
	}
	runs, err := e.interleaveShadowRead(ctx, targets)
	if err != nil {
		return nil, err
	}
	rows := make([]srRow, len(targets))
	for i, t := range targets {
		rows[i] = summarizeShadowRead(t, runs[t.kind])
	}
	rep = &report{
		text:  formatShadowReadTable(rows, e.opts.srRounds, seconds(e.opts.srDuration)),
		goals: shadowReadGoals(rows),
	}
	if n := dataMismatches(rows); n > 0 {
		rep.failures = append(rep.failures, fmt.Errorf("shadow reads found %d mismatches between two databases holding the same data", n))
	}
	return rep, nil
}

// loadBoth loads the pgbench data set into the Postgres servers on both
// ports, in parallel.
func (e *env) loadBoth(ctx context.Context, portA, portB int) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, port := range []int{portA, portB} {
		wg.Go(func() {
			if err := e.loadPGBench(ctx, port); err != nil {
				errs[i] = fmt.Errorf("loading the Postgres on port %d: %w", port, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prewarm reads the pgbench tables and indexes of the Postgres on port
// into its shared buffers (pg_prewarm, from the server's contrib modules).
func prewarm(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := pgconn.Connect(ctx, pgURL(port))
	if err != nil {
		return fmt.Errorf("prewarm: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_prewarm;
		SELECT pg_prewarm(c.oid::regclass) FROM pg_class c
		WHERE c.relname LIKE 'pgbench\_%' AND c.relkind IN ('r', 'i') AND c.relnamespace = 'public'::regnamespace`).ReadAll()
	if err != nil {
		return fmt.Errorf("prewarm the Postgres on port %d: %w", port, err)
	}
	return nil
}

// interleaveShadowRead runs every target e.opts.srRounds times, rotating
// their order each round, after an unrecorded warm-up run that shadows
// every read, which brings both databases' caches up.
func (e *env) interleaveShadowRead(ctx context.Context, targets []srTarget) (map[srKind][]srRun, error) {
	runs := map[srKind][]srRun{}
	warm := min(2*time.Second, e.opts.srDuration)
	for _, t := range targets {
		if t.kind != srFull {
			continue
		}
		r, err := e.shadowReadRun(ctx, t, "warm-up", warm)
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		e.logf("warm-up %s %.0f tps", t.name, r.TPS)
	}
	for round := range e.opts.srRounds {
		for _, i := range roundOrder(len(targets), round) {
			t := targets[i]
			r, err := e.shadowReadRun(ctx, t, fmt.Sprintf("r%d", round+1), e.opts.srDuration)
			if err != nil {
				return nil, err
			}
			runs[t.kind] = append(runs[t.kind], r)
			e.logf("shadowread round %d/%d: %s", round+1, e.opts.srRounds, describeShadowRun(t, r))
		}
	}
	return runs, nil
}

// describeShadowRun is a run's progress line.
func describeShadowRun(t srTarget, r srRun) string {
	s := fmt.Sprintf("%-28s %7.0f tps  avg %6.3f ms  CPU µs/txn: proxy %3.0f old %3.0f new %3.0f",
		t.name, r.TPS, r.LatencyMS, microsPerTxn(r.ProxyCPU, r.Txns), microsPerTxn(r.OldCPU, r.Txns), microsPerTxn(r.NewCPU, r.Txns))
	if !t.shadows() {
		return s
	}
	f := r.Final
	s += fmt.Sprintf("  shadow: compared %d matched %d mismatched %d noise %d ignored %d dropped %.0f timeouts %.0f",
		f.Report.Compared, f.Report.Matched, f.Report.Mismatched, f.Report.Noise, f.Report.Ignored, f.Dropped, f.Timeouts)
	switch {
	case r.Drained:
	case t.waitsForDrain():
		s += fmt.Sprintf("; backlog not done after %v (queue %.0f, re-checks %.0f)", srDrainWait, f.QueueLength, f.PendingRechecks)
	default:
		s += fmt.Sprintf("; queue at end %.0f", r.End.QueueLength)
	}
	if all, to := r.mismatches(); all > to {
		s += fmt.Sprintf("; %d MISMATCHED", all-to)
	}
	return s
}

// cpuPerTxnMicros is CPU time per transaction, in µs.
func microsPerTxn(cpu time.Duration, txns int64) float64 {
	if txns == 0 {
		return math.NaN()
	}
	return float64(cpu.Microseconds()) / float64(txns)
}

// shadowReadArgs are the `shadowproxy serve` flags of a shadow-read proxy;
// the configuration file has the rest ([shadow] sample_rate among it).
func shadowReadArgs(newURL, reportDir string) []string {
	return []string{"--new", newURL, "--phase", config.ShadowRead.String(), "--report-dir", reportDir}
}

// selectArgs is the command line of the section's select-only run through
// the proxy on port.
func selectArgs(port int, d time.Duration) []string {
	return []string{
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres",
		"-n", "-S", "-M", "extended",
		"-c", strconv.Itoa(srClients), "-j", strconv.Itoa(srThreads),
		"-T", strconv.Itoa(seconds(d)),
		"postgres",
	}
}

// shadowReadRun starts a proxy for t (a fresh one, with a fresh report
// directory, so that each run's counts are its own and no run inherits
// another's backlog), runs pgbench through it for d, reads the shadow
// figures and stops it.
func (e *env) shadowReadRun(ctx context.Context, t srTarget, tag string, d time.Duration) (run srRun, err error) {
	name := "sr-" + tag + "-" + t.slug
	spec := proxySpec{Name: name}
	reportDir := filepath.Join(e.dir, "report-"+name)
	if t.shadows() {
		spec.Admin = true
		rate := t.rate
		spec.Configure = func(c *config.Config) { c.Shadow.SampleRate = rate }
		spec.Args = shadowReadArgs(t.newURL, reportDir)
	}
	p, err := e.startProxy(ctx, spec)
	if err != nil {
		return run, err
	}
	proxyUp := true
	defer func() {
		if proxyUp {
			_ = stopProxy(p)
		}
	}()

	cpu0, err := runCPU(p, t.oldDir, t.newDir)
	if err != nil {
		return run, err
	}
	out, err := e.pgbench(ctx, selectArgs(p.port, d)...)
	if err != nil {
		return run, fmt.Errorf("%s: %w", t.name, err)
	}
	cpu1, err := runCPU(p, t.oldDir, t.newDir)
	if err != nil {
		return run, err
	}
	run.ProxyCPU, run.OldCPU, run.NewCPU = cpu1.proxy-cpu0.proxy, cpu1.old-cpu0.old, cpu1.new-cpu0.new
	if run.pgbenchResult, err = parsePGBench(out); err != nil {
		return run, fmt.Errorf("%s: %w\n%s", t.name, err, tailLines(out, 20))
	}

	if t.shadows() {
		if run.End, err = p.shadowStatus(ctx); err != nil {
			return run, err
		}
		run.Final = run.End
		if t.waitsForDrain() {
			if run.Final, run.Drained, err = waitShadowDrained(ctx, p, run.End, srDrainWait); err != nil {
				return run, err
			}
		}
		if err := checkShadowed(run.Final); err != nil {
			return run, fmt.Errorf("%s: %w\n--- %s ---\n%s", t.name, err, p.logPath, p.logTail())
		}
	}
	// Stopped here rather than deferred: a proxy that died during the run
	// is an error.
	proxyUp = false
	if err := stopProxy(p); err != nil {
		return run, err
	}
	if t.shadows() {
		if run.Logged, err = compare.LoadDir(reportDir); err != nil {
			return run, fmt.Errorf("%s: reading the shadow event log: %w", t.name, err)
		}
	}
	return run, nil
}

// checkShadowed rejects a run in which the proxy compared no read: it did
// not shadow, and its figures would measure old-only.
func checkShadowed(st shadowStatus) error {
	if st.Report.Compared == 0 {
		return fmt.Errorf("the proxy compared no reads (ignored %d, dropped %.0f): it did not shadow", st.Report.Ignored, st.Dropped)
	}
	return nil
}

// waitShadowDrained polls the admin server until the shadower is done with
// the run's reads, for at most wait: nothing queued, no re-check pending,
// and no read finished since the previous poll (a worker still busy with
// one would finish it within the poll interval: a prompt new database
// answers in well under a millisecond). It returns the last status and
// whether the shadower was done.
func waitShadowDrained(ctx context.Context, p *bgProc, st shadowStatus, wait time.Duration) (shadowStatus, bool, error) {
	deadline := time.Now().Add(wait)
	for {
		prev := st
		select {
		case <-ctx.Done():
			return st, false, ctx.Err()
		case <-time.After(statusPoll):
		}
		var err error
		if st, err = p.shadowStatus(ctx); err != nil {
			return st, false, err
		}
		if prev.idle() && st.idle() && st.recorded() == prev.recorded() {
			return st, true, nil
		}
		if time.Now().After(deadline) {
			return st, false, nil
		}
	}
}

// srRow is one scenario's figures over the rounds: throughput as medians,
// the shadower's counts summed.
type srRow struct {
	target              srTarget
	Rounds              int
	TPS, TPSMin, TPSMax float64
	// ProxyCPUMicros, OldCPUMicros and NewCPUMicros are the proxy's and
	// the two servers' CPU time per transaction, medians over the rounds.
	ProxyCPUMicros, OldCPUMicros, NewCPUMicros float64
	Reads                                      int64 // pgbench transactions: one read each
	// From each run's report (compared, matched, noise) and the larger of
	// report and event log (mismatched; TimedOut are the mismatches that
	// are time-outs), and from /metrics (dropped, timeouts).
	Compared, Matched, Mismatched, TimedOut, Noise int64
	Dropped, Timeouts                              float64
	// Undrained counts the runs after which the shadower had not finished
	// within srDrainWait, with a prompt new database.
	Undrained int
	// Classes are the query classes with mismatches (at most
	// maxMismatchClasses), from the runs' event logs.
	Classes []compare.ClassReport
}

// maxMismatchClasses bounds the mismatching query classes the table shows.
const maxMismatchClasses = 5

// summarizeShadowRead takes a scenario's runs into its row.
func summarizeShadowRead(t srTarget, runs []srRun) srRow {
	r := srRow{target: t, Rounds: len(runs)}
	var tps, cpu, oldCPU, newCPU []float64
	seen := map[string]bool{}
	for _, x := range runs {
		tps = append(tps, x.TPS)
		cpu = append(cpu, microsPerTxn(x.ProxyCPU, x.Txns))
		oldCPU = append(oldCPU, microsPerTxn(x.OldCPU, x.Txns))
		newCPU = append(newCPU, microsPerTxn(x.NewCPU, x.Txns))
		r.Reads += x.Txns
		if !t.shadows() {
			continue
		}
		f := x.Final
		r.Compared += f.Report.Compared
		r.Matched += f.Report.Matched
		r.Noise += f.Report.Noise
		all, to := x.mismatches()
		r.Mismatched += all
		r.TimedOut += to
		r.Dropped += f.Dropped
		r.Timeouts += f.Timeouts
		if t.waitsForDrain() && !x.Drained {
			r.Undrained++
		}
		for _, rep := range []*compare.Report{x.Logged, &x.Final.Report} {
			if rep == nil {
				continue
			}
			for _, c := range rep.Classes {
				if c.Mismatched > c.Timeouts && !seen[c.Fingerprint] && len(r.Classes) < maxMismatchClasses {
					seen[c.Fingerprint] = true
					r.Classes = append(r.Classes, c)
				}
			}
		}
	}
	r.TPS, r.ProxyCPUMicros = median(tps), median(cpu)
	r.OldCPUMicros, r.NewCPUMicros = median(oldCPU), median(newCPU)
	r.TPSMin, r.TPSMax = math.NaN(), math.NaN()
	if len(tps) > 0 {
		r.TPSMin, r.TPSMax = slices.Min(tps), slices.Max(tps)
	}
	return r
}

// dataMismatches are the mismatches that are differences in the answers,
// not time-outs.
func (r srRow) dataMismatches() int64 { return max(0, r.Mismatched-r.TimedOut) }

// spread is how far apart the scenario's rounds were, relative to their
// median: (max − min) / median; NaN without rounds.
func (r srRow) spread() float64 { return ratio(r.TPSMax-r.TPSMin, r.TPS) }

// dataMismatches sums the scenarios' mismatches in the answers.
func dataMismatches(rows []srRow) int64 {
	var n int64
	for _, r := range rows {
		n += r.dataMismatches()
	}
	return n
}

// findSRRow returns the row of a scenario, nil when it was not run.
func findSRRow(rows []srRow, k srKind) *srRow {
	for i := range rows {
		if rows[i].target.kind == k {
			return &rows[i]
		}
	}
	return nil
}

// srRatio is scenario k's throughput relative to scenario base's.
func srRatio(rows []srRow, k, base srKind) float64 {
	b, r := findSRRow(rows, base), findSRRow(rows, k)
	if b == nil || r == nil {
		return math.NaN()
	}
	return ratio(r.TPS, b.TPS)
}

// slowTolerance is how much lower the slow new database's throughput may
// be than the prompt one's, at the same sample rate, and count as
// unchanged: goalSlowTol, or the spread of the rounds of old-only or of
// the prompt scenario when wider (the noise of this machine, in the
// baselines; not the slow scenario's own, which a slow new database could
// widen).
func slowTolerance(rows []srRow) float64 {
	tol := goalSlowTol
	for _, k := range []srKind{srOldOnly, srSampled} {
		if r := findSRRow(rows, k); r != nil && !math.IsNaN(r.spread()) {
			tol = max(tol, r.spread())
		}
	}
	return tol
}

// formatShadowReadTable renders the section's table and its summary lines.
func formatShadowReadTable(rows []srRow, rounds, secs int) string {
	var b strings.Builder
	def := config.DefaultConfig().Shadow
	fmt.Fprintf(&b, "shadow-read: pgbench -S -M extended -c %d -j %d through the proxy, median of %d interleaved %d s runs\n",
		srClients, srThreads, rounds, secs)
	fmt.Fprintf(&b, "  a fresh proxy and report directory per run; shadow defaults: max_concurrent %d, timeout %v, queue %d, batch_window %v, batch_size %d\n",
		def.MaxConcurrent, def.Timeout, shadow.DefaultQueueLen, def.BatchWindow, def.BatchSize)
	b.WriteString("  the new database: a second Postgres loaded with the same pgbench -i data, on the same CPUs as the clients, proxy and old database;\n")
	b.WriteString("  both databases' pgbench tables are read into shared buffers (pg_prewarm) before the runs\n")
	fmt.Fprintf(&b, "  new +%d ms: the new Postgres behind internal/delayproxy, which holds each of its answers that long\n",
		shimDelay.Milliseconds())
	b.WriteString("  proxy CPU: the proxy process's user+system time during the run, its shadow workers included, per transaction\n")
	b.WriteString("  old/new DB CPU: the same for each Postgres server (postmaster, backends and background processes)\n")
	fmt.Fprintf(&b, "  compared/matched/mismatched: /report?format=json, summed over the runs, once the shadower was done (up to %v after a run;\n", srDrainWait)
	b.WriteString("  not waited for with the new database late); % of reads: compared / transactions (one read each)\n")
	b.WriteString("  dropped/timeouts: shadowproxy_shadow_dropped_total / _timeouts_total from /metrics, summed over the runs\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\ttps\t×old-only\ttps range\tCPU µs/txn: proxy\told DB\tnew DB\tcompared\t% of reads\tmatched\tmismatched\tdropped\ttimeouts")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s–%s\t%s\t%s\t%s\t", r.target.name,
			num(r.TPS, 0), num(srRatio(rows, r.target.kind, srOldOnly), 2), num(r.TPSMin, 0), num(r.TPSMax, 0),
			num(r.ProxyCPUMicros, 0), num(r.OldCPUMicros, 0), num(r.NewCPUMicros, 0))
		if !r.target.shadows() {
			fmt.Fprintln(tw, "-\t-\t-\t-\t-\t-")
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%.0f\t%.0f\n", r.Compared, num(100*ratio(float64(r.Compared), float64(r.Reads)), 1),
			r.Matched, r.Mismatched, r.Dropped, r.Timeouts)
	}
	tw.Flush()
	fmt.Fprintf(&b, "shadow-read/old-only tps: %s at 10%% sampling, %s at 100%% (measured, no goal: the shadow queries run on the same %s), %s at 10%% with the new database %d ms late\n",
		num(srRatio(rows, srSampled, srOldOnly), 2), num(srRatio(rows, srFull, srOldOnly), 2), cpusText(),
		num(srRatio(rows, srDelayed, srOldOnly), 2), shimDelay.Milliseconds())
	fmt.Fprintf(&b, "10%% with the new database %d ms late vs prompt: ×%s tps (unchanged down to ×%s: %.0f%% or the baselines' spread of rounds)\n",
		shimDelay.Milliseconds(), num(srRatio(rows, srDelayed, srSampled), 2), num(1-slowTolerance(rows), 2), goalSlowTol*100)
	for _, r := range rows {
		if r.Undrained > 0 {
			fmt.Fprintf(&b, "%s: after %d of %d runs the shadower had not finished within %v; their counts miss what was left\n",
				r.target.name, r.Undrained, r.Rounds, srDrainWait)
		}
		if r.TimedOut > 0 {
			fmt.Fprintf(&b, "%s: %d of the mismatches are shadow queries that timed out (slowness, not a difference)\n", r.target.name, r.TimedOut)
		}
		if r.Noise > 0 {
			fmt.Fprintf(&b, "note: %s: %d mismatches were explained away as noise by their re-check, on data that does not change\n", r.target.name, r.Noise)
		}
	}
	if n := dataMismatches(rows); n > 0 {
		b.WriteString(mismatchText(rows, n))
	}
	return b.String()
}

// cpusText is "2 CPUs" for this machine.
func cpusText() string {
	if n := runtime.NumCPU(); n != 1 {
		return fmt.Sprintf("%d CPUs", n)
	}
	return "CPU"
}

// mismatchText states loudly that the shadow reads found differences where
// there can be none, and where.
func mismatchText(rows []srRow, n int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "!!! MISMATCH: %d shadow reads differed between the old and the new database, which hold the same data.\n", n)
	b.WriteString("!!! That is an error in shadow reads or in the comparison, not a performance figure; the bench fails.\n")
	for _, r := range rows {
		if d := r.dataMismatches(); d > 0 {
			fmt.Fprintf(&b, "!!!   %s: %d\n", r.target.name, d)
		}
		for _, c := range r.Classes {
			fmt.Fprintf(&b, "!!!   class %s (%d mismatched): %s; differences: %s\n",
				c.Fingerprint, c.Mismatched-c.Timeouts, clip(oneLine(c.Query), 120), diffText(c.Differences))
		}
	}
	b.WriteString("!!! Run with --keep to keep the proxies' logs and report directories (shadowproxy report DIR renders one).\n")
	return b.String()
}

// diffText renders difference counts as "type n, type n", in compare's
// report order (any type it does not list last, by name).
func diffText(d map[compare.DiffType]int64) string {
	var parts []string
	add := func(t compare.DiffType) {
		if n := d[t]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, n))
		}
	}
	for _, t := range compare.DiffTypes {
		add(t)
	}
	var others []compare.DiffType
	for t := range d {
		if !slices.Contains(compare.DiffTypes, t) {
			others = append(others, t)
		}
	}
	slices.Sort(others)
	for _, t := range others {
		add(t)
	}
	if len(parts) == 0 {
		return "none recorded"
	}
	return strings.Join(parts, ", ")
}

// oneLine folds runs of white space, newlines included, into one space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// clip shortens s to at most n runes, marking the cut with "…".
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// shadowReadGoals judges the section's figures.
func shadowReadGoals(rows []srRow) []goal {
	sampled := srRatio(rows, srSampled, srOldOnly)
	slow := srRatio(rows, srDelayed, srSampled)
	tol := slowTolerance(rows)
	var compared int64
	for _, r := range rows {
		compared += r.Compared
	}
	mism := dataMismatches(rows)
	return []goal{
		{
			what: fmt.Sprintf("shadow-read tps ≥ %.1f× old-only at 10%% sampling", goalSampledRatio),
			got:  "×" + num(sampled, 2),
			met:  sampled >= goalSampledRatio,
		},
		{
			what: fmt.Sprintf("shadow-read 10%% tps unchanged with the new database %d ms late (within noise)", shimDelay.Milliseconds()),
			got:  fmt.Sprintf("×%s of prompt (≥ ×%s)", num(slow, 2), num(1-tol, 2)),
			met:  slow >= 1-tol,
		},
		{
			what: "no shadow-read mismatch between identical databases",
			got:  fmt.Sprintf("%d mismatched of %d compared", mism, compared),
			met:  mism == 0 && compared > 0,
		},
	}
}
