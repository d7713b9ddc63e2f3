package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// section is one benchmark scenario. It runs against the shared env,
// starts the proxies it needs (each with its own proxySpec) and stops them
// before it returns.
type section struct {
	name string
	run  func(ctx context.Context, e *env) (*report, error)
}

// report is a section's part of the final output.
type report struct {
	text  string // the section's table, ending in a newline
	goals []goal
	// failures are things that went wrong in the runs and are no
	// performance figure, such as a shadow read that found a difference
	// between two identical databases. The section's text states them;
	// the bench fails after the whole report, --strict or not.
	failures []error
}

// goal is a target figure and whether this run reached it.
type goal struct {
	what string // e.g. "proxy tps ≥ pgbouncer tps at 8 clients"
	got  string // the measured figure, e.g. "0.97"
	met  bool
}

// sections are all scenarios, in their default order. The idle section
// comes last: its thousands of backends would disturb the timed runs.
var sections = []section{
	{name: "pgbench", run: pgbenchSection},
	{name: "dualwrite", run: dualwriteSection},
	{name: "shadowread", run: shadowreadSection},
	{name: "idle", run: idleSection},
}

func sectionNames() []string {
	names := make([]string, len(sections))
	for i, s := range sections {
		names[i] = s.name
	}
	return names
}

func findSection(name string) *section {
	for i := range sections {
		if sections[i].name == name {
			return &sections[i]
		}
	}
	return nil
}

// printGoals writes the goals as met or missed and returns how many were
// missed.
func printGoals(w io.Writer, goals []goal) int {
	if len(goals) == 0 {
		return 0
	}
	missed := 0
	fmt.Fprintln(w)
	fmt.Fprintln(w, "goals")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, g := range goals {
		status := "met"
		if !g.met {
			status = "MISSED"
			missed++
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", status, g.what, g.got)
	}
	tw.Flush()
	return missed
}

// The goals of the pgbench and idle sections.
const (
	goalBouncerClients = 8    // clients at which the proxy must match pgbouncer
	goalAddedMicros    = 25.0 // µs per round trip, at 1 client
	goalIdleKiB        = 64.0 // KiB per idle client connection
)

// pgbenchSection compares select-only throughput and latency of Postgres
// direct, the proxy in phase old-only and pgbouncer in session mode.
func pgbenchSection(ctx context.Context, e *env) (rep *report, err error) {
	p, err := e.startProxy(ctx, proxySpec{Name: "old-only", CPUProfile: e.opts.cpuProfile})
	if err != nil {
		return nil, err
	}
	proxyUp := true
	defer func() {
		if proxyUp {
			_ = stopProxy(p)
		}
	}()
	b, err := e.startPGBouncer(ctx, slices.Max(e.opts.clients)+10)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := stopPGBouncer(b); serr != nil && err == nil {
			err = serr
		}
	}()
	targets := []target{
		{name: "direct", port: e.pg.Port, db: "postgres"},
		{name: "proxy", port: p.port, db: "postgres"},
		{name: "pgbouncer", port: b.port, db: "postgres"},
	}
	s, err := e.interleave(ctx, targets, e.opts.clients)
	if err != nil {
		return nil, err
	}
	// Stopped now, not deferred: a proxy that died during the runs is an
	// error, and the profiling child writes its profile on this stop.
	proxyUp = false
	if err := stopProxy(p); err != nil {
		return nil, err
	}
	if e.opts.cpuProfile != "" {
		e.logf("proxy CPU profile written to %s (go tool pprof -top %s %s)", e.opts.cpuProfile, e.selfExe, e.opts.cpuProfile)
	}

	rows := make([]pgbenchRow, len(e.opts.clients))
	for i, c := range e.opts.clients {
		rows[i] = summarize(s, c)
	}
	rep = &report{text: formatPGBenchTable(rows, e.opts.rounds, seconds(e.opts.duration))}
	for _, r := range rows {
		if r.Clients == goalBouncerClients {
			rep.goals = append(rep.goals, goal{
				what: fmt.Sprintf("proxy tps ≥ pgbouncer tps at %d clients", r.Clients),
				got:  fmt.Sprintf("proxy/pgbouncer %.2f", r.ProxyBouncer()),
				met:  r.ProxyBouncer() >= 1,
			})
		}
		if r.Clients == 1 {
			rep.goals = append(rep.goals, goal{
				what: fmt.Sprintf("≤ %.0f µs added per round trip at 1 client", goalAddedMicros),
				got:  fmt.Sprintf("%.1f µs", r.AddedMicros()),
				met:  r.AddedMicros() <= goalAddedMicros,
			})
		}
	}
	return rep, nil
}

// pgbenchRow is one client count's medians.
type pgbenchRow struct {
	Clients                             int
	DirectTPS, ProxyTPS, BouncerTPS     float64
	DirectLatMS, ProxyLatMS, BouncerLat float64
}

// summarize takes the medians of the interleaved runs at c clients.
func summarize(s samples, c int) pgbenchRow {
	med := func(target string, f func(samples, runKey) []float64) float64 {
		return median(f(s, runKey{target, c}))
	}
	return pgbenchRow{
		Clients:     c,
		DirectTPS:   med("direct", samples.tps),
		ProxyTPS:    med("proxy", samples.tps),
		BouncerTPS:  med("pgbouncer", samples.tps),
		DirectLatMS: med("direct", samples.latencyMS),
		ProxyLatMS:  med("proxy", samples.latencyMS),
		BouncerLat:  med("pgbouncer", samples.latencyMS),
	}
}

// ProxyDirect is the proxy's throughput relative to Postgres direct.
func (r pgbenchRow) ProxyDirect() float64 { return ratio(r.ProxyTPS, r.DirectTPS) }

// ProxyBouncer is the proxy's throughput relative to pgbouncer.
func (r pgbenchRow) ProxyBouncer() float64 { return ratio(r.ProxyTPS, r.BouncerTPS) }

// AddedMicros is the latency the proxy adds to a transaction, in µs. A
// select-only transaction in extended mode is one round trip (Parse, Bind,
// Describe, Execute and Sync go in one write, the answers come back in one),
// so at one client this is the cost of one round trip through the proxy.
// With more clients it includes queueing for the CPUs.
func (r pgbenchRow) AddedMicros() float64 { return (r.ProxyLatMS - r.DirectLatMS) * 1000 }

// formatPGBenchTable renders the pgbench section's table.
func formatPGBenchTable(rows []pgbenchRow, rounds, secs int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pgbench -S -M extended, median of %d interleaved %d s runs\n", rounds, secs)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "clients\tdirect tps\tproxy tps\tpgbouncer tps\tproxy/direct\tproxy/pgbouncer\tadded µs/round trip")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Clients,
			num(r.DirectTPS, 0), num(r.ProxyTPS, 0), num(r.BouncerTPS, 0),
			num(r.ProxyDirect(), 2), num(r.ProxyBouncer(), 2), num(r.AddedMicros(), 1))
	}
	tw.Flush()
	return b.String()
}

// num formats x with prec decimals, "-" for NaN (a target with no runs).
func num(x float64, prec int) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, x)
}
