package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

func main() {
	// The proxy child is this binary started by itself (see proxy.go).
	if len(os.Args) > 1 && os.Args[1] == proxyChildCmd {
		if err := runProxyChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench proxy-child:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	proxyBin    string        // shadowproxy binary; "" runs the proxy as a child of this binary
	duration    time.Duration // one pgbench run
	rounds      int           // interleaved rounds per client count
	clients     []int         // pgbench client counts
	scale       int           // pgbench -i -s
	idleClients int           // connections held open by the idle section
	sections    []string      // which sections run, in this order
	dwDuration  time.Duration // one pgbench run of the dualwrite section
	dwRounds    int           // interleaved rounds of the dualwrite section
	srDuration  time.Duration // one pgbench run of the shadowread section
	srRounds    int           // interleaved rounds of the shadowread section
	cpuProfile  string        // CPU profile of the proxy during the pgbench section
	strict      bool          // a missed goal fails the bench
	keep        bool          // keep the work directory (configurations, logs)
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	o := options{clients: []int{1, 8}, sections: sectionNames()}
	explicitSections := false
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.proxyBin, "proxy", "", "shadowproxy `binary` (default: run the proxy inside this program's child)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of one pgbench run (whole seconds)")
	fs.IntVar(&o.rounds, "rounds", 5, "interleaved rounds per client count; the median is reported")
	fs.Func("clients", "comma-separated pgbench client `counts` (default 1,8)", func(s string) error {
		c, err := parseInts(s)
		o.clients = c
		return err
	})
	fs.IntVar(&o.scale, "scale", 10, "pgbench scale factor of the data set")
	fs.IntVar(&o.idleClients, "idle-clients", 2000, "idle client connections opened by the idle section")
	fs.Func("sections", "comma-separated `sections` to run (default all: "+strings.Join(sectionNames(), ",")+")", func(s string) error {
		o.sections = nil
		explicitSections = true
		for _, name := range strings.Split(s, ",") {
			name = strings.TrimSpace(name)
			if findSection(name) == nil {
				return fmt.Errorf("unknown section %q (have %s)", name, strings.Join(sectionNames(), ", "))
			}
			o.sections = append(o.sections, name)
		}
		return nil
	})
	// The dualwrite section's rounds are fewer than pgbench's, which has
	// them per client count: four, so that each of its four scenarios
	// runs once in each position of the rotation.
	fs.DurationVar(&o.dwDuration, "dualwrite-duration", 5*time.Second, "length of one pgbench run of the dualwrite section (whole seconds)")
	fs.IntVar(&o.dwRounds, "dualwrite-rounds", 4, "interleaved rounds of the dualwrite section; the median is reported")
	// The shadowread section's runs are select-only, but old-only's
	// throughput swings between two levels from run to run on a small
	// shared machine (with how long the OS keeps the proxy's threads
	// waiting for a CPU), so its median needs more runs than three: five
	// rounds of its four scenarios take about two minutes.
	fs.DurationVar(&o.srDuration, "shadowread-duration", 5*time.Second, "length of one pgbench run of the shadowread section (whole seconds)")
	fs.IntVar(&o.srRounds, "shadowread-rounds", 5, "interleaved rounds of the shadowread section; the median is reported")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the proxy during the pgbench section to `file`")
	fs.BoolVar(&o.strict, "strict", false, "exit with an error when a goal is missed")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configurations and logs)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case o.duration < time.Second:
		return o, errors.New("--duration must be at least 1s")
	case o.dwDuration < time.Second:
		return o, errors.New("--dualwrite-duration must be at least 1s")
	case o.dwRounds < 1:
		return o, errors.New("--dualwrite-rounds must be at least 1")
	case o.srDuration < time.Second:
		return o, errors.New("--shadowread-duration must be at least 1s")
	case o.srRounds < 1:
		return o, errors.New("--shadowread-rounds must be at least 1")
	case o.rounds < 1:
		return o, errors.New("--rounds must be at least 1")
	case o.scale < 1:
		return o, errors.New("--scale must be at least 1")
	case o.idleClients < 1:
		return o, errors.New("--idle-clients must be at least 1")
	case len(o.sections) == 0:
		return o, errors.New("no sections to run")
	case o.proxyBin == "":
		// Checked here, not when the section's turn comes, so that a long
		// bench does not fail after minutes of other sections.
		if err := needBinary(o.sections, explicitSections); err != nil {
			return o, err
		}
	}
	for _, p := range []*string{&o.proxyBin, &o.cpuProfile} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return o, err
			}
			*p = abs
		}
	}
	return o, nil
}

// binarySections are the sections that need the shadowproxy binary
// (--proxy): dual-write and shadow reads are wired up in cmd/shadowproxy,
// not in the proxy child.
var binarySections = []string{"dualwrite", "shadowread"}

// needBinary explains, when sections holds some that need the shadowproxy
// binary, that they do; when the sections were the default ones, it also
// says how to leave those out.
func needBinary(sections []string, explicit bool) error {
	var need []string
	for _, s := range sections {
		if slices.Contains(binarySections, s) {
			need = append(need, s)
		}
	}
	if len(need) == 0 {
		return nil
	}
	msg := fmt.Sprintf("section %s needs", need[0])
	if len(need) > 1 {
		msg = fmt.Sprintf("sections %s need", strings.Join(need, ", "))
	}
	msg += " the shadowproxy binary (--proxy bin/shadowproxy): dual-write and shadow reads are wired up in cmd/shadowproxy"
	if !explicit {
		rest := slices.DeleteFunc(slices.Clone(sections), func(s string) bool { return slices.Contains(need, s) })
		msg += "; or leave them out with --sections " + strings.Join(rest, ",")
	}
	return errors.New(msg)
}

// parseInts parses "1,8" into positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("want positive integers separated by commas, got %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// env is the setup every section shares: a Postgres holding the pgbench
// data set, the tools, a work directory for configurations and logs.
type env struct {
	opts       options
	log        io.Writer // progress
	dir        string    // work directory
	pg         *testdb.Postgres
	pgbenchBin string
	selfExe    string // this binary, for the proxy child
	fileLimit  uint64 // open-file limit in force
	began      time.Time
}

// logf writes a progress line with the time since the start.
func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "[%5.1fs] %s\n", time.Since(e.began).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	opts, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	e := &env{opts: opts, log: stderr, began: time.Now()}
	if e.selfExe, err = os.Executable(); err != nil {
		return err
	}
	// The idle section's connections cost the proxy two descriptors each
	// (client and upstream) and the bench one.
	if e.fileLimit, err = raiseFileLimit(uint64(2*opts.idleClients + 1024)); err != nil {
		return err
	}

	if e.dir, err = os.MkdirTemp("", "shadowproxy-bench-"); err != nil {
		return err
	}
	// pgbouncer, run as another user, reads its configuration from here.
	if err := os.Chmod(e.dir, 0o755); err != nil {
		return err
	}
	defer func() {
		if opts.keep {
			fmt.Fprintf(stderr, "bench: configurations and logs kept in %s\n", e.dir)
			return
		}
		if rerr := os.RemoveAll(e.dir); rerr != nil && err == nil {
			err = rerr
		}
	}()

	e.logf("starting Postgres")
	e.pg, err = testdb.NewPostgres(ctx,
		// Every idle client has its own backend behind the proxy.
		testdb.WithSetting("max_connections", strconv.Itoa(opts.idleClients+slices.Max(opts.clients)+100)),
		// Room for the whole data set (about 16 MB per scale unit), so
		// that runs measure the path through the proxy, not page copies
		// from the OS cache.
		testdb.WithSetting("shared_buffers", fmt.Sprintf("%dMB", max(128, 32*opts.scale))),
	)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := e.pg.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	e.pgbenchBin = filepath.Join(e.pg.BinDir, "pgbench")
	e.logf("Postgres on port %d; loading pgbench data set, scale %d", e.pg.Port, opts.scale)
	if err := e.loadPGBench(ctx, e.pg.Port); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "shadowproxy bench: %d CPUs, %s, pgbench scale %d\n", runtime.NumCPU(), e.versions(ctx), opts.scale)
	var goals []goal
	var failures []error
	for _, name := range opts.sections {
		s := findSection(name)
		e.logf("section %s", name)
		rep, err := s.run(ctx, e)
		if err != nil {
			return fmt.Errorf("section %s: %w", name, err)
		}
		fmt.Fprintln(stdout)
		fmt.Fprint(stdout, rep.text)
		goals = append(goals, rep.goals...)
		failures = append(failures, rep.failures...)
	}
	missed := printGoals(stdout, goals)
	e.logf("done")
	if len(failures) > 0 {
		// After the whole report, so that the figures are not lost.
		return fmt.Errorf("the runs went wrong (see above): %w", errors.Join(failures...))
	}
	if missed > 0 && opts.strict {
		return fmt.Errorf("%d of %d goals missed", missed, len(goals))
	}
	return nil
}

// versions describes the servers under test, e.g. "PostgreSQL 15.14,
// PgBouncer 1.18.0". A version that cannot be read is left out: it is
// information, not a requirement.
func (e *env) versions(ctx context.Context) string {
	var out []string
	first := func(name string, args ...string) {
		b, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		out = append(out, line)
	}
	first(filepath.Join(e.pg.BinDir, "postgres"), "--version")
	if slices.Contains(e.opts.sections, "pgbench") {
		if bin, err := findPGBouncer(ctx); err == nil {
			first(bin, "--version")
		}
	}
	return strings.Join(out, ", ")
}
