package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/config"
)

// TestMain lets the end-to-end test start this test binary as the proxy
// child, as the bench does with its own binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == proxyChildCmd {
		if err := runProxyChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "proxy-child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const pgbench15Output = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: extended
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 96310
number of failed transactions: 0 (0.000%)
latency average = 0.415 ms
initial connection time = 12.501 ms
tps = 19263.318541 (without initial connection time)
`

// pgbench 13 and older: two tps lines, the first one is wanted.
const pgbench12Output = `transaction type: <builtin: select only>
number of transactions actually processed: 5000
latency average = 0.200 ms
tps = 4990.100000 (including connections establishing)
tps = 5000.500000 (excluding connections establishing)
`

func TestParsePGBench(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    pgbenchResult
		wantErr string
	}{
		{name: "pg15", out: pgbench15Output, want: pgbenchResult{TPS: 19263.318541, LatencyMS: 0.415, Txns: 96310}},
		{name: "pg12", out: pgbench12Output, want: pgbenchResult{TPS: 5000.5, LatencyMS: 0.2, Txns: 5000}},
		{name: "no tps", out: strings.ReplaceAll(pgbench15Output, "tps = ", "tx = "), wantErr: "no tps line"},
		{name: "no latency", out: strings.ReplaceAll(pgbench15Output, "latency average", "latency mean"), wantErr: "no latency"},
		{name: "no count", out: strings.ReplaceAll(pgbench15Output, "actually processed", "processed"), wantErr: "no transaction count"},
		{name: "nothing processed", out: strings.ReplaceAll(pgbench15Output, "processed: 96310", "processed: 0"), wantErr: "no transactions"},
		{name: "failures", out: strings.ReplaceAll(pgbench15Output, "failed transactions: 0 ", "failed transactions: 3 "), wantErr: "3 failed"},
		{name: "empty", out: "", wantErr: "no tps line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePGBench(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPGBenchArgs(t *testing.T) {
	got := strings.Join(pgbenchArgs(target{name: "proxy", port: 6432, db: "app"}, 1, 5*time.Second), " ")
	want := "-h 127.0.0.1 -p 6432 -U postgres -n -S -M extended -c 1 -j 1 -T 5 app"
	if got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
	// More clients than cores: one thread per core.
	args := pgbenchArgs(target{port: 1, db: "x"}, 1000, 1500*time.Millisecond)
	j := args[slices.Index(args, "-j")+1]
	if want := fmt.Sprint(threadsFor(1000)); j != want || threadsFor(1000) > 1000 {
		t.Errorf("-j %s, want %s", j, want)
	}
	if T := args[slices.Index(args, "-T")+1]; T != "2" {
		t.Errorf("-T %s for 1.5s, want 2", T)
	}
}

func TestSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{{0, 1}, {400 * time.Millisecond, 1}, {time.Second, 1}, {5 * time.Second, 5}, {5600 * time.Millisecond, 6}} {
		if got := seconds(tt.d); got != tt.want {
			t.Errorf("seconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{1, 1000, 2, 3, 2}, 2}, // an outlier does not move it
	}
	for _, tt := range tests {
		in := slices.Clone(tt.xs)
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
		if !slices.Equal(in, tt.xs) {
			t.Errorf("median reordered its argument: %v", tt.xs)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestRatio(t *testing.T) {
	if got := ratio(3, 2); got != 1.5 {
		t.Errorf("ratio(3, 2) = %v", got)
	}
	for _, r := range []float64{ratio(1, 0), ratio(math.NaN(), 1), ratio(1, math.NaN())} {
		if !math.IsNaN(r) {
			t.Errorf("want NaN, got %v", r)
		}
	}
}

func TestRoundOrder(t *testing.T) {
	const n = 3
	firsts := map[int]bool{}
	for r := range n {
		order := roundOrder(n, r)
		sorted := slices.Sorted(slices.Values(order))
		if !slices.Equal(sorted, []int{0, 1, 2}) {
			t.Fatalf("round %d visits %v, not every target once", r, order)
		}
		firsts[order[0]] = true
	}
	if len(firsts) != n {
		t.Errorf("over %d rounds only targets %v ran first", n, firsts)
	}
	if got := roundOrder(3, 0); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("first round %v, want the targets' order", got)
	}
}

func TestSummarizeAndTable(t *testing.T) {
	res := func(tps, lat float64) pgbenchResult { return pgbenchResult{TPS: tps, LatencyMS: lat, Txns: 1} }
	s := samples{
		{"direct", 1}:    {res(10000, 0.100), res(9000, 0.111), res(11000, 0.090)},
		{"proxy", 1}:     {res(8000, 0.125), res(100, 10), res(8500, 0.118)},
		{"pgbouncer", 1}: {res(7000, 0.143), res(7200, 0.139), res(6800, 0.147)},
		{"direct", 8}:    {res(20000, 0.4)},
		{"proxy", 8}:     {res(18000, 0.444)},
		// no pgbouncer runs at 8 clients: its columns show "-"
	}
	r1 := summarize(s, 1)
	want1 := pgbenchRow{Clients: 1, DirectTPS: 10000, ProxyTPS: 8000, BouncerTPS: 7000,
		DirectLatMS: 0.100, ProxyLatMS: 0.125, BouncerLat: 0.143}
	if r1 != want1 {
		t.Fatalf("summarize = %+v, want %+v", r1, want1)
	}
	if got := r1.ProxyDirect(); got != 0.8 {
		t.Errorf("proxy/direct = %v", got)
	}
	if got := r1.ProxyBouncer(); math.Abs(got-8000.0/7000) > 1e-9 {
		t.Errorf("proxy/pgbouncer = %v", got)
	}
	if got := r1.AddedMicros(); math.Abs(got-25) > 1e-9 {
		t.Errorf("added µs = %v, want 25", got)
	}

	table := formatPGBenchTable([]pgbenchRow{r1, summarize(s, 8)}, 3, 5)
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines, want 4:\n%s", len(lines), table)
	}
	if lines[0] != "pgbench -S -M extended, median of 3 interleaved 5 s runs" {
		t.Errorf("title %q", lines[0])
	}
	wantRows := [][]string{
		{"clients", "direct", "tps", "proxy", "tps", "pgbouncer", "tps", "proxy/direct", "proxy/pgbouncer", "added", "µs/round", "trip"},
		{"1", "10000", "8000", "7000", "0.80", "1.14", "25.0"},
		{"8", "20000", "18000", "-", "0.90", "-", "44.0"},
	}
	for i, want := range wantRows {
		if got := strings.Fields(lines[i+1]); !slices.Equal(got, want) {
			t.Errorf("line %d = %q, want fields %q", i+1, lines[i+1], want)
		}
	}
	// The columns line up: every row's second column starts where the
	// header's does.
	col := strings.Index(lines[1], "direct tps")
	for _, l := range lines[2:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("row %q is not aligned with the header at column %d", l, col)
		}
	}
}

func TestPrintGoals(t *testing.T) {
	var b bytes.Buffer
	missed := printGoals(&b, []goal{
		{what: "fast", got: "1.2", met: true},
		{what: "small", got: "99 KiB", met: false},
	})
	if missed != 1 {
		t.Errorf("missed = %d, want 1", missed)
	}
	out := b.String()
	for _, want := range []string{"met     fast   1.2", "MISSED  small  99 KiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if printGoals(&b, nil) != 0 || b.Len() != 0 {
		t.Errorf("no goals printed %q", b.String())
	}
}

func TestProxyConfig(t *testing.T) {
	const old = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	conf, err := proxyConfig(proxySpec{
		Name:      "t",
		Configure: func(c *config.Config) { c.Limits.MaxClientConns = 2010 },
	}, 4321, 0, old)
	if err != nil {
		t.Fatal(err)
	}
	// The proxy reads the file back with config.Load: what the bench
	// asked for must be what the proxy gets.
	path := filepath.Join(t.TempDir(), "p.toml")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := config.DefaultConfig()
	want.Listen, want.Old, want.Admin = "127.0.0.1:4321", old, ""
	want.Limits.MaxClientConns = 2010
	want.Limits.ShutdownTimeout = 2 * time.Second
	if fmt.Sprintf("%+v", *cfg) != fmt.Sprintf("%+v", *want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", *cfg, *want)
	}

	// An admin port is the proxy's, whatever Configure said.
	conf, err = proxyConfig(proxySpec{Name: "a", Configure: func(c *config.Config) { c.Admin = "127.0.0.1:1" }}, 4321, 9187, old)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), `admin = "127.0.0.1:9187"`) {
		t.Errorf("admin port not in the configuration:\n%s", conf)
	}

	// A section's invalid configuration fails before any process starts.
	_, err = proxyConfig(proxySpec{Name: "bad", Configure: func(c *config.Config) { c.Limits.MaxClientConns = 0 }}, 1, 0, old)
	if err == nil || !strings.Contains(err.Error(), "max_client_conns") {
		t.Errorf("invalid configuration: err = %v", err)
	}
}

func TestRenderPGBouncerINI(t *testing.T) {
	ini := renderPGBouncerINI(pgbouncerConfig{
		Port: 7000, PGPort: 5433, DB: "postgres", AuthFile: "/x/userlist.txt", MaxClients: 18, PoolSize: 18,
	})
	// section -> key -> value, as pgbouncer reads it.
	got := map[string]map[string]string{}
	section := ""
	for _, line := range strings.Split(ini, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			got[section] = map[string]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("line %q is not key = value", line)
			}
			got[section][strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	want := map[string]map[string]string{
		"databases": {"postgres": "host=127.0.0.1 port=5433 dbname=postgres user=postgres"},
		"pgbouncer": {
			"listen_addr": "127.0.0.1", "listen_port": "7000", "unix_socket_dir": "",
			"pool_mode": "session", "auth_type": "trust", "auth_file": "/x/userlist.txt",
			"max_client_conn": "18", "default_pool_size": "18",
		},
	}
	for sec, kv := range want {
		for k, v := range kv {
			if g, ok := got[sec][k]; !ok || g != v {
				t.Errorf("[%s] %s = %q (present %v), want %q", sec, k, g, ok, v)
			}
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		status  string
		want    int64
		wantErr bool
	}{
		{status: "Name:\tx\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n", want: 12345},
		{status: "Name:\tx\n", wantErr: true},
		{status: "VmRSS:\t12 MB\n", wantErr: true},
		{status: "VmRSS:\tlots kB\n", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseVmRSS(tt.status)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseVmRSS(%q) = %d, %v; want %d, error %v", tt.status, got, err, tt.want, tt.wantErr)
		}
	}
	// The real thing, for this process.
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	if n, err := parseVmRSS(string(b)); err != nil || n <= 0 {
		t.Errorf("own VmRSS = %d, %v", n, err)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{"--proxy", "bin/x"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.clients, []int{1, 8}) || o.rounds != 5 || o.duration != 5*time.Second ||
		o.idleClients != 2000 || !slices.Equal(o.sections, []string{"pgbench", "dualwrite", "shadowread", "idle"}) ||
		o.dwRounds != 4 || o.dwDuration != 5*time.Second || o.srRounds != 5 || o.srDuration != 5*time.Second {
		t.Errorf("defaults %+v", o)
	}
	// dualwrite and shadowread need the binary; the error says how to do
	// without it.
	_, err = parseOptions(nil, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--proxy") || !strings.Contains(err.Error(), "--sections pgbench,idle") {
		t.Errorf("default sections without --proxy: err = %v", err)
	}
	for _, s := range []string{"dualwrite", "shadowread", "idle,shadowread"} {
		_, err = parseOptions([]string{"--sections", s}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "--proxy") {
			t.Errorf("%s without --proxy: err = %v", s, err)
		}
	}
	if _, err = parseOptions([]string{"--sections", "pgbench,idle"}, &bytes.Buffer{}); err != nil {
		t.Errorf("sections without the binary's: %v", err)
	}
	o, err = parseOptions([]string{"--proxy", "bin/x", "--dualwrite-rounds", "2", "--dualwrite-duration", "3s"}, &bytes.Buffer{})
	if err != nil || o.dwRounds != 2 || o.dwDuration != 3*time.Second {
		t.Errorf("dualwrite flags: %+v, %v", o, err)
	}
	o, err = parseOptions([]string{"--proxy", "bin/x", "--shadowread-rounds", "1", "--shadowread-duration", "2s"}, &bytes.Buffer{})
	if err != nil || o.srRounds != 1 || o.srDuration != 2*time.Second {
		t.Errorf("shadowread flags: %+v, %v", o, err)
	}
	o, err = parseOptions([]string{"--clients", "2, 4", "--sections", "idle", "--proxy", "bin/x"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.clients, []int{2, 4}) || !slices.Equal(o.sections, []string{"idle"}) || !filepath.IsAbs(o.proxyBin) {
		t.Errorf("parsed %+v", o)
	}
	for _, args := range [][]string{
		{"--clients", "0"},
		{"--clients", "1,x"},
		{"--sections", "pgbench,nope"},
		{"--duration", "500ms"},
		{"--rounds", "0"},
		{"--proxy", "bin/x", "--dualwrite-rounds", "0"},
		{"--proxy", "bin/x", "--dualwrite-duration", "500ms"},
		{"--proxy", "bin/x", "--shadowread-rounds", "0"},
		{"--proxy", "bin/x", "--shadowread-duration", "500ms"},
		{"extra"},
	} {
		if _, err := parseOptions(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseOptions(%q) accepted", args)
		}
	}
}

func TestWithoutEnv(t *testing.T) {
	got := withoutEnv([]string{"A=1", "AB=2", "B=3", "A"}, "A", "B")
	if want := []string{"AB=2", "A"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestOpenConnsFails(t *testing.T) {
	port, err := freePort() // nobody listens there now
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns, err := openConns(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), 20, 4)
	if err == nil || len(conns) != 0 {
		t.Errorf("openConns to a closed port: %d connections, err %v", len(conns), err)
	}
}

// TestBenchEndToEnd runs the whole bench, small: a real Postgres, the
// proxy as a child of the test binary (with a CPU profile) in the pgbench
// section, pgbouncer, and the shadowproxy binary, built here, for the
// dualwrite, shadowread and idle sections.
func TestBenchEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres, pgbouncer and a proxy")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "shadowproxy")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/shadowproxy/shadowproxy/cmd/shadowproxy").CombinedOutput(); err != nil {
		t.Fatalf("building shadowproxy: %v\n%s", err, out)
	}
	prof := filepath.Join(dir, "proxy.prof")
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{
		"--proxy", bin,
		"--duration", "1s", "--rounds", "1", "--clients", "1,2", "--scale", "1",
		"--dualwrite-duration", "1s", "--dualwrite-rounds", "1",
		"--shadowread-duration", "1s", "--shadowread-rounds", "1",
		"--idle-clients", "40", "--cpuprofile", prof,
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	for _, re := range []string{
		`(?m)^pgbench -S -M extended, median of 1 interleaved 1 s runs$`,
		`(?m)^1 +\d+ +\d+ +\d+ +\d+\.\d\d +\d+\.\d\d +-?\d+\.\d$`,
		`(?m)^2 +\d+ +\d+ +\d+ +\d+\.\d\d +\d+\.\d\d +-?\d+\.\d$`,
		`(?m)^dual-write: pgbench TPC-B-like \(-c 4 -j 2 -M prepared\) through the proxy, median of 1 interleaved 1 s runs$`,
		`(?m)^old-only +\d+ +1\.00 +\d+\.\d\d +\d+\.\d\d +\d+\.\d–\d+\.\d +\d+ +\d+ +\d+ +- +- +- +- +-$`,
		// The prompt new database caught up after the run.
		`(?m)^dual-write +\d+ +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\d+\.\d–\d+\.\d +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+\.\d\d s$`,
		// The stopped one applied nothing; everything is in the spool.
		`(?m)^dual-write, new stopped +\d+ +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\d+\.\d–\d+\.\d +\d+ +\d+ +\d+ +\d+ +0 +\d+ +\d+ +-$`,
		`(?m)^dual-write, new \+50 ms +\d+ +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\d+\.\d–\d+\.\d +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +-$`,
		// The capture's RETURNING lists, measured on the old database alone,
		// and logical decoding for comparison: the consumer got changes.
		`(?m)^the capture's cost to the old database alone \(no proxy; pgbench -f, median of 1 interleaved 1 s runs\):\n  TPC-B-like with the RETURNING lists the proxy appends: \d+ tps, \d+\.\d\d× the script as written \(\d+ tps\);\n  old DB CPU \d+ µs/txn against \d+\n  for comparison, Postgres's logical decoding of the script as written, streamed \(pgoutput\) to pg_recvlogical, which discards it:\n  \d+ tps, \d+\.\d\d× as written; old DB CPU \d+ µs/txn, its walsender included, and the consumer's [1-9]\d* µs/txn\n  \(all with wal_level = logical, set for these runs only\)$`,
		`(?m)^  (met|MISSED) +dual-write tps ≥ 0\.9× old-only with the new database stopped +×\d+\.\d\d$`,
		`(?m)^  (met|MISSED) +no measurable p99 increase with the new database 50 ms late \(vs prompt, vs stopped\) +[-+]\d+\.\d\d ms \(≤ \+\d+\.\d\d\), [-+]\d+\.\d\d ms \(≤ \+\d+\.\d\d\)$`,
		`(?m)^  met +dual-write lost no transaction \(none dead-lettered or dropped\) +0 lost$`,
		`(?m)^shadow-read: pgbench -S -M extended -c 8 -j 2 through the proxy, median of 1 interleaved 1 s runs$`,
		`(?m)^old-only +\d+ +1\.00 +\d+–\d+ +\d+ +[1-9]\d* +\d+ +- +- +- +- +- +-$`,
		// Every shadowing scenario compared reads, and none differed.
		`(?m)^shadow-read 10% +\d+ +\d+\.\d\d +\d+–\d+ +\d+ +[1-9]\d* +[1-9]\d* +[1-9]\d* +\d+\.\d +\d+ +0 +\d+ +\d+$`,
		`(?m)^shadow-read 100% +\d+ +\d+\.\d\d +\d+–\d+ +\d+ +[1-9]\d* +[1-9]\d* +[1-9]\d* +\d+\.\d +\d+ +0 +\d+ +\d+$`,
		`(?m)^shadow-read 10%, new \+50 ms +\d+ +\d+\.\d\d +\d+–\d+ +\d+ +[1-9]\d* +\d+ +[1-9]\d* +\d+\.\d +\d+ +0 +\d+ +\d+$`,
		`(?m)^  (met|MISSED) +shadow-read tps ≥ 0\.9× old-only at 10% sampling +×\d+\.\d\d$`,
		`(?m)^  (met|MISSED) +shadow-read 10% tps unchanged with the new database 50 ms late \(within noise\) +×\d+\.\d\d of prompt \(≥ ×\d+\.\d\d\)$`,
		`(?m)^  met +no shadow-read mismatch between identical databases +0 mismatched of [1-9]\d* compared$`,
		`(?m)^idle RSS per client connection: -?\d+\.\d KiB \(40 clients;`,
		`(?m)^  (met|MISSED) +≤ 25 µs added per round trip at 1 client`,
		`(?m)^  (met|MISSED) +≤ 64 KiB RSS per idle client connection`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s", re)
		}
	}
	// Everything the proxy mirrored with the new database stopped is
	// still waiting, in memory or (normally all of it) in the spool.
	if m := regexp.MustCompile(`(?m)^dual-write, new stopped(?: +\S+){8} +(\d+) +0 +(\d+) +(\d+) +-$`).FindStringSubmatch(out); m == nil || atoi(t, m[1]) != atoi(t, m[2])+atoi(t, m[3]) {
		t.Errorf("new stopped: mirrored is not queued + spooled (%q)", m)
	}
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		t.Errorf("CPU profile: %v (size %d)", err, sizeOf(fi))
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}
