package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// FsyncPolicy says when written spool records are made durable. Enqueue
// never waits for an fsync whatever the policy, and EnqueueDurable waits for
// the write only (but see FsyncAlways): the policy decides how much spooled
// data a machine crash (not a process crash: written data is in the page
// cache) can lose.
type FsyncPolicy uint8

const (
	// FsyncInterval syncs the active segment at most every
	// Options.FsyncInterval (group commit), in the background: appends go
	// on during the fsync. A machine crash loses at most that much spooled
	// data. This is the default.
	FsyncInterval FsyncPolicy = iota
	// FsyncAlways syncs after every write, before the next write: every
	// batch is synced before anything after it is written. One write takes
	// everything handed over while the previous fsync ran (up to 1 MiB), so
	// the cost of an fsync is shared by all batches that arrived during it.
	// Enqueue callers never queue behind it; an EnqueueDurable caller waits
	// for the fsync of the write before its own.
	FsyncAlways
	// FsyncNever leaves flushing to the operating system (and to Close).
	FsyncNever
)

var fsyncNames = [...]string{FsyncInterval: "interval", FsyncAlways: "always", FsyncNever: "never"}

// String returns the configuration name of the policy.
func (p FsyncPolicy) String() string {
	if int(p) < len(fsyncNames) {
		return fsyncNames[p]
	}
	return fmt.Sprintf("fsync(%d)", uint8(p))
}

// ParseFsyncPolicy parses "always", "interval" or "never".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	for i, n := range fsyncNames {
		if n == s {
			return FsyncPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("mirror: unknown fsync policy %q (want always, interval or never)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (p FsyncPolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so configuration files
// can name the policy.
func (p *FsyncPolicy) UnmarshalText(b []byte) error {
	v, err := ParseFsyncPolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Options configures a Mirror. Zero fields take the documented defaults.
type Options struct {
	// Dir holds the spool segments, the state file and deadletter.jsonl.
	// Required. One Mirror at a time may use a directory (it is locked).
	Dir string

	// QueueLen is the number of batches the in-memory queue holds before
	// batches go to the spool. Default 1024. A negative value disables the
	// in-memory queue: every batch is spooled, so nothing waits only in
	// memory (at the cost of a disk round trip per batch).
	QueueLen int
	// QueueBytes bounds the estimated memory of the in-memory queue.
	// Default 64 MiB.
	QueueBytes int64
	// HandoffBytes bounds the batches handed to the spool writer and not yet
	// written. Enqueue waits only when this is full, that is when the local
	// disk cannot absorb writes (not fsyncs) as fast as batches arrive.
	// Default 64 MiB.
	HandoffBytes int64

	// SegmentSize is the size at which the spool starts a new segment file.
	// Default 64 MiB.
	SegmentSize int64
	// MaxSpoolBytes bounds the spool on disk. A batch that does not fit is
	// not spooled: it is written to the dead letters with reason
	// "spool full", its tables are marked dirty and the mirror reports
	// Overflowed. Default 8 GiB.
	MaxSpoolBytes int64

	// Fsync is the spool's fsync policy. Default FsyncInterval.
	Fsync FsyncPolicy
	// FsyncInterval is the group-commit period of FsyncInterval.
	// Default 100ms.
	FsyncInterval time.Duration

	// RetryMin and RetryMax bound the exponential backoff after a transient
	// Apply error. Defaults 100ms and 15s.
	RetryMin, RetryMax time.Duration
	// ApplyTimeout bounds one Apply call, and n times it an ApplyGroup call
	// of n batches; a timeout is a transient error.
	// Default 0: no bound beyond the Target's own timeouts, because a large
	// transaction may legitimately take long.
	ApplyTimeout time.Duration
	// MaxGroup bounds how many batches the applier hands a GroupTarget in
	// one round trip, each still its own transaction; MaxGroupBytes bounds
	// their estimated size. Defaults 256 and 4 MiB. MaxGroup 1 (or a
	// negative value) applies one batch per round trip.
	MaxGroup      int
	MaxGroupBytes int64
	// GroupLinger is how long the applier lets a transaction from the
	// in-memory queue wait for the ones committing behind it, so that they
	// go to a GroupTarget in one round trip, when fewer than half a group
	// are queued. A new database that keeps up otherwise gets one round
	// trip per transaction, each costing a wake-up of the applier, of the
	// database's backend and of their threads: on a busy or small machine
	// that is most of what applying costs. It adds at most GroupLinger to
	// the mirror's lag. Default 1ms; negative turns it off.
	GroupLinger time.Duration
	// CheckpointInterval is how often the applied position is persisted.
	// After a crash, batches applied since the last checkpoint are applied
	// again. Default 1s.
	CheckpointInterval time.Duration

	// ResolveWait is how long the applier waits for Resolve when a pending
	// batch (one with an Xid) reaches the head of the line, before it asks
	// Resolver. Producers resolve within milliseconds, so this only matters
	// when the producer lost track of a transaction. Default 2s.
	ResolveWait time.Duration
	// Resolver asks the old database what became of transactions, typically
	// with
	//
	//	SELECT x, pg_xact_status(x) FROM unnest($1::xid8[]) AS x
	//
	// It gets the distinct Xids of up to 256 pending batches at the head of
	// the line and returns an Outcome for each; a missing or invalid answer
	// counts as an error. Errors are transient: the call is retried with the
	// RetryMin..RetryMax backoff. Each call's context ends after 30s or at
	// Close. It is needed for the batches recovered from the spool after a
	// restart, whose producer is gone. Without a Resolver, a pending batch
	// whose outcome is not known (recovered after a restart, or not
	// resolved within ResolveWait) is applied as committed, with a warning:
	// an aborted transaction may then reach the new database.
	Resolver func(ctx context.Context, xids []uint64) (map[uint64]Outcome, error)

	// Logger receives the mirror's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

const (
	defaultQueueLen           = 1024
	defaultQueueBytes         = 64 << 20
	defaultHandoffBytes       = 64 << 20
	defaultSegmentSize        = 64 << 20
	defaultMaxSpoolBytes      = 8 << 30
	defaultFsyncInterval      = 100 * time.Millisecond
	defaultRetryMin           = 100 * time.Millisecond
	defaultRetryMax           = 15 * time.Second
	defaultCheckpointInterval = time.Second
	defaultMaxGroup           = 256
	defaultMaxGroupBytes      = 4 << 20
	defaultResolveWait        = 2 * time.Second
	defaultGroupLinger        = time.Millisecond
)

// withDefaults returns o with defaults filled in, or an error for values
// that cannot work.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("dir is required"))
	}
	def := func(v *int64, d int64, name string) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	def(&o.QueueBytes, defaultQueueBytes, "QueueBytes")
	def(&o.HandoffBytes, defaultHandoffBytes, "HandoffBytes")
	def(&o.SegmentSize, defaultSegmentSize, "SegmentSize")
	def(&o.MaxSpoolBytes, defaultMaxSpoolBytes, "MaxSpoolBytes")
	def(&o.MaxGroupBytes, defaultMaxGroupBytes, "MaxGroupBytes")
	switch {
	case o.MaxGroup == 0:
		o.MaxGroup = defaultMaxGroup
	case o.MaxGroup < 0:
		o.MaxGroup = 1
	}
	switch {
	case o.QueueLen == 0:
		o.QueueLen = defaultQueueLen
	case o.QueueLen < 0:
		o.QueueLen = 0
	}
	if int(o.Fsync) >= len(fsyncNames) {
		errs = append(errs, fmt.Errorf("unknown fsync policy %d", o.Fsync))
	}
	dur := func(v *time.Duration, d time.Duration, name string) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	dur(&o.FsyncInterval, defaultFsyncInterval, "FsyncInterval")
	dur(&o.RetryMin, defaultRetryMin, "RetryMin")
	dur(&o.RetryMax, defaultRetryMax, "RetryMax")
	dur(&o.CheckpointInterval, defaultCheckpointInterval, "CheckpointInterval")
	dur(&o.ResolveWait, defaultResolveWait, "ResolveWait")
	if o.GroupLinger == 0 {
		o.GroupLinger = defaultGroupLinger
	}
	if o.ApplyTimeout < 0 {
		errs = append(errs, errors.New("ApplyTimeout must not be negative"))
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("mirror: options: %w", err)
	}
	return o, nil
}
