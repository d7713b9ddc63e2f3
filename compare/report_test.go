package compare

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fixtureEvents is a deterministic mix of events over three query classes,
// built from real comparisons.
func fixtureEvents() []Event {
	users := &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("Alice")), row(IntValue(2), TextValue("bob")))}
	usersCI := &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(2), TextValue("bob")), row(IntValue(1), TextValue("alice")))}
	prices := &Result{Columns: []Column{idCol, col("price", FamilyDecimal, "numeric")}, Rows: rows(row(IntValue(7), dec("9.90")))}
	pricesNew := &Result{Columns: []Column{idCol, col("price", FamilyDecimal, "DECIMAL")}, Rows: rows(row(IntValue(7), dec("9.95")))}
	pricesSame := &Result{Columns: []Column{idCol, col("price", FamilyDecimal, "DECIMAL")}, Rows: rows(row(IntValue(7), dec("9.9")))}
	ordered := &Result{Columns: []Column{idCol}, Rows: rows(row(IntValue(1)), row(Null))}
	orderedNew := &Result{Columns: []Column{idCol}, Rows: rows(row(Null), row(IntValue(1)))}

	const qUsers = "SELECT id, name FROM users WHERE name = $1"
	const qPrices = "SELECT id, price FROM items WHERE id = $1"
	const qOrder = "SELECT parent_id FROM items ORDER BY parent_id"
	var evs []Event
	at := func(min, sec int) time.Time {
		return t0.Add(time.Duration(min)*time.Minute + time.Duration(sec)*time.Second)
	}
	for i := range 6 {
		o := Compare(users, users, Shape{}, Options{})
		if i%2 == 1 {
			o = Compare(users, usersCI, Shape{}, Options{})
		}
		evs = append(evs, Event{Time: at(i, 0), Fingerprint: "a1b2c3d4e5f60718", Query: qUsers, Tables: []string{"users"},
			Params: []string{fmt.Sprintf("'user%d'", i)}, Outcome: o, OldLatency: time.Millisecond, NewLatency: 1200 * time.Microsecond})
	}
	for i := range 4 {
		o := Compare(prices, pricesSame, Shape{}, Options{})
		if i == 3 {
			o = Compare(prices, pricesNew, Shape{}, Options{})
		}
		evs = append(evs, Event{Time: at(i, 30), Fingerprint: "0f0e0d0c0b0a0908", Query: qPrices, Tables: []string{"items"},
			Params: []string{fmt.Sprint(7 + i)}, Outcome: o, OldLatency: 2 * time.Millisecond, NewLatency: 40 * time.Millisecond})
	}
	evs = append(evs,
		Event{Time: at(2, 10), Fingerprint: "ffff000011112222", Query: qOrder, Tables: []string{"items"},
			Outcome: Compare(ordered, orderedNew, orderBy(0), Options{}), OldLatency: 500 * time.Microsecond, NewLatency: 600 * time.Microsecond},
		Event{Time: at(3, 10), Fingerprint: "ffff000011112222", Query: qOrder, Tables: []string{"items"},
			Outcome:    Compare(ordered, &Result{Err: &Error{Code: "42703", Message: `column "parent_id" does not exist`}}, orderBy(0), Options{}),
			OldLatency: 500 * time.Microsecond, NewLatency: 100 * time.Microsecond},
		Event{Time: at(4, 10), Fingerprint: "ffff000011112222", Query: qOrder, Tables: []string{"items"}, Ignored: "volatile function now()"},
		Event{Time: at(5, 10), Fingerprint: "ffff000011112222", Query: qOrder, Tables: []string{"items"},
			Outcome: Compare(ordered, orderedNew, orderBy(0), Options{}), Noise: true},
	)
	return evs
}

func fixtureReport(t *testing.T) *Report {
	t.Helper()
	a := NewAggregator(AggregatorOptions{Now: func() time.Time { return t0.Add(time.Hour) }})
	for _, ev := range fixtureEvents() {
		a.Record(ev)
	}
	return a.Snapshot()
}

func TestAggregatorCounts(t *testing.T) {
	r := fixtureReport(t)
	if r.Compared != 13 || r.Matched != 6 || r.Mismatched != 6 || r.Noise != 1 || r.Ignored != 1 || r.ErrorsOneSide != 1 {
		t.Fatalf("totals: %+v", r)
	}
	wantDiffs := map[DiffType]int64{DiffCollation: 3, DiffValue: 1, DiffNullOrder: 1, DiffError: 1}
	if !reflect.DeepEqual(r.Differences, wantDiffs) {
		t.Errorf("differences = %v, want %v", r.Differences, wantDiffs)
	}
	if len(r.Classes) != 3 || r.Classes[0].Fingerprint != "a1b2c3d4e5f60718" || r.Classes[1].Fingerprint != "ffff000011112222" {
		t.Fatalf("class order: %+v", r.Classes)
	}
	users := r.Classes[0]
	if users.Compared != 6 || users.Mismatched != 3 || users.Columns["name"] != 3 || len(users.Examples) != 3 {
		t.Errorf("users class: %+v", users)
	}
	if users.SlowOnNew {
		t.Error("users flagged slow at 1.2x")
	}
	prices := r.Classes[2]
	if !prices.SlowOnNew || prices.NewLatency.P95 < 30 || prices.NewLatency.P95 > 50 || prices.OldLatency.P50 < 1.6 || prices.OldLatency.P50 > 2.4 {
		t.Errorf("prices latency: old %+v new %+v slow %v", prices.OldLatency, prices.NewLatency, prices.SlowOnNew)
	}
	order := r.Classes[1]
	if order.Noise != 1 || order.Ignored["volatile function now()"] != 1 || order.ErrorsOneSide != 1 || order.Compared != 3 {
		t.Errorf("order class: %+v", order)
	}
	if !order.FirstSeen.Equal(t0.Add(2*time.Minute+10*time.Second)) || !order.LastSeen.Equal(t0.Add(5*time.Minute+10*time.Second)) {
		t.Errorf("seen %v .. %v", order.FirstSeen, order.LastSeen)
	}
	if len(r.Series) != 6 || r.Series[1].Compared != 2 || r.Series[1].Mismatched != 1 {
		t.Errorf("series: %+v", r.Series)
	}
	if got := ExitCode(r); got != ExitErrors|ExitMismatches {
		t.Errorf("exit code = %d", got)
	}
}

func TestExitCode(t *testing.T) {
	cases := []struct {
		diffs map[DiffType]int64
		want  int
	}{
		{nil, 0},
		{map[DiffType]int64{DiffValue: 2}, ExitMismatches},
		{map[DiffType]int64{DiffTimeout: 1}, ExitErrors},
		{map[DiffType]int64{DiffError: 1, DiffOrder: 1}, ExitErrors | ExitMismatches},
		{map[DiffType]int64{DiffValue: 0}, 0},
	}
	for _, tc := range cases {
		if got := ExitCode(&Report{Differences: tc.diffs}); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.diffs, got, tc.want)
		}
	}
}

func TestSeriesIsBounded(t *testing.T) {
	a := NewAggregator(AggregatorOptions{SeriesBucket: time.Second, MaxSeriesBuckets: 8})
	mismatch := &Outcome{Counts: map[DiffType]int{DiffValue: 1}}
	for i := range 100 {
		o := &Outcome{Match: true}
		if i%4 == 0 {
			o = mismatch
		}
		a.Record(Event{Time: t0.Add(time.Duration(i) * time.Second), Fingerprint: "f", Outcome: o})
	}
	r := a.Snapshot()
	if len(r.Series) > 8 {
		t.Fatalf("%d buckets", len(r.Series))
	}
	var compared, mismatched int64
	for i, p := range r.Series {
		compared += p.Compared
		mismatched += p.Mismatched
		if i > 0 && !p.Start.After(r.Series[i-1].Start) {
			t.Errorf("series not in order at %d", i)
		}
	}
	if compared != 100 || mismatched != 25 || r.SeriesBucket != 16*time.Second {
		t.Errorf("compared %d mismatched %d width %v", compared, mismatched, r.SeriesBucket)
	}
}

func TestAggregatorClassLimit(t *testing.T) {
	a := NewAggregator(AggregatorOptions{MaxClasses: 2})
	for i := range 5 {
		a.Record(Event{Time: t0, Fingerprint: fmt.Sprint(i), Outcome: &Outcome{Match: true}})
	}
	r := a.Snapshot()
	if len(r.Classes) != 2 || r.Untracked != 3 || r.Compared != 5 {
		t.Errorf("classes %d untracked %d compared %d", len(r.Classes), r.Untracked, r.Compared)
	}
}

func TestAggregatorConcurrent(t *testing.T) {
	a := NewAggregator(AggregatorOptions{})
	evs := fixtureEvents()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				ev := evs[(g+i)%len(evs)]
				a.Record(ev)
				if i%10 == 0 {
					a.Snapshot()
				}
			}
		}()
	}
	wg.Wait()
	r := a.Snapshot()
	if r.Compared+r.Ignored != 400 {
		t.Errorf("recorded %d", r.Compared+r.Ignored)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	s := h.summary()
	for _, c := range []struct {
		got, want float64
	}{{s.P50, 50}, {s.P95, 95}, {s.P99, 99}} {
		if c.got < c.want*0.84 || c.got > c.want*1.19 {
			t.Errorf("quantile %v, want about %v", c.got, c.want)
		}
	}
	var empty histogram
	if empty.summary() != (Latency{}) {
		t.Error("empty histogram has quantiles")
	}
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it); got:\n%s", name, got)
	}
}

func TestGoldenReports(t *testing.T) {
	r := fixtureReport(t)
	for _, f := range []struct {
		name  string
		write func(*bytes.Buffer, *Report) error
	}{
		{"report.golden.txt", func(b *bytes.Buffer, r *Report) error { return WriteText(b, r) }},
		{"report.golden.json", func(b *bytes.Buffer, r *Report) error { return WriteJSON(b, r) }},
		{"report.golden.html", func(b *bytes.Buffer, r *Report) error { return WriteHTML(b, r) }},
	} {
		t.Run(f.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := f.write(&b, r); err != nil {
				t.Fatal(err)
			}
			golden(t, f.name, b.Bytes())
		})
	}
}

func TestJSONReportShape(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, fixtureReport(t)); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"compared", "matched", "mismatched", "classes", "series"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	class := m["classes"].([]any)[0].(map[string]any)
	for _, k := range []string{"fingerprint", "query", "compared", "mismatched", "differences", "examples"} {
		if _, ok := class[k]; !ok {
			t.Errorf("class lacks %q", k)
		}
	}
}

func TestHTMLIsSelfContainedAndEscaped(t *testing.T) {
	a := NewAggregator(AggregatorOptions{Now: func() time.Time { return t0 }})
	o := Compare(&Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue("<script>alert(1)</script>")))},
		&Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue("x")))}, Shape{}, Options{})
	a.Record(Event{Time: t0, Fingerprint: "f", Query: "SELECT '<b>'", Outcome: o})
	var b bytes.Buffer
	if err := WriteHTML(&b, a.Snapshot()); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	if strings.Contains(html, "<script>") || strings.Contains(html, "SELECT '<b>'") {
		t.Error("report text not escaped")
	}
	for _, external := range []string{"<link", "src=", "@import", "http://", "https://"} {
		if strings.Contains(strings.ReplaceAll(html, `xmlns="http://www.w3.org/2000/svg"`, ""), external) {
			t.Errorf("html references something external: %q", external)
		}
	}
	if !strings.Contains(html, "<svg") || !strings.Contains(html, "<style>") {
		t.Error("html lacks the inline chart or style")
	}
}
