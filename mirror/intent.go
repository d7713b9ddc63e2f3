package mirror

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Outcome is what became of a transaction on the old database, as
// pg_xact_status reports it.
type Outcome uint8

// The zero Outcome is invalid on purpose: a Resolver that leaves an Xid out
// of its answer, or answers 0, has not answered.
const (
	// OutcomeCommitted: the transaction committed; its batch is applied.
	OutcomeCommitted Outcome = iota + 1
	// OutcomeAborted: the transaction rolled back; its batch is skipped and
	// counted in Stats.Aborted.
	OutcomeAborted
	// OutcomeInProgress: the transaction is still running, or is a prepared
	// transaction waiting for COMMIT PREPARED. The mirror asks again later;
	// every batch after it waits, to keep the order.
	OutcomeInProgress
	// OutcomeUnknown: the old database no longer knows (pg_xact_status
	// returned NULL: the xid is older than its commit log). The batch is
	// applied as committed, with a warning.
	OutcomeUnknown
)

var outcomeNames = [...]string{
	OutcomeCommitted:  "committed",
	OutcomeAborted:    "aborted",
	OutcomeInProgress: "in progress",
	OutcomeUnknown:    "unknown",
}

func (o Outcome) valid() bool { return o >= OutcomeCommitted && o <= OutcomeUnknown }

// String returns the pg_xact_status spelling, e.g. "in progress".
func (o Outcome) String() string {
	if !o.valid() {
		return fmt.Sprintf("outcome(%d)", uint8(o))
	}
	return outcomeNames[o]
}

// final reports whether the outcome lets the applier decide.
func (o Outcome) final() bool {
	return o == OutcomeCommitted || o == OutcomeAborted || o == OutcomeUnknown
}

const (
	// maxTrackedIntents bounds the pending batches whose Resolve the mirror
	// remembers (16 bytes each). Beyond it, which takes a spool of a million
	// unapplied intents, batches are enqueued untracked: Resolve ignores
	// them and the applier asks the Resolver when it reaches them.
	maxTrackedIntents = 1 << 20
	// resolveBatch is the most Xids one Resolver call gets.
	resolveBatch = 256
	// resolverTimeout bounds one Resolver call.
	resolverTimeout = 30 * time.Second
)

// intentRec is a batch with an Xid enqueued in this run, and what became of
// its transaction so far.
type intentRec struct {
	seq     uint64
	outcome Outcome // 0 while unknown
}

// trackLocked starts tracking the pending batch seq, which is higher than
// every tracked one.
func (m *Mirror) trackLocked(seq uint64) {
	if len(m.intents) >= m.maxIntents {
		if !m.intentsFull {
			m.intentsFull = true
			m.log.Warn("mirror: too many unapplied pending batches to remember their outcomes; the Resolver will be asked for the rest",
				"tracked", len(m.intents))
		}
		return
	}
	m.intents = append(m.intents, intentRec{seq: seq})
	m.nPending++
}

func (m *Mirror) findIntentLocked(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(m.intents, seq, func(r intentRec, s uint64) int { return cmp.Compare(r.seq, s) })
}

// setOutcomeLocked records the outcome of a tracked batch, unless one is
// known already; it reports whether seq is tracked.
func (m *Mirror) setOutcomeLocked(seq uint64, oc Outcome) bool {
	i, ok := m.findIntentLocked(seq)
	if !ok {
		return false
	}
	if m.intents[i].outcome == 0 {
		m.intents[i].outcome = oc
		m.nPending--
	}
	return true
}

// forgetIntentsLocked drops the tracking of the batches up to seq: the
// applier works in Seq order, so it is done with them (applied, skipped,
// or dead-lettered before they reached it).
func (m *Mirror) forgetIntentsLocked(seq uint64) {
	n := 0
	for n < len(m.intents) && m.intents[n].seq <= seq {
		if m.intents[n].outcome == 0 {
			m.nPending--
		}
		n++
	}
	if n == 0 {
		return
	}
	m.intents = m.intents[n:]
	if len(m.intents) == 0 {
		m.intents = nil // let the array go
		m.intentsFull = false
	}
}

// SyncsEachWrite reports whether EnqueueDurable waits for an fsync of the
// batch it writes (fsync = always) rather than for the write alone.
func (m *Mirror) SyncsEachWrite() bool { return m.opts.Fsync == FsyncAlways }

// Resolve tells the mirror what became of the transaction of the pending
// batch seq (enqueued with an Xid): committed, or rolled back (the batch is
// then skipped). The producer calls it as soon as the COMMIT's outcome is
// known. A Seq that is not pending (unknown, already resolved, applied or
// dead-lettered, or without an Xid) is ignored. Resolve never blocks.
func (m *Mirror) Resolve(seq uint64, committed bool) {
	oc := OutcomeAborted
	if committed {
		oc = OutcomeCommitted
	}
	m.mu.Lock()
	tracked := m.setOutcomeLocked(seq, oc)
	m.mu.Unlock()
	if tracked {
		notify(m.wakeApplier)
	}
}

// outcomeOf returns what is known of the transaction of batch seq, and
// whether seq is tracked (a Resolve is expected for it).
func (m *Mirror) outcomeOf(seq uint64) (oc Outcome, tracked bool) {
	m.mu.Lock()
	i, ok := m.findIntentLocked(seq)
	if ok {
		oc = m.intents[i].outcome
	}
	m.mu.Unlock()
	if ok {
		return oc, true
	}
	return m.known[seq], false
}

// settle finds out whether the pending batch b at the head of the line
// committed. A tracked batch (enqueued in this run) waits up to ResolveWait
// for Resolve; then, and at once for an untracked batch (recovered from the
// spool after a restart), the Resolver is asked, again and again with the
// retry backoff while it fails or answers "in progress". Resolve still
// counts meanwhile. ok is false when the mirror closes first.
func (m *Mirror) settle(b *Batch, fromSpool bool) (committed, ok bool) {
	oc, tracked := m.outcomeOf(b.Seq)
	if oc.final() {
		return m.decide(b, oc), true
	}
	var deadline time.Time // until then, wait for Resolve
	if tracked {
		deadline = time.Now().Add(m.opts.ResolveWait)
	} else {
		m.setHeadPending(true)
		defer m.setHeadPending(false)
	}
	backoff := m.opts.RetryMin
	var retryAt time.Time // next Resolver call
	warnedInProgress := false
	for {
		if oc, _ := m.outcomeOf(b.Seq); oc.final() {
			return m.decide(b, oc), true
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			if m.opts.Resolver == nil {
				// After a restart every recovered intent comes here: warn
				// once per run, not once per batch.
				level := slog.LevelDebug
				if !m.noResolverWarned {
					m.noResolverWarned = true
					level = slog.LevelWarn
				}
				m.log.Log(m.ctx, level, "mirror: outcome of a pending batch unknown and no Resolver configured; applying it as committed (further ones are logged at debug level)",
					"seq", b.Seq, "xid", b.Xid, "recovered", !tracked)
				return true, true
			}
			if !time.Now().Before(retryAt) {
				oc, err := m.askResolver(b, fromSpool)
				if m.ctx.Err() != nil {
					return false, false
				}
				switch {
				case err != nil:
					m.log.Warn("mirror: resolver failed; retrying", "seq", b.Seq, "xid", b.Xid, "retry_in", backoff, "err", err)
				case oc == OutcomeInProgress:
					if !warnedInProgress {
						warnedInProgress = true
						m.log.Warn("mirror: waiting for a transaction still in progress on the old database (a prepared transaction waiting for COMMIT PREPARED, or a large one journaled in chunks while it runs); later batches wait behind it",
							"seq", b.Seq, "xid", b.Xid)
					}
				default:
					return m.decide(b, oc), true
				}
				retryAt = time.Now().Add(backoff)
				backoff = min(backoff*2, m.opts.RetryMax)
			}
			wait = time.Until(retryAt)
		}
		t := time.NewTimer(wait)
		select {
		case <-m.wakeApplier: // perhaps a Resolve
		case <-t.C:
		case <-m.ctx.Done():
			t.Stop()
			return false, false
		}
		t.Stop()
	}
}

func (m *Mirror) setHeadPending(v bool) {
	m.mu.Lock()
	m.headPending = v
	m.mu.Unlock()
}

// decide turns a final outcome into apply (true) or skip.
func (m *Mirror) decide(b *Batch, oc Outcome) bool {
	switch oc {
	case OutcomeAborted:
		m.log.Debug("mirror: skipping the batch of a rolled back transaction", "seq", b.Seq, "xid", b.Xid)
		return false
	case OutcomeUnknown:
		m.log.Warn("mirror: the old database no longer knows the outcome of a transaction (too old); applying its batch as committed",
			"seq", b.Seq, "xid", b.Xid)
	}
	return true
}

// pendingRef is a batch in the head region whose outcome is asked for.
type pendingRef struct{ seq, xid uint64 }

// askResolver asks the Resolver about head and the other pending batches
// of unknown outcome near the head of the line (up to resolveBatch), stores
// the final answers, and returns head's.
func (m *Mirror) askResolver(head *Batch, fromSpool bool) (Outcome, error) {
	refs := m.headRegion(head, fromSpool)
	xids := make([]uint64, 0, len(refs))
	for _, r := range refs {
		if !slices.Contains(xids, r.xid) {
			xids = append(xids, r.xid)
		}
	}
	ctx, cancel := context.WithTimeout(m.ctx, resolverTimeout)
	res, err := m.opts.Resolver(ctx, xids)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("mirror: resolver: %w", err)
	}
	m.mu.Lock()
	for _, r := range refs {
		if oc := res[r.xid]; oc.final() && !m.setOutcomeLocked(r.seq, oc) {
			m.known[r.seq] = oc
		}
	}
	m.mu.Unlock()
	oc := res[head.Xid]
	if !oc.valid() {
		return 0, fmt.Errorf("mirror: resolver: no valid outcome for xid %d (got %v)", head.Xid, oc)
	}
	return oc, nil
}

// headRegion returns head and the batches after it, in the in-memory queue
// or read ahead from the spool, that have an Xid and no known outcome.
func (m *Mirror) headRegion(head *Batch, fromSpool bool) []pendingRef {
	refs := []pendingRef{{head.Seq, head.Xid}}
	unknown := func(b *Batch) bool {
		if b.Xid == 0 || b.Seq <= m.appliedSeq.Load() {
			return false
		}
		if i, ok := m.findIntentLocked(b.Seq); ok {
			return m.intents[i].outcome == 0
		}
		return !m.known[b.Seq].final()
	}
	if fromSpool {
		m.readAhead()
		m.mu.Lock()
		for _, b := range m.ahead {
			if len(refs) == resolveBatch {
				break
			}
			if unknown(b) {
				refs = append(refs, pendingRef{b.Seq, b.Xid})
			}
		}
		m.mu.Unlock()
		return refs
	}
	m.mu.Lock()
	for _, q := range m.memQ {
		if len(refs) == resolveBatch {
			break
		}
		if unknown(q.b) {
			refs = append(refs, pendingRef{q.b.Seq, q.b.Xid})
		}
	}
	m.mu.Unlock()
	return refs
}

// readAhead reads records after the head from the spool into m.ahead, up to
// resolveBatch of them, so that one Resolver call covers them. nextBatch
// hands them out before reading on.
func (m *Mirror) readAhead() {
	for len(m.ahead) < resolveBatch-1 {
		if read, lost := m.readOneAhead(); !read && !lost {
			return
		}
	}
}

// readOneAhead reads the next record of the spool path into m.ahead. read
// is false when there is none to read now (nextBatch retries a segment that
// failed to open); lost says an unreadable record was accounted instead,
// and reading may go on after it.
func (m *Mirror) readOneAhead() (read, lost bool) {
	m.mu.Lock()
	from := m.spoolFrom
	m.mu.Unlock()
	b, err := m.reader.next(from)
	if err != nil {
		if _, ok := errors.AsType[*readError](err); ok {
			m.spoolReadError(err) // accounts the loss; reading goes on after it
			return false, true
		}
		return false, false
	}
	if b == nil {
		return false, false
	}
	m.ahead = append(m.ahead, b)
	return true, false
}
