package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/internal/delayproxy"
	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// The dualwrite section measures what phase dual-write costs the proxy's
// clients: every write runs on the old database, its row images are
// journaled before COMMIT is forwarded, and a background applier copies
// them to the new database. The client should pay for the journal and the
// proxy's own transaction around autocommit writes, and for nothing the new
// database does: neither its being down nor its being slow.

const (
	// The workload: pgbench's TPC-B-like script (five statements, four of
	// them writes, in a transaction) from four clients on two threads.
	dwClients = 4
	dwThreads = 2
	// shimDelay is how late the slow new database answers.
	shimDelay = 50 * time.Millisecond
	// catchUpWait bounds the wait, after a run against the prompt new
	// database, for the mirror to have applied everything; the time it took
	// is reported. A mirror that fell behind is reported, not an error.
	// The mirror is not waited for with the new database down (it cannot
	// catch up) or slow (a group of transactions per round trip, so a run's
	// backlog may still take longer than this at shimDelay).
	catchUpWait = 15 * time.Second
	// statusPoll is how often /status is read while waiting.
	statusPoll = 50 * time.Millisecond
)

// The dualwrite section's goals.
const (
	// goalStoppedRatio: dual-write with the new database down keeps this
	// share of old-only's throughput. What remains is the journal and the
	// extra round trip; the new database's absence must cost nothing more.
	goalStoppedRatio = 0.9
	// A p99 increase with the slow new database (its median over the
	// rounds against the baseline's median) is "measurable" when it
	// exceeds all of: goalP99Rel of the baseline, goalP99AbsMS, and the
	// baseline's own spread (its slowest round's p99 above its median).
	// The p99 of a few seconds of transactions on a shared 2-core machine
	// moves by that much from run to run without any cause in the proxy,
	// while a client that waited for the new database in even 1% of its
	// transactions would add shimDelay (50 ms) to the p99, more than any
	// of these.
	goalP99Rel   = 0.10
	goalP99AbsMS = 1.0
)

// dwKind is one scenario of the section.
type dwKind int

const (
	dwOldOnly dwKind = iota // phase old-only: the baseline
	dwLive                  // dual-write, the new database answering at once
	dwStopped               // dual-write, the new database down: all spooled
	dwDelayed               // dual-write, the new database shimDelay late
)

// dwTarget is a scenario's proxy configuration.
type dwTarget struct {
	kind   dwKind
	name   string // in the table
	slug   string // in file names
	newURL string // the proxy's new database; "" in old-only
	// oldDir and newDir are the data directories of the old and the new
	// Postgres, whose CPU time is measured.
	oldDir, newDir string
}

// waitsForMirror reports whether the mirror is expected to catch up soon
// after a run: only with the prompt new database (see catchUpWait).
func (t dwTarget) waitsForMirror() bool { return t.kind == dwLive }

// dwRun is one pgbench run through one scenario's proxy.
type dwRun struct {
	pgbenchResult
	P99MS float64
	// ProxyCPU is the CPU time the proxy used during the run, its
	// background mirror work included; OldCPU and NewCPU are the old and
	// the new Postgres servers'.
	ProxyCPU, OldCPU, NewCPU time.Duration
	// Mirror is /status at the end of the run, Final after the wait for
	// the mirror to catch up (the same when not waited for). Zero in
	// old-only.
	Mirror, Final mirrorStatus
	// CatchUp is how long after the run the mirror had applied everything;
	// valid when CaughtUp.
	CatchUp  time.Duration
	CaughtUp bool
}

// dualwriteSection compares pgbench TPC-B-like throughput and p99 latency
// through the proxy in old-only and in dual-write with the new database up,
// down and slow.
func dualwriteSection(ctx context.Context, e *env) (rep *report, err error) {
	if e.opts.proxyBin == "" {
		return nil, errors.New("needs the shadowproxy binary (--proxy): dual-write is wired up in cmd/shadowproxy")
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
	// The old database holds the data set already (run loads it; the
	// sections before this one only read). pgbench -i's data is
	// deterministic, so the new database starts out identical.
	e.logf("new Postgres on port %d; loading pgbench data set, scale %d", nw.Port, e.opts.scale)
	if err := e.loadPGBench(ctx, nw.Port); err != nil {
		return nil, err
	}

	// "Stopped" is a port nothing listens on, held by the bench so that no
	// other server can appear there; see reservePort.
	deadPort, release, err := reservePort()
	if err != nil {
		return nil, err
	}
	defer release()
	shim, err := delayproxy.New("127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", nw.Port), shimDelay)
	if err != nil {
		return nil, err
	}
	defer shim.Close()

	targets := []dwTarget{
		{kind: dwOldOnly, name: "old-only", slug: "old-only"},
		{kind: dwLive, name: "dual-write", slug: "dw", newURL: pgURL(nw.Port)},
		{kind: dwStopped, name: "dual-write, new stopped", slug: "dw-stopped", newURL: pgURL(deadPort)},
		{kind: dwDelayed, name: fmt.Sprintf("dual-write, new +%d ms", shimDelay.Milliseconds()), slug: "dw-delayed", newURL: pgURL(shim.Addr().Port)},
	}
	for i := range targets {
		targets[i].oldDir, targets[i].newDir = e.pg.Dir, nw.Dir
	}
	runs, err := e.interleaveDualWrite(ctx, targets, nw.SuperURL())
	if err != nil {
		return nil, err
	}
	rows := make([]dwRow, len(targets))
	for i, t := range targets {
		rows[i] = summarizeDualWrite(t, runs[t.kind])
	}
	cc, err := e.measureCaptureCost(ctx, e.opts.dwRounds, e.opts.dwDuration)
	if err != nil {
		return nil, fmt.Errorf("the capture's cost to the old database: %w", err)
	}
	return &report{
		text:  formatDualWriteTable(rows, e.opts.dwRounds, seconds(e.opts.dwDuration)) + cc.format(seconds(e.opts.dwDuration)),
		goals: dualWriteGoals(rows),
	}, nil
}

// startNewPostgres starts the throwaway Postgres that plays the new
// database, set up like the old one (run) for the timed runs. The caller
// closes it.
func (e *env) startNewPostgres(ctx context.Context) (*testdb.Postgres, error) {
	e.logf("starting the new Postgres")
	return testdb.NewPostgres(ctx,
		testdb.WithSetting("shared_buffers", fmt.Sprintf("%dMB", max(128, 32*e.opts.scale))))
}

// loadPGBench (re)creates the pgbench tables in the Postgres on port with
// `pgbench -i` at the bench's scale. Its data is deterministic (balances
// 0, blank fillers), so two databases loaded this way hold the same rows.
func (e *env) loadPGBench(ctx context.Context, port int) error {
	_, err := e.pgbench(ctx, "-i", "-q", "-s", strconv.Itoa(e.opts.scale),
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "postgres")
	return err
}

// pgURL is the superuser's URL on database postgres at a loopback port.
func pgURL(port int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// interleaveDualWrite runs every target e.opts.dwRounds times, rotating
// their order each round, after an unrecorded warm-up run in dual-write
// that brings both databases' caches up.
func (e *env) interleaveDualWrite(ctx context.Context, targets []dwTarget, newDB string) (map[dwKind][]dwRun, error) {
	runs := map[dwKind][]dwRun{}
	warm := min(2*time.Second, e.opts.dwDuration)
	for _, t := range targets {
		if t.kind != dwLive {
			continue
		}
		r, err := e.dualWriteRun(ctx, t, "warm-up", warm, newDB)
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		e.logf("warm-up %s %.0f tps", t.name, r.TPS)
	}
	for round := range e.opts.dwRounds {
		for _, i := range roundOrder(len(targets), round) {
			t := targets[i]
			r, err := e.dualWriteRun(ctx, t, fmt.Sprintf("r%d", round+1), e.opts.dwDuration, newDB)
			if err != nil {
				return nil, err
			}
			runs[t.kind] = append(runs[t.kind], r)
			e.logf("dualwrite round %d/%d: %s", round+1, e.opts.dwRounds, describeRun(t, r))
		}
	}
	return runs, nil
}

// describeRun is a run's progress line.
func describeRun(t dwTarget, r dwRun) string {
	s := fmt.Sprintf("%-26s %6.0f tps  avg %6.2f ms  p99 %6.2f ms  CPU µs/txn: proxy %3.0f old %3.0f new %3.0f",
		t.name, r.TPS, r.LatencyMS, r.P99MS, r.cpuPerTxnMicros(), microsPerTxn(r.OldCPU, r.Txns), microsPerTxn(r.NewCPU, r.Txns))
	if t.newURL == "" {
		return s
	}
	m := r.Mirror
	s += fmt.Sprintf("  mirror at end: last_seq %d applied %d queued %d spooled %d pending %d failed %d",
		m.LastSeq, m.Applied, m.Queued, m.Spooled, m.Pending, m.Failed)
	switch {
	case r.CaughtUp:
		s += fmt.Sprintf("; caught up after %.2f s", r.CatchUp.Seconds())
	case t.waitsForMirror():
		s += fmt.Sprintf("; %d behind after %v", r.Final.LastSeq-r.Final.AppliedSeq, catchUpWait)
	}
	if n := r.Final.lost(); n > 0 {
		s += fmt.Sprintf("; %d LOST (dead-lettered or dropped)", n)
	}
	return s
}

// cpuPerTxnMicros is the proxy's CPU time per transaction, in µs.
func (r dwRun) cpuPerTxnMicros() float64 {
	return microsPerTxn(r.ProxyCPU, r.Txns)
}

// resetStatements bring a database back to where a pgbench run starts
// from: what pgbench does itself without -n, run directly on each database
// rather than through the proxy, so that every run's tables are alike and
// no maintenance travels the measured path.
var resetStatements = []string{
	"VACUUM pgbench_branches",
	"VACUUM pgbench_tellers",
	"TRUNCATE pgbench_history",
}

// dualWriteRun starts a proxy for t (a fresh one, with a fresh report
// directory, so that no run inherits another's backlog), runs pgbench
// through it for d, reads the mirror's state and stops it.
func (e *env) dualWriteRun(ctx context.Context, t dwTarget, tag string, d time.Duration, newDB string) (run dwRun, err error) {
	for _, url := range []string{e.pg.SuperURL(), newDB} {
		if err := execEach(ctx, url, resetStatements...); err != nil {
			return run, fmt.Errorf("resetting the pgbench tables: %w", err)
		}
	}
	name := "dw-" + tag + "-" + t.slug
	spec := proxySpec{Name: name}
	if t.newURL != "" {
		reportDir := filepath.Join(e.dir, "report-"+name)
		spec.Admin = true
		spec.Configure = func(c *config.Config) {
			c.Phase = config.DualWrite
			c.New = t.newURL
			c.ReportDir = reportDir
		}
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

	logDir := filepath.Join(e.dir, "txnlog-"+name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return run, err
	}
	prefix := filepath.Join(logDir, "txn")
	cpu0, err := runCPU(p, t.oldDir, t.newDir)
	if err != nil {
		return run, err
	}
	out, err := e.pgbench(ctx, tpcbArgs(p.port, d, prefix)...)
	if err != nil {
		return run, fmt.Errorf("%s: %w", t.name, err)
	}
	ended := time.Now()
	cpu1, err := runCPU(p, t.oldDir, t.newDir)
	if err != nil {
		return run, err
	}
	run.ProxyCPU, run.OldCPU, run.NewCPU = cpu1.proxy-cpu0.proxy, cpu1.old-cpu0.old, cpu1.new-cpu0.new
	if run.pgbenchResult, err = parsePGBench(out); err != nil {
		return run, fmt.Errorf("%s: %w\n%s", t.name, err, tailLines(out, 20))
	}

	if t.newURL != "" {
		if run.Mirror, err = p.mirrorStatus(ctx); err != nil {
			return run, err
		}
		if err := checkMirrored(t, run.Mirror); err != nil {
			return run, fmt.Errorf("%s: %w\n--- %s ---\n%s", t.name, err, p.logPath, p.logTail())
		}
		run.Final = run.Mirror
		if t.waitsForMirror() {
			run.Final, run.CaughtUp, err = waitCaughtUp(ctx, p, run.Mirror, catchUpWait)
			if err != nil {
				return run, err
			}
			if run.CaughtUp {
				run.CatchUp = time.Since(ended)
			}
		}
	}
	// Stopped here rather than deferred: a proxy that died during the run
	// is an error.
	proxyUp = false
	if err := stopProxy(p); err != nil {
		return run, err
	}

	lat, err := readTxnLogs(prefix)
	if err != nil {
		return run, fmt.Errorf("%s: %w", t.name, err)
	}
	run.P99MS = percentile(lat.MS, 99)
	// The logs hold a line per transaction; the figure is all that is kept.
	if !e.opts.keep {
		_ = os.RemoveAll(logDir)
	}
	return run, nil
}

// checkMirrored rejects a run whose mirror did not do what the scenario
// says, which would make its figures measure something else: a proxy that
// captured nothing is not dual-writing, and a "stopped" new database that
// applied writes was not stopped.
func checkMirrored(t dwTarget, m mirrorStatus) error {
	if m.LastSeq == 0 {
		return errors.New("the proxy handed no transactions to the mirror: it did not dual-write")
	}
	if t.kind == dwStopped && m.Applied > 0 {
		return fmt.Errorf("the mirror applied %d transactions to a new database that should be down", m.Applied)
	}
	return nil
}

// waitCaughtUp polls /status until the mirror has applied everything, for
// at most wait. It returns the last status and whether it caught up.
func waitCaughtUp(ctx context.Context, p *bgProc, st mirrorStatus, wait time.Duration) (mirrorStatus, bool, error) {
	deadline := time.Now().Add(wait)
	for !st.caughtUp() {
		if time.Now().After(deadline) {
			return st, false, nil
		}
		select {
		case <-ctx.Done():
			return st, false, ctx.Err()
		case <-time.After(statusPoll):
		}
		var err error
		if st, err = p.mirrorStatus(ctx); err != nil {
			return st, false, err
		}
	}
	return st, true, nil
}

// tpcbArgs is the command line of a TPC-B-like run through the proxy on
// port: prepared statements, -n because dualWriteRun resets the tables
// itself, and a per-transaction log under prefix for the percentiles.
func tpcbArgs(port int, d time.Duration, prefix string) []string {
	return []string{
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres",
		"-n", "-M", "prepared",
		"-c", strconv.Itoa(dwClients), "-j", strconv.Itoa(dwThreads),
		"-T", strconv.Itoa(seconds(d)),
		"--log", "--log-prefix", prefix,
		"postgres",
	}
}

// execEach runs each statement on its own (VACUUM refuses to run in the
// implicit transaction of a multi-statement query).
func execEach(ctx context.Context, url string, stmts ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s).ReadAll(); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// dwRow is one scenario's medians over the rounds.
type dwRow struct {
	target                dwTarget
	TPS, LatencyMS, P99MS float64
	P99Min, P99Max        float64 // the spread of the rounds' p99
	// ProxyCPUMicros, OldCPUMicros and NewCPUMicros are the proxy's and
	// the two Postgres servers' CPU time per transaction.
	ProxyCPUMicros, OldCPUMicros, NewCPUMicros float64
	// The mirror at the end of the run (NaN in old-only): last_seq,
	// applied, and waiting in memory and in the spool.
	Mirrored, Applied, Queued, Spooled float64
	CatchUpS                           float64 // over the rounds that caught up; NaN for none
	Behind                             int     // rounds after which the mirror had not caught up
	Lost                               uint64  // dead-lettered or dropped, all rounds
	Rounds                             int
}

// summarizeDualWrite takes the medians of a scenario's runs.
func summarizeDualWrite(t dwTarget, runs []dwRun) dwRow {
	r := dwRow{target: t, Rounds: len(runs)}
	var tps, lat, p99, cpu, oldCPU, newCPU, mirrored, applied, queued, spooled, catchUp []float64
	for _, x := range runs {
		tps = append(tps, x.TPS)
		cpu = append(cpu, x.cpuPerTxnMicros())
		oldCPU = append(oldCPU, microsPerTxn(x.OldCPU, x.Txns))
		newCPU = append(newCPU, microsPerTxn(x.NewCPU, x.Txns))
		lat = append(lat, x.LatencyMS)
		p99 = append(p99, x.P99MS)
		if t.newURL == "" {
			continue
		}
		mirrored = append(mirrored, float64(x.Mirror.LastSeq))
		applied = append(applied, float64(x.Mirror.Applied))
		queued = append(queued, float64(x.Mirror.Queued))
		spooled = append(spooled, float64(x.Mirror.Spooled))
		r.Lost += x.Final.lost()
		switch {
		case x.CaughtUp:
			catchUp = append(catchUp, x.CatchUp.Seconds())
		case t.waitsForMirror():
			r.Behind++
		}
	}
	r.TPS, r.LatencyMS, r.P99MS = median(tps), median(lat), median(p99)
	r.ProxyCPUMicros, r.OldCPUMicros, r.NewCPUMicros = median(cpu), median(oldCPU), median(newCPU)
	r.P99Min, r.P99Max = math.NaN(), math.NaN()
	if len(p99) > 0 {
		r.P99Min, r.P99Max = slices.Min(p99), slices.Max(p99)
	}
	r.Mirrored, r.Applied = median(mirrored), median(applied)
	r.Queued, r.Spooled = median(queued), median(spooled)
	r.CatchUpS = median(catchUp)
	return r
}

// findRow returns the row of a scenario, nil when it was not run.
func findRow(rows []dwRow, k dwKind) *dwRow {
	for i := range rows {
		if rows[i].target.kind == k {
			return &rows[i]
		}
	}
	return nil
}

// p99Increase is how much later the 99th percentile transaction finishes
// with the slow new database than in the baseline scenario (medians over
// the rounds), in ms, and the most that is not a measurable increase (see
// goalP99Rel). NaN when either was not run.
func p99Increase(rows []dwRow, baseline dwKind) (delta, allowed float64) {
	base, slow := findRow(rows, baseline), findRow(rows, dwDelayed)
	if base == nil || slow == nil {
		return math.NaN(), math.NaN()
	}
	allowed = max(goalP99Rel*base.P99MS, goalP99AbsMS, base.P99Max-base.P99MS)
	return slow.P99MS - base.P99MS, allowed
}

// tpsRatio is a scenario's throughput relative to old-only.
func tpsRatio(rows []dwRow, k dwKind) float64 {
	base, r := findRow(rows, dwOldOnly), findRow(rows, k)
	if base == nil || r == nil {
		return math.NaN()
	}
	return ratio(r.TPS, base.TPS)
}

// formatDualWriteTable renders the section's table and ratios.
func formatDualWriteTable(rows []dwRow, rounds, secs int) string {
	var b strings.Builder
	def := config.DefaultConfig().Mirror
	fmt.Fprintf(&b, "dual-write: pgbench TPC-B-like (-c %d -j %d -M prepared) through the proxy, median of %d interleaved %d s runs\n",
		dwClients, dwThreads, rounds, secs)
	fmt.Fprintf(&b, "  a fresh proxy and spool per run; mirror defaults: fsync %s (%v), queue %d\n",
		def.Fsync, def.FsyncInterval, def.QueueLen)
	b.WriteString("  new stopped: the new URL is a loopback port the bench holds bound, not listening (refused like a stopped server)\n")
	fmt.Fprintf(&b, "  new +%d ms: the new Postgres behind internal/delayproxy, which holds each of its answers that long\n",
		shimDelay.Milliseconds())
	b.WriteString("  a prompt new database applies during the run, on the same CPUs as the clients, proxy and old database\n")
	b.WriteString("  proxy CPU: the proxy process's user+system time during the run, its mirror included, per transaction\n")
	b.WriteString("  old/new DB CPU: the same for each Postgres server (postmaster, backends and background processes)\n")
	b.WriteString("  mirrored/applied/queued/spooled: transactions, from the proxy's /status at the end of each run\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\ttps\t×old-only\tavg ms\tp99 ms\tp99 range\tCPU µs/txn: proxy\told DB\tnew DB\tmirrored\tapplied\tqueued\tspooled\tcaught up after")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s–%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.target.name,
			num(r.TPS, 0), num(tpsRatio(rows, r.target.kind), 2), num(r.LatencyMS, 2), num(r.P99MS, 2),
			num(r.P99Min, 1), num(r.P99Max, 1), num(r.ProxyCPUMicros, 0), num(r.OldCPUMicros, 0), num(r.NewCPUMicros, 0),
			num(r.Mirrored, 0), num(r.Applied, 0), num(r.Queued, 0), num(r.Spooled, 0), catchUpText(r))
	}
	tw.Flush()
	fmt.Fprintf(&b, "dual-write/old-only tps: %s with the new database up, %s with it stopped, %s with it %d ms late\n",
		num(tpsRatio(rows, dwLive), 2), num(tpsRatio(rows, dwStopped), 2), num(tpsRatio(rows, dwDelayed), 2), shimDelay.Milliseconds())
	if slow := findRow(rows, dwDelayed); slow != nil {
		vsLive, allowedLive := p99Increase(rows, dwLive)
		vsStopped, allowedStopped := p99Increase(rows, dwStopped)
		fmt.Fprintf(&b, "p99 with the new database %d ms late: %s ms, %s ms vs it prompt, %s ms vs it stopped\n",
			shimDelay.Milliseconds(), num(slow.P99MS, 2), signed(vsLive, 2), signed(vsStopped, 2))
		fmt.Fprintf(&b, "  (measurable beyond %.0f%%, %.0f ms and the baseline's spread: here +%s and +%s ms)\n",
			goalP99Rel*100, goalP99AbsMS, num(allowedLive, 2), num(allowedStopped, 2))
	}
	if lost := lostTotal(rows); lost > 0 {
		fmt.Fprintf(&b, "LOST: %d transactions dead-lettered or dropped by the mirror (see the proxies' logs, --keep)\n", lost)
	}
	return b.String()
}

// signed formats x with a sign and prec decimals, "-" for NaN.
func signed(x float64, prec int) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%+.*f", prec, x)
}

// catchUpText says how soon after its runs a scenario's mirror had applied
// everything.
func catchUpText(r dwRow) string {
	switch {
	case !r.target.waitsForMirror():
		return "-"
	case r.Behind == r.Rounds:
		return fmt.Sprintf("not within %v", catchUpWait)
	case r.Behind > 0:
		return fmt.Sprintf("%.2f s (%d of %d runs not within %v)", r.CatchUpS, r.Behind, r.Rounds, catchUpWait)
	default:
		return fmt.Sprintf("%.2f s", r.CatchUpS)
	}
}

func lostTotal(rows []dwRow) uint64 {
	var n uint64
	for _, r := range rows {
		n += r.Lost
	}
	return n
}

// dualWriteGoals judges the section's figures.
func dualWriteGoals(rows []dwRow) []goal {
	stopped := tpsRatio(rows, dwStopped)
	// The slow new database's p99 is judged against the prompt one, and
	// against the stopped one too: a prompt new database applies
	// everything while the run goes on and competes with the clients for
	// the CPUs, so that comparison alone could hide an increase. A stopped
	// one costs no applying at all; a slow one applies a group of
	// transactions per round trip (mirror.max_group), a part of the run's,
	// so against the stopped one its p99 also carries what that applying
	// costs on these 2 CPUs.
	vsLive, allowedLive := p99Increase(rows, dwLive)
	vsStopped, allowedStopped := p99Increase(rows, dwStopped)
	lost := lostTotal(rows)
	return []goal{
		{
			what: fmt.Sprintf("dual-write tps ≥ %.1f× old-only with the new database stopped", goalStoppedRatio),
			got:  "×" + num(stopped, 2),
			met:  stopped >= goalStoppedRatio,
		},
		{
			what: fmt.Sprintf("no measurable p99 increase with the new database %d ms late (vs prompt, vs stopped)",
				shimDelay.Milliseconds()),
			got: fmt.Sprintf("%s ms (≤ +%s), %s ms (≤ +%s)",
				signed(vsLive, 2), num(allowedLive, 2), signed(vsStopped, 2), num(allowedStopped, 2)),
			met: vsLive <= allowedLive && vsStopped <= allowedStopped,
		},
		{
			what: "dual-write lost no transaction (none dead-lettered or dropped)",
			got:  fmt.Sprintf("%d lost", lost),
			met:  lost == 0,
		},
	}
}
