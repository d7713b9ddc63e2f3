package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrClosed is returned by WaitApplied when the mirror closes before
	// reaching the position.
	ErrClosed = errors.New("mirror: closed")
	// ErrLocked is wrapped by New when another Mirror uses the directory.
	ErrLocked = errors.New("mirror: directory locked")
)

// seqLease is how many Seqs one persisted lease covers. A restart skips the
// unused rest of the lease, so Seqs have gaps; uint64 does not mind.
const seqLease = 1 << 20

// Mirror is the pipeline from the proxy to one Target. See the package
// documentation for the design. All methods are safe for concurrent use.
type Mirror struct {
	opts   Options
	log    *slog.Logger
	target Target
	spool  *spool
	reader *spoolReader // applier goroutine only
	dl     *deadLetters
	unlock func() error

	// ctx is canceled by Close; it stops the applier (and its in-flight
	// Apply) and the state loop. The spool writer stops on closed instead,
	// after writing everything handed to it.
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing chan struct{} // closed when Close starts

	closeOnce, finalOnce sync.Once
	closeErr             error

	// Wake-ups; each has room for one pending signal, so notifying never
	// blocks and a signal sent while the receiver is busy is not lost.
	wakeApplier chan struct{}
	wakeWriter  chan struct{}
	wakeState   chan struct{}

	mu     sync.Mutex
	room   *sync.Cond // hand-off space freed, or closed
	closed bool

	nextSeq     uint64 // next Seq to hand out
	ceiling     uint64 // durable Seq lease: Seqs up to here are reserved on disk
	leaseWarned bool

	// The in-memory queue. Invariant: while spooling, memQ is empty (all of
	// it was spilled to the spool), so the applier has exactly one source.
	// Entries written through to the spool (ticket set) come first: every
	// entry after one with a ticket has one too (see writeThroughLocked).
	memQ     []queued
	memBytes int64

	// inflight holds the batches the applier is working on, in Seq order:
	// one, or a group (group.go).
	inflight []flight

	// spooling is true from the moment a batch goes to the spool until the
	// applier has applied everything in it; meanwhile every new batch goes
	// behind, through the spool, which keeps the order.
	spooling bool
	// spoolFrom is the lowest Seq on the spool path of the current spooling
	// period. Spool records below it are write-through copies of batches the
	// applier took from memory: the reader skips them.
	spoolFrom     uint64
	handoff       []queued // batches for the spool writer, in Seq order
	handoffBytes  int64    // of handoff and of the batches being written
	writerBusy    bool     // an appender holds batches it has not published yet
	retire        bool     // spool drained: the writer may seal its segment
	lastHandedOff uint64   // highest Seq given to the spool path
	spooled       int      // batches on the spool path not yet consumed

	// Batches with an Xid enqueued in this run, in Seq order, with the
	// outcome Resolve (or the Resolver) gave. The applier drops entries as it
	// passes them, so this holds at most the batches not yet applied, and at
	// most maxIntents of those.
	intents     []intentRec
	maxIntents  int
	nPending    int  // entries of intents without an outcome
	headPending bool // the applier is resolving an untracked batch
	intentsFull bool // maxIntents reached (logged once)

	dirty      map[string]struct{}
	overflowed bool

	nApplied, nFailed, nDeadLettered, nDropped, nHandoffWaits, nAborted uint64
	nGroups, nGrouped                                                   uint64

	// Appender state, guarded by spool.wmu: reused encoding buffers.
	wbuf   []byte
	wrecs  []spoolRec
	wchunk []queued
	wok    []int
	werrs  []error

	// Applier goroutine only.
	ahead            []*Batch           // read from the spool after the head, to resolve their Xids together
	known            map[uint64]Outcome // Resolver answers for untracked batches, by Seq
	noResolverWarned bool

	appliedSeq atomic.Uint64
	appliedMu  sync.Mutex
	appliedCh  chan struct{} // closed and replaced whenever appliedSeq advances

	stateMu   sync.Mutex // serializes state writes
	lastState state      // last state written
}

// flight is a batch the applier took and has not finished.
type flight struct {
	b         *Batch
	fromSpool bool    // read from the spool
	mem       bool    // taken from memQ, and the spool path does not have it
	t         *ticket // its ticket when it was written through
}

type queued struct {
	b    *Batch
	size int64
	t    *ticket // nil for a batch on one path that nobody waits for
}

// ticket follows a batch handed to the spool writer that is also in the
// in-memory queue (write-through), or whose EnqueueDurable caller waits for
// the write. Its fields are guarded by Mirror.mu; done is written once by
// the appender.
type ticket struct {
	done    chan error // receives the write's result; nil when nobody waits
	through bool       // write-through: the applier takes the batch from memory
	failed  bool       // the write failed; the batch was dead-lettered
	spilled bool       // a spill counted the batch on the spool path (spooled)
}

// New opens (or creates) the spool in opts.Dir, recovers it, and starts the
// pipeline to target. The Mirror owns target from then on and closes it in
// Close; if New fails, the caller still owns it.
func New(target Target, opts Options) (*Mirror, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	unlock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	m, err := open(target, o, unlock)
	if err != nil {
		unlock()
		return nil, err
	}
	m.wg.Add(3)
	go m.runApplier()
	go m.runWriter()
	go m.runState()
	return m, nil
}

func open(target Target, o Options, unlock func() error) (*Mirror, error) {
	st, err := readState(o.Dir)
	if err != nil {
		return nil, err
	}
	sp, rec, err := openSpool(o.Dir, &o, st.AppliedSeq)
	if err != nil {
		return nil, err
	}
	dl, err := openDeadLetters(o.Dir)
	if err != nil {
		return nil, err
	}
	m := &Mirror{
		opts:        o,
		log:         o.Logger,
		target:      target,
		spool:       sp,
		reader:      newSpoolReader(sp, rec),
		dl:          dl,
		unlock:      unlock,
		closing:     make(chan struct{}),
		wakeApplier: make(chan struct{}, 1),
		wakeWriter:  make(chan struct{}, 1),
		wakeState:   make(chan struct{}, 1),
		nextSeq:     max(st.SeqCeiling, rec.lastSeq, st.AppliedSeq) + 1,
		maxIntents:  maxTrackedIntents,
		known:       map[uint64]Outcome{},
		dirty:       map[string]struct{}{},
		overflowed:  st.Overflowed,
		appliedCh:   make(chan struct{}),
		lastState:   st,
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.room = sync.NewCond(&m.mu)
	m.appliedSeq.Store(st.AppliedSeq)
	m.ceiling = st.SeqCeiling
	for _, t := range st.DirtyTables {
		m.dirty[t] = struct{}{}
	}
	if rec.pending > 0 {
		m.spooling = true
		m.spooled = rec.pending
		m.lastHandedOff = rec.lastSeq
	}
	for _, l := range rec.lost {
		m.lose(&DeadLetter{
			Time: o.Now(), Reason: ReasonSpoolCorrupt, ChangeIndex: -1,
			Error: l.err.Error(), Segment: l.path, Offset: l.off,
		}, true)
	}
	// Take the first Seq lease before handing out any Seq.
	if err := m.persist(); err != nil {
		dl.close()
		return nil, err
	}
	m.log.Info("mirror: started", "dir", o.Dir, "applied_seq", st.AppliedSeq, "next_seq", m.nextSeq,
		"spooled_batches", rec.pending, "spool_bytes", sp.bytes())
	return m, nil
}

// notify sends a wake-up without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Enqueue hands a committed transaction to the mirror, assigns it the next
// Seq, and returns that Seq. b must not be nil and must not be modified
// afterwards. Enqueue never waits for the Target or for an fsync: the batch
// goes to the in-memory queue, or, when that is full or anything is already
// spooled, to the spool writer. The one wait left is when the hand-off to
// the spool writer (Options.HandoffBytes) is full, that is when the local
// disk cannot take writes as fast as batches arrive; Stats.HandoffWaits
// counts those.
//
// Seqs are handed out in the order of Enqueue calls, so the producer must
// call Enqueue in the order the old database committed (see the package
// documentation). After Close, Enqueue records the batch as a dead letter
// and returns 0. A batch with an Xid is pending like one from
// EnqueueDurable; Enqueue is meant for batches known to have committed.
func (m *Mirror) Enqueue(b *Batch) uint64 {
	size := b.memSize()
	m.mu.Lock()
	for {
		if m.closed {
			m.mu.Unlock()
			m.lose(newDeadLetter(m.opts.Now(), ReasonClosed, b, ErrClosed, true), true)
			return 0
		}
		if !m.spooling && len(m.memQ) < m.opts.QueueLen && m.memBytes+size <= m.opts.QueueBytes {
			seq := m.assignLocked(b)
			m.memQ = append(m.memQ, queued{b, size, nil})
			m.memBytes += size
			m.mu.Unlock()
			notify(m.wakeApplier)
			return seq
		}
		// Always admit one batch into an empty hand-off, however large.
		if m.handoffBytes == 0 || m.handoffBytes+size <= m.opts.HandoffBytes {
			break
		}
		m.nHandoffWaits++
		m.room.Wait()
	}
	seq := m.assignLocked(b)
	if !m.spooling {
		m.startSpoolingLocked(seq)
	}
	m.handoffLocked(queued{b, size, nil})
	m.mu.Unlock()
	notify(m.wakeWriter)
	return seq
}

// EnqueueDurable hands a transaction to the mirror like Enqueue, but
// returns only once the batch's record is written to the spool (with
// write(2): a kill of the process no longer loses it; the fsync policy
// decides, in the background, when it survives a machine crash). The
// producer calls it before it forwards COMMIT to the old database, with
// b.Xid set to the transaction's id, and calls Resolve with the Seq once the
// COMMIT's outcome is known; see the package documentation for why this
// keeps every committed transaction and the apply order.
//
// Writing the batch also writes every earlier batch the applier has not
// finished that is not in the spool yet (Enqueue'd ones in the in-memory
// queue), so that the spool stays in Seq order. When the mirror is not
// spooling the batch also goes to the in-memory queue, and the applier takes
// it from there: the record is only read back after a crash or a switch to
// the spool. Concurrent callers are written in Seq order, several in one
// write when they arrive together. With FsyncAlways a write first waits for
// the fsync of the write before it, as that policy promises.
//
// An error means the batch could not be made durable: the spool is full
// (ErrSpoolFull), the disk failed, the batch cannot be encoded, or the
// mirror is closed (ErrClosed, Seq 0). The batch is then dead-lettered and
// its tables are marked dirty, as for Enqueue; it is not applied, unless the
// applier had already taken it from memory. The Seq is returned whenever one
// was assigned; a Resolve for it is harmless.
func (m *Mirror) EnqueueDurable(b *Batch) (uint64, error) {
	size := b.memSize()
	t := &ticket{done: make(chan error, 1)}
	m.mu.Lock()
	for {
		if m.closed {
			m.mu.Unlock()
			m.lose(newDeadLetter(m.opts.Now(), ReasonClosed, b, ErrClosed, true), true)
			return 0, ErrClosed
		}
		if m.handoffBytes == 0 || m.handoffBytes+size <= m.opts.HandoffBytes {
			break
		}
		m.nHandoffWaits++
		m.room.Wait()
	}
	seq := m.assignLocked(b)
	q := queued{b, size, t}
	memory := !m.spooling && len(m.memQ) < m.opts.QueueLen && m.memBytes+size <= m.opts.QueueBytes
	if memory {
		m.writeThroughLocked()
		t.through = true
		m.memQ = append(m.memQ, q)
		m.memBytes += size
		m.handoff = append(m.handoff, q)
		m.handoffBytes += size
	} else {
		if !m.spooling {
			m.startSpoolingLocked(seq)
		}
		m.handoffLocked(q)
	}
	m.mu.Unlock()
	if memory {
		notify(m.wakeApplier)
	}
	return seq, m.flushUntil(t)
}

// assignLocked gives b the next Seq and makes sure a new lease is on its way
// before the current one runs out.
func (m *Mirror) assignLocked(b *Batch) uint64 {
	seq := m.nextSeq
	m.nextSeq++
	b.Seq = seq
	if b.CommittedAt.IsZero() {
		b.CommittedAt = m.opts.Now()
	}
	if b.Xid != 0 {
		m.trackLocked(seq)
	}
	if seq+seqLease/2 > m.ceiling {
		notify(m.wakeState)
		if seq > m.ceiling && !m.leaseWarned {
			// Not fatal: Seqs stay monotonic in this process. Only a crash
			// before the renewal lands could make the next process reuse
			// Seqs of batches that were in memory.
			m.leaseWarned = true
			m.log.Warn("mirror: Seq lease exhausted before its renewal was written", "seq", seq, "ceiling", m.ceiling)
		}
	}
	return seq
}

// startSpoolingLocked switches to the spool path. The batch the applier took
// from memory (if any) and the in-memory queue go to the spool first, in
// order, so that everything not yet applied becomes durable and later
// batches queue behind it. The applier keeps working on its batch; the
// spooled copy is skipped by Seq once that batch is done. Batches already
// written through are not written again: the reader will find them where
// they are. next is the Seq of the batch about to be handed off, if any,
// else the next Seq.
func (m *Mirror) startSpoolingLocked(next uint64) {
	m.spooling = true
	from := next
	// take moves a batch from memory to the spool path.
	take := func(q queued) {
		from = min(from, q.b.Seq)
		switch {
		case q.t == nil:
			m.handoffLocked(q)
		case q.t.failed:
			// Dead-lettered: it is nowhere now. Let the position pass it
			// when the spool drains.
			m.lastHandedOff = max(m.lastHandedOff, q.b.Seq)
		default:
			q.t.spilled = true
			m.spooled++
			m.lastHandedOff = max(m.lastHandedOff, q.b.Seq)
		}
	}
	for i := range m.inflight {
		f := &m.inflight[i]
		if !f.mem {
			continue
		}
		if f.t == nil || !f.t.failed {
			// A failed one stays with the applier only: handing it off now
			// would put it behind later Seqs.
			take(queued{f.b, f.b.memSize(), f.t})
		}
		f.mem = false
	}
	for _, q := range m.memQ {
		take(q)
	}
	m.memQ, m.memBytes = nil, 0
	m.spoolFrom = from
}

func (m *Mirror) handoffLocked(q queued) {
	m.handoff = append(m.handoff, q)
	m.handoffBytes += q.size
	m.spooled++
	m.lastHandedOff = max(m.lastHandedOff, q.b.Seq)
}

// writeThroughLocked hands to the spool writer the batches the applier has
// not finished that the spool does not have: the one it took from memory
// and the tail of the in-memory queue that Enqueue put there. They stay in
// memory too (write-through). Called before a durable batch is handed off,
// it keeps the spool in Seq order whatever happens next: a later spill
// hands off only batches after the last durable one, and the spool never
// holds a durable batch without every unfinished batch before it.
func (m *Mirror) writeThroughLocked() {
	for i := range m.inflight {
		f := &m.inflight[i]
		if f.mem && f.t == nil {
			f.t = &ticket{through: true}
			q := queued{f.b, f.b.memSize(), f.t}
			m.handoff = append(m.handoff, q)
			m.handoffBytes += q.size
		}
	}
	i := len(m.memQ)
	for i > 0 && m.memQ[i-1].t == nil {
		i--
	}
	for ; i < len(m.memQ); i++ {
		m.memQ[i].t = &ticket{through: true}
		m.handoff = append(m.handoff, m.memQ[i])
		m.handoffBytes += m.memQ[i].size
	}
}

// lose records data the mirror could not apply: a dead letter, dirty
// tables, and for losses inside the pipeline (as opposed to rejections by the
// target) the Overflowed flag. The counters move after the dead letter is
// written, so every loss Stats reports is in the file.
func (m *Mirror) lose(dl *DeadLetter, dropped bool) {
	level := slog.LevelWarn
	if dropped {
		level = slog.LevelError
	}
	m.log.Log(context.Background(), level, "mirror: batch dead-lettered; the tables need repair",
		"reason", dl.Reason, "seq", dl.Seq, "tables", dl.Tables, "sqlstate", dl.SQLState, "err", dl.Error,
		"lost_batches", dl.Lost)
	if err := m.dl.write(dl); err != nil {
		m.log.Error("mirror: cannot write dead letter", "seq", dl.Seq, "tables", dl.Tables, "err", err)
	}
	m.mu.Lock()
	m.nDeadLettered++
	if dropped {
		m.nDropped++
		m.overflowed = true
	}
	for _, t := range dl.Tables {
		m.dirty[t] = struct{}{}
	}
	m.mu.Unlock()
	notify(m.wakeState)
}

// Unmirrored records a committed transaction whose changes the producer
// could not hand over (they outgrew what it may hold, say): a dead letter
// with its tables, fingerprints and number of changes but no rows, and the
// tables marked dirty, so that the loss is reported and repaired rather
// than silent.
func (m *Mirror) Unmirrored(reason string, tables, fingerprints []string, numChanges int) {
	m.lose(&DeadLetter{
		Time: m.opts.Now(), Reason: reason, ChangeIndex: -1,
		Tables: tables, Fingerprints: fingerprints, NumChanges: numChanges,
	}, false)
}

// AppliedSeq returns the position of the mirror: every batch with a Seq up
// to it has been applied to the target (or dead-lettered).
func (m *Mirror) AppliedSeq() uint64 { return m.appliedSeq.Load() }

// WaitApplied waits until AppliedSeq reaches seq. It returns ctx's error if
// ctx ends first, or ErrClosed if the mirror closes first.
func (m *Mirror) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		m.appliedMu.Lock()
		ch := m.appliedCh
		m.appliedMu.Unlock()
		if m.appliedSeq.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("mirror: wait for seq %d: %w", seq, ctx.Err())
		case <-m.closing:
			if m.appliedSeq.Load() >= seq {
				return nil
			}
			return ErrClosed
		}
	}
}

// advance moves AppliedSeq forward to seq and wakes WaitApplied callers.
func (m *Mirror) advance(seq uint64) {
	for {
		cur := m.appliedSeq.Load()
		if seq <= cur {
			return
		}
		if m.appliedSeq.CompareAndSwap(cur, seq) {
			break
		}
	}
	m.appliedMu.Lock()
	close(m.appliedCh)
	m.appliedCh = make(chan struct{})
	m.appliedMu.Unlock()
}

// Stats is a snapshot of the mirror, for /metrics and /status.
type Stats struct {
	// Queued batches wait in the in-memory queue; QueuedBytes estimates
	// their memory.
	Queued      int
	QueuedBytes int64
	// Spooled batches are on the spool path (handed to the writer or on
	// disk) and not yet applied. SpoolBytes is the size of the segment files.
	Spooled    int
	SpoolBytes int64
	// Applied counts batches the target applied; Failed counts transient
	// Apply failures (attempts, not batches).
	Applied uint64
	Failed  uint64
	// DeadLettered counts dead letters; Dropped counts those lost inside the
	// pipeline (spool full, disk errors, corrupt spool, Enqueue after Close)
	// rather than rejected by the target.
	DeadLettered uint64
	Dropped      uint64
	// HandoffWaits counts Enqueue calls that waited for the spool writer.
	HandoffWaits uint64
	// LastSeq is the last Seq handed out; AppliedSeq the mirror's position.
	LastSeq    uint64
	AppliedSeq uint64
	// Lag is the time since the oldest unapplied batch committed on the old
	// database; zero when the mirror is caught up.
	Lag time.Duration
	// DirtyTables have lost changes: repair them from the old database.
	DirtyTables []string
	// Overflowed is set once the pipeline has dropped data (Dropped > 0, now
	// or before a restart). It stays set: only a repair makes the new
	// database whole again.
	Overflowed bool
	// Spooling says whether batches currently go through the spool.
	Spooling bool
	// Pending counts batches with an Xid whose outcome is not known yet:
	// those enqueued in this run and not resolved, plus a batch recovered
	// from the spool that the applier is asking the Resolver about.
	Pending int
	// Aborted counts pending batches skipped because their transaction
	// rolled back.
	Aborted uint64
	// Groups counts ApplyGroup calls (several batches in one round trip,
	// see GroupTarget) and GroupedBatches the batches sent in them, retries
	// included; batches applied one at a time are in neither.
	Groups         uint64
	GroupedBatches uint64
}

// Stats returns a snapshot of the mirror's counters.
func (m *Mirror) Stats() Stats {
	now := m.opts.Now()
	spoolBytes := m.spool.bytes()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Stats{
		Queued:         len(m.memQ),
		QueuedBytes:    m.memBytes,
		Spooled:        m.spooled,
		SpoolBytes:     spoolBytes,
		Applied:        m.nApplied,
		Failed:         m.nFailed,
		DeadLettered:   m.nDeadLettered,
		Dropped:        m.nDropped,
		HandoffWaits:   m.nHandoffWaits,
		LastSeq:        m.nextSeq - 1,
		AppliedSeq:     m.appliedSeq.Load(),
		DirtyTables:    slices.Sorted(maps.Keys(m.dirty)),
		Overflowed:     m.overflowed,
		Spooling:       m.spooling,
		Pending:        m.nPending,
		Aborted:        m.nAborted,
		Groups:         m.nGroups,
		GroupedBatches: m.nGrouped,
	}
	if m.headPending {
		s.Pending++
	}
	var oldest *Batch
	switch {
	case len(m.inflight) > 0:
		oldest = m.inflight[0].b
	case len(m.memQ) > 0:
		oldest = m.memQ[0].b
	}
	if oldest != nil && now.After(oldest.CommittedAt) {
		s.Lag = now.Sub(oldest.CommittedAt)
	}
	return s
}

// Close stops the mirror: later Enqueue calls are dead-lettered, batches
// still in memory are written to the spool, the applier is stopped (an
// in-flight Apply is canceled; its batch is in the spool and is applied again
// by the next Mirror), the state is checkpointed and the target closed.
// Nothing is lost: a New on the same directory resumes. If ctx ends first,
// Close returns its error and leaves the goroutines to finish on their own;
// calling Close again waits again.
func (m *Mirror) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		close(m.closing)
		m.mu.Lock()
		m.closed = true
		if !m.spooling && (len(m.memQ) > 0 || m.inflightInMemLocked()) {
			m.startSpoolingLocked(m.nextSeq)
		}
		m.room.Broadcast()
		m.mu.Unlock()
		m.cancel()
		notify(m.wakeWriter)
	})
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("mirror: close: %w", ctx.Err())
	}
	m.finalOnce.Do(func() {
		errs := []error{m.persist()}
		m.reader.close()
		errs = append(errs, m.dl.close(), m.target.Close(), m.unlock())
		m.closeErr = errors.Join(errs...)
		m.log.Info("mirror: closed", "applied_seq", m.appliedSeq.Load(), "spool_bytes", m.spool.bytes())
	})
	return m.closeErr
}

// runApplier applies batches in Seq order until Close.
func (m *Mirror) runApplier() {
	defer m.wg.Done()
	lowerPriority()
	for {
		b, fromSpool, dropped, ok := m.nextBatch()
		if !ok {
			return
		}
		switch {
		case dropped:
			// Written through, but the write failed: dead-lettered.
			m.finish(b, false, false)
			continue
		case fromSpool && b.Seq <= m.appliedSeq.Load():
			// The spooled copy of a batch the applier already applied from
			// memory before the switch to the spool.
			m.finish(b, true, false)
			continue
		}
		if !fromSpool {
			m.linger(b)
		}
		if b.Xid != 0 {
			committed, ok := m.settle(b, fromSpool)
			if !ok {
				return
			}
			if !committed {
				m.mu.Lock()
				m.nAborted++
				m.mu.Unlock()
				m.finish(b, fromSpool, false)
				continue
			}
		}
		if group := m.collectGroup(b, fromSpool); len(group) > 1 {
			if !m.applyGroup(group) {
				return
			}
			continue
		}
		if !m.apply(b, fromSpool) {
			return
		}
	}
}

// nextBatch returns the next batch to apply and whether it came from the
// spool; dropped says it must be passed over (its write-through failed); ok
// is false when the mirror is closing.
func (m *Mirror) nextBatch() (b *Batch, fromSpool, dropped, ok bool) {
	for m.ctx.Err() == nil {
		if len(m.ahead) > 0 {
			b := m.ahead[0]
			m.ahead[0] = nil
			m.ahead = m.ahead[1:]
			m.mu.Lock()
			m.inflight = append(m.inflight[:0], flight{b: b, fromSpool: true})
			m.mu.Unlock()
			return b, true, false, true
		}
		m.mu.Lock()
		if len(m.memQ) > 0 {
			q := m.memQ[0]
			m.memQ[0] = queued{}
			m.memQ = m.memQ[1:]
			m.memBytes -= q.size
			m.inflight = append(m.inflight[:0], flight{b: q.b, mem: true, t: q.t})
			dropped := q.t != nil && q.t.failed
			m.mu.Unlock()
			return q.b, false, dropped, true
		}
		spooling, from := m.spooling, m.spoolFrom
		m.mu.Unlock()

		if spooling {
			b, err := m.reader.next(from)
			if err != nil {
				m.spoolReadError(err)
				continue
			}
			if b != nil {
				m.mu.Lock()
				m.inflight = append(m.inflight[:0], flight{b: b, fromSpool: true})
				m.mu.Unlock()
				return b, true, false, true
			}
			m.mu.Lock()
			if m.spooling && len(m.handoff) == 0 && !m.writerBusy && m.reader.atEnd() {
				// Drained: everything given to the spool path was applied,
				// dead-lettered or dropped. Back to the in-memory queue.
				m.spooling = false
				m.retire = true
				last := m.lastHandedOff
				m.mu.Unlock()
				m.advance(last)
				notify(m.wakeWriter)
				continue
			}
			m.mu.Unlock()
		}
		select {
		case <-m.wakeApplier:
		case <-m.ctx.Done():
		}
	}
	return nil, false, false, false
}

// apply applies b, retrying transient errors with capped exponential
// backoff, until it is applied or rejected. It returns false if the mirror
// closed first.
func (m *Mirror) apply(b *Batch, fromSpool bool) bool {
	backoff := m.opts.RetryMin
	for attempt := 1; ; attempt++ {
		err := m.applyOnce(b)
		if err == nil {
			m.finish(b, fromSpool, true)
			return true
		}
		if m.ctx.Err() != nil {
			return false
		}
		if rej, ok := errors.AsType[*RejectError](err); ok {
			m.reject(b, rej)
			m.finish(b, fromSpool, false)
			return true
		}
		if !m.retryAfter(b, attempt, &backoff, err) {
			return false
		}
	}
}

// retryAfter handles a transient error of applying b: it counts the
// failure, switches to the spool, and waits out the backoff, which it then
// doubles (up to RetryMax). It returns false if the mirror closed first.
func (m *Mirror) retryAfter(b *Batch, attempt int, backoff *time.Duration, err error) bool {
	m.mu.Lock()
	m.nFailed++
	// The target is down or failing: make everything pending durable and
	// send new batches to the spool while we wait.
	if !m.spooling {
		m.startSpoolingLocked(m.nextSeq)
	}
	m.mu.Unlock()
	notify(m.wakeWriter)
	m.log.Warn("mirror: apply failed; retrying", "seq", b.Seq, "attempt", attempt, "retry_in", *backoff, "err", err)
	t := time.NewTimer(*backoff)
	select {
	case <-t.C:
	case <-m.ctx.Done():
		t.Stop()
		return false
	}
	*backoff = min(*backoff*2, m.opts.RetryMax)
	return true
}

func (m *Mirror) applyOnce(b *Batch) error {
	ctx, cancel := m.applyContext(1)
	defer cancel()
	return m.target.Apply(ctx, b)
}

// applyContext bounds an apply of n batches: ApplyTimeout for each.
func (m *Mirror) applyContext(n int) (context.Context, context.CancelFunc) {
	if m.opts.ApplyTimeout > 0 {
		return context.WithTimeout(m.ctx, m.opts.ApplyTimeout*time.Duration(n))
	}
	return context.WithCancel(m.ctx)
}

// inflightInMemLocked reports whether the applier holds a batch taken from
// memory that the spool path does not have.
func (m *Mirror) inflightInMemLocked() bool {
	return slices.ContainsFunc(m.inflight, func(f flight) bool { return f.mem })
}

// finish records that the applier is done with b: applied, skipped or
// dead-lettered.
func (m *Mirror) finish(b *Batch, fromSpool, applied bool) {
	m.mu.Lock()
	onDisk := fromSpool
	if i := slices.IndexFunc(m.inflight, func(f flight) bool { return f.b == b }); i >= 0 {
		onDisk = onDisk || m.inflight[i].t != nil
		m.inflight = slices.Delete(m.inflight, i, i+1)
	}
	if applied {
		m.nApplied++
	}
	if fromSpool {
		m.spooled--
	}
	m.forgetIntentsLocked(b.Seq)
	m.mu.Unlock()
	if len(m.known) > 0 {
		delete(m.known, b.Seq)
	}
	m.advance(b.Seq)
	if onDisk {
		// Delete the segments this completes, whether the applier read
		// them or they hold write-through copies.
		m.spool.gc(m.appliedSeq.Load())
	}
}

// reject dead-letters a batch the target refused.
func (m *Mirror) reject(b *Batch, rej *RejectError) {
	dl := newDeadLetter(m.opts.Now(), ReasonRejected, b, rej.Err, true)
	dl.SQLState = rej.SQLState
	if rej.Err == nil {
		dl.Error = rej.Error()
	}
	if i := rej.ChangeIndex; i >= 0 && i < len(b.Changes) {
		c := &b.Changes[i]
		dl.ChangeIndex, dl.Change, dl.Table, dl.Fingerprint = i, c, c.Table, c.Fingerprint
	}
	m.lose(dl, false)
}

// spoolReadError handles a record the spool reader could not return.
func (m *Mirror) spoolReadError(err error) {
	if re, ok := errors.AsType[*readError](err); ok {
		m.mu.Lock()
		m.spooled -= re.lost
		m.mu.Unlock()
		m.log.Error("mirror: spooled batches are unreadable and lost; repair every mirrored table",
			"segment", re.path, "offset", re.off, "batches", re.lost, "err", re.err)
		m.lose(&DeadLetter{
			Time: m.opts.Now(), Reason: ReasonSpoolCorrupt, Seq: re.seq, ChangeIndex: -1,
			Error: re.err.Error(), Segment: re.path, Offset: re.off, Lost: re.lost,
		}, true)
		return
	}
	// Opening a segment failed (e.g. too many open files): try again later.
	m.log.Error("mirror: cannot read the spool; retrying", "err", err)
	t := time.NewTimer(m.opts.RetryMin)
	defer t.Stop()
	select {
	case <-t.C:
	case <-m.ctx.Done():
	}
}

// writeChunk is how many bytes of batches (by their memory estimate) one
// append takes from the hand-off before it writes them (in one write call
// per segment) and gives the hand-off space back.
const writeChunk = 1 << 20

// runWriter writes handed-off batches to the spool and runs the fsync
// policy. It exits once the mirror is closed and everything handed to it is
// written. EnqueueDurable callers append too (flushUntil); spool.wmu keeps
// one appender at a time.
func (m *Mirror) runWriter() {
	defer m.wg.Done()
	var tick <-chan time.Time
	if m.opts.Fsync == FsyncInterval {
		t := time.NewTicker(m.opts.FsyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		m.spool.wmu.Lock()
		if m.opts.Fsync == FsyncAlways {
			// An EnqueueDurable caller may have written since the last round.
			m.syncSpool()
		}
		m.flushLocked(nil)
		m.mu.Lock()
		retire := m.retire && len(m.handoff) == 0 && !m.spooling
		m.retire = false
		exit := m.closed && len(m.handoff) == 0
		m.mu.Unlock()
		if retire {
			if err := m.spool.seal(); err != nil {
				m.log.Error("mirror: spool: sealing a drained segment", "err", err)
			}
			m.spool.gc(m.appliedSeq.Load())
		}
		if exit {
			if err := m.spool.close(); err != nil {
				m.log.Error("mirror: spool: close", "err", err)
			}
			m.spool.wmu.Unlock()
			return
		}
		m.spool.wmu.Unlock()
		if m.handoffPending() {
			continue
		}
		select {
		case <-m.wakeWriter:
		case <-tick:
			// Outside wmu: appends go on during the fsync.
			if err := m.spool.syncInBackground(); err != nil {
				m.log.Error("mirror: spool fsync failed", "err", err)
			}
		}
	}
}

// flushUntil appends the hand-off up to t's batch, unless another appender
// already did, and returns the result of t's write. This is a group commit
// of writes: the caller that gets spool.wmu writes for everyone waiting
// behind it.
func (m *Mirror) flushUntil(t *ticket) error {
	m.spool.wmu.Lock()
	select {
	case err := <-t.done:
		m.spool.wmu.Unlock()
		return err
	default:
	}
	m.flushLocked(t)
	m.spool.wmu.Unlock()
	if m.handoffPending() {
		notify(m.wakeWriter)
	}
	if m.opts.Fsync == FsyncAlways {
		notify(m.wakeWriter) // to fsync what this caller wrote
	}
	return <-t.done
}

// flushLocked appends the hand-off to the spool, oldest first, a chunk at a
// time, and reports each write to its ticket. With until == nil (the writer
// goroutine) it writes everything; otherwise it stops after the chunk that
// holds until's batch. Caller holds spool.wmu, which keeps the spool in the
// hand-off's order, that is in Seq order.
func (m *Mirror) flushLocked(until *ticket) {
	for {
		m.mu.Lock()
		n, reached := 0, false
		var freed int64
		for n < len(m.handoff) && (n == 0 || freed < writeChunk) {
			q := m.handoff[n]
			freed += q.size
			reached = reached || (until != nil && q.t == until)
			n++
		}
		if n == 0 {
			m.mu.Unlock()
			return
		}
		chunk := append(m.wchunk[:0], m.handoff[:n]...)
		clear(m.handoff[:n])
		if n == len(m.handoff) {
			m.handoff = m.handoff[:0]
		} else {
			m.handoff = m.handoff[n:]
		}
		m.writerBusy = true
		m.mu.Unlock()

		buf, recs, ok := m.wbuf[:0], m.wrecs[:0], m.wok[:0]
		errs := append(m.werrs[:0], make([]error, len(chunk))...)
		spoolPath := false
		for i, q := range chunk {
			spoolPath = spoolPath || q.t == nil || !q.t.through
			start := len(buf)
			var err error
			if buf, err = appendFrame(buf, q.b); err != nil {
				errs[i] = err
				m.dropSpooled(q, ReasonUnencodable, err)
				continue
			}
			recs = append(recs, spoolRec{off: start, n: len(buf) - start, seq: q.b.Seq})
			ok = append(ok, i)
		}
		if m.opts.Fsync == FsyncAlways {
			// Every write is synced before the next one starts.
			m.syncSpool()
		}
		for k, err := range m.spool.write(buf, recs) {
			q := chunk[ok[k]]
			switch {
			case err == nil:
				continue
			case errors.Is(err, ErrSpoolFull):
				err = fmt.Errorf("mirror: batch %d: %w (MaxSpoolBytes %d)", q.b.Seq, ErrSpoolFull, m.opts.MaxSpoolBytes)
				m.dropSpooled(q, ReasonSpoolFull, err)
			default:
				m.dropSpooled(q, ReasonSpoolWrite, err)
			}
			errs[ok[k]] = err
		}
		if until == nil && m.opts.Fsync == FsyncAlways {
			m.syncSpool()
		}
		m.mu.Lock()
		m.handoffBytes -= freed
		m.writerBusy = false
		m.room.Broadcast()
		m.mu.Unlock()
		for i, q := range chunk {
			if q.t != nil && q.t.done != nil {
				q.t.done <- errs[i]
			}
		}
		if spoolPath {
			notify(m.wakeApplier)
		}
		clear(chunk)
		clear(errs)
		m.wbuf, m.wrecs, m.wchunk, m.wok, m.werrs = buf, recs, chunk, ok, errs
		if reached {
			return
		}
	}
}

func (m *Mirror) handoffPending() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.handoff) > 0
}

// dropSpooled dead-letters a batch the spool writer could not write.
func (m *Mirror) dropSpooled(q queued, reason string, err error) {
	m.mu.Lock()
	if t := q.t; t != nil && t.through && !t.spilled {
		// Still with the applier's in-memory path, which passes it over if
		// it has not taken it yet, and a spill leaves it out.
		t.failed = true
	} else {
		m.spooled--
	}
	m.mu.Unlock()
	// Rows are kept only when they are the problem: a full or failing disk
	// has no room for them.
	m.lose(newDeadLetter(m.opts.Now(), reason, q.b, err, reason == ReasonUnencodable), true)
}

// syncSpool makes the written records durable. Caller holds spool.wmu.
func (m *Mirror) syncSpool() {
	if err := m.spool.sync(); err != nil {
		// The data is still in the page cache and readable; only durability
		// against a machine crash is in doubt.
		m.log.Error("mirror: spool fsync failed", "err", err)
	}
}

// runState persists the checkpoint and the Seq lease: every
// CheckpointInterval, and promptly when the lease runs low or data was lost.
func (m *Mirror) runState() {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-m.wakeState:
		case <-m.ctx.Done():
			return
		}
		if err := m.persist(); err != nil {
			m.log.Error("mirror: cannot persist the mirror state", "err", err)
		}
	}
}

// persist writes the state file if it changed, renewing the Seq lease when
// half of it is used.
func (m *Mirror) persist() error {
	m.stateMu.Lock()
	defer m.stateMu.Unlock()
	m.mu.Lock()
	st := state{
		Version:     stateVersion,
		AppliedSeq:  m.appliedSeq.Load(),
		SeqCeiling:  m.ceiling,
		Overflowed:  m.overflowed,
		DirtyTables: slices.Sorted(maps.Keys(m.dirty)),
	}
	if m.nextSeq+seqLease/2 > m.ceiling {
		st.SeqCeiling = m.nextSeq - 1 + seqLease
	}
	m.mu.Unlock()
	if st.AppliedSeq == m.lastState.AppliedSeq && st.SeqCeiling == m.lastState.SeqCeiling &&
		st.Overflowed == m.lastState.Overflowed && slices.Equal(st.DirtyTables, m.lastState.DirtyTables) {
		return nil
	}
	if err := writeState(m.opts.Dir, st); err != nil {
		return err
	}
	m.lastState = st
	m.mu.Lock()
	if st.SeqCeiling > m.ceiling {
		m.ceiling = st.SeqCeiling
		m.leaseWarned = false
	}
	m.mu.Unlock()
	return nil
}
