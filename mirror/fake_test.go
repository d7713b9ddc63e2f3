package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeTarget is a Target whose behaviour the test controls.
type fakeTarget struct {
	mu sync.Mutex
	// down makes Apply fail with a transient error.
	down bool
	// failEvery makes every n-th call fail transiently.
	failEvery int
	// block, while set, makes Apply wait until it is closed or ctx ends.
	block chan struct{}
	// reject refuses matching batches.
	reject func(*Batch) *RejectError
	// delay slows every Apply down.
	delay time.Duration

	calls   int
	applied []*Batch
	closed  bool
}

var errDown = errors.New("connection refused")

func (t *fakeTarget) Apply(ctx context.Context, b *Batch) error {
	t.mu.Lock()
	t.calls++
	calls, block, delay := t.calls, t.block, t.delay
	down := t.down || (t.failEvery > 0 && calls%t.failEvery == 0)
	reject := t.reject
	t.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if down {
		return fmt.Errorf("apply: %w", errDown)
	}
	if reject != nil {
		if r := reject(b); r != nil {
			return r
		}
	}
	t.mu.Lock()
	t.applied = append(t.applied, b)
	t.mu.Unlock()
	return nil
}

func (t *fakeTarget) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return nil
}

func (t *fakeTarget) setDown(v bool) {
	t.mu.Lock()
	t.down = v
	t.mu.Unlock()
}

func (t *fakeTarget) seqs() []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]uint64, len(t.applied))
	for i, b := range t.applied {
		out[i] = b.Seq
	}
	return out
}

func (t *fakeTarget) batches() []*Batch {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.applied)
}

func (t *fakeTarget) callCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls
}

// batch returns a one-change batch carrying id, so tests can check that the
// batch applied under a Seq is the one enqueued with it.
func batch(table string, id int) *Batch {
	return &Batch{Changes: []Change{{
		Op:          OpUpsert,
		Table:       table,
		Columns:     []Column{{Name: "id", TypeOID: 20, TypeName: "int8"}, {Name: "v", TypeOID: 25, TypeName: "text"}},
		Row:         []Value{Text(strconv.Itoa(id)), Text("value of some length to take space")},
		KeyCols:     []string{"id"},
		Fingerprint: "fp-" + table,
	}}}
}

func batchID(b *Batch) int {
	id, err := strconv.Atoi(b.Changes[0].Row[0].Text)
	if err != nil {
		panic(err)
	}
	return id
}

// testOptions are fast options for tests: quick retries and checkpoints, no
// fsync, and logs only when the test fails.
func testOptions(t testing.TB, dir string) Options {
	return Options{
		Dir:                dir,
		Fsync:              FsyncNever,
		RetryMin:           time.Millisecond,
		RetryMax:           5 * time.Millisecond,
		CheckpointInterval: 10 * time.Millisecond,
		Logger:             testLogger(t),
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newMirror(t testing.TB, target Target, o Options) *Mirror {
	t.Helper()
	m, err := New(target, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func closeMirror(t testing.TB, m *Mirror) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// eventually polls cond until it holds or 20s pass. The deadline only
// guards against hangs; no assertion depends on timing.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitApplied waits for the mirror to reach seq.
func waitApplied(t testing.TB, m *Mirror, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.WaitApplied(ctx, seq); err != nil {
		t.Fatalf("WaitApplied(%d): %v (stats %+v)", seq, err, m.Stats())
	}
}

// segments lists the spool segment files in dir.
func segments(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// spooledRecords counts the records written to the spool so far.
func spooledRecords(m *Mirror) int {
	m.spool.mu.Lock()
	defer m.spool.mu.Unlock()
	n := 0
	for _, s := range m.spool.segs {
		n += s.records
	}
	return n
}

func readDeadLetters(t testing.TB, dir string) []DeadLetter {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, DeadLetterFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dls, err := ReadDeadLetters(f)
	if err != nil {
		t.Fatal(err)
	}
	return dls
}

// seqRange returns lo..hi.
func seqRange(lo, hi uint64) []uint64 {
	var out []uint64
	for s := lo; s <= hi; s++ {
		out = append(out, s)
	}
	return out
}
