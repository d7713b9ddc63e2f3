package compare

import (
	"math"
	"sort"
	"sync"
	"time"
)

// Event is one comparison (or one read skipped by a rule), as the shadow
// executor records it.
type Event struct {
	Time        time.Time `json:"time"`
	Fingerprint string    `json:"fingerprint"`
	// Query is the normalized SQL; it may be empty after the first event
	// of a class (the aggregator remembers it).
	Query  string   `json:"query,omitempty"`
	Tables []string `json:"tables,omitempty"`
	Params []string `json:"params,omitempty"`
	// Outcome is nil for ignored events.
	Outcome    *Outcome      `json:"outcome,omitempty"`
	OldLatency time.Duration `json:"old_latency_ns,omitempty"`
	NewLatency time.Duration `json:"new_latency_ns,omitempty"`
	// Noise marks a mismatch that the noise baseline (old compared with
	// itself, or a re-check after a delay) also showed: not the new
	// database's fault.
	Noise bool `json:"noise,omitempty"`
	// Ignored names the rule that excluded the read from comparison
	// (e.g. "volatile function now()").
	Ignored string `json:"ignored,omitempty"`
}

// AggregatorOptions bound an Aggregator's memory.
type AggregatorOptions struct {
	// MaxExamples per difference type per class (default 3, as pt-upgrade).
	MaxExamples int
	// MaxClasses bounds the query classes tracked (default 10000); events
	// of further classes count in the totals only.
	MaxClasses int
	// SeriesBucket is the initial width of a time-series bucket (default 1
	// minute); the width doubles whenever MaxSeriesBuckets would be exceeded.
	SeriesBucket     time.Duration
	MaxSeriesBuckets int // default 120
	// Now stamps snapshots (default time.Now); tests fix it.
	Now func() time.Time
}

func (o AggregatorOptions) withDefaults() AggregatorOptions {
	if o.MaxExamples <= 0 {
		o.MaxExamples = 3
	}
	if o.MaxClasses <= 0 {
		o.MaxClasses = 10000
	}
	if o.SeriesBucket <= 0 {
		o.SeriesBucket = time.Minute
	}
	if o.MaxSeriesBuckets < 2 {
		o.MaxSeriesBuckets = 120
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Aggregator collects events per query class (fingerprint). It is safe for
// concurrent use; Record holds its lock only for counter updates.
type Aggregator struct {
	opts AggregatorOptions

	mu       sync.Mutex
	totals   counts
	dropped  int64 // events of classes beyond MaxClasses
	classes  map[string]*classAgg
	series   map[int64]*seriesBucket
	width    time.Duration
	lastTime time.Time
}

type counts struct {
	compared, matched, mismatched, noise, ignored int64
	errorsOneSide, errorsBoth, timeouts           int64
	diffs                                         map[DiffType]int64
}

func (c *counts) record(ev *Event) {
	if ev.Ignored != "" || ev.Outcome == nil {
		c.ignored++
		return
	}
	o := ev.Outcome
	c.compared++
	switch {
	case o.Match:
		c.matched++
	case ev.Noise:
		c.noise++
	default:
		c.mismatched++
		if c.diffs == nil {
			c.diffs = make(map[DiffType]int64)
		}
		for t, n := range o.Counts {
			if n > 0 {
				c.diffs[t]++
			}
		}
	}
	switch {
	case o.OldError != nil && o.NewError != nil:
		c.errorsBoth++
	case o.OldError != nil || o.NewError != nil:
		c.errorsOneSide++
	}
	if o.Counts[DiffTimeout] > 0 {
		c.timeouts++
	}
}

type classAgg struct {
	fingerprint, query string
	tables             []string
	first, last        time.Time
	counts             counts
	ignoredBy          map[string]int64
	partial            map[string]int64
	columns            map[string]int64
	oldLat, newLat     histogram
	examples           map[DiffType][]Example
}

type seriesBucket struct{ compared, mismatched int64 }

// NewAggregator returns an empty Aggregator.
func NewAggregator(opts AggregatorOptions) *Aggregator {
	opts = opts.withDefaults()
	return &Aggregator{opts: opts, classes: make(map[string]*classAgg), series: make(map[int64]*seriesBucket), width: opts.SeriesBucket}
}

// Record adds one event.
func (a *Aggregator) Record(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = a.opts.Now()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.totals.record(&ev)
	if ev.Time.After(a.lastTime) {
		a.lastTime = ev.Time
	}
	if ev.Ignored == "" && ev.Outcome != nil {
		a.addSeries(ev.Time, !ev.Outcome.Match && !ev.Noise)
	}
	c := a.classes[ev.Fingerprint]
	if c == nil {
		if len(a.classes) >= a.opts.MaxClasses {
			a.dropped++
			return
		}
		c = &classAgg{fingerprint: ev.Fingerprint, first: ev.Time, last: ev.Time}
		a.classes[ev.Fingerprint] = c
	}
	if c.query == "" {
		c.query = ev.Query
	}
	if len(c.tables) == 0 && len(ev.Tables) > 0 {
		c.tables = append([]string(nil), ev.Tables...)
	}
	if ev.Time.Before(c.first) {
		c.first = ev.Time
	}
	if ev.Time.After(c.last) {
		c.last = ev.Time
	}
	c.counts.record(&ev)
	if ev.Ignored != "" || ev.Outcome == nil {
		if c.ignoredBy == nil {
			c.ignoredBy = make(map[string]int64)
		}
		rule := ev.Ignored
		if rule == "" {
			rule = "no outcome"
		}
		c.ignoredBy[rule]++
		return
	}
	o := ev.Outcome
	if ev.OldLatency > 0 {
		c.oldLat.add(ev.OldLatency)
	}
	if ev.NewLatency > 0 {
		c.newLat.add(ev.NewLatency)
	}
	if o.Partial != "" {
		if c.partial == nil {
			c.partial = make(map[string]int64)
		}
		c.partial[o.Partial]++
	}
	if o.Match || ev.Noise {
		return
	}
	for col := range o.Columns {
		if c.columns == nil {
			c.columns = make(map[string]int64)
		}
		c.columns[col]++
	}
	for _, d := range o.Diffs {
		if c.examples == nil {
			c.examples = make(map[DiffType][]Example)
		}
		if len(c.examples[d.Type]) < a.opts.MaxExamples {
			c.examples[d.Type] = append(c.examples[d.Type], Example{Diff: d, Time: ev.Time, Params: append([]string(nil), ev.Params...)})
		}
	}
}

// addSeries counts an event in its time bucket, coarsening the buckets
// when there would be too many.
func (a *Aggregator) addSeries(t time.Time, mismatch bool) {
	key := floorDiv(t.UnixNano(), int64(a.width))
	b := a.series[key]
	if b == nil {
		for len(a.series) >= a.opts.MaxSeriesBuckets {
			a.coarsen()
			key = floorDiv(t.UnixNano(), int64(a.width))
			if b = a.series[key]; b != nil {
				break
			}
		}
		if b == nil {
			b = &seriesBucket{}
			a.series[key] = b
		}
	}
	b.compared++
	if mismatch {
		b.mismatched++
	}
}

func (a *Aggregator) coarsen() {
	a.width *= 2
	merged := make(map[int64]*seriesBucket, len(a.series)/2+1)
	for k, b := range a.series {
		nk := floorDiv(k, 2)
		if m := merged[nk]; m != nil {
			m.compared += b.compared
			m.mismatched += b.mismatched
		} else {
			merged[nk] = b
		}
	}
	a.series = merged
}

// Example is one difference example with its query's context.
type Example struct {
	Diff
	Time   time.Time `json:"time"`
	Params []string  `json:"params,omitempty"`
}

// Latency summarizes one side's latencies in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
}

// ClassReport is the report of one query class.
type ClassReport struct {
	Fingerprint   string             `json:"fingerprint"`
	Query         string             `json:"query"`
	Tables        []string           `json:"tables,omitempty"`
	FirstSeen     time.Time          `json:"first_seen"`
	LastSeen      time.Time          `json:"last_seen"`
	Compared      int64              `json:"compared"`
	Matched       int64              `json:"matched"`
	Mismatched    int64              `json:"mismatched"`
	Noise         int64              `json:"noise"`
	Ignored       map[string]int64   `json:"ignored,omitempty"`
	Partial       map[string]int64   `json:"partial,omitempty"`
	ErrorsOneSide int64              `json:"errors_one_side"`
	ErrorsBoth    int64              `json:"errors_both"`
	Timeouts      int64              `json:"timeouts"`
	Differences   map[DiffType]int64 `json:"differences"`
	Columns       map[string]int64   `json:"columns,omitempty"`
	OldLatency    Latency            `json:"old_latency"`
	NewLatency    Latency            `json:"new_latency"`
	SlowOnNew     bool               `json:"slow_on_new"`
	Examples      []Example          `json:"examples"`
}

// MismatchRate is Mismatched / Compared.
func (c *ClassReport) MismatchRate() float64 { return rate(c.Mismatched, c.Compared) }

// SeriesPoint is one time bucket of the mismatch-rate series.
type SeriesPoint struct {
	Start      time.Time `json:"start"`
	Compared   int64     `json:"compared"`
	Mismatched int64     `json:"mismatched"`
	Rate       float64   `json:"rate"`
}

// Report is a snapshot of everything aggregated.
type Report struct {
	Generated     time.Time          `json:"generated"`
	Compared      int64              `json:"compared"`
	Matched       int64              `json:"matched"`
	Mismatched    int64              `json:"mismatched"`
	Noise         int64              `json:"noise"`
	Ignored       int64              `json:"ignored"`
	ErrorsOneSide int64              `json:"errors_one_side"`
	ErrorsBoth    int64              `json:"errors_both"`
	Timeouts      int64              `json:"timeouts"`
	Differences   map[DiffType]int64 `json:"differences"`
	// Untracked counts events of classes beyond AggregatorOptions.MaxClasses.
	Untracked    int64         `json:"untracked,omitempty"`
	Classes      []ClassReport `json:"classes"`
	SeriesBucket time.Duration `json:"series_bucket_ns"`
	Series       []SeriesPoint `json:"series"`
}

// MismatchRate is Mismatched / Compared.
func (r *Report) MismatchRate() float64 { return rate(r.Mismatched, r.Compared) }

func rate(n, d int64) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// Snapshot returns the report so far. Classes are sorted by impact: most
// mismatches first, then most compared, then fingerprint.
func (a *Aggregator) Snapshot() *Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := &Report{
		Generated:     a.opts.Now().UTC(),
		Compared:      a.totals.compared,
		Matched:       a.totals.matched,
		Mismatched:    a.totals.mismatched,
		Noise:         a.totals.noise,
		Ignored:       a.totals.ignored,
		ErrorsOneSide: a.totals.errorsOneSide,
		ErrorsBoth:    a.totals.errorsBoth,
		Timeouts:      a.totals.timeouts,
		Differences:   copyMap(a.totals.diffs),
		Untracked:     a.dropped,
		Classes:       make([]ClassReport, 0, len(a.classes)),
		SeriesBucket:  a.width,
	}
	for _, c := range a.classes {
		cr := ClassReport{
			Fingerprint:   c.fingerprint,
			Query:         c.query,
			Tables:        append([]string(nil), c.tables...),
			FirstSeen:     c.first.UTC(),
			LastSeen:      c.last.UTC(),
			Compared:      c.counts.compared,
			Matched:       c.counts.matched,
			Mismatched:    c.counts.mismatched,
			Noise:         c.counts.noise,
			Ignored:       copyMap(c.ignoredBy),
			Partial:       copyMap(c.partial),
			ErrorsOneSide: c.counts.errorsOneSide,
			ErrorsBoth:    c.counts.errorsBoth,
			Timeouts:      c.counts.timeouts,
			Differences:   copyMap(c.counts.diffs),
			Columns:       copyMap(c.columns),
			OldLatency:    c.oldLat.summary(),
			NewLatency:    c.newLat.summary(),
		}
		// pt-upgrade's rule: flag a class 10× slower on the new database.
		cr.SlowOnNew = cr.OldLatency.Count > 0 && cr.NewLatency.Count > 0 && cr.NewLatency.P95 >= 10*cr.OldLatency.P95
		for _, t := range DiffTypes {
			for _, ex := range c.examples[t] {
				ex.Time = ex.Time.UTC()
				cr.Examples = append(cr.Examples, ex)
			}
		}
		if cr.Examples == nil {
			cr.Examples = []Example{}
		}
		r.Classes = append(r.Classes, cr)
	}
	sort.Slice(r.Classes, func(i, j int) bool {
		a, b := &r.Classes[i], &r.Classes[j]
		if a.Mismatched != b.Mismatched {
			return a.Mismatched > b.Mismatched
		}
		if a.Compared != b.Compared {
			return a.Compared > b.Compared
		}
		return a.Fingerprint < b.Fingerprint
	})
	keys := make([]int64, 0, len(a.series))
	for k := range a.series {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	r.Series = make([]SeriesPoint, 0, len(keys))
	for _, k := range keys {
		b := a.series[k]
		r.Series = append(r.Series, SeriesPoint{Start: time.Unix(0, k*int64(a.width)).UTC(), Compared: b.compared, Mismatched: b.mismatched, Rate: rate(b.mismatched, b.compared)})
	}
	return r
}

// copyMap copies m, returning an empty (non-nil) map for nil so that JSON
// always has the object.
func copyMap[K comparable](m map[K]int64) map[K]int64 {
	out := make(map[K]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// histogram is a fixed log-bucket latency histogram: bucket i holds
// durations in [2^(i/8), 2^((i+1)/8)) µs, so memory is constant (2 KiB) and
// a percentile is within ~5% of the truth — plenty to see a 10× regression.
type histogram struct {
	n       int64
	buckets [histBuckets]int64
}

const histBuckets = 256 // up to 2^32 µs ≈ 71 minutes; longer lands in the last

func (h *histogram) add(d time.Duration) {
	us := float64(d) / float64(time.Microsecond)
	i := 0
	if us >= 1 {
		i = int(math.Log2(us) * 8)
	}
	i = min(max(i, 0), histBuckets-1)
	h.buckets[i]++
	h.n++
}

// quantile returns the geometric middle of the bucket holding quantile q,
// in milliseconds.
func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, c := range h.buckets {
		seen += c
		if seen >= rank {
			us := math.Pow(2, (float64(i)+0.5)/8)
			return math.Round(us) / 1000
		}
	}
	return 0
}

func (h *histogram) summary() Latency {
	return Latency{Count: h.n, P50: h.quantile(0.50), P95: h.quantile(0.95), P99: h.quantile(0.99)}
}
