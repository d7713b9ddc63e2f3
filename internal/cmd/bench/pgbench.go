package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// target is a server pgbench connects to: Postgres itself, a proxy, or
// pgbouncer. All of them are on 127.0.0.1 and let the superuser "postgres"
// in without a password.
type target struct {
	name string
	port int
	db   string
}

// pgbenchResult is what one pgbench run reports.
type pgbenchResult struct {
	TPS       float64 // transactions per second, without connection time
	LatencyMS float64 // average latency of a transaction, in milliseconds
	Txns      int64   // transactions processed
}

var (
	// "tps = 12246.123456 (without initial connection time)"; older
	// versions say "(excluding connections establishing)" and print a
	// second line "including"; the first line is the one wanted.
	tpsRE = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((without|excluding)`)
	// "latency average = 0.081 ms"
	latencyRE = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	// "number of transactions actually processed: 61234" (with "/N" when
	// the run was bounded by -t).
	txnsRE = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	// "number of failed transactions: 0 (0.000%)", since Postgres 15.
	failedRE = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// parsePGBench extracts the figures from pgbench's summary. A run that
// processed nothing or had failed transactions is an error: its figures
// would not measure what the bench claims.
func parsePGBench(out string) (pgbenchResult, error) {
	var r pgbenchResult
	m := tpsRE.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no tps line in pgbench output")
	}
	var err error
	if r.TPS, err = strconv.ParseFloat(m[1], 64); err != nil {
		return r, fmt.Errorf("tps %q: %w", m[1], err)
	}
	if m = latencyRE.FindStringSubmatch(out); m == nil {
		return r, errors.New("no latency average line in pgbench output")
	}
	if r.LatencyMS, err = strconv.ParseFloat(m[1], 64); err != nil {
		return r, fmt.Errorf("latency %q: %w", m[1], err)
	}
	if m = txnsRE.FindStringSubmatch(out); m == nil {
		return r, errors.New("no transaction count in pgbench output")
	}
	if r.Txns, err = strconv.ParseInt(m[1], 10, 64); err != nil {
		return r, fmt.Errorf("transaction count %q: %w", m[1], err)
	}
	if r.Txns == 0 || r.TPS == 0 {
		return r, errors.New("pgbench processed no transactions")
	}
	if m = failedRE.FindStringSubmatch(out); m != nil && m[1] != "0" {
		return r, fmt.Errorf("pgbench had %s failed transactions", m[1])
	}
	return r, nil
}

// pgbenchArgs is the command line of a select-only run: extended protocol
// (Parse/Bind/Execute, as drivers send it), one thread per client up to the
// number of cores, -n because vacuuming is the setup's business.
func pgbenchArgs(t target, clients int, d time.Duration) []string {
	return []string{
		"-h", "127.0.0.1", "-p", strconv.Itoa(t.port), "-U", "postgres",
		"-n", "-S", "-M", "extended",
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(threadsFor(clients)),
		"-T", strconv.Itoa(seconds(d)),
		t.db,
	}
}

// threadsFor returns pgbench's -j for a client count: one thread per
// client, but no more threads than cores, which would only add switching.
func threadsFor(clients int) int {
	return max(1, min(clients, runtime.NumCPU()))
}

// seconds rounds d to whole seconds, at least one (pgbench's -T unit).
func seconds(d time.Duration) int {
	return max(1, int(d.Round(time.Second)/time.Second))
}

// pgbench runs the pgbench binary with args and returns its output.
func (e *env) pgbench(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.pgbenchBin, args...)
	cmd.Env = clientEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, tailLines(string(out), 20))
	}
	return string(out), nil
}

// runSelect runs one select-only pgbench run against t.
func (e *env) runSelect(ctx context.Context, t target, clients int, d time.Duration) (pgbenchResult, error) {
	out, err := e.pgbench(ctx, pgbenchArgs(t, clients, d)...)
	if err != nil {
		return pgbenchResult{}, fmt.Errorf("%s: %w", t.name, err)
	}
	r, err := parsePGBench(out)
	if err != nil {
		return r, fmt.Errorf("%s, %d clients: %w\n%s", t.name, clients, err, tailLines(out, 20))
	}
	return r, nil
}

// clientEnv is the environment of client programs (pgbench): ours without
// libpq variables that would redirect or change the connection, plus no
// TLS and no GSSAPI negotiation, which none of the targets offers; asking
// would only add a round trip per connection.
func clientEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "PGSSLMODE=disable", "PGGSSENCMODE=disable")
}

// runKey names a series of runs: one target at one client count.
type runKey struct {
	target  string
	clients int
}

// samples holds the results of interleaved runs, in round order.
type samples map[runKey][]pgbenchResult

// tps returns the series' transactions per second.
func (s samples) tps(k runKey) []float64 {
	return collect(s[k], func(r pgbenchResult) float64 { return r.TPS })
}

// latencyMS returns the series' average latencies.
func (s samples) latencyMS(k runKey) []float64 {
	return collect(s[k], func(r pgbenchResult) float64 { return r.LatencyMS })
}

func collect(rs []pgbenchResult, f func(pgbenchResult) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

// roundOrder returns the order in which round r (from 0) visits n targets:
// a rotation, so that no target always runs first in a round or always
// right after the same other target (caches, CPU frequency, a neighbour's
// load all drift over time).
func roundOrder(n, r int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = (i + r) % n
	}
	return order
}

// interleave runs select-only pgbench against every target at every client
// count, e.opts.rounds times each, rotating the targets within each round,
// after one unrecorded warm-up run per target. Each run's figures go to
// e.log as they come.
func (e *env) interleave(ctx context.Context, targets []target, clients []int) (samples, error) {
	s := samples{}
	warm := min(2*time.Second, e.opts.duration)
	for _, t := range targets {
		r, err := e.runSelect(ctx, t, slices.Max(clients), warm)
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		e.logf("warm-up %-10s %9.0f tps", t.name, r.TPS)
	}
	for _, c := range clients {
		for round := range e.opts.rounds {
			var line strings.Builder
			fmt.Fprintf(&line, "clients %d round %d/%d:", c, round+1, e.opts.rounds)
			for _, i := range roundOrder(len(targets), round) {
				t := targets[i]
				r, err := e.runSelect(ctx, t, c, e.opts.duration)
				if err != nil {
					return nil, err
				}
				k := runKey{t.name, c}
				s[k] = append(s[k], r)
				fmt.Fprintf(&line, "  %s %.0f tps %.3f ms", t.name, r.TPS, r.LatencyMS)
			}
			e.logf("%s", line.String())
		}
	}
	return s, nil
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
