package mirror

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// intent returns batch(table, id) as an intent of transaction xid.
func intent(id int, xid uint64) *Batch {
	b := batch("public.t", id)
	b.Xid = xid
	return b
}

// lastWritten returns the highest Seq the spool has written.
func lastWritten(m *Mirror) uint64 {
	m.spool.mu.Lock()
	defer m.spool.mu.Unlock()
	return m.spool.written
}

// diskSeqs returns the Seqs of every record in the spool files of dir, in
// file order.
func diskSeqs(t *testing.T, dir string) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, p := range segments(t, dir) {
		seqs = append(seqs, seqsIn(t, p)...)
	}
	return seqs
}

// fakeResolver answers like pg_xact_status from a rule, after failing or
// answering "in progress" as often as the test says.
type fakeResolver struct {
	mu sync.Mutex
	// outcome is the final answer for an xid.
	outcome func(xid uint64) Outcome
	// fail makes the first calls fail; inProgress makes the next ones
	// answer OutcomeInProgress for every xid.
	fail, inProgress int
	calls            [][]uint64
}

var errResolverDown = errors.New("old database unreachable")

func (r *fakeResolver) resolve(ctx context.Context, xids []uint64) (map[uint64]Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, slices.Clone(xids))
	n := len(r.calls)
	if n <= r.fail {
		return nil, errResolverDown
	}
	res := map[uint64]Outcome{}
	for _, x := range xids {
		if n <= r.fail+r.inProgress {
			res[x] = OutcomeInProgress
		} else {
			res[x] = r.outcome(x)
		}
	}
	return res, nil
}

func (r *fakeResolver) callList() [][]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// In memory mode a durable batch is written and applied from memory: the
// spool path is never taken, and the segments it fills are deleted once
// applied.
func TestEnqueueDurableWriteThrough(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{}
	o := testOptions(t, dir)
	o.SegmentSize = 2 << 10
	m := newMirror(t, target, o)
	defer closeMirror(t, m)

	const n = 200
	for i := 1; i <= n; i++ {
		seq, err := m.EnqueueDurable(batch("public.t", i))
		if err != nil || seq != uint64(i) {
			t.Fatalf("EnqueueDurable = %d, %v; want %d", seq, err, i)
		}
		if w := lastWritten(m); w < seq {
			t.Fatalf("EnqueueDurable returned seq %d before it was written (spool up to %d)", seq, w)
		}
		if st := m.Stats(); st.Spooling || st.Spooled != 0 {
			t.Fatalf("a durable batch took the spool path: %+v", st)
		}
	}
	waitApplied(t, m, n)
	if got := target.seqs(); !slices.Equal(got, seqRange(1, n)) {
		t.Fatalf("applied %v", got)
	}
	eventually(t, "applied segments deleted", func() bool { return len(segments(t, dir)) == 1 })
	seqs := diskSeqs(t, dir)
	if len(seqs) == 0 || seqs[len(seqs)-1] != n || !slices.IsSorted(seqs) {
		t.Fatalf("active segment holds %v", seqs)
	}
	if st := m.Stats(); st.Spooling || st.Spooled != 0 || st.Applied != n {
		t.Fatalf("stats: %+v", st)
	}
}

// A spill after a period of write-through: the batches already on disk are
// not written again, the stale copies of applied batches are skipped, every
// batch is applied once in order, and the spool accounting returns to zero.
func TestDurableSpillAfterWriteThrough(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{}
	o := testOptions(t, dir)
	o.QueueLen = 8
	m := newMirror(t, target, o)
	defer closeMirror(t, m)

	durable := func(id int) {
		t.Helper()
		if seq, err := m.EnqueueDurable(batch("public.t", id)); err != nil || seq != uint64(id) {
			t.Fatalf("EnqueueDurable(%d) = %d, %v", id, seq, err)
		}
	}
	for i := 1; i <= 50; i++ {
		durable(i)
		waitApplied(t, m, uint64(i)) // stay on the in-memory path
	}
	if st := m.Stats(); st.Spooling || len(segments(t, dir)) != 1 {
		t.Fatalf("the first batches left the in-memory path: %+v", st)
	}

	block := make(chan struct{})
	target.mu.Lock()
	target.block = block
	target.mu.Unlock()
	durable(51)
	eventually(t, "batch 51 in flight", func() bool { return target.callCount() == 51 })
	for i := 52; i <= 58; i++ {
		m.Enqueue(batch("public.t", i)) // memory only
	}
	durable(59) // writes 52..58 through before itself
	if got := diskSeqs(t, dir); !slices.Equal(got, seqRange(1, 59)) {
		t.Fatalf("spool holds %v, want 1..59", got)
	}
	m.Enqueue(batch("public.t", 60)) // the queue is full: spill
	st := m.Stats()
	// 51 (in flight) and 52..59 are on disk already and counted; 60 is
	// handed to the writer.
	if !st.Spooling || st.Spooled != 10 || st.Queued != 0 {
		t.Fatalf("stats after the spill: %+v", st)
	}
	for i := 61; i <= 70; i++ {
		if i%2 == 0 {
			durable(i)
		} else {
			m.Enqueue(batch("public.t", i))
		}
	}
	eventually(t, "spill written", func() bool { return lastWritten(m) == 70 })
	if got := diskSeqs(t, dir); !slices.Equal(got, seqRange(1, 70)) {
		t.Fatalf("spool holds %v, want 1..70 once each, in order", got)
	}
	close(block)
	waitApplied(t, m, 70)
	if got := target.seqs(); !slices.Equal(got, seqRange(1, 70)) {
		t.Fatalf("applied %v", got)
	}
	for _, b := range target.batches() {
		if batchID(b) != int(b.Seq) {
			t.Fatalf("seq %d carries id %d", b.Seq, batchID(b))
		}
	}
	eventually(t, "drained", func() bool { s := m.Stats(); return !s.Spooling && s.Spooled == 0 })
}

// Concurrent producers mixing Enqueue and EnqueueDurable against a target
// that keeps failing (so the mirror keeps switching between memory,
// write-through and the spool): every batch is applied once, in Seq order.
func TestDurableMixUnderFailures(t *testing.T) {
	for _, fsync := range []FsyncPolicy{FsyncNever, FsyncAlways, FsyncInterval} {
		t.Run(fsync.String(), func(t *testing.T) {
			dir := t.TempDir()
			target := &fakeTarget{failEvery: 7}
			o := testOptions(t, dir)
			o.QueueLen = 8
			o.Fsync = fsync
			o.FsyncInterval = time.Millisecond
			o.SegmentSize = 4 << 10
			m := newMirror(t, target, o)

			const producers, perProducer = 6, 150
			var mu sync.Mutex
			idOf := map[uint64]int{}
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(p), 1))
					for i := range perProducer {
						id := p*perProducer + i
						var seq uint64
						if r.IntN(2) == 0 {
							seq = m.Enqueue(batch("public.t", id))
						} else {
							var err error
							if seq, err = m.EnqueueDurable(batch("public.t", id)); err != nil {
								t.Errorf("EnqueueDurable: %v", err)
								return
							}
							if w := lastWritten(m); w < seq {
								t.Errorf("seq %d returned before it was written (spool up to %d)", seq, w)
							}
						}
						mu.Lock()
						idOf[seq] = id
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			const n = producers * perProducer
			waitApplied(t, m, n)
			got := target.batches()
			if len(got) != n {
				t.Fatalf("applied %d batches, want %d", len(got), n)
			}
			for i, b := range got {
				if b.Seq != uint64(i+1) || batchID(b) != idOf[b.Seq] {
					t.Fatalf("batch %d: seq %d id %d (want seq %d id %d)", i, b.Seq, batchID(b), i+1, idOf[b.Seq])
				}
			}
			if m.Stats().Failed == 0 {
				t.Error("the target never failed: the spool path was not exercised")
			}
			eventually(t, "spool drained", func() bool { s := m.Stats(); return !s.Spooling && s.Spooled == 0 })
			closeMirror(t, m)
		})
	}
}

// Seq order is disk order: concurrent EnqueueDurable callers (and Enqueue
// callers between them) leave the spool holding every Seq once, ascending,
// and each durable Seq was on disk when its call returned.
func TestDurableConcurrentDiskOrder(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{block: make(chan struct{})}
	o := testOptions(t, dir)
	o.QueueLen = 64
	o.SegmentSize = 16 << 10
	m := newMirror(t, target, o)

	const producers, perProducer = 8, 200
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				id := p*perProducer + i
				if i%4 == 3 {
					m.Enqueue(batch("public.t", id))
					continue
				}
				seq, err := m.EnqueueDurable(batch("public.t", id))
				if err != nil {
					t.Errorf("EnqueueDurable: %v", err)
					return
				}
				if w := lastWritten(m); w < seq {
					t.Errorf("seq %d returned before it was written (spool up to %d)", seq, w)
				}
			}
		})
	}
	wg.Wait()
	closeMirror(t, m) // spills what is only in memory
	const n = producers * perProducer
	if got := diskSeqs(t, dir); !slices.Equal(got, seqRange(1, n)) {
		t.Fatalf("spool holds %d records, not 1..%d once each in order", len(got), n)
	}

	target2 := &fakeTarget{}
	m2 := newMirror(t, target2, o)
	defer closeMirror(t, m2)
	waitApplied(t, m2, n)
	if got := target2.seqs(); !slices.Equal(got, seqRange(1, n)) {
		t.Fatalf("applied %d batches, not 1..%d in order", len(got), n)
	}
}

// A pending batch holds back everything after it until it is resolved,
// whatever order the resolutions come in.
func TestPendingBlocksUntilResolved(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{}
	o := testOptions(t, dir)
	o.ResolveWait = time.Hour // no Resolver, and never give up waiting here
	m := newMirror(t, target, o)
	defer closeMirror(t, m)

	s1, err := m.EnqueueDurable(intent(1, 501))
	if err != nil {
		t.Fatal(err)
	}
	s2 := m.Enqueue(batch("public.t", 2))
	s3, err := m.EnqueueDurable(intent(3, 503))
	if err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Pending != 2 {
		t.Fatalf("pending %d, want 2", st.Pending)
	}
	m.Resolve(s3, true) // out of order
	time.Sleep(30 * time.Millisecond)
	if got := target.seqs(); len(got) != 0 {
		t.Fatalf("applied %v while batch %d is pending", got, s1)
	}
	if st := m.Stats(); st.Pending != 1 || st.AppliedSeq != 0 {
		t.Fatalf("stats: %+v", st)
	}
	m.Resolve(s1, true)
	waitApplied(t, m, s3)
	if got := target.seqs(); !slices.Equal(got, []uint64{s1, s2, s3}) {
		t.Fatalf("applied %v", got)
	}
	if st := m.Stats(); st.Pending != 0 || st.Aborted != 0 || st.Applied != 3 {
		t.Fatalf("stats: %+v", st)
	}
	if len(m.intents) != 0 {
		t.Fatalf("outcomes kept after apply: %v", m.intents)
	}
	// Late or unknown resolutions are ignored.
	m.Resolve(s1, false)
	m.Resolve(12345, true)
	if st := m.Stats(); st.Pending != 0 || st.Aborted != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// A rolled back transaction's batch is skipped: not applied, not
// dead-lettered, and the position passes it.
func TestResolveAborted(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{block: make(chan struct{})}
	o := testOptions(t, dir)
	o.ResolveWait = time.Hour
	m := newMirror(t, target, o)
	defer closeMirror(t, m)

	s1 := m.Enqueue(batch("public.t", 1))
	eventually(t, "batch 1 in flight", func() bool { return target.callCount() == 1 })
	s2, err := m.EnqueueDurable(intent(2, 77))
	if err != nil {
		t.Fatal(err)
	}
	s3, err := m.EnqueueDurable(intent(3, 78))
	if err != nil {
		t.Fatal(err)
	}
	// Resolved before the applier reaches them.
	m.Resolve(s2, false)
	m.Resolve(s3, true)
	m.Resolve(s2, true) // the first outcome stands
	if st := m.Stats(); st.Pending != 0 {
		t.Fatalf("pending %d after Resolve", st.Pending)
	}
	close(target.block)
	waitApplied(t, m, s3)
	if err := m.WaitApplied(context.Background(), s2); err != nil {
		t.Fatal(err)
	}
	if got := target.seqs(); !slices.Equal(got, []uint64{s1, s3}) {
		t.Fatalf("applied %v, want [%d %d]", got, s1, s3)
	}
	st := m.Stats()
	if st.Aborted != 1 || st.Applied != 2 || st.DeadLettered != 0 || len(st.DirtyTables) != 0 {
		t.Fatalf("stats: %+v", st)
	}
	if dls := readDeadLetters(t, dir); len(dls) != 0 {
		t.Fatalf("an aborted batch was dead-lettered: %+v", dls)
	}
}

// Without Resolve, the applier asks the Resolver after ResolveWait, for the
// pending batches at the head together, and keeps asking while the answer
// is "in progress" or an error.
func TestResolver(t *testing.T) {
	committedUnlessOdd := func(xid uint64) Outcome {
		if xid%2 == 1 {
			return OutcomeAborted
		}
		return OutcomeCommitted
	}
	tests := []struct {
		name             string
		fail, inProgress int
	}{
		{name: "answers at once"},
		{name: "in progress then committed", inProgress: 3},
		{name: "errors then answers", fail: 3},
		{name: "errors, in progress, answers", fail: 2, inProgress: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			target := &fakeTarget{}
			res := &fakeResolver{outcome: committedUnlessOdd, fail: tc.fail, inProgress: tc.inProgress}
			o := testOptions(t, dir)
			o.ResolveWait = 5 * time.Millisecond
			o.Resolver = res.resolve
			m := newMirror(t, target, o)
			defer closeMirror(t, m)

			// Hold the applier on a first batch so that the intents queue up
			// behind it and are asked about in one call.
			target.mu.Lock()
			target.block = make(chan struct{})
			target.mu.Unlock()
			first := m.Enqueue(batch("public.t", 0))
			eventually(t, "first batch in flight", func() bool { return target.callCount() == 1 })
			var want []uint64
			want = append(want, first)
			var last uint64
			for i := 1; i <= 6; i++ {
				xid := uint64(1000 + i)
				seq, err := m.EnqueueDurable(intent(i, xid))
				if err != nil {
					t.Fatal(err)
				}
				if committedUnlessOdd(xid) == OutcomeCommitted {
					want = append(want, seq)
				}
				last = seq
			}
			plain := m.Enqueue(batch("public.t", 7))
			want = append(want, plain)
			target.mu.Lock()
			close(target.block)
			target.block = nil
			target.mu.Unlock()
			waitApplied(t, m, plain)
			if got := target.seqs(); !slices.Equal(got, want) {
				t.Fatalf("applied %v, want %v", got, want)
			}
			st := m.Stats()
			if st.Aborted != 3 || st.Pending != 0 || st.DeadLettered != 0 {
				t.Fatalf("stats: %+v", st)
			}
			calls := res.callList()
			if len(calls) != tc.fail+tc.inProgress+1 {
				t.Fatalf("%d resolver calls, want %d: %v", len(calls), tc.fail+tc.inProgress+1, calls)
			}
			// Every call covers all six pending transactions at once.
			for _, c := range calls {
				if !slices.Equal(c, []uint64{1001, 1002, 1003, 1004, 1005, 1006}) {
					t.Fatalf("resolver asked about %v", c)
				}
			}
			if m.AppliedSeq() < last {
				t.Fatalf("position %d below the last intent %d", m.AppliedSeq(), last)
			}
		})
	}
}

// NULL from pg_xact_status (the xid is too old) counts as committed; an
// answer that leaves the xid out is an error, retried.
func TestResolverUnknownAndMissing(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{}
	var mu sync.Mutex
	calls := 0
	o := testOptions(t, dir)
	o.ResolveWait = time.Millisecond
	o.Resolver = func(ctx context.Context, xids []uint64) (map[uint64]Outcome, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return map[uint64]Outcome{}, nil // no answer
		}
		return map[uint64]Outcome{xids[0]: OutcomeUnknown}, nil
	}
	m := newMirror(t, target, o)
	defer closeMirror(t, m)
	seq, err := m.EnqueueDurable(intent(1, 9))
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, seq)
	if got := target.seqs(); !slices.Equal(got, []uint64{seq}) {
		t.Fatalf("applied %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Fatalf("%d resolver calls, want 2", calls)
	}
}

// Intents recovered from the spool after a restart have no producer left to
// resolve them: the Resolver decides, in batches; without one they are
// applied as committed.
func TestRecoveredIntents(t *testing.T) {
	const n = 600 // more than one Resolver batch
	committed := func(xid uint64) bool { return xid%3 != 0 }
	fill := func(t *testing.T, dir string) {
		o := testOptions(t, dir)
		o.ResolveWait = time.Hour
		o.QueueLen = 100 // memory (write-through), then the spool
		m := newMirror(t, &fakeTarget{}, o)
		for i := 1; i <= n; i++ {
			seq, err := m.EnqueueDurable(intent(i, uint64(i)))
			if err != nil {
				t.Fatal(err)
			}
			// Resolutions in this run are lost with it; the first intent is
			// never resolved, so nothing is applied.
			if i > 1 {
				m.Resolve(seq, committed(uint64(i)))
			}
		}
		closeMirror(t, m)
	}

	t.Run("resolver", func(t *testing.T) {
		dir := t.TempDir()
		fill(t, dir)
		res := &fakeResolver{outcome: func(xid uint64) Outcome {
			if committed(xid) {
				return OutcomeCommitted
			}
			return OutcomeAborted
		}}
		target := &fakeTarget{}
		o := testOptions(t, dir)
		o.Resolver = res.resolve
		m := newMirror(t, target, o)
		defer closeMirror(t, m)
		waitApplied(t, m, n)
		var want []uint64
		for i := uint64(1); i <= n; i++ {
			if committed(i) {
				want = append(want, i)
			}
		}
		if got := target.seqs(); !slices.Equal(got, want) {
			t.Fatalf("applied %v\nwant %v", got, want)
		}
		if st := m.Stats(); st.Aborted != n-uint64(len(want)) || st.Pending != 0 || st.DeadLettered != 0 {
			t.Fatalf("stats: %+v", st)
		}
		calls := res.callList()
		if len(calls) != (n+resolveBatch-1)/resolveBatch {
			t.Fatalf("%d resolver calls for %d intents", len(calls), n)
		}
		for _, c := range calls {
			if len(c) > resolveBatch {
				t.Fatalf("a resolver call with %d xids", len(c))
			}
		}
	})

	t.Run("no resolver", func(t *testing.T) {
		dir := t.TempDir()
		fill(t, dir)
		target := &fakeTarget{}
		m := newMirror(t, target, testOptions(t, dir))
		defer closeMirror(t, m)
		waitApplied(t, m, n)
		if got := target.seqs(); !slices.Equal(got, seqRange(1, n)) {
			t.Fatalf("applied %d batches, want all %d as committed", len(got), n)
		}
	})
}

// Past maxIntents, Resolve cannot be remembered: the applier asks the
// Resolver instead, and the outcome is the same.
func TestUntrackedIntents(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{block: make(chan struct{})}
	res := &fakeResolver{outcome: func(xid uint64) Outcome {
		if xid == 4 {
			return OutcomeAborted
		}
		return OutcomeCommitted
	}}
	o := testOptions(t, dir)
	o.ResolveWait = time.Hour
	o.Resolver = res.resolve
	m := newMirror(t, target, o)
	defer closeMirror(t, m)
	m.mu.Lock()
	m.maxIntents = 2
	m.mu.Unlock()

	first := m.Enqueue(batch("public.t", 0))
	eventually(t, "first batch in flight", func() bool { return target.callCount() == 1 })
	var seqs []uint64
	for i := 1; i <= 4; i++ {
		seq, err := m.EnqueueDurable(intent(i, uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	if st := m.Stats(); st.Pending != 2 {
		t.Fatalf("pending %d, want the 2 tracked", st.Pending)
	}
	for _, s := range seqs {
		m.Resolve(s, true) // ignored for 3 and 4
	}
	close(target.block)
	waitApplied(t, m, seqs[3])
	if got, want := target.seqs(), []uint64{first, seqs[0], seqs[1], seqs[2]}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if calls := res.callList(); len(calls) != 1 || !slices.Equal(calls[0], []uint64{3, 4}) {
		t.Fatalf("resolver calls %v, want one for [3 4]", calls)
	}
	if st := m.Stats(); st.Aborted != 1 || st.Pending != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// Without a Resolver, a batch never resolved is applied as committed after
// ResolveWait rather than holding the mirror forever.
func TestNoResolverGivesUpAfterResolveWait(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{}
	o := testOptions(t, dir)
	o.ResolveWait = 20 * time.Millisecond
	m := newMirror(t, target, o)
	defer closeMirror(t, m)
	start := time.Now()
	seq, err := m.EnqueueDurable(intent(1, 42))
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, m, seq)
	if d := time.Since(start); d < o.ResolveWait {
		t.Fatalf("applied after %v, before ResolveWait", d)
	}
	if got := target.seqs(); !slices.Equal(got, []uint64{seq}) {
		t.Fatalf("applied %v", got)
	}
}

// A batch that cannot be made durable is an error and a dead letter, and is
// not applied, whether it was on the in-memory path (write-through) or the
// spool path; EnqueueDurable after Close fails.
func TestEnqueueDurableErrors(t *testing.T) {
	sample := batch("public.t", 1)
	sample.Seq, sample.CommittedAt = 1, time.Now() // as the mirror writes it
	frame, err := appendFrame(nil, sample)
	if err != nil {
		t.Fatal(err)
	}
	for _, queueLen := range []int{4, 1000} {
		t.Run(fmt.Sprintf("queue=%d", queueLen), func(t *testing.T) {
			dir := t.TempDir()
			target := &fakeTarget{block: make(chan struct{})}
			o := testOptions(t, dir)
			o.MaxSpoolBytes = segmentHeaderSize + 3*int64(len(frame)) + 10 // room for 3 batches
			o.QueueLen = queueLen
			m := newMirror(t, target, o)

			for i := 1; i <= 3; i++ {
				if _, err := m.EnqueueDurable(batch("public.t", i)); err != nil {
					t.Fatal(err)
				}
				if i == 1 {
					eventually(t, "batch 1 in flight", func() bool { return target.callCount() == 1 })
				}
			}
			var full []uint64
			for i := 4; i <= 8; i++ { // 4 and 5 on the in-memory path; with a short queue, the rest spilled
				seq, err := m.EnqueueDurable(batch("public.t", i))
				if !errors.Is(err, ErrSpoolFull) || seq != uint64(i) {
					t.Fatalf("EnqueueDurable(%d) = %d, %v; want ErrSpoolFull", i, seq, err)
				}
				full = append(full, seq)
			}
			if st := m.Stats(); st.Spooling != (queueLen == 4) {
				t.Fatalf("spooling %v with a queue of %d", st.Spooling, queueLen)
			}
			bad := &Batch{Changes: []Change{{Table: "public.bad"}}} // no Op
			badSeq, err := m.EnqueueDurable(bad)
			if err == nil || badSeq != 9 {
				t.Fatalf("unencodable batch: %d, %v", badSeq, err)
			}
			close(target.block)
			waitApplied(t, m, badSeq)
			if got := target.seqs(); !slices.Equal(got, []uint64{1, 2, 3}) {
				t.Fatalf("applied %v, want [1 2 3]", got)
			}
			st := m.Stats()
			if st.Dropped != uint64(len(full)+1) || !st.Overflowed || !slices.Equal(st.DirtyTables, []string{"public.bad", "public.t"}) {
				t.Fatalf("stats: %+v", st)
			}
			reasons := map[string]int{}
			for _, dl := range readDeadLetters(t, dir) {
				reasons[dl.Reason]++
			}
			if reasons[ReasonSpoolFull] != len(full) || reasons[ReasonUnencodable] != 1 {
				t.Fatalf("dead letters by reason %v", reasons)
			}
			for _, dl := range readDeadLetters(t, dir) {
				// An invalid Op cannot be written as JSON: the dead letter
				// goes without its rows, but says what to repair.
				if dl.Reason == ReasonUnencodable && (dl.Seq != badSeq || !slices.Equal(dl.Tables, []string{"public.bad"}) ||
					dl.Changes != nil || !strings.Contains(dl.Error, "invalid op")) {
					t.Fatalf("unencodable dead letter: %+v", dl)
				}
			}
			eventually(t, "drained", func() bool { s := m.Stats(); return !s.Spooling && s.Spooled == 0 && s.Queued == 0 })
			closeMirror(t, m)
			if seq, err := m.EnqueueDurable(batch("public.t", 99)); seq != 0 || !errors.Is(err, ErrClosed) {
				t.Fatalf("EnqueueDurable after Close = %d, %v", seq, err)
			}
		})
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{
		OutcomeCommitted: "committed", OutcomeAborted: "aborted", OutcomeInProgress: "in progress",
		OutcomeUnknown: "unknown", 0: "outcome(0)", 9: "outcome(9)",
	} {
		if got := o.String(); got != want {
			t.Errorf("%d: %q, want %q", uint8(o), got, want)
		}
	}
}

// BenchmarkEnqueueDurable measures EnqueueDurable with fsync=interval (the
// default): "memory" with a target that keeps up (write-through, with a
// Resolve after each call as the proxy does), "spool" with the target down
// (every batch on the spool path).
func BenchmarkEnqueueDurable(b *testing.B) {
	for _, mode := range []string{"memory", "spool"} {
		for _, parallel := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/parallel=%v", mode, parallel), func(b *testing.B) {
				o := Options{
					Dir:           b.TempDir(),
					Fsync:         FsyncInterval,
					FsyncInterval: 10 * time.Millisecond,
					RetryMin:      time.Second,
					Logger:        testLogger(b),
				}
				var target Target = nopTarget{}
				if mode == "spool" {
					o.QueueLen = -1
					target = &fakeTarget{down: true}
				}
				m := newMirror(b, target, o)
				tmpl := benchBatch()
				enc, _ := EncodeBatch(nil, tmpl)
				b.SetBytes(int64(len(enc)))
				b.ReportAllocs()
				one := func(xid uint64) {
					c := *tmpl
					c.Xid = xid
					seq, err := m.EnqueueDurable(&c)
					if err != nil {
						b.Fatal(err)
					}
					m.Resolve(seq, true)
				}
				b.ResetTimer()
				if parallel {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							one(1)
						}
					})
				} else {
					for b.Loop() {
						one(1)
					}
				}
				b.StopTimer()
				if st := m.Stats(); st.Dropped != 0 {
					b.Fatalf("dropped %d batches", st.Dropped)
				}
				m.spool.mu.Lock()
				writes := m.spool.writes
				m.spool.mu.Unlock()
				// Below 1 when concurrent callers share writes.
				b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := m.Close(ctx); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// crashDurableChild is the child of the "durable" crash test: it enqueues
// intents as the proxy does (EnqueueDurable, then Resolve for most),
// printing each Seq once EnqueueDurable returned, until it is killed. The
// target hangs on its first batch, so nothing is applied and the queue
// spills to the spool: both the write-through and the spool path are
// killed in action.
func crashDurableChild(t *testing.T, dir string) {
	o := testOptions(t, dir)
	o.Fsync = FsyncInterval
	o.FsyncInterval = time.Millisecond
	o.QueueLen = 64
	o.SegmentSize = 16 << 10
	o.ResolveWait = time.Hour
	m := newMirror(t, &fakeTarget{block: make(chan struct{})}, o)
	for i := 1; ; i++ {
		seq, err := m.EnqueueDurable(intent(i, crashXid(i)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "EnqueueDurable:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stdout, seq)
		if i%5 != 0 {
			m.Resolve(seq, crashCommitted(crashXid(i)))
		}
		if i == 100 {
			fmt.Fprintln(os.Stdout, "ready")
		}
	}
}

func crashXid(id int) uint64         { return 7000 + uint64(id) }
func crashCommitted(xid uint64) bool { return xid%3 != 0 }
func crashOutcome(xid uint64) Outcome {
	if crashCommitted(xid) {
		return OutcomeCommitted
	}
	return OutcomeAborted
}
