package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

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
// as written (plain) and as the proxy sends it (captured): medians over
// interleaved rounds.
type captureCost struct {
	PlainTPS, CapturedTPS             float64
	PlainCPUMicros, CapturedCPUMicros float64 // the old Postgres's CPU time per transaction
	Rounds                            int
}

// measureCaptureCost runs both scripts directly on the old database,
// rounds times each in alternating order, for d each.
func (e *env) measureCaptureCost(ctx context.Context, rounds int, d time.Duration) (captureCost, error) {
	cc := captureCost{Rounds: rounds}
	captured, err := capturedScript(tpcbScript)
	if err != nil {
		return cc, err
	}
	scripts := [2]string{filepath.Join(e.dir, "tpcb-plain.sql"), filepath.Join(e.dir, "tpcb-captured.sql")}
	names := [2]string{"old database, as written", "old database, with RETURNING"}
	for i, s := range []string{tpcbScript, captured} {
		if err := os.WriteFile(scripts[i], []byte(s), 0o644); err != nil {
			return cc, err
		}
	}
	var tps, cpu [2][]float64
	for round := range rounds {
		for _, i := range roundOrder(2, round) {
			if err := execEach(ctx, e.pg.SuperURL(), resetStatements...); err != nil {
				return cc, fmt.Errorf("resetting the pgbench tables: %w", err)
			}
			cpu0, err := serverCPU(e.pg.Dir)
			if err != nil {
				return cc, err
			}
			out, err := e.pgbench(ctx, "-h", "127.0.0.1", "-p", strconv.Itoa(e.pg.Port), "-U", "postgres",
				"-n", "-M", "prepared", "-s", strconv.Itoa(e.opts.scale), "-f", scripts[i],
				"-c", strconv.Itoa(dwClients), "-j", strconv.Itoa(dwThreads), "-T", strconv.Itoa(seconds(d)), "postgres")
			if err != nil {
				return cc, err
			}
			cpu1, err := serverCPU(e.pg.Dir)
			if err != nil {
				return cc, err
			}
			r, err := parsePGBench(out)
			if err != nil {
				return cc, fmt.Errorf("%s: %w\n%s", filepath.Base(scripts[i]), err, tailLines(out, 20))
			}
			perTxn := microsPerTxn(cpu1-cpu0, r.Txns)
			tps[i], cpu[i] = append(tps[i], r.TPS), append(cpu[i], perTxn)
			e.logf("capture cost round %d/%d: %-30s %6.0f tps  old DB CPU %3.0f µs/txn", round+1, rounds, names[i], r.TPS, perTxn)
		}
	}
	cc.PlainTPS, cc.CapturedTPS = median(tps[0]), median(tps[1])
	cc.PlainCPUMicros, cc.CapturedCPUMicros = median(cpu[0]), median(cpu[1])
	return cc, nil
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
	return b.String()
}
