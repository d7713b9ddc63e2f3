package shadow

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shadowproxy/shadowproxy/compare"
	"github.com/shadowproxy/shadowproxy/mirror"
)

// worker runs shadow reads, a batch at a time. Its pgtype.Map (not safe
// for concurrent use) decodes binary values.
type worker struct {
	s     *Shadower
	types *pgtype.Map
	batch []*Request
	jobs  []*job
	// batches counts the batches read, for timedBatch.
	batches uint64
}

// job is one request on its way through comparison and re-check. It owns
// the request's reserved memory until finish.
type job struct {
	req        *Request
	cls        *class
	prep       *prepared
	old        *compare.Result
	out        *compare.Outcome
	newLatency time.Duration
	lagged     bool
}

// readResult is what one read of a batch came back with (see reader.read).
type readResult struct {
	res  *compare.Result
	held int64
	err  error
}

// compareOpts are the comparison options: the defaults, which the proxy's
// digests also use.
var compareOpts = compare.Options{}

func (w *worker) run() {
	s := w.s
	defer s.wg.Done()
	for {
		// Closing: finish nothing more (Close settles what is left).
		select {
		case <-s.done:
			return
		case <-s.ctx.Done():
			return
		default:
		}
		// Re-checks first: their delay has already run, and they hold
		// memory.
		select {
		case j := <-s.rechecks:
			w.recheck(j)
			continue
		default:
		}
		j, batch, ok := w.next()
		switch {
		case !ok:
			return
		case j != nil:
			w.recheck(j)
		default:
			w.processBatch(batch)
		}
	}
}

// next waits for work: a re-check, or a batch of requests. One worker at a
// time gathers a batch, holding s.gather: it takes a request, lets
// BatchWindow pass for more to queue up and takes those too, up to
// MaxBatch. The other workers wait for their turn (or a re-check) without
// being woken by every Submit.
func (w *worker) next() (recheck *job, batch []*Request, ok bool) {
	s := w.s
	select {
	case s.gather <- struct{}{}:
	case j := <-s.rechecks:
		return j, nil, true
	case <-s.done:
		return nil, nil, false
	case <-s.ctx.Done():
		return nil, nil, false
	}
	defer func() { <-s.gather }()
	select {
	case j := <-s.rechecks:
		return j, nil, true
	case r := <-s.queue:
		batch = append(w.batch[:0], r)
	case <-s.done:
		return nil, nil, false
	case <-s.ctx.Done():
		return nil, nil, false
	}
	// A backlog makes a batch without waiting.
	if s.opts.MaxBatch > 1 && s.opts.BatchWindow > 0 && len(s.queue) < s.opts.MaxBatch-1 {
		time.Sleep(s.opts.BatchWindow)
	}
	for len(batch) < s.opts.MaxBatch {
		select {
		case r := <-s.queue:
			batch = append(batch, r)
			continue
		default:
		}
		break
	}
	w.batch = batch
	s.met.batchSize.Observe(float64(len(batch)))
	return nil, batch, true
}

// processBatch compares a batch of requests and decides each one's fate:
// recorded, or held for a re-check.
func (w *worker) processBatch(batch []*Request) {
	jobs := w.jobs[:0]
	for i, r := range batch {
		batch[i] = nil
		if j := w.begin(r); j != nil {
			jobs = append(jobs, j)
		}
	}
	if len(jobs) > 0 {
		w.waitMirror(jobs)
		for i, rr := range w.readNew(jobs) {
			w.conclude(jobs[i], rr)
		}
	}
	clear(jobs)
	w.jobs = jobs[:0]
}

// begin decodes a request's old answer: the job to run on the new
// database, or nil when the request was settled without it.
func (w *worker) begin(r *Request) *job {
	s := w.s
	j := &job{req: r, cls: s.classOf(r.Statement), prep: s.prepared(r.sql())}
	if s.opts.MySQL && j.prep.myErr != nil {
		s.markUntranslatable(r.Statement.Fingerprint)
		w.ignore(j, noTranslationReason(j.prep.myErr), true)
		return nil
	}
	if r.OldErr != nil && transientOldError(r.OldErr) {
		w.ignore(j, IgnoredOldTransient, false)
		return nil
	}
	old, err := w.oldResult(r)
	if err != nil {
		if errors.Is(err, errDecode) {
			s.met.errors[errDecodeOld].Inc()
			s.warn("shadow reads: old result not decodable", "fingerprint", j.cls.fingerprint, "error", err)
			w.ignore(j, IgnoredOldNotDecodable, false)
		} else {
			w.ignore(j, IgnoredNoFields, false)
		}
		return nil
	}
	j.old = old
	// The raw rows are decoded: let them go (the reservation covers the
	// decoded copy until the job finishes).
	r.Rows = nil
	return j
}

// readNew runs the jobs' reads on the new database: as one batch when the
// reader takes batches, else one after the other.
func (w *worker) readNew(jobs []*job) []readResult {
	s := w.s
	out := make([]readResult, len(jobs))
	if br, ok := s.newDB.(batchReader); ok && len(jobs) > 1 {
		reqs := make([]*Request, len(jobs))
		for i, j := range jobs {
			reqs[i] = j.req
		}
		// Each query is bounded by the timeout on the server; the batch
		// as a whole by as many.
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.Timeout*time.Duration(len(jobs)))
		defer cancel()
		br.readBatch(ctx, w, reqs, out, w.timedBatch(jobs))
		return out
	}
	for i, j := range jobs {
		out[i].res, out[i].held, out[i].err = w.read(s.newDB, j.req, hints(j.old), j.req.Truncated)
	}
	return out
}

// Timing the new database's answers one by one costs it a flush (a
// system call, and a wake-up of the reader) per read, where an untimed
// batch costs one: a few percent of the machine at 10% sampling on a small
// one. So only some batches are timed: every timedEvery-th, and any with a
// read of a class that has fewer than minTimed timed reads, so that every
// class soon has latencies to report.
const (
	timedEvery = 4
	minTimed   = 32
)

// timedBatch reports whether the batch of jobs has its reads timed.
func (w *worker) timedBatch(jobs []*job) bool {
	if w.s.untimed { // tests
		return false
	}
	w.batches++
	if w.batches%timedEvery == 0 {
		return true
	}
	for _, j := range jobs {
		if j.cls.timed.Load() < minTimed {
			return true
		}
	}
	return false
}

// conclude compares a job's old answer with the new one.
func (w *worker) conclude(j *job, rr readResult) {
	s := w.s
	if rr.err != nil {
		w.unavailable(j, rr.err)
		return
	}
	res := rr.res
	j.out = compare.Compare(j.old, res, j.prep.shape, compareOpts)
	s.Release(rr.held)
	j.newLatency = res.Elapsed
	switch {
	case res.Err != nil && res.Err.Timeout:
		s.met.timeouts[timeoutQuery].Inc()
	case res.Elapsed > 0: // zero: not timed (see timedBatch)
		s.met.newLatency.Observe(res.Elapsed.Seconds())
		j.cls.timed.Add(1)
	}
	w.noiseRun(j)

	switch {
	case j.out.Match:
		w.s.finish(w.types, j, false)
	case j.cls.noisy.Load():
		w.s.finish(w.types, j, true)
	case j.out.Has(compare.DiffTimeout):
		// Time-outs are their own bucket; re-reading a slow database only
		// loads it more.
		w.s.finish(w.types, j, false)
	case !s.scheduleRecheck(j):
		s.met.rechecks[recheckSkipped].Inc()
		w.s.finish(w.types, j, false)
	}
}

// hints are the old columns' families, which resolve MySQL's ambiguous
// types (TINYINT(1) as bool, CHAR(36) as uuid).
func hints(old *compare.Result) []compare.Family {
	h := make([]compare.Family, len(old.Columns))
	for i, c := range old.Columns {
		h[i] = c.Family
	}
	return h
}

var errNoFields = errors.New("no row description")

// oldResult decodes the old answer the proxy captured.
func (w *worker) oldResult(r *Request) (*compare.Result, error) {
	if r.OldErr != nil {
		return &compare.Result{Err: r.OldErr, Elapsed: r.OldLatency}, nil
	}
	if len(r.Fields) == 0 {
		return nil, errNoFields
	}
	dec := compare.NewPGRowDecoder(w.types, r.Fields)
	if err := dec.SetFormats(r.ResultFormats); err != nil {
		return nil, errors.Join(errDecode, err)
	}
	res := &compare.Result{Columns: dec.Columns(), Elapsed: r.OldLatency}
	if r.Truncated {
		res.Truncated, res.Digest = true, r.Digest
		return res, nil
	}
	res.Rows = make([][]compare.Value, 0, len(r.Rows))
	for _, raw := range r.Rows {
		row, err := dec.DecodeRow(raw)
		if err != nil {
			return nil, errors.Join(errDecode, err)
		}
		res.Rows = append(res.Rows, row)
	}
	return res, nil
}

// read runs r on db within the query timeout.
func (w *worker) read(db reader, r *Request, h []compare.Family, digestOnly bool) (*compare.Result, int64, error) {
	ctx, cancel := context.WithTimeout(w.s.ctx, w.s.opts.Timeout)
	defer cancel()
	return db.read(ctx, w, r, h, digestOnly)
}

// waitMirror waits until the new database has applied the positions the
// jobs' reads must see, at most MirrorWait in all, and marks the jobs whose
// position it did not reach in time as lagged.
func (w *worker) waitMirror(jobs []*job) {
	s := w.s
	if s.opts.Mirror == nil {
		return
	}
	var ctx context.Context
	for _, j := range slices.SortedFunc(slices.Values(jobs), func(a, b *job) int { return cmp.Compare(a.req.MirrorSeq, b.req.MirrorSeq) }) {
		if j.req.MirrorSeq == 0 {
			continue
		}
		if ctx == nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(s.ctx, s.opts.MirrorWait)
			defer cancel()
		}
		if ctx.Err() != nil || s.opts.Mirror.WaitApplied(ctx, j.req.MirrorSeq) != nil {
			s.met.timeouts[timeoutMirrorWait].Inc()
			j.lagged = true
		}
	}
}

// waitSeq waits until the new database has applied seq, at most
// MirrorWait; it reports whether the wait ran out.
func (w *worker) waitSeq(seq uint64) bool {
	s := w.s
	if s.opts.Mirror == nil || seq == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.MirrorWait)
	defer cancel()
	if err := s.opts.Mirror.WaitApplied(ctx, seq); err != nil {
		s.met.timeouts[timeoutMirrorWait].Inc()
		return true
	}
	return false
}

// mirrorStats is the optional part of the mirror a re-check uses.
type mirrorStats interface{ Stats() mirror.Stats }

// lastSeq is the mirror's last handed-out position, or 0.
func (w *worker) lastSeq() uint64 {
	if ms, ok := w.s.opts.Mirror.(mirrorStats); ok {
		return ms.Stats().LastSeq
	}
	return 0
}

// noiseRun runs a sample of reads again on the old database and compares
// the old answers with each other (Diffy's noise baseline): a class whose
// old answers differ is noisy, and its mismatches are not the new
// database's fault.
func (w *worker) noiseRun(j *job) {
	s := w.s
	if s.oldDB == nil || s.opts.NoiseSample <= 0 || j.cls.noisy.Load() || rand.Float64() >= s.opts.NoiseSample {
		return
	}
	res, held, err := w.read(s.oldDB, j.req, nil, j.req.Truncated)
	if err != nil {
		if errors.Is(err, errUnreachable) {
			s.met.errors[errOldUnreachable].Inc()
		}
		return
	}
	defer s.Release(held)
	if res.Err != nil && res.Err.Timeout {
		return
	}
	s.met.noiseRuns.Inc()
	o := compare.Compare(j.old, res, j.prep.shape, compareOpts)
	if o.Match {
		return
	}
	s.met.noiseDiffer.Inc()
	if j.cls.noisy.CompareAndSwap(false, true) {
		s.opts.Logger.Info("shadow reads: query class is noisy (the old database answers it differently from run to run); its mismatches count as noise",
			"fingerprint", j.cls.fingerprint, "query", j.cls.query, "differences", diffSummary(o))
	}
}

// scheduleRecheck holds j for a re-check after RecheckDelay; false when
// re-checks are off, all slots are taken, or the Shadower is closing.
func (s *Shadower) scheduleRecheck(j *job) bool {
	if s.opts.RecheckDelay < 0 {
		return false
	}
	if s.rechecksHeld.Add(1) > s.maxRechecks {
		s.rechecksHeld.Add(-1)
		return false
	}
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.timers == nil { // closed
		s.rechecksHeld.Add(-1)
		return false
	}
	// fire takes timerMu first, so it cannot run before the timer is
	// stored.
	s.timers[j] = time.AfterFunc(s.opts.RecheckDelay, func() { s.fire(j) })
	return true
}

// fire queues a re-check whose delay has run. The queue has room for every
// held re-check, so this never blocks.
func (s *Shadower) fire(j *job) {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	// Not pending: Close has taken it. Queued under the lock, so that
	// Close, which drains the queue after taking the timers, sees it.
	if _, pending := s.timers[j]; pending {
		delete(s.timers, j)
		s.rechecks <- j
	}
}

// recheck reads both databases again: old first, then — once the mirror
// has applied everything handed out by then — new. A mismatch that the
// re-read does not show, or whose old answer moved in between, is noise.
func (w *worker) recheck(j *job) {
	s := w.s
	defer s.rechecksHeld.Add(-1)
	var old2 *compare.Result
	if s.oldDB != nil {
		res, held, err := w.read(s.oldDB, j.req, nil, j.req.Truncated)
		switch {
		case err != nil:
			if errors.Is(err, errUnreachable) {
				s.met.errors[errOldUnreachable].Inc()
			}
		case res.Err != nil && res.Err.Timeout:
		default:
			old2 = res
			defer s.Release(held)
		}
	}
	lagged := w.waitSeq(max(j.req.MirrorSeq, w.lastSeq()))
	new2, held, err := w.read(s.newDB, j.req, hints(j.old), j.req.Truncated)
	if err != nil || (new2.Err != nil && new2.Err.Timeout) {
		s.met.rechecks[recheckInconclusive].Inc()
		s.finish(w.types, j, false)
		return
	}
	defer s.Release(held)
	base := j.old
	if old2 != nil {
		base = old2
	}
	o2 := compare.Compare(base, new2, j.prep.shape, compareOpts)
	switch {
	case o2.Match:
		s.met.rechecks[recheckResolved].Inc()
		s.finish(w.types, j, true)
	case old2 != nil && !compare.Compare(j.old, old2, j.prep.shape, compareOpts).Match:
		s.met.rechecks[recheckMoving].Inc()
		s.finish(w.types, j, true)
	default:
		s.met.rechecks[recheckConfirmed].Inc()
		// The re-check's outcome is the confirmed one: both sides read
		// again, the mirror caught up as far as it could.
		j.out, j.lagged = o2, lagged
		s.finish(w.types, j, false)
	}
}

// unavailable records a read the new database could not answer.
func (w *worker) unavailable(j *job, err error) {
	s := w.s
	var ns *notShadowedError
	switch {
	case errors.As(err, &ns):
		w.ignore(j, ns.reason, true)
	case errors.Is(err, errDecode):
		s.met.errors[errDecodeNew].Inc()
		s.warn("shadow reads: new result not decodable", "fingerprint", j.cls.fingerprint, "error", err)
		w.ignore(j, IgnoredNewNotDecodable, false)
	default:
		s.met.errors[errNewUnreachable].Inc()
		s.warn("shadow reads: new database unreachable", "error", err)
		w.ignore(j, IgnoredNewUnreachable, false)
	}
}

// ignore records a read that was not compared.
func (w *worker) ignore(j *job, reason string, notShadowed bool) {
	s := w.s
	defer s.Release(j.req.Reserved)
	if notShadowed {
		s.met.notShadowedCounter(reasonLabel(reason)).Inc()
	}
	if s.ctx.Err() != nil {
		s.met.dropped[dropClosed].Inc()
		return
	}
	ev := j.event()
	ev.Ignored = reason
	s.agg.Record(ev)
	if s.events != nil && (s.opts.LogMatches || j.cls.loggedIgnored.CompareAndSwap(false, true)) {
		s.writeEvent(ev)
	}
}

// reasonLabel keeps the metric label of a not-shadowed reason bounded: the
// refused construct stays in the report, not in the label.
func reasonLabel(reason string) string {
	if strings.HasPrefix(reason, IgnoredNoTranslation) {
		return IgnoredNoTranslation
	}
	return reason
}

// event is the job's event without an outcome.
func (j *job) event() compare.Event {
	at := j.req.At
	if at.IsZero() {
		at = time.Now()
	}
	return compare.Event{
		Time:        at,
		Fingerprint: j.cls.fingerprint,
		Query:       j.cls.query,
		Tables:      j.req.Statement.Tables,
		OldLatency:  j.req.OldLatency,
		NewLatency:  j.newLatency,
	}
}

// finish records a compared job and releases its memory. noise marks a
// mismatch explained by the noise baseline or the re-check.
func (s *Shadower) finish(types *pgtype.Map, j *job, noise bool) {
	defer s.Release(j.req.Reserved)
	if s.ctx.Err() != nil {
		// Cancelled mid-way (hard shutdown): the outcome means nothing.
		s.met.dropped[dropClosed].Inc()
		return
	}
	out := j.out
	if j.lagged {
		if out.Partial == "" {
			out.Partial = RuleMirrorLag
		} else {
			out.Partial += "; " + RuleMirrorLag
		}
	}
	ev := j.event()
	ev.Outcome = out
	ev.Noise = noise && !out.Match
	mismatch := !out.Match && !ev.Noise
	if mismatch {
		ev.Params = j.req.renderParams(types)
	}
	s.agg.Record(ev)
	switch {
	case out.Match:
		s.met.comparisons[resultMatch].Inc()
	case ev.Noise:
		s.met.comparisons[resultNoise].Inc()
	default:
		s.met.comparisons[resultMismatch].Inc()
		for t, n := range out.Counts {
			if c := s.met.differences[t]; c != nil && n > 0 {
				c.Inc()
			}
		}
		if j.cls.warned.CompareAndSwap(false, true) {
			s.opts.Logger.Warn("shadow reads: mismatch", "fingerprint", j.cls.fingerprint, "query", j.cls.query,
				"differences", diffSummary(out), "partial", out.Partial)
		}
	}
	if s.events != nil && (mismatch || s.opts.LogMatches) {
		s.writeEvent(ev)
	}
}

func (s *Shadower) writeEvent(ev compare.Event) {
	if err := s.events.Write(ev); err != nil {
		s.met.errors[errEventLog].Inc()
		s.warn("shadow reads: writing the event log", "error", err)
	}
}
