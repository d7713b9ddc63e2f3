package metrics

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shadowproxy/shadowproxy/config"
)

// TestNewRegistersEverything checks that a fresh Metrics exposes every family,
// with the fixed-label series already present at zero, plus the Go and process
// collectors.
func TestNewRegistersEverything(t *testing.T) {
	m := New()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	series := map[string]int{}
	for _, f := range fams {
		series[f.GetName()] = len(f.GetMetric())
	}
	want := map[string]int{
		"shadowproxy_client_connections":                1,
		"shadowproxy_client_connections_total":          1,
		"shadowproxy_client_connections_rejected_total": len(rejectReasons),
		"shadowproxy_queries_total":                     int(numQueryKinds),
		"shadowproxy_bytes_total":                       2,
		"shadowproxy_upstream_latency_seconds":          1,
		"shadowproxy_cancels_forwarded_total":           1,
		"shadowproxy_event_loop_sessions":               1,
		"shadowproxy_event_loop_handovers_total":        1,
		"shadowproxy_config_reloads_total":              2,
		"shadowproxy_phase":                             int(config.NewOnly),
		"go_goroutines":                                 1,
		"process_start_time_seconds":                    1,
	}
	for name, n := range want {
		if got, ok := series[name]; !ok {
			t.Errorf("family %s not registered", name)
		} else if got != n {
			t.Errorf("family %s has %d series, want %d", name, got, n)
		}
	}
	// Errors has no fixed label set, so it appears only after the first error.
	if _, ok := series["shadowproxy_errors_total"]; ok {
		t.Errorf("shadowproxy_errors_total present before any error")
	}
}

// TestNewIndependent checks that metrics use a private registry: a second New
// must not panic with a duplicate registration, and counts do not leak.
func TestNewIndependent(t *testing.T) {
	a, b := New(), New()
	a.ConnOpened()
	if got := testutil.ToFloat64(b.ClientConnsTotal); got != 0 {
		t.Fatalf("second Metrics saw %v connections, want 0", got)
	}
}

func TestHelpers(t *testing.T) {
	tests := []struct {
		name string
		do   func(m *Metrics)
		// metric returns the series to check.
		metric func(m *Metrics) prometheus.Collector
		want   float64
	}{
		{
			name:   "conn opened counts total",
			do:     func(m *Metrics) { m.ConnOpened(); m.ConnOpened(); m.ConnClosed() },
			metric: func(m *Metrics) prometheus.Collector { return m.ClientConnsTotal },
			want:   2,
		},
		{
			name:   "conn opened and closed tracks open",
			do:     func(m *Metrics) { m.ConnOpened(); m.ConnOpened(); m.ConnClosed() },
			metric: func(m *Metrics) prometheus.Collector { return m.ClientConns },
			want:   1,
		},
		{
			name:   "reject by reason",
			do:     func(m *Metrics) { m.Reject(RejectAuth); m.Reject(RejectAuth); m.Reject(RejectDraining) },
			metric: func(m *Metrics) prometheus.Collector { return m.ConnsRejected.WithLabelValues("auth") },
			want:   2,
		},
		{
			name:   "query kind goes to its own child",
			do:     func(m *Metrics) { m.CountQuery(QueryWrite); m.CountQuery(QueryRead); m.CountQuery(QueryWrite) },
			metric: func(m *Metrics) prometheus.Collector { return m.Queries.WithLabelValues("write") },
			want:   2,
		},
		{
			name:   "unparsed is its own kind",
			do:     func(m *Metrics) { m.CountQuery(QueryUnparsed) },
			metric: func(m *Metrics) prometheus.Collector { return m.Queries.WithLabelValues("unparsed") },
			want:   1,
		},
		{
			name:   "unknown query kind counts as other",
			do:     func(m *Metrics) { m.CountQuery("vacuum"); m.CountQuery(QueryOther) },
			metric: func(m *Metrics) prometheus.Collector { return m.Queries.WithLabelValues("other") },
			want:   2,
		},
		{
			name:   "pre-resolved byte counter is the labelled child",
			do:     func(m *Metrics) { m.BytesClientToUpstream.Add(10); m.BytesUpstreamToClient.Add(99) },
			metric: func(m *Metrics) prometheus.Collector { return m.Bytes.WithLabelValues("client_to_upstream") },
			want:   10,
		},
		{
			name:   "error class is the SQLSTATE prefix",
			do:     func(m *Metrics) { m.ObserveError(SourceUpstream, "23505"); m.ObserveError(SourceUpstream, "23503") },
			metric: func(m *Metrics) prometheus.Collector { return m.Errors.WithLabelValues("upstream", "23") },
			want:   2,
		},
		{
			name:   "malformed SQLSTATE is unknown",
			do:     func(m *Metrics) { m.ObserveError(SourceProxy, ""); m.ObserveError(SourceProxy, "oops!") },
			metric: func(m *Metrics) prometheus.Collector { return m.Errors.WithLabelValues("proxy", UnknownClass) },
			want:   2,
		},
		{
			name:   "reload ok",
			do:     func(m *Metrics) { m.ConfigReload(nil); m.ConfigReload(errors.New("bad")) },
			metric: func(m *Metrics) prometheus.Collector { return m.ConfigReloads.WithLabelValues("ok") },
			want:   1,
		},
		{
			name:   "reload rejected",
			do:     func(m *Metrics) { m.ConfigReload(errors.New("bad")); m.ConfigReload(errors.New("bad")) },
			metric: func(m *Metrics) prometheus.Collector { return m.ConfigReloads.WithLabelValues("rejected") },
			want:   2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			tt.do(m)
			if got := testutil.ToFloat64(tt.metric(m)); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSQLStateClass(t *testing.T) {
	tests := []struct{ in, want string }{
		{"23505", "23"},
		{"42P01", "42"},
		{"HV000", "HV"},
		{"XX000", "XX"},
		{"", UnknownClass},
		{"23", UnknownClass},
		{"235050", UnknownClass},
		{"42p01", UnknownClass}, // SQLSTATEs are upper case
		{"4 001", UnknownClass},
		{"é2345", UnknownClass},
	}
	for _, tt := range tests {
		if got := SQLStateClass(tt.in); got != tt.want {
			t.Errorf("SQLStateClass(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestLatencyBuckets checks the bucket range promised in the brief and that
// an observation lands in the expected bucket of the exposition.
func TestLatencyBuckets(t *testing.T) {
	if LatencyBuckets[0] != 50e-6 || LatencyBuckets[len(LatencyBuckets)-1] != 10 {
		t.Fatalf("buckets span %v..%v, want 5e-05..10", LatencyBuckets[0], LatencyBuckets[len(LatencyBuckets)-1])
	}
	for i := 1; i < len(LatencyBuckets); i++ {
		if LatencyBuckets[i] <= LatencyBuckets[i-1] {
			t.Fatalf("buckets not increasing at %d: %v", i, LatencyBuckets)
		}
	}

	m := New()
	m.ObserveUpstreamLatency(70 * time.Microsecond) // → le=0.0001
	m.ObserveUpstreamLatency(3 * time.Millisecond)  // → le=0.005
	m.ObserveUpstreamLatency(time.Minute)           // → +Inf only
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != "shadowproxy_upstream_latency_seconds" {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 3 {
			t.Fatalf("sample count %d, want 3", h.GetSampleCount())
		}
		cum := map[float64]uint64{}
		for _, b := range h.GetBucket() {
			cum[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		for le, want := range map[float64]uint64{50e-6: 0, 100e-6: 1, 2.5e-3: 1, 5e-3: 2, 10: 2} {
			if cum[le] != want {
				t.Errorf("bucket le=%v has %d, want %d", le, cum[le], want)
			}
		}
		return
	}
	t.Fatal("histogram family not gathered")
}

func TestSetPhase(t *testing.T) {
	m := New()
	m.SetPhase(config.DualWrite)
	m.SetPhase(config.ShadowRead)
	want := `
# HELP shadowproxy_phase 1 for the current migration phase, 0 for the others.
# TYPE shadowproxy_phase gauge
shadowproxy_phase{phase="dual-write"} 0
shadowproxy_phase{phase="new-only"} 0
shadowproxy_phase{phase="new-primary"} 0
shadowproxy_phase{phase="new-write-only"} 0
shadowproxy_phase{phase="old-only"} 0
shadowproxy_phase{phase="shadow-read"} 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "shadowproxy_phase"); err != nil {
		t.Fatal(err)
	}

	// An invalid phase must not add a series, and leaves none current.
	m.SetPhase(config.Phase(42))
	if n := testutil.CollectAndCount(m.Phase); n != int(config.NewOnly) {
		t.Fatalf("%d phase series after invalid phase, want %d", n, config.NewOnly)
	}
	if got := testutil.ToFloat64(m.Phase.WithLabelValues("shadow-read")); got != 0 {
		t.Fatalf("shadow-read = %v after invalid phase, want 0", got)
	}
}

// TestSetPhaseConcurrent checks that racing SetPhase calls leave exactly one
// phase at 1.
func TestSetPhaseConcurrent(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for p := config.OldOnly; p <= config.NewOnly; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				m.SetPhase(p)
			}
		}()
	}
	wg.Wait()
	ones := 0
	for p := config.OldOnly; p <= config.NewOnly; p++ {
		ones += int(testutil.ToFloat64(m.Phase.WithLabelValues(p.String())))
	}
	if ones != 1 {
		t.Fatalf("%d phases at 1, want exactly 1", ones)
	}
}

// BenchmarkHotPath shows the per-query cost of the helpers used by sessions.
func BenchmarkHotPath(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.CountQuery(QueryRead)
			m.BytesClientToUpstream.Add(64)
			m.BytesUpstreamToClient.Add(512)
			m.ObserveUpstreamLatency(200 * time.Microsecond)
		}
	})
}
