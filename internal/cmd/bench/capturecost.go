package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

// The capture's cost to the old database by itself. In dual-write every
// write reaches the old database with a RETURNING list appended (see
// rewrite.PlanCapture), and a statement with RETURNING costs Postgres more
// than one without, whatever it returns: its portal runs the statement to
// the end into a tuple store and sends the rows from there, and its Describe
// answers with a RowDescription. On a machine whose CPUs the old database
// shares with the clients, that is throughput the proxy cannot win back, so
// the section measures it without the proxy: pgbench's TPC-B-like script
// directly on the old database, as written and with the RETURNING lists the
// proxy sends.
//
// Beside them it measures the other way a proxy could learn the stored
// rows: Postgres's own logical decoding. With wal_level = logical a
// walsender decodes the WAL of each committed transaction and streams its
// changes (pgoutput) to a consumer; here pg_recvlogical, which throws them
// away. That is a lower bound on the cost of capturing that way, since a
// real consumer would also parse and journal the changes, and it does not
// count what the design asks of the old database's operator (wal_level =
// logical takes a restart; a slot keeps WAL while its consumer is away).
// The three variants run with wal_level = logical, set for these rounds
// only, so that they differ in nothing else.

// tpcbScript is pgbench's built-in TPC-B-like script ("tpcb-like"), to
// run with -f.
const tpcbScript = `\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
`

// pgbenchKeys are the primary keys pgbench -i creates (pgbench_history
// has none).
var pgbenchKeys = map[string][]string{
	"pgbench_accounts": {"aid"},
	"pgbench_tellers":  {"tid"},
	"pgbench_branches": {"bid"},
}

var pgbenchVar = regexp.MustCompile(`:[a-z]+\b`)

// capturedScript returns script with each write replaced by what the proxy
// sends the old database in dual-write: the statement as
// rewrite.PlanCapture rewrites it. pgbench's :variables become $n for the
// rewriter and are put back after.
func capturedScript(script string) (string, error) {
	keyOf := func(table string) ([]string, bool) {
		k, ok := pgbenchKeys[table]
		return k, ok
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(script, "\n") {
		body := strings.TrimSuffix(strings.TrimSpace(line), ";")
		verb, _, _ := strings.Cut(body, " ")
		switch strings.ToUpper(verb) {
		case "INSERT", "UPDATE", "DELETE":
		default:
			b.WriteString(line)
			continue
		}
		var vars []string
		sql := pgbenchVar.ReplaceAllStringFunc(body, func(v string) string {
			vars = append(vars, v)
			return "$" + strconv.Itoa(len(vars))
		})
		c, err := rewrite.PlanCapture(sql, keyOf)
		if err != nil {
			return "", fmt.Errorf("capturing %q: %w", body, err)
		}
		out := c.SQL
		// From the highest $n down, so that $1 does not eat $10's prefix.
		for i := len(vars); i >= 1; i-- {
			out = strings.ReplaceAll(out, "$"+strconv.Itoa(i), vars[i-1])
		}
		b.WriteString(out + ";\n")
	}
	return b.String(), nil
}

// captureCost is the old database by itself running the TPC-B-like script
// as written (plain), as the proxy sends it (captured), and as written
// while a logical decoding consumer streams its changes (logical): medians
// over interleaved rounds.
type captureCost struct {
	PlainTPS, CapturedTPS, LogicalTPS float64
	// The old Postgres's CPU time per transaction (in logical, its
	// walsender's included), and the consumer's.
	PlainCPUMicros, CapturedCPUMicros, LogicalCPUMicros float64
	ConsumerCPUMicros                                   float64
	Rounds                                              int
}

// The capture-cost variants, in the order of their scripts and names.
const (
	ccPlain = iota
	ccCaptured
	ccLogical
	ccVariants
)

// logicalSlot and logicalPublication are what the logical variant creates
// on the old database: a slot for each run and a publication of the pgbench
// tables.
const (
	logicalSlot        = "shadowproxy_bench"
	logicalPublication = "shadowproxy_bench"
)

// measureCaptureCost runs the three variants directly on the old database,
// rounds times each in rotating order, for d each, with the old database's
// wal_level at logical for the while.
func (e *env) measureCaptureCost(ctx context.Context, rounds int, d time.Duration) (cc captureCost, err error) {
	cc.Rounds = rounds
	captured, err := capturedScript(tpcbScript)
	if err != nil {
		return cc, err
	}
	scripts := [ccVariants]string{
		filepath.Join(e.dir, "tpcb-plain.sql"), filepath.Join(e.dir, "tpcb-captured.sql"), filepath.Join(e.dir, "tpcb-plain.sql"),
	}
	names := [ccVariants]string{"old database, as written", "old database, with RETURNING", "old database, logical decoding"}
	for i, s := range []string{tpcbScript, captured} {
		if err := os.WriteFile(scripts[i], []byte(s), 0o644); err != nil {
			return cc, err
		}
	}
	if err := e.setWALLevel(ctx, "logical"); err != nil {
		return cc, err
	}
	defer func() {
		if rerr := e.setWALLevel(context.WithoutCancel(ctx), ""); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err := execEach(ctx, e.pg.SuperURL(), "CREATE PUBLICATION "+logicalPublication+
		" FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history"); err != nil {
		return cc, fmt.Errorf("logical decoding: %w", err)
	}
	defer func() {
		if derr := execEach(context.WithoutCancel(ctx), e.pg.SuperURL(), "DROP PUBLICATION "+logicalPublication); derr != nil && err == nil {
			err = fmt.Errorf("logical decoding: %w", derr)
		}
	}()
	var tps, cpu [ccVariants][]float64
	var consumer []float64
	for round := range rounds {
		for _, i := range roundOrder(ccVariants, round) {
			r, err := e.captureCostRun(ctx, scripts[i], i == ccLogical, d)
			if err != nil {
				return cc, err
			}
			tps[i], cpu[i] = append(tps[i], r.tps), append(cpu[i], r.oldCPU)
			line := fmt.Sprintf("capture cost round %d/%d: %-32s %6.0f tps  old DB CPU %3.0f µs/txn", round+1, rounds, names[i], r.tps, r.oldCPU)
			if i == ccLogical {
				consumer = append(consumer, r.consumerCPU)
				line += fmt.Sprintf("  consumer %3.0f µs/txn", r.consumerCPU)
			}
			e.logf("%s", line)
		}
	}
	cc.PlainTPS, cc.CapturedTPS, cc.LogicalTPS = median(tps[ccPlain]), median(tps[ccCaptured]), median(tps[ccLogical])
	cc.PlainCPUMicros, cc.CapturedCPUMicros, cc.LogicalCPUMicros = median(cpu[ccPlain]), median(cpu[ccCaptured]), median(cpu[ccLogical])
	cc.ConsumerCPUMicros = median(consumer)
	return cc, nil
}

// captureCostRun is one run of the capture-cost rounds: its throughput, and
// the old database's and (with a decoder) the consumer's CPU time per
// transaction.
type captureCostRun struct{ tps, oldCPU, consumerCPU float64 }

// captureCostRun runs script on the old database for d, from the tables'
// starting point, with a logical decoding consumer when decode.
func (e *env) captureCostRun(ctx context.Context, script string, decode bool, d time.Duration) (run captureCostRun, err error) {
	if err := execEach(ctx, e.pg.SuperURL(), resetStatements...); err != nil {
		return run, fmt.Errorf("resetting the pgbench tables: %w", err)
	}
	var dec *decoder
	if decode {
		if dec, err = e.startDecoder(ctx); err != nil {
			return run, err
		}
	}
	cpu0, err := serverCPU(e.pg.Dir)
	if err != nil {
		_, _ = dec.stop(ctx)
		return run, err
	}
	out, err := e.pgbench(ctx, "-h", "127.0.0.1", "-p", strconv.Itoa(e.pg.Port), "-U", "postgres",
		"-n", "-M", "prepared", "-s", strconv.Itoa(e.opts.scale), "-f", script,
		"-c", strconv.Itoa(dwClients), "-j", strconv.Itoa(dwThreads), "-T", strconv.Itoa(seconds(d)), "postgres")
	// The decoding of the run's last transactions is part of its cost:
	// the consumer stops once it has them.
	used, derr := dec.stop(ctx)
	if err = errors.Join(err, derr); err != nil {
		return run, err
	}
	cpu1, err := serverCPU(e.pg.Dir)
	if err != nil {
		return run, err
	}
	r, err := parsePGBench(out)
	if err != nil {
		return run, fmt.Errorf("%s: %w\n%s", filepath.Base(script), err, tailLines(out, 20))
	}
	return captureCostRun{tps: r.TPS, oldCPU: microsPerTxn(cpu1-cpu0, r.Txns), consumerCPU: microsPerTxn(used, r.Txns)}, nil
}

// setWALLevel restarts the old database with wal_level set to level, or
// back to its configured value when level is "", and reads the pgbench
// tables into its shared buffers again.
func (e *env) setWALLevel(ctx context.Context, level string) error {
	stmt := "ALTER SYSTEM RESET wal_level"
	if level != "" {
		stmt = "ALTER SYSTEM SET wal_level = " + level
	}
	if err := execEach(ctx, e.pg.SuperURL(), stmt); err != nil {
		return fmt.Errorf("wal_level: %w", err)
	}
	e.logf("restarting Postgres with wal_level = %s", cmp.Or(level, "its configured value"))
	if err := e.pg.Shutdown(); err != nil {
		return fmt.Errorf("wal_level: %w", err)
	}
	if err := e.pg.Start(ctx); err != nil {
		return fmt.Errorf("wal_level: %w", err)
	}
	return prewarm(ctx, e.pg.Port)
}

// decoder is a logical decoding consumer of the old database for one run:
// a slot of its own and pg_recvlogical streaming pgoutput from it.
type decoder struct {
	e      *env
	cmd    *exec.Cmd
	stderr *strings.Builder
}

// startDecoder creates the slot and starts pg_recvlogical on it, and
// returns once the server streams to it.
func (e *env) startDecoder(ctx context.Context) (*decoder, error) {
	if err := execEach(ctx, e.pg.SuperURL(),
		"SELECT pg_create_logical_replication_slot('"+logicalSlot+"', 'pgoutput')"); err != nil {
		return nil, fmt.Errorf("logical decoding: %w", err)
	}
	// Output to stdout, which is /dev/null: pg_recvlogical does not fsync
	// it. Its status reports every second let the slot advance.
	cmd := exec.CommandContext(ctx, filepath.Join(e.pg.BinDir, "pg_recvlogical"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(e.pg.Port), "-U", "postgres", "-d", "postgres",
		"--slot", logicalSlot, "--start", "-s", "1", "-f", "-",
		"-o", "proto_version=1", "-o", "publication_names="+logicalPublication)
	cmd.Env = clientEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		_ = e.dropSlot(ctx)
		return nil, fmt.Errorf("logical decoding: %w", err)
	}
	dec := &decoder{e: e, cmd: cmd, stderr: &stderr}
	err := pollUntil(ctx, 10*time.Second, func() (bool, error) {
		state, err := e.slotState(ctx)
		return state == "active", err
	})
	if err != nil {
		_, _ = dec.stop(ctx)
		return nil, fmt.Errorf("logical decoding: pg_recvlogical did not start streaming: %w\n%s", err, dec.stderr.String())
	}
	return dec, nil
}

// stop waits until the walsender has sent everything written so far, stops
// pg_recvlogical and drops the slot. It returns the CPU time pg_recvlogical
// used. A nil decoder does nothing.
func (d *decoder) stop(ctx context.Context) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	url := d.e.pg.SuperURL()
	caughtUp := pollUntil(ctx, 30*time.Second, func() (bool, error) {
		done, err := queryValue(ctx, url, "SELECT coalesce(bool_and(sent_lsn >= pg_current_wal_lsn()), true) FROM pg_stat_replication")
		return done == "t", err
	})
	_ = d.cmd.Process.Signal(os.Interrupt)
	werr := d.cmd.Wait()
	var used time.Duration
	if st := d.cmd.ProcessState; st != nil {
		used = st.UserTime() + st.SystemTime()
	}
	switch st := d.cmd.ProcessState; {
	case werr == nil:
	case st != nil && !st.Exited():
		werr = nil // ended by the interrupt, as asked
	default:
		werr = fmt.Errorf("pg_recvlogical: %w\n%s", werr, tailLines(d.stderr.String(), 20))
	}
	err := errors.Join(caughtUp, werr, d.e.dropSlot(ctx))
	if err != nil {
		return used, fmt.Errorf("logical decoding: %w", err)
	}
	return used, nil
}

// dropSlot drops the bench's slot once no walsender uses it.
func (e *env) dropSlot(ctx context.Context) error {
	return pollUntil(ctx, 10*time.Second, func() (bool, error) {
		state, err := e.slotState(ctx)
		switch {
		case err != nil:
			return false, err
		case state == "gone":
			return true, nil
		case state == "active":
			return false, nil
		}
		return true, execEach(ctx, e.pg.SuperURL(), "SELECT pg_drop_replication_slot('"+logicalSlot+"')")
	})
}

// slotState says whether the bench's slot is "active" (a walsender streams
// from it), "idle" or "gone".
func (e *env) slotState(ctx context.Context) (string, error) {
	return queryValue(ctx, e.pg.SuperURL(), "SELECT coalesce((SELECT CASE WHEN active THEN 'active' ELSE 'idle' END "+
		"FROM pg_replication_slots WHERE slot_name = '"+logicalSlot+"'), 'gone')")
}

// queryValue runs sql, which returns one row of one column, and returns
// that value as text.
func queryValue(ctx context.Context, url, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", fmt.Errorf("%s: %w", sql, res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return "", fmt.Errorf("%s: %d rows, want one value", sql, len(res.Rows))
	}
	return string(res.Rows[0][0]), nil
}

// pollUntil calls done every statusPoll until it reports true or fails,
// for at most limit.
func pollUntil(ctx context.Context, limit time.Duration, done func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := done()
		switch {
		case err != nil:
			return err
		case ok:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("still waiting after %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(statusPoll):
		}
	}
}

// format renders the measurement as lines of the section's report.
func (cc captureCost) format(secs int) string {
	if cc.Rounds == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the capture's cost to the old database alone (no proxy; pgbench -f, median of %d interleaved %d s runs):\n", cc.Rounds, secs)
	fmt.Fprintf(&b, "  TPC-B-like with the RETURNING lists the proxy appends: %s tps, %s× the script as written (%s tps);\n",
		num(cc.CapturedTPS, 0), num(ratio(cc.CapturedTPS, cc.PlainTPS), 2), num(cc.PlainTPS, 0))
	fmt.Fprintf(&b, "  old DB CPU %s µs/txn against %s\n", num(cc.CapturedCPUMicros, 0), num(cc.PlainCPUMicros, 0))
	fmt.Fprintf(&b, "  for comparison, Postgres's logical decoding of the script as written, streamed (pgoutput) to pg_recvlogical, which discards it:\n")
	fmt.Fprintf(&b, "  %s tps, %s× as written; old DB CPU %s µs/txn, its walsender included, and the consumer's %s µs/txn\n",
		num(cc.LogicalTPS, 0), num(ratio(cc.LogicalTPS, cc.PlainTPS), 2), num(cc.LogicalCPUMicros, 0), num(cc.ConsumerCPUMicros, 0))
	fmt.Fprintf(&b, "  (all with wal_level = logical, set for these runs only)\n")
	return b.String()
}
