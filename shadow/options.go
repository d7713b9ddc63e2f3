package shadow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Positioner is the mirror as the shadower sees it: reads wait until the new
// database has applied the writes they could see. *mirror.Mirror
// implements it.
type Positioner interface {
	WaitApplied(ctx context.Context, seq uint64) error
}

// Options configure a Shadower. Zero durations and sizes take the
// documented defaults; a few settings use a negative value to mean "off".
type Options struct {
	// NewURL is the new database: a postgres:// URL, or a mysql:// URL
	// (see mysqltarget.ParseURL) when MySQL is set.
	NewURL string
	MySQL  bool

	// Mirror, when set, is waited on before each shadow query so that the
	// new database has applied the writes the old read could see (see
	// Request.MirrorSeq). It must not be an interface holding a nil
	// pointer. If it also has Stats() mirror.Stats, a re-check waits for
	// the mirror's last position taken after re-reading the old database.
	Mirror Positioner

	// SampleRate is the fraction of wanted reads that are shadowed, 0..1.
	// 0 shadows nothing.
	SampleRate float64
	// IncludeTables, when not empty, limits shadowing to reads whose
	// tables are all in it; ExcludeTables skips reads that touch any table
	// in it. Names are as Postgres folds them ("users", "sales.orders");
	// "public." may be left out on either side; an entry with *, ? or [
	// is a path.Match pattern.
	IncludeTables, ExcludeTables []string
	// IncludeFingerprints, when not empty, limits shadowing to these query
	// classes (rewrite.Statement.Fingerprint); ExcludeFingerprints skips
	// them.
	IncludeFingerprints, ExcludeFingerprints []string

	// Timeout bounds one shadow query, connecting included (default 5s).
	// A query that runs out of time counts as a timeout on the new side.
	Timeout time.Duration
	// MirrorWait bounds the wait for Request.MirrorSeq (default 2s). When
	// it runs out the comparison still happens, labelled RuleMirrorLag.
	MirrorWait time.Duration
	// MaxConcurrent is the number of shadow queries in flight, and so the
	// connections held to each database (default 4).
	MaxConcurrent int
	// QueueLen bounds the requests waiting for a worker (default 1024). A
	// request that finds the queue full is dropped and counted.
	QueueLen int
	// BatchWindow is how long a worker that took a request waits for more
	// to queue up (default 5ms; negative: not at all), and MaxBatch how many
	// it takes at most (default 32). A Postgres worker sends its batch in
	// one pipeline on one connection: the new database and the proxy wake
	// once per batch instead of once per read, which on a busy machine
	// costs more than the reads themselves.
	BatchWindow time.Duration
	MaxBatch    int
	// MemoryCap bounds the bytes of result rows held in total: rows the
	// proxy captured (Reserve) and rows the workers read back (default 64
	// MiB). Past it, captures and reads switch to a digest.
	MemoryCap int64
	// PerComparisonCap bounds the bytes of rows kept per result (default 4
	// MiB); beyond it the result is compared by row count and digest.
	PerComparisonCap int64

	// RecheckDelay is how long after a mismatch both databases are read
	// again (default 200ms); a mismatch that the re-check does not confirm
	// is counted as noise, not reported. Negative: no re-checks.
	RecheckDelay time.Duration
	// NoiseSample is the fraction of comparisons whose read is run again
	// on the old database and compared with the old answer (default 0.01).
	// A query class whose old answers differ among themselves is noisy:
	// its mismatches count as noise. Negative: no noise runs.
	NoiseSample float64
	// OldURL is the old database (postgres://, the proxy's own
	// credentials), read by re-checks and noise runs. Without it a
	// re-check reads only the new database again, and noise is not
	// measured.
	OldURL string

	// SchemaMap maps Postgres schemas to MySQL databases when translating
	// reads (rewrite.WithSchemaMap). Default {"public": ""}: schema public
	// is the database of NewURL, as for mysqltarget.
	SchemaMap map[string]string

	// ReportDir, when set, receives mismatch events as JSON lines
	// (compare.EventLog), read back by `shadowproxy report`.
	ReportDir string
	// ReportMaxFileSize and ReportMaxTotalSize bound the event log (the
	// compare.EventLogOptions defaults: 64 MiB per file, 1 GiB in all).
	ReportMaxFileSize, ReportMaxTotalSize int64
	// LogMatches also writes matching comparisons to the event log, so that
	// an offline report has exact totals (at the cost of disk).
	LogMatches bool

	// Logger receives warnings (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, receives the shadow metrics
	// (shadowproxy_shadow_*).
	Registerer prometheus.Registerer
}

// Defaults.
const (
	DefaultTimeout          = 5 * time.Second
	DefaultMirrorWait       = 2 * time.Second
	DefaultMaxConcurrent    = 4
	DefaultQueueLen         = 1024
	DefaultBatchWindow      = 5 * time.Millisecond
	DefaultMaxBatch         = 32
	DefaultMemoryCap        = 64 << 20
	DefaultPerComparisonCap = 4 << 20
	DefaultRecheckDelay     = 200 * time.Millisecond
	DefaultNoiseSample      = 0.01
)

func (o Options) withDefaults() (Options, error) {
	if o.NewURL == "" {
		return o, errors.New("shadow: NewURL is required")
	}
	if o.SampleRate < 0 || o.SampleRate > 1 || o.SampleRate != o.SampleRate {
		return o, fmt.Errorf("shadow: sample rate %v is not within 0..1", o.SampleRate)
	}
	if o.NoiseSample > 1 {
		return o, fmt.Errorf("shadow: noise sample %v is above 1", o.NoiseSample)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MirrorWait <= 0 {
		o.MirrorWait = DefaultMirrorWait
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	if o.QueueLen <= 0 {
		o.QueueLen = DefaultQueueLen
	}
	if o.BatchWindow == 0 {
		o.BatchWindow = DefaultBatchWindow
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MemoryCap <= 0 {
		o.MemoryCap = DefaultMemoryCap
	}
	if o.PerComparisonCap <= 0 {
		o.PerComparisonCap = DefaultPerComparisonCap
	}
	o.PerComparisonCap = min(o.PerComparisonCap, o.MemoryCap)
	if o.RecheckDelay == 0 {
		o.RecheckDelay = DefaultRecheckDelay
	}
	if o.NoiseSample == 0 {
		o.NoiseSample = DefaultNoiseSample
	}
	if o.SchemaMap == nil {
		o.SchemaMap = map[string]string{"public": ""}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
