package mirror

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Concurrent producers, a target that fails every few calls (so the mirror
// keeps switching between the in-memory queue and the spool), and a small
// queue: every batch must be applied exactly once, in Seq order, and the
// batch applied under a Seq must be the one that got it.
func TestOrderUnderConcurrentEnqueue(t *testing.T) {
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
					var last uint64
					for i := range perProducer {
						id := p*perProducer + i
						seq := m.Enqueue(batch("public.t", id))
						if seq <= last {
							t.Errorf("producer %d: seq %d after %d", p, seq, last)
						}
						last = seq
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
				if b.Seq != uint64(i+1) {
					t.Fatalf("batch %d applied with seq %d, want %d", i, b.Seq, i+1)
				}
				if batchID(b) != idOf[b.Seq] {
					t.Fatalf("seq %d carries id %d, want %d", b.Seq, batchID(b), idOf[b.Seq])
				}
			}
			st := m.Stats()
			if st.Failed == 0 {
				t.Error("the target never failed: the test did not exercise the spool path")
			}
			eventually(t, "spool drained", func() bool { s := m.Stats(); return !s.Spooling && s.Spooled == 0 })
			closeMirror(t, m)
		})
	}
}

func TestTargetDownThenUp(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{down: true}
	o := testOptions(t, dir)
	o.QueueLen = 16
	o.SegmentSize = 8 << 10
	m := newMirror(t, target, o)
	defer closeMirror(t, m)

	const n = 500
	for i := 1; i <= n; i++ {
		if seq := m.Enqueue(batch("public.t", i)); seq != uint64(i) {
			t.Fatalf("seq %d, want %d", seq, i)
		}
	}
	// Everything, including what first went to the in-memory queue, ends up
	// in the spool while the target is down.
	eventually(t, "all batches spooled", func() bool { return spooledRecords(m) == n && m.Stats().Failed > 0 })
	st := m.Stats()
	if st.Queued != 0 || st.Spooled != n || !st.Spooling || st.Applied != 0 || st.Failed == 0 {
		t.Fatalf("stats while down: %+v", st)
	}
	if len(segments(t, dir)) < 2 {
		t.Fatalf("expected several segments, got %v", segments(t, dir))
	}

	target.setDown(false)
	waitApplied(t, m, n)
	if got := target.seqs(); !slices.Equal(got, seqRange(1, n)) {
		t.Fatalf("applied %v", got)
	}
	for i, b := range target.batches() {
		if batchID(b) != i+1 {
			t.Fatalf("seq %d carries id %d", b.Seq, batchID(b))
		}
	}
	eventually(t, "spool drained and deleted", func() bool {
		s := m.Stats()
		return !s.Spooling && s.Spooled == 0 && len(segments(t, dir)) == 0 && s.SpoolBytes == 0
	})
	// Back on the in-memory path.
	seq := m.Enqueue(batch("public.t", n+1))
	waitApplied(t, m, seq)
	if st := m.Stats(); st.Spooling || st.Applied != n+1 || st.Lag != 0 {
		t.Fatalf("stats after recovery: %+v", st)
	}
}

func TestRestartResumes(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{}
	o := testOptions(t, dir)
	o.SegmentSize = 2 << 10
	m := newMirror(t, target, o)
	for i := 1; i <= 50; i++ {
		m.Enqueue(batch("public.t", i))
	}
	waitApplied(t, m, 50)
	target.setDown(true)
	for i := 51; i <= 120; i++ {
		m.Enqueue(batch("public.t", i))
	}
	closeMirror(t, m)
	if !target.closed {
		t.Error("Close did not close the target")
	}
	if got := target.seqs(); !slices.Equal(got, seqRange(1, 50)) {
		t.Fatalf("first run applied %v", got)
	}

	if st, err := readState(dir); err != nil || st.AppliedSeq != 50 {
		t.Fatalf("checkpoint after Close: %+v, %v", st, err)
	}

	target2 := &fakeTarget{}
	m2 := newMirror(t, target2, o)
	defer closeMirror(t, m2)
	waitApplied(t, m2, 120)
	// Close checkpointed exactly, so nothing is applied twice.
	if got := target2.seqs(); !slices.Equal(got, seqRange(51, 120)) {
		t.Fatalf("second run applied %v", got)
	}
	for _, b := range target2.batches() {
		if batchID(b) != int(b.Seq) {
			t.Fatalf("seq %d carries id %d", b.Seq, batchID(b))
		}
	}
	// Seqs are never reused.
	if seq := m2.Enqueue(batch("public.t", 121)); seq <= 120 {
		t.Fatalf("seq after restart = %d, want > 120", seq)
	}
}

// Close while batches wait in memory and one is being applied: they are
// spilled to the spool and the next Mirror applies them.
func TestCloseSpillsMemoryQueue(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{block: make(chan struct{})}
	o := testOptions(t, dir)
	o.QueueLen = 1000
	m := newMirror(t, target, o)
	for i := 1; i <= 20; i++ {
		m.Enqueue(batch("public.t", i))
	}
	eventually(t, "first apply started", func() bool { return target.callCount() == 1 })
	if st := m.Stats(); st.Queued != 19 || st.Spooling {
		t.Fatalf("stats: %+v", st)
	}
	closeMirror(t, m)
	if seq := m.Enqueue(batch("public.t", 99)); seq != 0 {
		t.Fatalf("Enqueue after Close returned %d", seq)
	}

	target2 := &fakeTarget{}
	m2 := newMirror(t, target2, o)
	defer closeMirror(t, m2)
	waitApplied(t, m2, 20)
	if got := target2.seqs(); !slices.Equal(got, seqRange(1, 20)) {
		t.Fatalf("applied %v", got)
	}
}

// A target that blocks forever must not block Enqueue: everything goes to
// the spool. No timing is asserted, only that Enqueue returns.
func TestEnqueueDoesNotBlockOnTarget(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{block: make(chan struct{})}
	o := testOptions(t, dir)
	o.QueueLen = 4
	o.Fsync = FsyncAlways
	m := newMirror(t, target, o)

	const n = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			m.Enqueue(batch("public.t", i))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Enqueue blocked while the target was blocked")
	}
	eventually(t, "the first Apply", func() bool { return target.callCount() >= 1 })
	if c := target.callCount(); c != 1 {
		t.Fatalf("target called %d times, want 1 (blocked)", c)
	}
	if st := m.Stats(); !st.Spooling || st.Applied != 0 {
		t.Fatalf("stats: %+v", st)
	}
	closeMirror(t, m) // cancels the blocked Apply

	target2 := &fakeTarget{}
	m2 := newMirror(t, target2, o)
	defer closeMirror(t, m2)
	waitApplied(t, m2, n)
	if got := target2.seqs(); !slices.Equal(got, seqRange(1, n)) {
		t.Fatalf("applied %d batches, not 1..%d in order", len(got), n)
	}
}

func TestRejectWritesDeadLetter(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{reject: func(b *Batch) *RejectError {
		for i, c := range b.Changes {
			if c.Table == "public.bad" {
				return &RejectError{Err: errors.New(`duplicate key value violates unique constraint "bad_pkey"`), SQLState: "23505", ChangeIndex: i}
			}
		}
		return nil
	}}
	o := testOptions(t, dir)
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	o.Now = func() time.Time { return now }
	m := newMirror(t, target, o)

	m.Enqueue(batch("public.ok", 1))
	bad := batch("public.ok", 2)
	bad.Changes = append(bad.Changes, Change{
		Op: OpUpsert, Table: "public.bad", Columns: []Column{{Name: "id", TypeOID: 23, TypeName: "int4"}},
		Row: []Value{Text("7")}, KeyCols: []string{"id"}, Fingerprint: "fp-bad",
	})
	badSeq := m.Enqueue(bad)
	last := m.Enqueue(batch("public.ok", 3))
	waitApplied(t, m, last)

	if got := target.seqs(); !slices.Equal(got, []uint64{1, 3}) {
		t.Fatalf("applied %v, want [1 3]", got)
	}
	st := m.Stats()
	if st.DeadLettered != 1 || st.Dropped != 0 || st.Overflowed || st.Applied != 2 {
		t.Fatalf("stats: %+v", st)
	}
	// The whole batch was rolled back, so both of its tables are dirty.
	if !slices.Equal(st.DirtyTables, []string{"public.bad", "public.ok"}) {
		t.Fatalf("dirty tables %v", st.DirtyTables)
	}

	dls := readDeadLetters(t, dir)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters", len(dls))
	}
	dl := dls[0]
	if dl.Reason != ReasonRejected || dl.Seq != badSeq || dl.Table != "public.bad" || dl.SQLState != "23505" ||
		dl.ChangeIndex != 1 || dl.Fingerprint != "fp-bad" || !dl.Time.Equal(now) || !dl.CommittedAt.Equal(now) ||
		dl.Error != `duplicate key value violates unique constraint "bad_pkey"` || dl.NumChanges != 2 {
		t.Fatalf("dead letter: %+v", dl)
	}
	if dl.Change == nil || dl.Change.Row[0] != Text("7") || dl.Change.Op != OpUpsert {
		t.Fatalf("dead letter change: %+v", dl.Change)
	}
	if len(dl.Changes) != 2 || dl.Changes[0].Row[0] != Text("2") || dl.Changes[0].Row[1] != Text("value of some length to take space") {
		t.Fatalf("dead letter changes: %+v", dl.Changes)
	}
	if !slices.Equal(dl.Fingerprints, []string{"fp-public.ok", "fp-bad"}) {
		t.Fatalf("fingerprints %v", dl.Fingerprints)
	}
	closeMirror(t, m)

	// Dirty tables survive a restart.
	m2 := newMirror(t, &fakeTarget{}, o)
	defer closeMirror(t, m2)
	if got := m2.Stats().DirtyTables; !slices.Equal(got, []string{"public.bad", "public.ok"}) {
		t.Fatalf("dirty tables after restart %v", got)
	}
}

func TestSpoolFull(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{down: true}
	o := testOptions(t, dir)
	o.QueueLen = -1 // straight to the spool
	o.SegmentSize = 1 << 10
	o.MaxSpoolBytes = 4 << 10
	m := newMirror(t, target, o)

	const n = 100
	for i := 1; i <= n; i++ {
		m.Enqueue(batch("public.t", i))
	}
	var st Stats
	eventually(t, "every batch spooled or dropped", func() bool {
		st = m.Stats()
		return spooledRecords(m)+int(st.Dropped) == n
	})
	if st.Dropped == 0 || !st.Overflowed || st.SpoolBytes > o.MaxSpoolBytes || st.DeadLettered != st.Dropped {
		t.Fatalf("stats: %+v", st)
	}
	if !slices.Equal(st.DirtyTables, []string{"public.t"}) {
		t.Fatalf("dirty tables %v", st.DirtyTables)
	}
	dropped := map[uint64]bool{}
	for _, dl := range readDeadLetters(t, dir) {
		if dl.Reason != ReasonSpoolFull || dl.Changes != nil || dl.NumChanges != 1 || !slices.Equal(dl.Tables, []string{"public.t"}) {
			t.Fatalf("dead letter: %+v", dl)
		}
		dropped[dl.Seq] = true
	}
	if len(dropped) != int(st.Dropped) {
		t.Fatalf("%d dead letters for %d drops", len(dropped), st.Dropped)
	}

	target.setDown(false)
	waitApplied(t, m, n)
	var want []uint64
	for s := uint64(1); s <= n; s++ {
		if !dropped[s] {
			want = append(want, s)
		}
	}
	if got := target.seqs(); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	closeMirror(t, m)

	m2 := newMirror(t, &fakeTarget{}, o)
	defer closeMirror(t, m2)
	if st := m2.Stats(); !st.Overflowed || !slices.Equal(st.DirtyTables, []string{"public.t"}) {
		t.Fatalf("overflow forgotten after restart: %+v", st)
	}
}

func TestWaitApplied(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{block: make(chan struct{})}
	m := newMirror(t, target, testOptions(t, dir))
	seq := m.Enqueue(batch("public.t", 1))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := m.WaitApplied(ctx, seq); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied on a blocked target = %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- m.WaitApplied(context.Background(), seq) }()
	close(target.block)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if m.AppliedSeq() != seq {
		t.Fatalf("AppliedSeq %d", m.AppliedSeq())
	}
	if err := m.WaitApplied(context.Background(), seq); err != nil {
		t.Fatalf("WaitApplied on a reached seq: %v", err)
	}
	go func() { waited <- m.WaitApplied(context.Background(), seq+1) }()
	closeMirror(t, m)
	if err := <-waited; !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitApplied across Close = %v", err)
	}
}

func TestLag(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{block: make(chan struct{})}
	o := testOptions(t, dir)
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := newMirror(t, target, o)
	defer closeMirror(t, m)

	committed := now.Add(-3 * time.Second)
	m.Enqueue(&Batch{CommittedAt: committed, Changes: batch("public.t", 1).Changes})
	seq := m.Enqueue(batch("public.t", 2)) // CommittedAt defaults to now
	eventually(t, "apply started", func() bool { return target.callCount() == 1 })
	if lag := m.Stats().Lag; lag != 3*time.Second {
		t.Fatalf("lag %v, want 3s", lag)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if lag := m.Stats().Lag; lag != 4*time.Second {
		t.Fatalf("lag %v, want 4s", lag)
	}
	close(target.block)
	waitApplied(t, m, seq)
	if lag := m.Stats().Lag; lag != 0 {
		t.Fatalf("lag when caught up %v", lag)
	}
}

func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	m := newMirror(t, &fakeTarget{}, testOptions(t, dir))
	if _, err := New(&fakeTarget{}, testOptions(t, dir)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second New on the same dir: %v", err)
	}
	closeMirror(t, m)
	m2 := newMirror(t, &fakeTarget{}, testOptions(t, dir))
	closeMirror(t, m2)
}

func TestOptionsValidation(t *testing.T) {
	tests := map[string]Options{
		"no dir":           {},
		"negative bytes":   {Dir: "x", MaxSpoolBytes: -1},
		"negative retry":   {Dir: "x", RetryMin: -time.Second},
		"unknown fsync":    {Dir: "x", Fsync: 9},
		"negative timeout": {Dir: "x", ApplyTimeout: -1},
		"negative group":   {Dir: "x", MaxGroupBytes: -1},
	}
	for name, o := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := New(&fakeTarget{}, o); err == nil {
				t.Fatal("New accepted bad options")
			}
		})
	}
	o, err := Options{Dir: "x", QueueLen: -1}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.QueueLen != 0 || o.QueueBytes != defaultQueueBytes || o.Fsync != FsyncInterval || o.FsyncInterval != defaultFsyncInterval ||
		o.RetryMin != defaultRetryMin || o.RetryMax != defaultRetryMax || o.Logger == nil || o.Now == nil ||
		o.MaxGroup != defaultMaxGroup || o.MaxGroupBytes != defaultMaxGroupBytes {
		t.Fatalf("defaults: %+v", o)
	}
	if o, _ := (Options{Dir: "x", MaxGroup: -1}).withDefaults(); o.MaxGroup != 1 {
		t.Fatalf("MaxGroup -1 gave %d", o.MaxGroup)
	}
}

func TestParseFsyncPolicy(t *testing.T) {
	for _, p := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		var q FsyncPolicy
		if err := q.UnmarshalText([]byte(p.String())); err != nil || q != p {
			t.Fatalf("%v: got %v, %v", p, q, err)
		}
	}
	if _, err := ParseFsyncPolicy("sometimes"); err == nil {
		t.Fatal("accepted an unknown policy")
	}
}

func TestSeqNeverReused(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir)
	m := newMirror(t, &fakeTarget{}, o)
	var last uint64
	for i := range 10 {
		last = m.Enqueue(batch("public.t", i))
	}
	closeMirror(t, m)
	st, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.SeqCeiling < last {
		t.Fatalf("lease %d below the last seq %d", st.SeqCeiling, last)
	}
	// Whatever happened to the batches, the next process starts above the
	// lease: even Seqs of batches lost from memory in a crash are not reused.
	m2 := newMirror(t, &fakeTarget{}, o)
	defer closeMirror(t, m2)
	if seq := m2.Enqueue(batch("public.t", 0)); seq <= st.SeqCeiling {
		t.Fatalf("seq %d not above the previous lease %d", seq, st.SeqCeiling)
	}
}

func TestDeadLetterJSONValues(t *testing.T) {
	dir := t.TempDir()
	dl, err := openDeadLetters(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &Batch{Seq: 3, Changes: []Change{{Op: OpDelete, Table: "t", KeyCols: []string{"a", "b"}, Key: []Value{Null, Text("")}}}}
	if err := dl.write(newDeadLetter(time.Unix(0, 0), ReasonRejected, b, nil, true)); err != nil {
		t.Fatal(err)
	}
	// A torn last line is ignored by the reader.
	if _, err := dl.f.WriteString(`{"reason":"rej`); err != nil {
		t.Fatal(err)
	}
	dl.close()
	raw, err := os.ReadFile(dir + "/" + DeadLetterFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"key":[null,""]`; !strings.Contains(string(raw), want) {
		t.Fatalf("dead letter %s does not contain %s", raw, want)
	}
	got := readDeadLetters(t, dir)
	if len(got) != 1 || got[0].Changes[0].Op != OpDelete || got[0].Changes[0].Key[0] != Null || got[0].Changes[0].Key[1] != Text("") {
		t.Fatalf("read back %+v", got)
	}
}

// When the queue overflows while the applier is applying a batch from
// memory, that batch is spilled too (so it is durable) and its spooled copy
// is skipped by Seq once the in-memory apply succeeds.
func TestSpillWhileApplying(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{block: make(chan struct{})}
	o := testOptions(t, dir)
	o.QueueLen = 2
	m := newMirror(t, target, o)
	defer closeMirror(t, m)

	m.Enqueue(batch("public.t", 1))
	eventually(t, "batch 1 in flight", func() bool { return target.callCount() == 1 })
	for i := 2; i <= 4; i++ {
		m.Enqueue(batch("public.t", i))
	}
	// 2 and 3 filled the queue; 4 started the spool, behind 1, 2 and 3.
	eventually(t, "spill written", func() bool { return spooledRecords(m) == 4 })
	if st := m.Stats(); st.Queued != 0 || st.Spooled != 4 || !st.Spooling {
		t.Fatalf("stats after the spill: %+v", st)
	}
	close(target.block)
	waitApplied(t, m, 4)
	if got := target.seqs(); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("applied %v", got)
	}
	eventually(t, "drained", func() bool { s := m.Stats(); return !s.Spooling && s.Spooled == 0 && s.Applied == 4 })
}

// A hung Apply is cut by ApplyTimeout and retried like any transient error.
func TestApplyTimeout(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{block: make(chan struct{})}
	o := testOptions(t, dir)
	o.ApplyTimeout = 5 * time.Millisecond
	m := newMirror(t, target, o)
	defer closeMirror(t, m)
	seq := m.Enqueue(batch("public.t", 1))
	eventually(t, "timeouts retried", func() bool { return m.Stats().Failed >= 3 })
	if st := m.Stats(); !st.Spooling || st.Applied != 0 {
		t.Fatalf("stats: %+v", st)
	}
	close(target.block)
	waitApplied(t, m, seq)
	if got := target.seqs(); !slices.Equal(got, []uint64{seq}) {
		t.Fatalf("applied %v", got)
	}
}
