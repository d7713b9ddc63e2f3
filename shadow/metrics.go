package shadow

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowproxy/shadowproxy/compare"
)

const metricPrefix = "shadowproxy_shadow_"

// Label values. Every label has a fixed set of values, except the
// not-shadowed reason, which is bounded by maxReasons.
const (
	resultMatch    = "match"
	resultMismatch = "mismatch"
	resultNoise    = "noise"

	dropQueueFull = "queue_full"
	dropClosed    = "closed"
	dropInvalid   = "invalid"

	errNewUnreachable = "new_unreachable"
	errOldUnreachable = "old_unreachable"
	errDecodeOld      = "decode_old"
	errDecodeNew      = "decode_new"
	errEventLog       = "event_log"

	timeoutQuery      = "query"
	timeoutMirrorWait = "mirror_wait"

	recheckResolved     = "resolved"     // the re-check matched: noise
	recheckMoving       = "moving"       // the old answer changed in between: noise
	recheckConfirmed    = "confirmed"    // the mismatch stands
	recheckInconclusive = "inconclusive" // a re-read failed; the first outcome stands
	recheckSkipped      = "skipped"      // no re-check slot, or shutting down

	// maxReasons bounds the distinct not-shadowed reasons; later ones
	// count as otherReason.
	maxReasons  = 32
	otherReason = "other"
)

// shadowMetrics are the shadower's Prometheus metrics. Children with fixed
// labels are resolved once, so counting is a single atomic add.
type shadowMetrics struct {
	comparisons map[string]prometheus.Counter
	differences map[compare.DiffType]prometheus.Counter
	dropped     map[string]prometheus.Counter
	errors      map[string]prometheus.Counter
	timeouts    map[string]prometheus.Counter
	rechecks    map[string]prometheus.Counter
	noiseRuns   prometheus.Counter
	noiseDiffer prometheus.Counter
	memoryFull  prometheus.Counter
	newLatency  prometheus.Histogram
	batchSize   prometheus.Histogram

	notShadowedVec *prometheus.CounterVec
	// notShadowed is a copy-on-write map of resolved children, so the
	// common case is a lock-free lookup.
	notShadowedMu sync.Mutex
	notShadowed   atomic.Pointer[map[string]prometheus.Counter]

	collectors []prometheus.Collector
}

func newMetrics(s *Shadower) *shadowMetrics {
	m := &shadowMetrics{}
	vec := func(name, help, label string, values ...string) map[string]prometheus.Counter {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + name, Help: help}, []string{label})
		m.collectors = append(m.collectors, v)
		out := make(map[string]prometheus.Counter, len(values))
		for _, val := range values {
			out[val] = v.WithLabelValues(val)
		}
		return out
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: metricPrefix + name, Help: help})
		m.collectors = append(m.collectors, c)
		return c
	}
	m.comparisons = vec("comparisons_total", "Shadow reads compared, by result (noise: a mismatch the re-check or the noise baseline explains).",
		"result", resultMatch, resultMismatch, resultNoise)
	diffNames := make([]string, len(compare.DiffTypes))
	for i, t := range compare.DiffTypes {
		diffNames[i] = string(t)
	}
	byName := vec("mismatches_total", "Reported mismatches by difference type (a mismatch counts once per type it shows).", "type", diffNames...)
	m.differences = make(map[compare.DiffType]prometheus.Counter, len(byName))
	for _, t := range compare.DiffTypes {
		m.differences[t] = byName[string(t)]
	}
	m.dropped = vec("dropped_total", "Shadow requests dropped before comparison, by reason.", "reason", dropQueueFull, dropClosed, dropInvalid)
	m.errors = vec("errors_total", "Shadow reads not compared because of an error, by kind.", "kind",
		errNewUnreachable, errOldUnreachable, errDecodeOld, errDecodeNew, errEventLog)
	m.timeouts = vec("timeouts_total", "Shadow queries that ran out of time, and mirror waits that did.", "what", timeoutQuery, timeoutMirrorWait)
	m.rechecks = vec("rechecks_total", "Re-checks of mismatches, by result.", "result",
		recheckResolved, recheckMoving, recheckConfirmed, recheckInconclusive, recheckSkipped)
	m.noiseRuns = counter("noise_runs_total", "Reads run again on the old database to measure noise.")
	m.noiseDiffer = counter("noise_differed_total", "Noise runs whose answer differed from the old database's first answer.")
	m.memoryFull = counter("memory_cap_hits_total", "Reservations refused at the memory cap (the result switched to a digest).")
	m.newLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    metricPrefix + "new_latency_seconds",
		Help:    "Latency of shadow queries on the new database.",
		Buckets: []float64{250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10},
	})
	m.collectors = append(m.collectors, m.newLatency)
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    metricPrefix + "batch_size",
		Help:    "Reads per batch a worker took (see shadow.batch_window).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	})
	m.collectors = append(m.collectors, m.batchSize)
	m.notShadowedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricPrefix + "not_shadowed_total",
		Help: "Reads not shadowed, by reason (at most 32 reasons; the rest count as \"other\").",
	}, []string{"reason"})
	m.collectors = append(m.collectors, m.notShadowedVec)
	empty := map[string]prometheus.Counter{}
	m.notShadowed.Store(&empty)
	m.collectors = append(m.collectors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricPrefix + "queue_length", Help: "Shadow requests waiting for a worker."},
			func() float64 { return float64(len(s.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricPrefix + "memory_bytes", Help: "Bytes of result rows held for comparison."},
			func() float64 { return float64(s.mem.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricPrefix + "pending_rechecks", Help: "Mismatches waiting for their re-check."},
			func() float64 { return float64(s.rechecksHeld.Load()) }),
	)
	return m
}

// register adds every metric to r, undoing the registrations on error.
func (m *shadowMetrics) register(r prometheus.Registerer) error {
	for i, c := range m.collectors {
		if err := r.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				r.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("shadow: metrics already registered (one Shadower per registry): %w", err)
			}
			return fmt.Errorf("shadow: register metrics: %w", err)
		}
	}
	return nil
}

func (m *shadowMetrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors {
		r.Unregister(c)
	}
}

// notShadowedCounter returns the counter of a reason, creating it while
// fewer than maxReasons exist.
func (m *shadowMetrics) notShadowedCounter(reason string) prometheus.Counter {
	if c, ok := (*m.notShadowed.Load())[reason]; ok {
		return c
	}
	m.notShadowedMu.Lock()
	defer m.notShadowedMu.Unlock()
	cur := *m.notShadowed.Load()
	if c, ok := cur[reason]; ok {
		return c
	}
	if len(cur) >= maxReasons {
		if c, ok := cur[otherReason]; ok {
			return c
		}
		reason = otherReason
	}
	next := make(map[string]prometheus.Counter, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	c := m.notShadowedVec.WithLabelValues(reason)
	next[reason] = c
	m.notShadowed.Store(&next)
	return c
}
