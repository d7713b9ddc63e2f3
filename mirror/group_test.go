package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// groupFake is a fakeTarget that is also a GroupTarget. ApplyGroup applies
// each batch with fakeTarget.Apply, so down, block and reject work per
// batch, and records the Seqs of every group it gets.
type groupFake struct {
	*fakeTarget
	gmu sync.Mutex
	// gate, while set, makes ApplyGroup wait until it is closed or ctx ends.
	gate chan struct{}
	// failOnce makes ApplyGroup fail these Seqs transiently, once each.
	// The batches after a failed one are applied all the same and reported
	// with a transient error: they "may or may not have committed".
	failOnce map[uint64]bool
	// stopAtFailure makes ApplyGroup stop at a batch that fails (rejected
	// or transient), as a MySQL multi-statement query does: the batches
	// after it are not applied and are reported ErrNotApplied.
	stopAtFailure bool
	groups        [][]uint64
}

var _ GroupTarget = (*groupFake)(nil)

func newGroupFake() *groupFake { return &groupFake{fakeTarget: &fakeTarget{}} }

func (g *groupFake) ApplyGroup(ctx context.Context, bs []*Batch) []error {
	g.gmu.Lock()
	seqs := make([]uint64, len(bs))
	for i, b := range bs {
		seqs[i] = b.Seq
	}
	g.groups = append(g.groups, seqs)
	gate := g.gate
	g.gmu.Unlock()
	errs := make([]error, len(bs))
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return errs
		}
	}
	var failed error
	for i, b := range bs {
		g.gmu.Lock()
		fail := g.failOnce[b.Seq]
		delete(g.failOnce, b.Seq)
		stop := g.stopAtFailure
		g.gmu.Unlock()
		if stop && i > 0 && errs[i-1] != nil {
			for k := i; k < len(bs); k++ {
				errs[k] = ErrNotApplied
			}
			break
		}
		if fail {
			failed = fmt.Errorf("batch %d: %w", b.Seq, errDown)
			errs[i] = failed
			continue
		}
		errs[i] = g.fakeTarget.Apply(ctx, b)
		if failed != nil && errs[i] == nil {
			errs[i] = errors.New("connection lost: outcome unknown")
		}
	}
	return errs
}

func (g *groupFake) groupList() [][]uint64 {
	g.gmu.Lock()
	defer g.gmu.Unlock()
	return slices.Clone(g.groups)
}

func (g *groupFake) setGate(ch chan struct{}) {
	g.gmu.Lock()
	g.gate = ch
	g.gmu.Unlock()
}

// startGroupMirror starts a Mirror on a groupFake, with opts applied to
// the test options, and closes it at the end of the test.
func startGroupMirror(t *testing.T, opts func(*Options)) (*groupFake, *Mirror) {
	t.Helper()
	g := newGroupFake()
	o := testOptions(t, t.TempDir())
	if opts != nil {
		opts(&o)
	}
	m := newMirror(t, g, o)
	t.Cleanup(func() { closeMirror(t, m) })
	return g, m
}

func waitResolve(o *Options) { o.ResolveWait = 1 << 62 }

// holdFirst enqueues batch 1 while Apply is blocked, then calls enqueue
// (which queues the batches behind it) and lets Apply go: the batches
// enqueued meanwhile are all ready when the applier looks for a group.
func holdFirst(t *testing.T, g *groupFake, m *Mirror, enqueue func()) {
	t.Helper()
	g.mu.Lock()
	g.block = make(chan struct{})
	block := g.block
	g.mu.Unlock()
	m.Enqueue(batch("public.t", 1))
	eventually(t, "first apply started", func() bool { return g.callCount() == 1 })
	enqueue()
	g.mu.Lock()
	g.block = nil
	g.mu.Unlock()
	close(block)
}

func enqueueRange(m *Mirror, lo, hi int) {
	for i := lo; i <= hi; i++ {
		m.Enqueue(batch("public.t", i))
	}
}

func checkGroups(t *testing.T, g *groupFake, want ...[]uint64) {
	t.Helper()
	got := g.groupList()
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("groups %v, want %v", got, want)
	}
}

// Batches that are ready when the applier takes the head go with it in one
// ApplyGroup; the order is kept, and Stats counts the group.
func TestGroupFromMemory(t *testing.T) {
	g, m := startGroupMirror(t, nil)
	holdFirst(t, g, m, func() { enqueueRange(m, 2, 10) })
	waitApplied(t, m, 10)
	checkGroups(t, g, seqRange(2, 10))
	if got := g.seqs(); !slices.Equal(got, seqRange(1, 10)) {
		t.Fatalf("applied %v", got)
	}
	if st := m.Stats(); st.Applied != 10 || st.Groups != 1 || st.GroupedBatches != 9 || st.Spooling {
		t.Fatalf("stats: %+v", st)
	}
}

// A transaction taken from an otherwise short queue waits GroupLinger for
// the ones committing behind it, and they go in one round trip; with the
// linger off it goes alone at once.
func TestGroupLinger(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		g, m := startGroupMirror(t, func(o *Options) { o.GroupLinger = time.Second })
		m.Enqueue(batch("public.t", 1))
		eventually(t, "the applier to take the head", func() bool { return m.Stats().Queued == 0 })
		time.Sleep(20 * time.Millisecond)
		if st := m.Stats(); st.Applied != 0 {
			t.Fatalf("applied %d while lingering", st.Applied)
		}
		enqueueRange(m, 2, 5)
		waitApplied(t, m, 5)
		checkGroups(t, g, seqRange(1, 5))
	})
	t.Run("off", func(t *testing.T) {
		g, m := startGroupMirror(t, func(o *Options) { o.GroupLinger = -1 })
		m.Enqueue(batch("public.t", 1))
		waitApplied(t, m, 1)
		checkGroups(t, g)
	})
}

// MaxGroup and MaxGroupBytes bound a group; MaxGroup 1 turns grouping off.
func TestGroupBounds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxGroup int
		maxBytes int64
		want     [][]uint64
	}{
		{"count", 4, 0, [][]uint64{seqRange(2, 5), seqRange(6, 9), {10}}},
		{"bytes", 0, 3 * batch("public.t", 10).memSize(), [][]uint64{seqRange(2, 4), seqRange(5, 7), seqRange(8, 10)}},
		{"off", 1, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, m := startGroupMirror(t, func(o *Options) { o.MaxGroup, o.MaxGroupBytes = tc.maxGroup, tc.maxBytes })
			holdFirst(t, g, m, func() { enqueueRange(m, 2, 10) })
			waitApplied(t, m, 10)
			// A group of one is an Apply.
			want := slices.DeleteFunc(tc.want, func(s []uint64) bool { return len(s) == 1 })
			checkGroups(t, g, want...)
			if got := g.seqs(); !slices.Equal(got, seqRange(1, 10)) {
				t.Fatalf("applied %v", got)
			}
		})
	}
}

// A pending batch ends a group: the group is applied without waiting for
// it, and the pending batch heads the next group once it is resolved.
func TestGroupEndsAtPending(t *testing.T) {
	g, m := startGroupMirror(t, waitResolve)
	var pending uint64
	holdFirst(t, g, m, func() {
		enqueueRange(m, 2, 3)
		var err error
		if pending, err = m.EnqueueDurable(intent(4, 504)); err != nil {
			t.Error(err)
		}
		enqueueRange(m, 5, 6)
	})
	waitApplied(t, m, 3)
	checkGroups(t, g, []uint64{2, 3})
	if st := m.Stats(); st.AppliedSeq != 3 || st.Pending != 1 {
		t.Fatalf("stats: %+v", st)
	}
	m.Resolve(pending, true)
	waitApplied(t, m, 6)
	checkGroups(t, g, []uint64{2, 3}, seqRange(4, 6))
	if got := g.seqs(); !slices.Equal(got, seqRange(1, 6)) {
		t.Fatalf("applied %v", got)
	}
}

// Resolved intents join groups; an aborted one ends the group and is
// skipped.
func TestGroupResolvedIntents(t *testing.T) {
	g, m := startGroupMirror(t, waitResolve)
	holdFirst(t, g, m, func() {
		for i := 2; i <= 6; i++ {
			seq, err := m.EnqueueDurable(intent(i, 500+uint64(i)))
			if err != nil {
				t.Error(err)
			}
			m.Resolve(seq, i != 4)
		}
	})
	waitApplied(t, m, 6)
	checkGroups(t, g, []uint64{2, 3}, []uint64{5, 6})
	if got := g.seqs(); !slices.Equal(got, []uint64{1, 2, 3, 5, 6}) {
		t.Fatalf("applied %v", got)
	}
	if st := m.Stats(); st.Aborted != 1 || st.Applied != 5 {
		t.Fatalf("stats: %+v", st)
	}
}

// A batch with an OpStatement change is applied alone, with Apply, and
// ends the group before it.
func TestGroupStatementAlone(t *testing.T) {
	g, m := startGroupMirror(t, nil)
	holdFirst(t, g, m, func() {
		enqueueRange(m, 2, 3)
		m.Enqueue(&Batch{Changes: []Change{{Op: OpStatement, Table: "public.nokey", SQL: "INSERT INTO nokey VALUES (1)"}}})
		m.Enqueue(&Batch{Changes: []Change{{Op: OpStatement, Table: "public.nokey", SQL: "INSERT INTO nokey VALUES (2)"}}})
		enqueueRange(m, 6, 7)
	})
	waitApplied(t, m, 7)
	checkGroups(t, g, []uint64{2, 3}, []uint64{6, 7})
	if got := g.seqs(); !slices.Equal(got, seqRange(1, 7)) {
		t.Fatalf("applied %v", got)
	}
	if st := m.Stats(); st.Groups != 2 || st.GroupedBatches != 4 || st.Applied != 7 {
		t.Fatalf("stats: %+v", st)
	}
}

// A batch rejected in the middle of a group is dead-lettered; the ones
// around it are applied, in order, in the same group.
func TestGroupRejectInMiddle(t *testing.T) {
	dir := t.TempDir()
	g := newGroupFake()
	g.reject = func(b *Batch) *RejectError {
		if batchID(b) == 4 {
			return &RejectError{Err: errors.New("duplicate key"), SQLState: "23505", ChangeIndex: 0}
		}
		return nil
	}
	m := newMirror(t, g, testOptions(t, dir))
	holdFirst(t, g, m, func() { enqueueRange(m, 2, 7) })
	waitApplied(t, m, 7)
	checkGroups(t, g, seqRange(2, 7))
	if got := g.seqs(); !slices.Equal(got, []uint64{1, 2, 3, 5, 6, 7}) {
		t.Fatalf("applied %v", got)
	}
	st := m.Stats()
	if st.Applied != 6 || st.DeadLettered != 1 || st.Failed != 0 || !slices.Equal(st.DirtyTables, []string{"public.t"}) {
		t.Fatalf("stats: %+v", st)
	}
	closeMirror(t, m)
	dls := readDeadLetters(t, dir)
	if len(dls) != 1 || dls[0].Seq != 4 || dls[0].Reason != ReasonRejected || dls[0].SQLState != "23505" {
		t.Fatalf("dead letters: %+v", dls)
	}
}

// After a transient error in the middle of a group, the batches before it
// are done, and the mirror applies again from the failed one, in order:
// it alone, then the rest as a group. The batches after it that committed
// in the failed round trip are applied again after it.
func TestGroupTransientInMiddle(t *testing.T) {
	g, m := startGroupMirror(t, nil)
	g.gmu.Lock()
	g.failOnce = map[uint64]bool{4: true}
	g.gmu.Unlock()
	holdFirst(t, g, m, func() { enqueueRange(m, 2, 7) })
	waitApplied(t, m, 7)
	checkGroups(t, g, seqRange(2, 7), seqRange(5, 7))
	want := []uint64{1, 2, 3, 5, 6, 7, 4, 5, 6, 7}
	if got := g.seqs(); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if st := m.Stats(); st.Applied != 7 || st.Failed != 1 || st.DeadLettered != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// A target that stops at a failed batch reports the ones after it
// ErrNotApplied: after a rejection they go again at once as a group, with
// no failure counted; after a transient error the failed batch goes alone
// first, and no batch is applied twice.
func TestGroupStopsAtFailure(t *testing.T) {
	t.Run("rejected", func(t *testing.T) {
		dir := t.TempDir()
		g := newGroupFake()
		g.stopAtFailure = true
		g.reject = func(b *Batch) *RejectError {
			if batchID(b) == 4 {
				return &RejectError{Err: errors.New("duplicate key"), SQLState: "23000", ChangeIndex: 0}
			}
			return nil
		}
		m := newMirror(t, g, testOptions(t, dir))
		holdFirst(t, g, m, func() { enqueueRange(m, 2, 7) })
		waitApplied(t, m, 7)
		checkGroups(t, g, seqRange(2, 7), seqRange(5, 7))
		if got := g.seqs(); !slices.Equal(got, []uint64{1, 2, 3, 5, 6, 7}) {
			t.Fatalf("applied %v", got)
		}
		if st := m.Stats(); st.Applied != 6 || st.DeadLettered != 1 || st.Failed != 0 {
			t.Fatalf("stats: %+v", st)
		}
		closeMirror(t, m)
		if dls := readDeadLetters(t, dir); len(dls) != 1 || dls[0].Seq != 4 || dls[0].Reason != ReasonRejected {
			t.Fatalf("dead letters: %+v", dls)
		}
	})
	t.Run("transient", func(t *testing.T) {
		g, m := startGroupMirror(t, nil)
		g.gmu.Lock()
		g.failOnce = map[uint64]bool{4: true}
		g.stopAtFailure = true
		g.gmu.Unlock()
		holdFirst(t, g, m, func() { enqueueRange(m, 2, 7) })
		waitApplied(t, m, 7)
		checkGroups(t, g, seqRange(2, 7), seqRange(5, 7))
		if got := g.seqs(); !slices.Equal(got, seqRange(1, 7)) {
			t.Fatalf("applied %v, want each batch once, in order", got)
		}
		if st := m.Stats(); st.Applied != 7 || st.Failed != 1 || st.DeadLettered != 0 {
			t.Fatalf("stats: %+v", st)
		}
	})
}

// A backlog in the spool (the target was down) drains in groups, in order.
func TestGroupFromSpool(t *testing.T) {
	g, m := startGroupMirror(t, func(o *Options) { o.MaxGroup = 8 })
	g.setDown(true)
	enqueueRange(m, 1, 40)
	eventually(t, "spooling", func() bool { return m.Stats().Spooling })
	g.setDown(false)
	waitApplied(t, m, 40)
	if got := g.seqs(); !slices.Equal(got, seqRange(1, 40)) {
		t.Fatalf("applied %v", got)
	}
	groups := g.groupList()
	var grouped []uint64
	for _, gr := range groups {
		if len(gr) > 8 || len(gr) < 2 {
			t.Fatalf("group %v", gr)
		}
		grouped = append(grouped, gr...)
	}
	// Groups tried while the target was down fail whole and are retried:
	// count only the last group that holds each Seq.
	if len(groups) == 0 || grouped[len(grouped)-1] != 40 {
		t.Fatalf("groups %v", groups)
	}
	st := m.Stats()
	if st.Applied != 40 || st.Spooling || st.Spooled != 0 || st.Groups == 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// Close with a group in flight from memory: its batches go to the spool
// and the next Mirror applies them, in order.
func TestGroupInFlightAtClose(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprint("durable=", durable), func(t *testing.T) {
			dir := t.TempDir()
			g := newGroupFake()
			o := testOptions(t, dir)
			m := newMirror(t, g, o)
			gate := make(chan struct{})
			g.setGate(gate)
			holdFirst(t, g, m, func() {
				for i := 2; i <= 10; i++ {
					if durable && i%3 == 0 {
						seq, err := m.EnqueueDurable(intent(i, 500+uint64(i)))
						if err != nil {
							t.Error(err)
						}
						m.Resolve(seq, true)
						continue
					}
					m.Enqueue(batch("public.t", i))
				}
			})
			eventually(t, "group in flight", func() bool { return len(g.groupList()) == 1 })
			if st := m.Stats(); st.AppliedSeq != 1 || st.Queued != 0 {
				t.Fatalf("stats: %+v", st)
			}
			closeMirror(t, m)

			g2 := newGroupFake()
			m2 := newMirror(t, g2, o)
			defer closeMirror(t, m2)
			waitApplied(t, m2, 10)
			if got := g2.seqs(); !slices.Equal(got, seqRange(2, 10)) {
				t.Fatalf("applied after restart %v", got)
			}
			if got := g.seqs(); !slices.Equal(got, []uint64{1}) {
				t.Fatalf("applied before Close %v", got)
			}
		})
	}
}

// A switch to the spool while a group from memory is in flight (the queue
// filled up) spills the group's batches too; the applier finishes the group
// and skips their spooled copies.
func TestGroupInFlightAtSpill(t *testing.T) {
	g, m := startGroupMirror(t, func(o *Options) { o.QueueLen = 8 })
	gate := make(chan struct{})
	g.setGate(gate)
	holdFirst(t, g, m, func() { enqueueRange(m, 2, 9) })
	eventually(t, "group in flight", func() bool { return len(g.groupList()) == 1 })
	enqueueRange(m, 10, 30) // fills the queue: spools
	eventually(t, "spooling", func() bool { return m.Stats().Spooling })
	g.setGate(nil)
	close(gate)
	waitApplied(t, m, 30)
	if got := g.seqs(); !slices.Equal(got, seqRange(1, 30)) {
		t.Fatalf("applied %v", got)
	}
	eventually(t, "spool drained", func() bool { st := m.Stats(); return !st.Spooling && st.Spooled == 0 })
	if st := m.Stats(); st.Applied != 30 {
		t.Fatalf("stats: %+v", st)
	}
}
