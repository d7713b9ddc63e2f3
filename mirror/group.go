package mirror

import (
	"context"
	"errors"
	"slices"
	"time"
)

// GroupTarget is a Target that can apply several batches in one round trip
// to the new database. Applying strictly one transaction per round trip caps
// the mirror at 1/RTT transactions per second, a few hundred when the new
// database is in another zone or region: too slow to keep up with a busy
// primary or to drain a spool. When the Target implements GroupTarget, the
// applier hands it runs of consecutive batches that are ready to apply (see
// collectGroup).
type GroupTarget interface {
	Target
	// ApplyGroup applies the batches in order, each as its own transaction
	// (one batch's failure must not undo another's), and returns one error
	// per batch, in the same order: nil (committed), a *RejectError (the
	// batch was refused and rolled back, as for Apply), ErrNotApplied (the
	// target stopped before the batch, after an earlier one failed), or any
	// other error (transient: the batch did not commit, or the target
	// cannot tell). After a transient error the batches behind it may or
	// may not have committed; the mirror applies them again, in order.
	// ApplyGroup must not modify the batches.
	ApplyGroup(ctx context.Context, bs []*Batch) []error
}

// ErrNotApplied is what ApplyGroup returns for the batches it did not run
// because an earlier one of the group failed and the target stops there
// (both targets do). They are not failures: the mirror applies them again
// at once, without a backoff or a retry counted. A target that stops at
// the first failure never applies a batch behind one that has not
// committed, which a target that went on would do (then the failed one,
// retried alone, is applied over newer rows until the ones behind it are
// applied again).
var ErrNotApplied = errors.New("mirror: not applied: an earlier batch of the group failed")

// collectGroup returns head, which the applier took and found committed,
// followed by the batches behind it that are ready to apply at once, for
// one ApplyGroup call; just head when the target cannot group or nothing
// else is ready. The members are taken from the same source as head (the
// in-memory queue, or the spool) and added to m.inflight, so that a switch
// to the spool or Close treats them as it treats head.
//
// The group never waits: it ends before the first batch that is not
// available yet, whose transaction is not known to have committed (pending,
// aborted, or of unknown outcome: runApplier decides those one at a time),
// that was passed over or already applied, or that holds an OpStatement
// change. Statements are excluded, head included, because a transient error
// makes the mirror apply again batches that may have committed, which is
// harmless only for row images (upserts and deletes by key). The group is
// also bounded by Options.MaxGroup batches and MaxGroupBytes of images.
func (m *Mirror) collectGroup(head *Batch, fromSpool bool) []*Batch {
	if _, ok := m.target.(GroupTarget); !ok || m.opts.MaxGroup <= 1 || hasStatement(head) {
		return []*Batch{head}
	}
	group := []*Batch{head}
	bytes := head.memSize()
	fits := func(b *Batch, size int64) bool {
		return len(group) < m.opts.MaxGroup && bytes+size <= m.opts.MaxGroupBytes && !hasStatement(b)
	}
	if !fromSpool {
		m.mu.Lock()
		for len(m.memQ) > 0 {
			q := m.memQ[0]
			if (q.t != nil && q.t.failed) || !fits(q.b, q.size) || !m.committedLocked(q.b) {
				break
			}
			m.memQ[0] = queued{}
			m.memQ = m.memQ[1:]
			m.memBytes -= q.size
			m.inflight = append(m.inflight, flight{b: q.b, mem: true, t: q.t})
			group = append(group, q.b)
			bytes += q.size
		}
		m.mu.Unlock()
		return group
	}
	for {
		b := m.peekSpool()
		if b == nil {
			return group
		}
		size := b.memSize()
		m.mu.Lock()
		ok := b.Seq > m.appliedSeq.Load() && fits(b, size) && m.committedLocked(b)
		if ok {
			m.inflight = append(m.inflight, flight{b: b, fromSpool: true})
		}
		m.mu.Unlock()
		if !ok {
			return group
		}
		m.ahead[0] = nil
		m.ahead = m.ahead[1:]
		group = append(group, b)
		bytes += size
	}
}

// linger waits Options.GroupLinger for the transactions committing behind
// head, a batch just taken from the in-memory queue, to join it in one
// group, when the target takes groups and fewer than half a group are
// queued (a longer queue makes a group without waiting). Enqueue's wake-ups
// meanwhile find nobody waiting and cost nothing.
func (m *Mirror) linger(head *Batch) {
	if m.opts.GroupLinger <= 0 || m.opts.MaxGroup <= 1 || hasStatement(head) {
		return
	}
	if _, ok := m.target.(GroupTarget); !ok {
		return
	}
	m.mu.Lock()
	queued := len(m.memQ)
	m.mu.Unlock()
	if queued >= m.opts.MaxGroup/2 {
		return
	}
	t := time.NewTimer(m.opts.GroupLinger)
	select {
	case <-t.C:
	case <-m.ctx.Done():
		t.Stop()
	}
}

// peekSpool returns the next batch of the spool path without taking it (it
// stays first in m.ahead), or nil when none can be read now.
func (m *Mirror) peekSpool() *Batch {
	if len(m.ahead) == 0 {
		if read, _ := m.readOneAhead(); !read {
			return nil
		}
	}
	return m.ahead[0]
}

// committedLocked reports whether b's transaction is known to have
// committed: it has no Xid, or Resolve or the Resolver said so.
func (m *Mirror) committedLocked(b *Batch) bool {
	if b.Xid == 0 {
		return true
	}
	if i, ok := m.findIntentLocked(b.Seq); ok {
		return m.intents[i].outcome == OutcomeCommitted
	}
	return m.known[b.Seq] == OutcomeCommitted
}

func hasStatement(b *Batch) bool {
	return slices.ContainsFunc(b.Changes, func(c Change) bool { return c.Op == OpStatement })
}

// applyGroup applies a group from collectGroup, in order, until every batch
// is applied or dead-lettered. It returns false if the mirror closed first.
//
// From the new database's point of view this is what apply does for each
// batch in turn: the batches commit in Seq order, each as its own
// transaction; a rejected one is dead-lettered and the next ones are still
// applied. After a transient error on a batch, the ones before it are
// finished and the mirror retries from it, with apply's backoff: the batch
// alone (so that a group that cannot complete, within ApplyTimeout say,
// still makes progress), then the rest as a group again. Batches behind the
// failed one that did commit are applied again, after it, which leaves the
// row images they wrote, as a replay after a crash does. A target that
// stops at the failed batch reports those behind it ErrNotApplied, and
// they go again at once, as a group.
func (m *Mirror) applyGroup(group []*Batch) bool {
	gt := m.target.(GroupTarget)
	backoff := m.opts.RetryMin
	attempt := 1 // of group[0]
	for len(group) > 0 {
		try, errs := group, []error(nil)
		if attempt == 1 && len(group) > 1 {
			errs = m.applyGroupOnce(gt, group)
		} else {
			try, errs = group[:1], []error{m.applyOnce(group[0])}
		}
		n, err := m.finishGroup(try, errs)
		group = group[n:]
		if n > 0 {
			// Progress: the next batch is on its first attempt.
			attempt, backoff = 1, m.opts.RetryMin
		}
		if err == nil || n > 0 && errors.Is(err, ErrNotApplied) {
			// ErrNotApplied after progress: the rest go again at once.
			continue
		}
		if m.ctx.Err() != nil {
			return false
		}
		if !m.retryAfter(group[0], attempt, &backoff, err) {
			return false
		}
		attempt++
	}
	return true
}

func (m *Mirror) applyGroupOnce(gt GroupTarget, group []*Batch) []error {
	ctx, cancel := m.applyContext(len(group))
	defer cancel()
	errs := gt.ApplyGroup(ctx, group)
	m.mu.Lock()
	m.nGroups++
	m.nGrouped += uint64(len(group))
	m.mu.Unlock()
	return errs
}

// finishGroup finishes the batches of group that errs reports applied or
// rejected, up to the first other error (transient, or ErrNotApplied), and
// returns how many it finished and that error. A missing result counts as
// transient.
func (m *Mirror) finishGroup(group []*Batch, errs []error) (int, error) {
	for i, b := range group {
		if i >= len(errs) {
			return i, errors.New("mirror: target returned no result for the batch")
		}
		fromSpool := m.inflightFromSpool(b)
		switch rej, ok := errors.AsType[*RejectError](errs[i]); {
		case errs[i] == nil:
			m.finish(b, fromSpool, true)
		case ok:
			m.reject(b, rej)
			m.finish(b, fromSpool, false)
		default:
			return i, errs[i]
		}
	}
	return len(group), nil
}

// inflightFromSpool reports whether the applier read b from the spool.
func (m *Mirror) inflightFromSpool(b *Batch) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.inflight, func(f flight) bool { return f.b == b })
	return i >= 0 && m.inflight[i].fromSpool
}
