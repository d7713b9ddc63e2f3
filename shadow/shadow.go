package shadow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5/pgtype"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shadowproxy/shadowproxy/compare"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// Reasons a read is recorded without a comparison (compare.Event.Ignored).
const (
	// IgnoredNoTranslation prefixes the reason of a read that
	// rewrite.TranslateToMySQL refuses; the refused construct follows in
	// parentheses.
	IgnoredNoTranslation = "not shadowed: no MySQL translation"
	// IgnoredParamNotConvertible: a parameter has no MySQL value (NaN,
	// infinity, a binary value of an unknown type, ...).
	IgnoredParamNotConvertible = "not shadowed: parameter not convertible for MySQL"
	// IgnoredNewUnreachable: the new database could not be reached (the
	// connection was refused or lost; running out of time is a timeout).
	IgnoredNewUnreachable = "not compared: new database unreachable"
	// IgnoredNoFields: the capture has no RowDescription to decode rows by.
	IgnoredNoFields = "not compared: no row description captured"
	// IgnoredOldNotDecodable / IgnoredNewNotDecodable: a result's values
	// could not be decoded.
	IgnoredOldNotDecodable = "not compared: old result not decodable"
	IgnoredNewNotDecodable = "not compared: new result not decodable"
	// IgnoredOldTransient: the old database failed for a reason that is not
	// the query's (cancelled, serialization failure, aborted transaction,
	// shutdown, ...), so the read did not really run.
	IgnoredOldTransient = "not compared: transient error on the old database"
)

// RuleMirrorLag labels (in compare.Outcome.Partial) a comparison made
// before the new database had applied the writes the read could see:
// Options.MirrorWait ran out.
const RuleMirrorLag = "mirror-lag: the new database had not applied every write the read could see"

// Limits of the in-memory caches.
const (
	maxClasses      = 10000    // query classes with a cached normalized query and noise state
	preparedEntries = 4096     // statement texts with a cached shape and translation
	maxPreparedSQL  = 32 << 10 // longer texts are prepared but not cached
	warnEvery       = 10 * time.Second
)

// Shadower runs sampled reads on the new database, off the client's path,
// compares each answer with the old database's, and aggregates the
// outcomes per query class. All its methods are safe for concurrent use;
// Wants, Submit, Reserve, Release and NotShadowed never block.
type Shadower struct {
	opts   Options
	filter *filter
	met    *shadowMetrics
	agg    *compare.Aggregator
	events *compare.EventLog // nil without ReportDir
	newDB  reader
	oldDB  *pgReader // nil without OldURL
	prep   *lru.Cache[string, *prepared]
	// untimed makes every batch untimed (see worker.timedBatch); for
	// tests.
	untimed bool

	classMu sync.Mutex
	classes map[string]*class
	// untranslatable holds the fingerprints TranslateToMySQL refused, for
	// Wants to skip them without a capture (copy-on-write: lock-free reads).
	untranslatableMu sync.Mutex
	untranslatable   atomic.Pointer[map[string]struct{}]

	mem          atomic.Int64 // bytes reserved
	queue        chan *Request
	gather       chan struct{} // held by the worker gathering a batch
	rechecks     chan *job
	rechecksHeld atomic.Int64 // re-checks scheduled or queued
	maxRechecks  int64

	mu     sync.RWMutex // guards closed; Submit holds it shared
	closed bool
	// timers holds the re-checks waiting for their delay; nil once closed.
	timerMu sync.Mutex
	timers  map[*job]*time.Timer

	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	wg       sync.WaitGroup
	lastWarn atomic.Int64 // unix nanos of the last rate-limited warning
}

// prepared is what a statement text needs for comparisons, computed once
// per text: its shape and, for MySQL, its translation.
type prepared struct {
	shape compare.Shape
	my    *rewrite.MySQLStatement
	myErr error
}

// class is the state kept per query class (fingerprint).
type class struct {
	fingerprint string
	query       string // normalized SQL
	// noisy is set once an old-vs-old comparison of the class differed:
	// its mismatches then count as noise.
	noisy         atomic.Bool
	warned        atomic.Bool // first mismatch logged
	loggedIgnored atomic.Bool // first not-compared event written to the event log
	// timed counts the reads whose latency on the new database was
	// measured (see worker.timedBatch).
	timed atomic.Int64
}

// New starts a Shadower. Connections to the databases are opened on first
// use, so a new database that is down does not stop New; URLs, the report
// directory and the metrics registration are checked here. The workers
// stop when ctx is done or Close is called.
func New(ctx context.Context, opts Options) (*Shadower, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	f, err := newFilter(&o)
	if err != nil {
		return nil, err
	}
	prep, err := lru.New[string, *prepared](preparedEntries)
	if err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	s := &Shadower{
		opts:        o,
		filter:      f,
		agg:         compare.NewAggregator(compare.AggregatorOptions{}),
		prep:        prep,
		classes:     make(map[string]*class),
		queue:       make(chan *Request, o.QueueLen),
		gather:      make(chan struct{}, 1),
		maxRechecks: int64(max(o.QueueLen/4, o.MaxConcurrent)),
		timers:      make(map[*job]*time.Timer),
		done:        make(chan struct{}),
	}
	s.rechecks = make(chan *job, s.maxRechecks)
	empty := map[string]struct{}{}
	s.untranslatable.Store(&empty)
	s.met = newMetrics(s)

	// Re-checks and noise runs share the worker slots: each side's pool
	// needs no more connections than there are workers.
	if o.MySQL {
		s.newDB, err = newMySQLReader(o.NewURL, o.MaxConcurrent)
	} else {
		s.newDB, err = newPGReader(o.NewURL, o.MaxConcurrent, o.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("shadow: new database: %w", err)
	}
	if o.OldURL != "" {
		if s.oldDB, err = newPGReader(o.OldURL, o.MaxConcurrent, o.Timeout); err != nil {
			s.newDB.close()
			return nil, fmt.Errorf("shadow: old database: %w", err)
		}
	}
	if o.ReportDir != "" {
		s.events, err = compare.OpenEventLog(o.ReportDir, compare.EventLogOptions{MaxFileSize: o.ReportMaxFileSize, MaxTotalSize: o.ReportMaxTotalSize})
		if err != nil {
			s.closeResources()
			return nil, fmt.Errorf("shadow: %w", err)
		}
	}
	if o.Registerer != nil {
		if err := s.met.register(o.Registerer); err != nil {
			s.closeResources()
			return nil, err
		}
	}
	if o.SampleRate == 0 {
		o.Logger.Warn("shadow reads: sample rate is 0, no read will be shadowed")
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	for range o.MaxConcurrent {
		w := &worker{s: s, types: pgtype.NewMap()}
		s.wg.Add(1)
		go w.run()
	}
	return s, nil
}

// Wants reports whether a read is to be shadowed: a parsed read, not of an
// excluded class or table, within the included ones, and sampled. It is
// called for every read and allocates nothing.
func (s *Shadower) Wants(st *rewrite.Statement) bool {
	if !s.filter.wants(st) {
		return false
	}
	if s.opts.MySQL {
		if _, bad := (*s.untranslatable.Load())[st.Fingerprint]; bad {
			s.met.notShadowedCounter(IgnoredNoTranslation).Inc()
			return false
		}
	}
	return true
}

// SetSampleRate changes the fraction of wanted reads that are shadowed
// (clamped to 0..1), e.g. on a configuration reload.
func (s *Shadower) SetSampleRate(rate float64) { s.filter.setRate(rate) }

// Submit hands over a captured read. It never blocks: when the queue is
// full, or the Shadower is closed, the request is dropped (and counted) and
// Submit returns false; the caller then still owns r.Reserved.
func (s *Shadower) Submit(r *Request) bool {
	if r == nil || r.Statement == nil || r.Statement.Kind != rewrite.Read {
		s.met.dropped[dropInvalid].Inc()
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed || s.ctx.Err() != nil {
		s.met.dropped[dropClosed].Inc()
		return false
	}
	select {
	case s.queue <- r:
		return true
	default:
		s.met.dropped[dropQueueFull].Inc()
		return false
	}
}

// Reserve accounts for n more bytes of captured rows; false means the
// memory cap is reached and the capture should switch to a digest.
func (s *Shadower) Reserve(n int64) bool {
	if n <= 0 {
		return true
	}
	if s.mem.Add(n) > s.opts.MemoryCap {
		s.mem.Add(-n)
		s.met.memoryFull.Inc()
		return false
	}
	return true
}

// Release gives back n bytes reserved with Reserve.
func (s *Shadower) Release(n int64) {
	if n > 0 {
		s.mem.Add(-n)
	}
}

// PerComparisonCap is how many bytes of rows a capture keeps before it
// switches to a digest.
func (s *Shadower) PerComparisonCap() int64 { return s.opts.PerComparisonCap }

// FollowsSearchPath reports whether reads run on the new database with the
// client session's search_path (Request.SearchPath): a Postgres target
// does; a MySQL one has none, so a read there of unqualified names in a
// session with its own search_path would not read the same tables.
func (s *Shadower) FollowsSearchPath() bool { return !s.opts.MySQL }

// NotShadowed counts a read that the proxy did not shadow, by reason.
// Reasons should be a small fixed set; past 32 distinct ones they are
// counted as "other".
func (s *Shadower) NotShadowed(reason string) { s.met.notShadowedCounter(reason).Inc() }

// Snapshot returns the live aggregate report.
func (s *Shadower) Snapshot() *compare.Report { return s.agg.Snapshot() }

// Close stops accepting requests and lets the workers finish the ones in
// progress; pending re-checks are settled without their re-read, queued
// requests are dropped. When ctx ends first, the queries in flight are
// cancelled (and not recorded) and ctx's error is returned. Close releases
// the connections, closes the event log and unregisters the metrics.
func (s *Shadower) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.timerMu.Lock()
	timers := s.timers
	s.timers = nil
	s.timerMu.Unlock()
	close(s.done)

	var err error
	stopped := make(chan struct{})
	go func() { s.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.cancel()
		<-stopped
		err = fmt.Errorf("shadow: close: %w", ctx.Err())
	}

	// Settle what is left, now that no worker runs.
	types := pgtype.NewMap()
	settle := func(j *job) {
		s.rechecksHeld.Add(-1)
		s.met.rechecks[recheckSkipped].Inc()
		s.finish(types, j, false)
	}
	for j, t := range timers {
		t.Stop()
		settle(j)
	}
	for {
		select {
		case j := <-s.rechecks:
			settle(j)
			continue
		case r := <-s.queue:
			s.Release(r.Reserved)
			s.met.dropped[dropClosed].Inc()
			continue
		default:
		}
		break
	}
	s.cancel()
	if cerr := s.closeResources(); cerr != nil && err == nil {
		err = cerr
	}
	if s.opts.Registerer != nil {
		s.met.unregister(s.opts.Registerer)
	}
	return err
}

func (s *Shadower) closeResources() error {
	var errs []error
	if s.newDB != nil {
		errs = append(errs, s.newDB.close())
	}
	if s.oldDB != nil {
		errs = append(errs, s.oldDB.close())
	}
	if s.events != nil {
		errs = append(errs, s.events.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shadow: close: %w", err)
	}
	return nil
}

// prepared returns the shape and translation of a statement text.
func (s *Shadower) prepared(sql string) *prepared {
	if p, ok := s.prep.Get(sql); ok {
		return p
	}
	p := &prepared{}
	// A text that does not parse compares as an unordered result: the
	// loosest rule, so that it cannot raise a false alarm about order.
	p.shape, _ = compare.ShapeFromSQL(sql)
	if s.opts.MySQL {
		p.my, p.myErr = rewrite.TranslateToMySQL(sql, rewrite.WithSchemaMap(s.opts.SchemaMap))
	}
	if len(sql) <= maxPreparedSQL {
		s.prep.Add(sql, p)
	}
	return p
}

// classOf returns the state of st's query class. Beyond maxClasses a
// transient state is returned (no noise memory for that class).
func (s *Shadower) classOf(st *rewrite.Statement) *class {
	s.classMu.Lock()
	c := s.classes[st.Fingerprint]
	s.classMu.Unlock()
	if c != nil {
		return c
	}
	// Normalizing parses the text: done outside the lock, once per class.
	q, err := pg_query.Normalize(st.SQL)
	if err != nil {
		q = st.SQL
	}
	c = &class{fingerprint: st.Fingerprint, query: truncate(q, 4096)}
	s.classMu.Lock()
	defer s.classMu.Unlock()
	if prev := s.classes[st.Fingerprint]; prev != nil {
		return prev
	}
	if len(s.classes) < maxClasses {
		s.classes[st.Fingerprint] = c
	}
	return c
}

// markUntranslatable remembers a class TranslateToMySQL refused.
func (s *Shadower) markUntranslatable(fp string) {
	s.untranslatableMu.Lock()
	defer s.untranslatableMu.Unlock()
	cur := *s.untranslatable.Load()
	if _, ok := cur[fp]; ok || len(cur) >= maxClasses {
		return
	}
	next := make(map[string]struct{}, len(cur)+1)
	for k := range cur {
		next[k] = struct{}{}
	}
	next[fp] = struct{}{}
	s.untranslatable.Store(&next)
}

// notShadowedError is a read that cannot be shadowed, with the reason
// recorded for its class.
type notShadowedError struct {
	reason string
	err    error
}

func (e *notShadowedError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *notShadowedError) Unwrap() error { return e.err }

// noTranslationReason names what TranslateToMySQL refused.
func noTranslationReason(err error) string {
	var u *rewrite.UnsupportedError
	if errors.As(err, &u) {
		return IgnoredNoTranslation + " (" + u.Construct + ")"
	}
	return IgnoredNoTranslation
}

// warn logs at most once per warnEvery, so that a dead database does not
// flood the log.
func (s *Shadower) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(warnEvery) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.opts.Logger.Warn(msg, args...)
}

// transientOldError reports old-side errors that are about the session or
// the server, not the query: the read did not really run.
func transientOldError(e *compare.Error) bool {
	switch e.Class() {
	case "08", // connection exception
		"25", // invalid transaction state (e.g. in a failed transaction)
		"40", // transaction rollback (serialization failure, deadlock)
		"53", // insufficient resources
		"55", // object not in prerequisite state (lock not available)
		"57", // operator intervention (query cancelled, shutdown)
		"58": // system error
		return true
	}
	return false
}

// diffSummary lists an outcome's difference counts for logs.
func diffSummary(o *compare.Outcome) string {
	var parts []string
	for _, t := range compare.DiffTypes {
		if n := o.Counts[t]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, n))
		}
	}
	return strings.Join(parts, ", ")
}
