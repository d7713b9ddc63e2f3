package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowproxy/shadowproxy/mirror"
)

// MirrorSnapshot is what the dual-write metrics are read from at each
// scrape.
type MirrorSnapshot struct {
	Stats mirror.Stats
	// NotMirrored counts statements whose effects could not be captured;
	// NotMirroredClasses the distinct (fingerprint, reason) pairs.
	NotMirrored        int64
	NotMirroredClasses int
	// SchemaDrift counts DDL statements seen on the old database.
	SchemaDrift int64
}

// mirrorCollector reads a MirrorSnapshot once per scrape, so the hot path
// pays nothing for these metrics.
type mirrorCollector struct {
	snapshot func() MirrorSnapshot
	descs    map[string]*prometheus.Desc
}

var mirrorMetrics = []struct {
	name, help string
	counter    bool
}{
	{"mirror_queued", "Transactions waiting in the mirror's in-memory queue.", false},
	{"mirror_queued_bytes", "Estimated memory of the mirror's in-memory queue.", false},
	{"mirror_spooled", "Transactions in the durable spool, not yet applied.", false},
	{"mirror_spool_bytes", "Size of the spool's segment files.", false},
	{"mirror_applied_total", "Transactions applied to the new database.", true},
	{"mirror_failed_total", "Transient apply failures (attempts) against the new database.", true},
	{"mirror_dead_lettered_total", "Transactions written to the dead-letter file.", true},
	{"mirror_dropped_total", "Dead letters lost inside the pipeline (spool full, disk errors) rather than rejected by the new database.", true},
	{"mirror_lag_seconds", "Time since the oldest unapplied transaction committed on the old database.", false},
	{"mirror_dirty_tables", "Tables that lost changes and need a repair from the old database.", false},
	{"mirror_overflowed", "1 once the pipeline has dropped data.", false},
	{"mirror_spooling", "1 while transactions go through the spool.", false},
	{"mirror_not_mirrored_total", "Write statements whose effects could not be captured.", true},
	{"mirror_not_mirrored_classes", "Distinct statement classes (fingerprint and reason) not mirrored.", false},
	{"mirror_schema_drift_total", "DDL statements run on the old database during dual-write (not mirrored).", true},
	{"mirror_pending", "Journaled transactions whose COMMIT outcome is not known yet.", false},
	{"mirror_aborted_total", "Journaled transactions whose COMMIT failed, skipped.", true},
	{"mirror_group_round_trips_total", "Round trips that sent several transactions to the new database at once.", true},
	{"mirror_grouped_total", "Transactions sent in those round trips (retries included).", true},
}

// RegisterMirror adds the dual-write metrics, read from snapshot at each
// scrape.
func (m *Metrics) RegisterMirror(snapshot func() MirrorSnapshot) error {
	c := &mirrorCollector{snapshot: snapshot, descs: map[string]*prometheus.Desc{}}
	for _, mm := range mirrorMetrics {
		c.descs[mm.name] = prometheus.NewDesc(namespace+"_"+mm.name, mm.help, nil, nil)
	}
	return m.Registry.Register(c)
}

func (c *mirrorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *mirrorCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	values := map[string]float64{
		"mirror_queued":                  float64(s.Stats.Queued),
		"mirror_queued_bytes":            float64(s.Stats.QueuedBytes),
		"mirror_spooled":                 float64(s.Stats.Spooled),
		"mirror_spool_bytes":             float64(s.Stats.SpoolBytes),
		"mirror_applied_total":           float64(s.Stats.Applied),
		"mirror_failed_total":            float64(s.Stats.Failed),
		"mirror_dead_lettered_total":     float64(s.Stats.DeadLettered),
		"mirror_dropped_total":           float64(s.Stats.Dropped),
		"mirror_lag_seconds":             s.Stats.Lag.Seconds(),
		"mirror_dirty_tables":            float64(len(s.Stats.DirtyTables)),
		"mirror_overflowed":              b(s.Stats.Overflowed),
		"mirror_spooling":                b(s.Stats.Spooling),
		"mirror_not_mirrored_total":      float64(s.NotMirrored),
		"mirror_not_mirrored_classes":    float64(s.NotMirroredClasses),
		"mirror_schema_drift_total":      float64(s.SchemaDrift),
		"mirror_pending":                 float64(s.Stats.Pending),
		"mirror_aborted_total":           float64(s.Stats.Aborted),
		"mirror_group_round_trips_total": float64(s.Stats.Groups),
		"mirror_grouped_total":           float64(s.Stats.GroupedBatches),
	}
	for _, mm := range mirrorMetrics {
		t := prometheus.GaugeValue
		if mm.counter {
			t = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[mm.name], t, values[mm.name])
	}
}
