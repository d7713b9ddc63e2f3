package shadow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/shadowproxy/shadowproxy/compare"
)

// runFixture submits every fixture query and checks that nothing differs.
// With digests, the old rows are digested as the proxy does past its cap.
func runFixture(t *testing.T, s *Shadower, old *oldConn, digests bool) {
	t.Helper()
	qs := fixtureQueries()
	for _, q := range qs {
		r := old.capture(q)
		if r.OldErr != nil {
			t.Fatalf("%s: old error %v", q, r.OldErr)
		}
		if digests {
			truncateRequest(t, r)
		}
		submit(t, s, r)
	}
	rep := waitRecorded(t, s, int64(len(qs)))
	if rep.Compared != int64(len(qs)) || rep.Matched != rep.Compared || rep.Noise != 0 {
		t.Fatalf("compared %d matched %d mismatched %d noise %d ignored %d, want all %d matched:%s",
			rep.Compared, rep.Matched, rep.Mismatched, rep.Noise, rep.Ignored, len(qs), describeDiffs(rep))
	}
	// Every fixture query ran on the old database a second time (noise
	// sample 1), and none differed from itself.
	if runs, differed := testutil.ToFloat64(s.met.noiseRuns), testutil.ToFloat64(s.met.noiseDiffer); runs != float64(len(qs)) || differed != 0 {
		t.Errorf("noise runs %v differed %v, want %d and 0", runs, differed, len(qs))
	}
	// The partial rules that apply, and only those.
	for _, c := range rep.Classes {
		if digests {
			if c.Partial[compare.RuleDigest] != c.Compared {
				t.Errorf("%s: partial %v, want digests only", c.Query, c.Partial)
			}
			continue
		}
		limitNoOrder := strings.HasSuffix(c.Query, "LIMIT $1") && !strings.Contains(c.Query, "ORDER BY")
		if got := c.Partial[compare.RuleLimitWithoutOrder] > 0; got != limitNoOrder {
			t.Errorf("%s: partial %v", c.Query, c.Partial)
		}
		if c.OldLatency.Count == 0 || c.NewLatency.Count == 0 {
			t.Errorf("%s: latencies not recorded: %+v %+v", c.Query, c.OldLatency, c.NewLatency)
		}
	}
}

func TestPostgresToPostgresNoMismatch(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "pp_old"), pgDatabase(t, "pp_new")
	loadPGFixture(t, oldURL)
	loadPGFixture(t, newURL)
	for _, digests := range []bool{false, true} {
		t.Run(fmt.Sprintf("digests=%v", digests), func(t *testing.T) {
			s := newShadower(t, Options{NewURL: newURL, OldURL: oldURL, NoiseSample: 1, RecheckDelay: 10 * time.Millisecond})
			runFixture(t, s, newOldConn(t, oldURL), digests)
		})
	}
}

func TestPostgresToMariaDBNoMismatch(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "pm_old"), myDatabase(t, "pm_new")
	loadPGFixture(t, oldURL)
	loadMyFixture(t, newURL)
	for _, digests := range []bool{false, true} {
		t.Run(fmt.Sprintf("digests=%v", digests), func(t *testing.T) {
			s := newShadower(t, Options{NewURL: newURL, MySQL: true, OldURL: oldURL, NoiseSample: 1, RecheckDelay: 10 * time.Millisecond})
			runFixture(t, s, newOldConn(t, oldURL), digests)
		})
	}
}

// divergence is a difference seeded in the new database and what the
// report must say about it.
type divergence struct {
	name     string
	table    string // created with the same rows on both sides
	pgNew    string // SQL run on the new database (Postgres)
	myNew    string // SQL run on the new database (MariaDB)
	diff     compare.DiffType
	column   string
	rowKey   string
	old, new string // example values
}

var divergences = []divergence{
	{name: "changed value", table: "div_value",
		pgNew: "UPDATE div_value SET v = 'changed' WHERE id = 2", myNew: "UPDATE div_value SET v = 'changed' WHERE id = 2",
		diff: compare.DiffValue, column: "v", rowKey: "id=2", old: `"two"`, new: `"changed"`},
	{name: "missing row", table: "div_missing",
		pgNew: "DELETE FROM div_missing WHERE id = 3", myNew: "DELETE FROM div_missing WHERE id = 3",
		diff: compare.DiffRowCount, rowKey: "id=3", old: `(3, "three", 30)`, new: "(missing)"},
	{name: "extra row", table: "div_extra",
		pgNew: "INSERT INTO div_extra VALUES (9, 'nine', 90)", myNew: "INSERT INTO div_extra VALUES (9, 'nine', 90)",
		diff: compare.DiffRowCount, rowKey: "id=9", old: "(missing)", new: `(9, "nine", 90)`},
	{name: "changed column type", table: "div_type",
		pgNew: "ALTER TABLE div_type ALTER COLUMN n TYPE text", myNew: "ALTER TABLE div_type MODIFY n varchar(20)",
		diff: compare.DiffColumnShape, column: "n", old: "int (int4)", new: "text"},
	{name: "different NULL", table: "div_null",
		pgNew: "UPDATE div_null SET n = NULL WHERE id = 1", myNew: "UPDATE div_null SET n = NULL WHERE id = 1",
		diff: compare.DiffValue, column: "n", rowKey: "id=1", old: "10", new: "NULL"},
}

const divRows = "(1, 'one', 10), (2, 'two', 20), (3, 'three', 30)"

func TestSeededDivergences(t *testing.T) {
	for _, engine := range []string{"postgres", "mariadb"} {
		t.Run(engine, func(t *testing.T) {
			oldURL := pgDatabase(t, "dv_old_"+engine)
			var newURL string
			mysql := engine == "mariadb"
			if mysql {
				newURL = myDatabase(t, "dv_new")
			} else {
				newURL = pgDatabase(t, "dv_new")
			}
			for _, d := range divergences {
				pgExec(t, oldURL, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text, n int); INSERT INTO %[1]s VALUES %s", d.table, divRows))
				if mysql {
					myExec(t, newURL, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text, n int); INSERT INTO %[1]s VALUES %s; %s", d.table, divRows, d.myNew))
				} else {
					pgExec(t, newURL, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text, n int); INSERT INTO %[1]s VALUES %s; %s", d.table, divRows, d.pgNew))
				}
			}
			dir := t.TempDir()
			s := newShadower(t, Options{NewURL: newURL, MySQL: mysql, OldURL: oldURL, ReportDir: dir, NoiseSample: -1, RecheckDelay: 10 * time.Millisecond})
			old := newOldConn(t, oldURL)
			for _, d := range divergences {
				// A parameter, so examples carry it; binary on one side.
				submit(t, s, old.capture(query{sql: "SELECT id, v, n FROM " + d.table + " WHERE id < $1 ORDER BY id",
					params: []param{{oid: pgtype.Int4OID, v: int32(100)}}, binaryParams: d.table == "div_value"}))
			}
			rep := waitRecorded(t, s, int64(len(divergences)))
			checkDivergences(t, rep)
			if got := testutil.ToFloat64(s.met.rechecks[recheckConfirmed]); got != float64(len(divergences)) {
				t.Errorf("confirmed re-checks %v, want %d", got, len(divergences))
			}

			// The event log holds the same findings.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			loaded, err := compare.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			checkDivergences(t, loaded)
			if code := compare.ExitCode(loaded); code != compare.ExitMismatches {
				t.Errorf("exit code %d, want %d", code, compare.ExitMismatches)
			}
		})
	}
}

func checkDivergences(t *testing.T, rep *compare.Report) {
	t.Helper()
	if rep.Mismatched != int64(len(divergences)) || rep.Noise != 0 || rep.Ignored != 0 {
		t.Errorf("mismatched %d noise %d ignored %d, want %d 0 0:%s", rep.Mismatched, rep.Noise, rep.Ignored, len(divergences), describeDiffs(rep))
	}
	want := map[compare.DiffType]int64{compare.DiffValue: 2, compare.DiffRowCount: 2, compare.DiffColumnShape: 1}
	for typ, n := range rep.Differences {
		if n != want[typ] {
			t.Errorf("differences %v, want %v", rep.Differences, want)
			break
		}
	}
	byTable := map[string]compare.ClassReport{}
	for _, c := range rep.Classes {
		if len(c.Tables) != 1 {
			t.Fatalf("class %s has tables %v", c.Query, c.Tables)
		}
		byTable[c.Tables[0]] = c
	}
	for _, d := range divergences {
		c, ok := byTable[d.table]
		if !ok {
			t.Errorf("%s: no class for %s", d.name, d.table)
			continue
		}
		if c.Mismatched != 1 || len(c.Differences) != 1 || c.Differences[d.diff] != 1 {
			t.Errorf("%s: mismatched %d differences %v, want one %s", d.name, c.Mismatched, c.Differences, d.diff)
		}
		// One example names the row (a row-count difference also has one
		// with the counts), and all are of the expected type.
		found := false
		for _, ex := range c.Examples {
			if ex.Type != d.diff {
				t.Errorf("%s: example of type %s", d.name, ex.Type)
			}
			if ex.Column == d.column && ex.RowKey == d.rowKey && ex.Old == d.old && strings.HasPrefix(ex.New, d.new) {
				found = true
			}
			if len(ex.Params) != 1 || ex.Params[0] != `"100"` {
				t.Errorf("%s: example params %q, want [\"100\"]", d.name, ex.Params)
			}
		}
		if !found || len(c.Examples) > 2 {
			t.Errorf("%s: want an example of column %q row %q old %s new %s:%s", d.name, d.column, d.rowKey, d.old, d.new, describeDiffs(rep))
		}
		if d.column != "" && c.Columns[d.column] != 1 {
			t.Errorf("%s: columns %v", d.name, c.Columns)
		}
	}
}

// A mismatch that the re-check does not confirm is noise: here the old
// answer is stale (the row changed on both databases after the read).
func TestRecheckResolvesTransientMismatch(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "rc_old"), pgDatabase(t, "rc_new")
	for _, u := range []string{oldURL, newURL} {
		pgExec(t, u, "CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'a'), (2, 'b')")
	}
	s := newShadower(t, Options{NewURL: newURL, OldURL: oldURL, NoiseSample: -1, RecheckDelay: 10 * time.Millisecond})
	r := newOldConn(t, oldURL).capture(query{sql: "SELECT k, v FROM kv ORDER BY k"})
	for _, u := range []string{oldURL, newURL} {
		pgExec(t, u, "UPDATE kv SET v = 'B' WHERE k = 2")
	}
	submit(t, s, r)
	rep := waitRecorded(t, s, 1)
	if rep.Noise != 1 || rep.Mismatched != 0 {
		t.Fatalf("noise %d mismatched %d, want 1 and 0:%s", rep.Noise, rep.Mismatched, describeDiffs(rep))
	}
	if got := testutil.ToFloat64(s.met.rechecks[recheckResolved]); got != 1 {
		t.Errorf("resolved re-checks %v, want 1", got)
	}
}

// A class whose old answers differ among themselves is noisy: its
// mismatches are noise.
func TestNoisyClass(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "nz_old"), pgDatabase(t, "nz_new")
	for _, u := range []string{oldURL, newURL} {
		pgExec(t, u, "CREATE TABLE kv (k int PRIMARY KEY); INSERT INTO kv SELECT generate_series(1, 5)")
	}
	s := newShadower(t, Options{NewURL: newURL, OldURL: oldURL, NoiseSample: 1, RecheckDelay: 10 * time.Millisecond})
	old := newOldConn(t, oldURL)
	const n = 3
	for range n {
		submit(t, s, old.capture(query{sql: "SELECT k, random() AS r FROM kv ORDER BY k"}))
	}
	rep := waitRecorded(t, s, n)
	if rep.Noise != n || rep.Mismatched != 0 {
		t.Fatalf("noise %d mismatched %d, want %d and 0:%s", rep.Noise, rep.Mismatched, n, describeDiffs(rep))
	}
	if testutil.ToFloat64(s.met.noiseDiffer) < 1 {
		t.Error("no noise run differed")
	}
}

// blockingMirror never reaches a position.
type blockingMirror struct{}

func (blockingMirror) WaitApplied(ctx context.Context, _ uint64) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestMirrorLagIsLabelled(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "lag_old"), pgDatabase(t, "lag_new")
	for _, u := range []string{oldURL, newURL} {
		pgExec(t, u, "CREATE TABLE kv (k int PRIMARY KEY); INSERT INTO kv VALUES (1)")
	}
	s := newShadower(t, Options{NewURL: newURL, Mirror: blockingMirror{}, MirrorWait: 20 * time.Millisecond})
	r := newOldConn(t, oldURL).capture(query{sql: "SELECT k FROM kv"})
	r.MirrorSeq = 7
	submit(t, s, r)
	rep := waitRecorded(t, s, 1)
	if rep.Matched != 1 || rep.Classes[0].Partial[RuleMirrorLag] != 1 {
		t.Errorf("matched %d partial %v, want a match labelled %q", rep.Matched, rep.Classes[0].Partial, RuleMirrorLag)
	}
	if got := testutil.ToFloat64(s.met.timeouts[timeoutMirrorWait]); got != 1 {
		t.Errorf("mirror wait timeouts %v, want 1", got)
	}
}

// Results beyond the per-comparison cap compare by digest, on both sides.
func TestDigestComparison(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "dg_old"), pgDatabase(t, "dg_new")
	for _, u := range []string{oldURL, newURL} {
		pgExec(t, u, "CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big SELECT g, repeat('x', g % 50) FROM generate_series(1, 500) g")
	}
	pgExec(t, newURL, "CREATE TABLE big2 AS SELECT * FROM big; UPDATE big2 SET v = 'different' WHERE id = 250")
	pgExec(t, oldURL, "CREATE TABLE big2 AS SELECT * FROM big")
	s := newShadower(t, Options{NewURL: newURL, PerComparisonCap: 2048, NoiseSample: -1, RecheckDelay: 10 * time.Millisecond})
	old := newOldConn(t, oldURL)
	for _, table := range []string{"big", "big2"} {
		r := old.capture(query{sql: "SELECT id, v FROM " + table})
		truncateRequest(t, r)
		submit(t, s, r)
	}
	rep := waitRecorded(t, s, 2)
	if rep.Matched != 1 || rep.Mismatched != 1 || rep.Differences[compare.DiffValue] != 1 {
		t.Fatalf("matched %d mismatched %d differences %v:%s", rep.Matched, rep.Mismatched, rep.Differences, describeDiffs(rep))
	}
	for _, c := range rep.Classes {
		if c.Partial[compare.RuleDigest] != c.Compared {
			t.Errorf("%s: partial %v, want every comparison by digest", c.Query, c.Partial)
		}
	}
}

// The new side's rows count against the memory cap too: with the budget
// spent, they are digested rather than kept.
func TestNewRowsRespectMemoryCap(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "mc_old"), pgDatabase(t, "mc_new")
	for _, u := range []string{oldURL, newURL} {
		pgExec(t, u, "CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 200) g")
	}
	gate := gateMirror(make(chan struct{}))
	s := newShadower(t, Options{NewURL: newURL, MemoryCap: 1 << 20, NoiseSample: -1, Mirror: gate})
	r := newOldConn(t, oldURL).capture(query{sql: "SELECT id, v FROM big"})
	r.MirrorSeq = 1
	submit(t, s, r)
	// While the worker waits for the mirror, the proxy takes almost all
	// the rest.
	hog := s.opts.MemoryCap - s.mem.Load() - 1024
	if !s.Reserve(hog) {
		t.Fatal("reserve refused")
	}
	close(gate)
	rep := waitRecorded2(t, s, 1, hog)
	s.Release(hog)
	if rep.Matched != 1 || rep.Classes[0].Partial[compare.RuleDigest] != 1 {
		t.Errorf("matched %d partial %v, want a digest match", rep.Matched, rep.Classes[0].Partial)
	}
	if testutil.ToFloat64(s.met.memoryFull) == 0 {
		t.Error("no reservation was refused")
	}
}

// gateMirror reaches every position once closed.
type gateMirror chan struct{}

func (g gateMirror) WaitApplied(ctx context.Context, _ uint64) error {
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitRecorded2 is waitRecorded with held bytes still reserved by the test.
func waitRecorded2(t *testing.T, s *Shadower, n, held int64) *compare.Report {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := s.Snapshot()
		if r.Compared+r.Ignored >= n && s.mem.Load() == held {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %d events, %d bytes reserved", r.Compared+r.Ignored, s.mem.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNoMySQLTranslation(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "nt_old"), myDatabase(t, "nt_new")
	pgExec(t, oldURL, "CREATE TABLE ev (id int PRIMARY KEY, at timestamp); INSERT INTO ev VALUES (1, '2024-01-02 03:04:05')")
	myExec(t, newURL, "CREATE TABLE ev (id int PRIMARY KEY, at datetime(6)); INSERT INTO ev VALUES (1, '2024-01-02 03:04:05')")
	s := newShadower(t, Options{NewURL: newURL, MySQL: true, NoiseSample: -1})
	r := newOldConn(t, oldURL).capture(query{sql: "SELECT date_trunc('day', at) FROM ev"})
	if !s.Wants(r.Statement) {
		t.Fatal("Wants refused the read before any translation was tried")
	}
	submit(t, s, r)
	rep := waitRecorded(t, s, 1)
	want := IgnoredNoTranslation + " (function date_trunc)"
	if rep.Compared != 0 || rep.Ignored != 1 || rep.Classes[0].Ignored[want] != 1 {
		t.Fatalf("compared %d ignored %d %v, want one %q", rep.Compared, rep.Ignored, rep.Classes[0].Ignored, want)
	}
	// The class is known now: the proxy need not capture it again.
	if s.Wants(r.Statement) {
		t.Error("Wants still shadows a class without translation")
	}
	if got := testutil.ToFloat64(s.met.notShadowedCounter(IgnoredNoTranslation)); got != 2 {
		t.Errorf("not shadowed (no translation) %v, want 2", got)
	}
}

// A new database that hangs costs time-outs, never the client's time.
func TestNewDatabaseHangs(t *testing.T) {
	oldURL := pgDatabase(t, "hang_old")
	pgExec(t, oldURL, "CREATE TABLE kv (k int PRIMARY KEY); INSERT INTO kv VALUES (1)")
	for _, mysql := range []bool{false, true} {
		t.Run(fmt.Sprintf("mysql=%v", mysql), func(t *testing.T) {
			addr := blackhole(t)
			newURL := "postgres://app@" + addr + "/db?sslmode=disable"
			if mysql {
				newURL = "mysql://app@" + addr + "/db"
			}
			s := newShadower(t, Options{NewURL: newURL, MySQL: mysql, Timeout: 200 * time.Millisecond, MaxConcurrent: 2, NoiseSample: -1})
			old := newOldConn(t, oldURL)
			const n = 4
			var slowest time.Duration
			for range n {
				r := old.capture(query{sql: "SELECT k FROM kv"})
				start := time.Now()
				submit(t, s, r)
				slowest = max(slowest, time.Since(start))
			}
			// Blocking would take the time-out (200ms).
			if slowest > 100*time.Millisecond {
				t.Errorf("Submit took %s", slowest)
			}
			rep := waitRecorded(t, s, n)
			if rep.Timeouts != n || rep.Differences[compare.DiffTimeout] != n || rep.Mismatched != n {
				t.Errorf("timeouts %d differences %v, want %d time-outs:%s", rep.Timeouts, rep.Differences, n, describeDiffs(rep))
			}
			if got := testutil.ToFloat64(s.met.timeouts[timeoutQuery]); got != n {
				t.Errorf("query timeouts metric %v, want %d", got, n)
			}
			if code := compare.ExitCode(rep); code != compare.ExitErrors {
				t.Errorf("exit code %d, want %d", code, compare.ExitErrors)
			}
		})
	}
}

// A new database that refuses connections: reads are recorded as not
// compared, not as mismatches.
func TestNewDatabaseDown(t *testing.T) {
	oldURL := pgDatabase(t, "down_old")
	pgExec(t, oldURL, "CREATE TABLE kv (k int PRIMARY KEY); INSERT INTO kv VALUES (1)")
	s := newShadower(t, Options{NewURL: "postgres://app@" + closedPort(t) + "/db?sslmode=disable", Timeout: time.Second, NoiseSample: -1})
	old := newOldConn(t, oldURL)
	for range 3 {
		submit(t, s, old.capture(query{sql: "SELECT k FROM kv"}))
	}
	rep := waitRecorded(t, s, 3)
	if rep.Ignored != 3 || rep.Mismatched != 0 || rep.Classes[0].Ignored[IgnoredNewUnreachable] != 3 {
		t.Errorf("ignored %d %v mismatched %d, want 3 unreachable", rep.Ignored, rep.Classes[0].Ignored, rep.Mismatched)
	}
	if got := testutil.ToFloat64(s.met.errors[errNewUnreachable]); got != 3 {
		t.Errorf("unreachable metric %v, want 3", got)
	}
}

// closedPort returns an address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A full queue drops requests at once and counts them.
func TestQueueFullDrops(t *testing.T) {
	url := pgDatabase(t, "qf_old")
	pgExec(t, url, "CREATE TABLE kv (k int PRIMARY KEY); INSERT INTO kv VALUES (1)")
	// The only worker waits for the mirror until the gate opens.
	gate := gateMirror(make(chan struct{}))
	s := newShadower(t, Options{NewURL: url, Mirror: gate, MirrorWait: time.Minute, MaxConcurrent: 1, QueueLen: 2, NoiseSample: -1})
	r := newOldConn(t, url).capture(query{sql: "SELECT k FROM kv"})
	r.MirrorSeq = 1
	submitCopy := func() bool { c := *r; return s.Submit(&c) }
	if !submitCopy() {
		t.Fatal("the first request was refused")
	}
	for len(s.queue) > 0 { // the worker has taken it
		time.Sleep(time.Millisecond)
	}
	const n = 20
	accepted := 0
	start := time.Now()
	for range n {
		if submitCopy() {
			accepted++
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("%d Submits took %s", n, d)
	}
	if dropped := testutil.ToFloat64(s.met.dropped[dropQueueFull]); accepted != 2 || dropped != n-2 {
		t.Errorf("accepted %d dropped %v of %d, want the queue's 2 accepted", accepted, dropped, n)
	}
	close(gate)
	if rep := waitRecorded(t, s, 3); rep.Matched != 3 {
		t.Errorf("matched %d of 3", rep.Matched)
	}
}

func TestCloseDropsQueuedAndRefusesMore(t *testing.T) {
	oldURL := pgDatabase(t, "cl_old")
	pgExec(t, oldURL, "CREATE TABLE kv (k int PRIMARY KEY); INSERT INTO kv VALUES (1)")
	addr := blackhole(t)
	s, err := New(context.Background(), Options{NewURL: "postgres://app@" + addr + "/db?sslmode=disable", SampleRate: 1,
		Timeout: 5 * time.Second, MaxConcurrent: 1, QueueLen: 8, NoiseSample: -1})
	if err != nil {
		t.Fatal(err)
	}
	r := newOldConn(t, oldURL).capture(query{sql: "SELECT k FROM kv"})
	for range 4 {
		c := *r
		c.Reserved = 100
		if !s.Reserve(100) || !s.Submit(&c) {
			t.Fatal("refused")
		}
	}
	// The worker hangs on the blackhole for 5s: Close gives up waiting,
	// cancels it, and the queued requests are dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("close: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("close took %s", d)
	}
	if s.Submit(r) {
		t.Error("Submit accepted a request after Close")
	}
	if got := s.mem.Load(); got != 0 {
		t.Errorf("%d bytes still reserved after Close", got)
	}
	if got := testutil.ToFloat64(s.met.dropped[dropClosed]); got < 3 {
		t.Errorf("dropped on close %v, want at least 3", got)
	}
	if rep := s.Snapshot(); rep.Compared != 0 {
		t.Errorf("a cancelled comparison was recorded: %+v", rep)
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newShadower(t, Options{NewURL: "postgres://app@127.0.0.1:1/db", Registerer: reg})
	s.NotShadowed("read in a transaction that has written")
	s.Submit(nil)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		got[f.GetName()] = true
	}
	for _, name := range []string{"comparisons_total", "mismatches_total", "dropped_total", "errors_total", "timeouts_total",
		"rechecks_total", "noise_runs_total", "not_shadowed_total", "queue_length", "memory_bytes", "new_latency_seconds"} {
		if !got[metricPrefix+name] {
			t.Errorf("metric %s%s not registered", metricPrefix, name)
		}
	}
	// A second Shadower on the same registry is refused.
	if _, err := New(context.Background(), Options{NewURL: "postgres://app@127.0.0.1:1/db", Registerer: reg}); err == nil {
		t.Error("a second Shadower registered the same metrics")
	}
	// Reasons beyond the bound share one label value.
	for i := range 2 * maxReasons {
		s.NotShadowed(fmt.Sprintf("reason %d", i))
	}
	if n := testutil.CollectAndCount(s.met.notShadowedVec); n != maxReasons+1 {
		t.Errorf("%d not-shadowed series, want %d", n, maxReasons+1)
	}
}

// User-defined types have per-database OIDs: the old database's OID of a
// parameter's enum type must not reach the new database.
func TestUserDefinedTypes(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "ud_old"), pgDatabase(t, "ud_new")
	// An extra type on the new side shifts its OIDs.
	pgExec(t, newURL, "CREATE TYPE filler AS ENUM ('x')")
	for _, u := range []string{oldURL, newURL} {
		pgExec(t, u, `CREATE TYPE mood AS ENUM ('sad', 'happy');
			CREATE TABLE pets (id int PRIMARY KEY, m mood);
			INSERT INTO pets VALUES (1, 'sad'), (2, 'happy'), (3, NULL)`)
	}
	old := newOldConn(t, oldURL)
	var moodOID uint32
	res := old.conn.ExecParams(context.Background(), "SELECT 'mood'::regtype::oid", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, err := fmt.Sscan(string(res.Rows[0][0]), &moodOID); err != nil {
		t.Fatal(err)
	}
	s := newShadower(t, Options{NewURL: newURL, NoiseSample: -1, RecheckDelay: 10 * time.Millisecond})
	// An enum's binary form is its label, so the same bytes serve both.
	for _, bin := range []bool{false, true} {
		submit(t, s, old.capture(query{sql: "SELECT id, m FROM pets WHERE m = $1 OR m IS NULL ORDER BY id",
			params: []param{{oid: moodOID, raw: []byte("happy")}}, binaryParams: bin, binaryResult: bin}))
	}
	rep := waitRecorded(t, s, 2)
	if rep.Matched != 2 {
		t.Errorf("matched %d of 2:%s", rep.Matched, describeDiffs(rep))
	}
}

// Shadow reads run as prepared statements on the new database: DDL there
// that changes a result type must not turn into a reported error.
func TestPreparedStatementSurvivesDDL(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "ps_old"), pgDatabase(t, "ps_new")
	for _, u := range []string{oldURL, newURL} {
		pgExec(t, u, "CREATE TABLE kv (k int PRIMARY KEY, v int); INSERT INTO kv VALUES (1, 10), (2, 20)")
	}
	s := newShadower(t, Options{NewURL: newURL, MaxConcurrent: 1, NoiseSample: -1, RecheckDelay: -1, BatchWindow: 100 * time.Millisecond})
	old := newOldConn(t, oldURL)
	q := query{sql: "SELECT k, v FROM kv WHERE k = $1", params: []param{{oid: 23, v: int32(2)}}}
	submit(t, s, old.capture(q))
	waitRecorded(t, s, 1)
	pgExec(t, newURL, "ALTER TABLE kv ALTER COLUMN v TYPE bigint")
	submit(t, s, old.capture(q))
	rep := waitRecorded(t, s, 2)
	if rep.Matched != 2 || rep.Mismatched != 0 {
		t.Fatalf("matched %d mismatched %d, want 2 and 0:%s", rep.Matched, rep.Mismatched, describeDiffs(rep))
	}
	// The same in a batch: both reads of the stale statement are read again.
	pgExec(t, newURL, "ALTER TABLE kv ALTER COLUMN v TYPE int")
	for range 2 {
		submit(t, s, old.capture(q))
	}
	submit(t, s, old.capture(query{sql: "SELECT count(*) FROM kv"}))
	rep = waitRecorded(t, s, 5)
	if rep.Matched != 5 || rep.Mismatched != 0 {
		t.Fatalf("matched %d mismatched %d, want 5 and 0:%s", rep.Matched, rep.Mismatched, describeDiffs(rep))
	}
}

// A shadow connection keeps a bounded set of prepared statements.
func TestPreparedStatementsBounded(t *testing.T) {
	url := pgDatabase(t, "ps_bound")
	ctx := context.Background()
	raw, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	c := newPGConn(raw)
	defer closeConn(raw)
	names := map[string]bool{}
	for i := range preparedPerConn + 10 {
		name, err := c.statement(ctx, fmt.Sprintf("SELECT %d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		names[name] = true
	}
	if again, _ := c.statement(ctx, fmt.Sprintf("SELECT %d", preparedPerConn+9), nil); !names[again] {
		t.Errorf("a cached statement was prepared again as %s", again)
	}
	// (Evicted statements are deallocated before the next prepare, this
	// one included.)
	if _, err := c.statement(ctx, "SELECT nonsense FROM", nil); err == nil {
		t.Error("a statement that does not parse was prepared")
	}
	res := c.ExecParams(ctx, "SELECT count(*) FROM pg_prepared_statements", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if n, _ := strconv.Atoi(string(res.Rows[0][0])); n > preparedPerConn {
		t.Errorf("%d statements prepared on the connection, want at most %d", n, preparedPerConn)
	}
}

// Reads that queue up together go to the new database as one pipelined
// batch, and each keeps its own outcome: a statement the new database
// refuses to prepare, one that fails while running, and value differences
// between reads that match.
func TestBatchedReads(t *testing.T) {
	for _, timed := range []bool{true, false} {
		name := map[bool]string{true: "timed", false: "untimed"}[timed]
		t.Run(name, func(t *testing.T) { testBatchedReads(t, timed) })
	}
}

func testBatchedReads(t *testing.T, timed bool) {
	suffix := map[bool]string{true: "", false: "_untimed"}[timed]
	oldURL, newURL := pgDatabase(t, "batch_old"+suffix), pgDatabase(t, "batch_new"+suffix)
	pgExec(t, oldURL, "CREATE TABLE kv (k int PRIMARY KEY, v int); INSERT INTO kv VALUES (1, 10), (2, 20), (3, 30); CREATE TABLE onlyold (a int)")
	pgExec(t, newURL, "CREATE TABLE kv (k int PRIMARY KEY, v int); INSERT INTO kv VALUES (1, 10), (2, 21), (3, 0)")
	s := newShadower(t, Options{NewURL: newURL, MaxConcurrent: 1, BatchWindow: 200 * time.Millisecond, NoiseSample: -1, RecheckDelay: -1})
	s.untimed = !timed
	old := newOldConn(t, oldURL)
	k := func(n int32) []param { return []param{{oid: pgtype.Int4OID, v: n}} }
	qs := []struct {
		q    query
		want compare.DiffType // "" for a match
	}{
		{query{sql: "SELECT k, v FROM kv WHERE k = $1", params: k(1)}, ""},
		{query{sql: "SELECT a FROM onlyold"}, compare.DiffError},
		{query{sql: "SELECT 300 / v AS q FROM kv WHERE k = $1", params: k(3)}, compare.DiffError},
		{query{sql: "SELECT v, k FROM kv WHERE k = $1 AND v > 0", params: k(2), binaryResult: true}, compare.DiffValue},
		{query{sql: "SELECT k, v FROM kv ORDER BY k"}, compare.DiffValue},
		{query{sql: "SELECT k FROM kv WHERE k = $1", params: k(2)}, ""},
		// After a read that fails while running, an untimed batch's
		// server skips the rest: they are run again.
		{query{sql: "SELECT k FROM kv WHERE k = $1 AND 10 / v > 0", params: k(3)}, compare.DiffError},
		{query{sql: "SELECT v FROM kv WHERE k = $1", params: k(1)}, ""},
	}
	fps := make([]string, len(qs))
	for i, q := range qs {
		r := old.capture(q.q)
		fps[i] = r.Statement.Fingerprint
		submit(t, s, r)
	}
	rep := waitRecorded(t, s, int64(len(qs)))
	classes := map[string]*compare.ClassReport{}
	for i := range rep.Classes {
		classes[rep.Classes[i].Fingerprint] = &rep.Classes[i]
	}
	for i, q := range qs {
		c := classes[fps[i]]
		if c == nil {
			t.Errorf("%s: no class in the report (%d classes)", q.q.sql, len(rep.Classes))
			continue
		}
		wantLatencies := int64(0)
		if timed {
			wantLatencies = 1
		}
		if c.NewLatency.Count != wantLatencies {
			t.Errorf("%s: %d new latencies recorded, want %d", q.q.sql, c.NewLatency.Count, wantLatencies)
		}
		if q.want == "" {
			if c.Matched != 1 {
				t.Errorf("%s: matched %d, want 1:%s", q.q.sql, c.Matched, describeDiffs(rep))
			}
			continue
		}
		if c.Mismatched != 1 || c.Differences[q.want] == 0 {
			t.Errorf("%s: mismatched %d with %v, want one %s:%s", q.q.sql, c.Mismatched, c.Differences, q.want, describeDiffs(rep))
		}
	}
	m := &dto.Metric{}
	if err := s.met.batchSize.Write(m); err != nil {
		t.Fatal(err)
	}
	if h := m.GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != float64(len(qs)) {
		t.Errorf("%d batches of %v reads in all, want 1 of %d", h.GetSampleCount(), h.GetSampleSum(), len(qs))
	}
}

// A connection lost in the middle of a batch: the reads that came back are
// compared, the rest count as the new database unreachable.
func TestBatchConnectionLost(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "batchlost_old"), pgDatabase(t, "batchlost_new")
	s := newShadower(t, Options{NewURL: newURL, MaxConcurrent: 1, BatchWindow: 200 * time.Millisecond, NoiseSample: -1, RecheckDelay: -1})
	old := newOldConn(t, oldURL)
	for _, sql := range []string{"SELECT 1 AS a", "SELECT pg_sleep(1)::text AS b", "SELECT 2 AS c"} {
		submit(t, s, old.capture(query{sql: sql}))
	}
	// Once the batch runs, end the shadow connection's backend.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := pgQuery(t, newURL, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'shadowproxy-shadow' AND query LIKE '%pg_sleep%' AND state = 'active'")
		if res == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch never ran")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep := waitRecorded(t, s, 3)
	if rep.Matched != 1 || rep.Ignored != 2 {
		t.Fatalf("matched %d ignored %d, want 1 and 2:%s", rep.Matched, rep.Ignored, describeDiffs(rep))
	}
	for _, c := range rep.Classes {
		if c.Matched == 0 && c.Ignored[IgnoredNewUnreachable] != 1 {
			t.Errorf("%s: ignored %v, want the new database unreachable", c.Query, c.Ignored)
		}
	}
}

// TestSearchPath: reads of sessions that set their own search_path (a
// schema per tenant) run on the new database, and in the old database's
// re-checks and noise runs, with that path, in batches that mix paths.
func TestSearchPath(t *testing.T) {
	oldURL, newURL := pgDatabase(t, "sp_old"), pgDatabase(t, "sp_new")
	const tables = `
CREATE SCHEMA t1; CREATE SCHEMA "Tenant 2";
CREATE TABLE public.items (id int PRIMARY KEY, v text);
CREATE TABLE t1.items (id int PRIMARY KEY, v text);
CREATE TABLE "Tenant 2".items (id int PRIMARY KEY, v text);
INSERT INTO public.items SELECT g, 'public ' || g FROM generate_series(1, 3) g;
INSERT INTO t1.items SELECT g, 'one ' || g FROM generate_series(1, 5) g;
INSERT INTO "Tenant 2".items SELECT g, 'two ' || g FROM generate_series(1, 7) g;`
	pgExec(t, oldURL, tables)
	pgExec(t, newURL, tables)
	s := newShadower(t, Options{NewURL: newURL, OldURL: oldURL, NoiseSample: 1, BatchWindow: 20 * time.Millisecond})
	if !s.FollowsSearchPath() {
		t.Fatal("a Postgres target follows the search_path")
	}
	old := newOldConn(t, oldURL)
	paths := []string{"t1", `"Tenant 2", public`, "", "t1", `"Tenant 2", public`, ""}
	for _, path := range paths {
		set := "RESET search_path"
		if path != "" {
			set = "SET search_path TO " + path
		}
		if _, err := old.conn.Exec(context.Background(), set).ReadAll(); err != nil {
			t.Fatal(err)
		}
		r := old.capture(query{sql: "SELECT id, v FROM items ORDER BY id"})
		r.SearchPath = path
		submit(t, s, r)
	}
	rep := waitRecorded(t, s, int64(len(paths)))
	if rep.Compared != int64(len(paths)) || rep.Matched != rep.Compared {
		t.Fatalf("compared %d matched %d mismatched %d noise %d:%s", rep.Compared, rep.Matched, rep.Mismatched, rep.Noise, describeDiffs(rep))
	}
	if runs, differed := testutil.ToFloat64(s.met.noiseRuns), testutil.ToFloat64(s.met.noiseDiffer); runs != float64(len(paths)) || differed != 0 {
		t.Errorf("noise runs %v differed %v, want %d and 0", runs, differed, len(paths))
	}
}
