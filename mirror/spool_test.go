package mirror

import (
	"bufio"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fillSpool writes n batches (ids = seqs 1..n) to a spool in dir with the
// target down, closes the mirror, and returns the segment files.
func fillSpool(t *testing.T, dir string, n int) []string {
	t.Helper()
	o := testOptions(t, dir)
	o.QueueLen = -1
	o.SegmentSize = 1 << 10
	m := newMirror(t, &fakeTarget{down: true}, o)
	for i := 1; i <= n; i++ {
		m.Enqueue(batch("public.t", i))
	}
	eventually(t, "batches spooled", func() bool { return spooledRecords(m) == n })
	closeMirror(t, m)
	segs := segments(t, dir)
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments, got %d", len(segs))
	}
	return segs
}

// recordOffsets returns the offset of each record of a segment file.
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := int64(segmentHeaderSize); off < int64(len(data)); {
		offs = append(offs, off)
		off += frameHeaderSize + int64(binary.LittleEndian.Uint32(data[off:]))
	}
	return offs
}

// seqsIn returns the Seqs of the records of a segment file.
func seqsIn(t *testing.T, path string) []uint64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, off := range recordOffsets(t, path) {
		seq, err := peekSeq(data[off+frameHeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// A crash leaves the spool in one of these shapes; recovery must truncate
// the damage, apply everything before it in order, and go on.
func TestRecoverDamagedSpool(t *testing.T) {
	const n = 40
	garbage := func(seed uint64) []byte {
		r := rand.New(rand.NewPCG(seed, seed))
		b := make([]byte, 1+r.IntN(3000))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	tests := []struct {
		name string
		// damage breaks the spool and returns the Seqs that are lost.
		damage func(t *testing.T, segs []string) (lost []uint64)
		// corrupt says recovery must report data loss (not just a torn tail).
		corrupt bool
	}{
		{name: "last record cut mid-payload", damage: func(t *testing.T, segs []string) []uint64 {
			last := segs[len(segs)-1]
			fi, _ := os.Stat(last)
			truncate(t, last, fi.Size()-3)
			return []uint64{n}
		}},
		{name: "last record cut mid-header", damage: func(t *testing.T, segs []string) []uint64 {
			last := segs[len(segs)-1]
			offs := recordOffsets(t, last)
			truncate(t, last, offs[len(offs)-1]+5)
			return []uint64{n}
		}},
		{name: "CRC mismatch in the last record", damage: func(t *testing.T, segs []string) []uint64 {
			last := segs[len(segs)-1]
			offs := recordOffsets(t, last)
			flipByte(t, last, offs[len(offs)-1]+frameHeaderSize+10)
			return []uint64{n}
		}},
		{name: "zeroed tail (preallocated blocks)", damage: func(t *testing.T, segs []string) []uint64 {
			appendFile(t, segs[len(segs)-1], make([]byte, 4096))
			return nil
		}},
		{name: "random garbage tail 1", damage: func(t *testing.T, segs []string) []uint64 {
			appendFile(t, segs[len(segs)-1], garbage(1))
			return nil
		}},
		{name: "random garbage tail 2", damage: func(t *testing.T, segs []string) []uint64 {
			appendFile(t, segs[len(segs)-1], garbage(2))
			return nil
		}},
		{name: "random garbage tail 3", damage: func(t *testing.T, segs []string) []uint64 {
			appendFile(t, segs[len(segs)-1], garbage(3))
			return nil
		}},
		{name: "last segment header torn", damage: func(t *testing.T, segs []string) []uint64 {
			last := segs[len(segs)-1]
			lost := seqsIn(t, last)
			truncate(t, last, 5)
			return lost
		}},
		{name: "corruption inside the first segment", corrupt: true, damage: func(t *testing.T, segs []string) []uint64 {
			first := segs[0]
			seqs := seqsIn(t, first)
			offs := recordOffsets(t, first)
			flipByte(t, first, offs[1]+frameHeaderSize+3)
			return seqs[1:]
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			segs := fillSpool(t, dir, n)
			lost := tc.damage(t, segs)

			// Recovery itself, on a copy: every file is cut after its last
			// good record.
			o := testOptions(t, dir)
			scratch := t.TempDir()
			if err := os.CopyFS(scratch, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			sp, rec, err := openSpool(scratch, &o, 0)
			if err != nil {
				t.Fatal(err)
			}
			if rec.pending != n-len(lost) || len(rec.lost) > 0 != tc.corrupt {
				t.Fatalf("recovery: %d pending, lost %v", rec.pending, rec.lost)
			}
			for _, seg := range sp.segs {
				fi, err := os.Stat(seg.path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() != seg.size {
					t.Fatalf("%s: %d bytes on disk, %d valid", seg.path, fi.Size(), seg.size)
				}
			}

			target := &fakeTarget{}
			m := newMirror(t, target, o)
			defer closeMirror(t, m)
			var want []uint64
			for s := uint64(1); s <= n; s++ {
				if !slices.Contains(lost, s) {
					want = append(want, s)
				}
			}
			if len(want) > 0 {
				waitApplied(t, m, want[len(want)-1])
			}
			if got := target.seqs(); !slices.Equal(got, want) {
				t.Fatalf("applied %v\nwant %v", got, want)
			}
			st := m.Stats()
			if st.Overflowed != tc.corrupt || (st.DeadLettered > 0) != tc.corrupt {
				t.Fatalf("stats: %+v", st)
			}
			if tc.corrupt {
				dls := readDeadLetters(t, dir)
				if len(dls) != 1 || dls[0].Reason != ReasonSpoolCorrupt || dls[0].Segment != segs[0] {
					t.Fatalf("dead letters: %+v", dls)
				}
			}
			// New batches still get fresh Seqs and are applied after.
			seq := m.Enqueue(batch("public.t", 0))
			if seq <= n {
				t.Fatalf("seq %d reused", seq)
			}
			waitApplied(t, m, seq)
		})
	}
}

// Corruption found while reading (not at recovery): the rest of the
// segment is skipped and dead-lettered, later segments are applied.
func TestCorruptionWhileRunning(t *testing.T) {
	dir := t.TempDir()
	target := &fakeTarget{down: true}
	o := testOptions(t, dir)
	o.QueueLen = -1
	o.SegmentSize = 1 << 10
	m := newMirror(t, target, o)
	defer closeMirror(t, m)
	const n = 40
	for i := 1; i <= n; i++ {
		m.Enqueue(batch("public.t", i))
	}
	eventually(t, "batches spooled", func() bool { return spooledRecords(m) == n })
	eventually(t, "apply of batch 1 retried", func() bool { return target.callCount() >= 2 })
	// The applier is stuck on batch 1 of the first segment and has not
	// opened the second one yet.
	segs := segments(t, dir)
	second := segs[1]
	seqs := seqsIn(t, second)
	offs := recordOffsets(t, second)
	flipByte(t, second, offs[2]+frameHeaderSize+1)

	target.setDown(false)
	waitApplied(t, m, n)
	lost := seqs[2:]
	var want []uint64
	for s := uint64(1); s <= n; s++ {
		if !slices.Contains(lost, s) {
			want = append(want, s)
		}
	}
	if got := target.seqs(); !slices.Equal(got, want) {
		t.Fatalf("applied %v\nwant %v", got, want)
	}
	dls := readDeadLetters(t, dir)
	if len(dls) != 1 || dls[0].Reason != ReasonSpoolCorrupt || dls[0].Lost != len(lost) || dls[0].Segment != second || dls[0].Offset != offs[2] {
		t.Fatalf("dead letters %+v (lost %d)", dls, len(lost))
	}
	if st := m.Stats(); !st.Overflowed || st.Spooled != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUnknownSegmentVersionRefused(t *testing.T) {
	dir := t.TempDir()
	segs := fillSpool(t, dir, 20)
	f, err := os.OpenFile(segs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{9}, 4); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := New(&fakeTarget{}, testOptions(t, dir)); err == nil || !strings.Contains(err.Error(), "not a version 1 to 2 spool segment") {
		t.Fatalf("New with a foreign segment: %v", err)
	}
	if _, err := os.Stat(segs[0]); err != nil {
		t.Fatalf("the unreadable segment must be left for the operator: %v", err)
	}
}

const (
	crashEnv     = "MIRROR_TEST_CRASH_DIR"
	crashModeEnv = "MIRROR_TEST_CRASH_MODE"
)

// killChild runs this test binary as a child that fills a spool in dir in
// the given mode, kills it with SIGKILL 20ms after it printed "ready", and
// returns the lines it printed before dying.
func killChild(t *testing.T, mode, dir string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecoverAfterSIGKILL$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashModeEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var lines []string
	ready := false
	for !ready && sc.Scan() {
		lines = append(lines, sc.Text())
		ready = sc.Text() == "ready"
	}
	if !ready {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child did not get ready")
	}
	time.Sleep(20 * time.Millisecond) // let it write some more
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // what it printed before it died
		lines = append(lines, sc.Text())
	}
	cmd.Wait()
	return lines
}

// A real crash: a child process spools and is killed with SIGKILL in the
// middle of writing. The next Mirror must find a dense, ordered prefix of
// what was enqueued and lose nothing it had written.
func TestRecoverAfterSIGKILL(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		if os.Getenv(crashModeEnv) == "durable" {
			crashDurableChild(t, dir)
		} else {
			crashChild(t, dir)
		}
		return
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}

	// Enqueue with fsync=always, straight to the spool.
	t.Run("enqueue", func(t *testing.T) {
		dir := t.TempDir()
		killChild(t, "enqueue", dir)

		// Recovery, as New does it: how much survived?
		o := testOptions(t, dir)
		_, rec, err := openSpool(dir, &o, 0)
		if err != nil {
			t.Fatal(err)
		}
		k := rec.pending
		if len(rec.lost) > 0 || rec.lastSeq != uint64(k) {
			t.Fatalf("recovery: %d batches up to seq %d, lost %v", k, rec.lastSeq, rec.lost)
		}
		if k < 100 {
			t.Fatalf("only %d batches recovered; the child had 100 on disk before saying ready", k)
		}
		// The flock died with the child.
		target := &fakeTarget{}
		m := newMirror(t, target, o)
		defer closeMirror(t, m)
		waitApplied(t, m, uint64(k))
		if got := target.seqs(); !slices.Equal(got, seqRange(1, uint64(k))) {
			t.Fatalf("applied %d batches, not 1..%d in order", len(got), k)
		}
		for _, b := range target.batches() {
			if batchID(b) != int(b.Seq) {
				t.Fatalf("seq %d carries id %d", b.Seq, batchID(b))
			}
		}
		if st := m.Stats(); st.Dropped != 0 || st.Overflowed {
			t.Fatalf("a torn tail is not data loss: %+v", st)
		}
	})

	// EnqueueDurable of intents, as the proxy does before COMMIT, with
	// fsync=interval: every Seq the child saw returned must survive, and
	// the next Mirror applies the intents the Resolver says committed, in
	// Seq order, and skips the others.
	t.Run("durable", func(t *testing.T) {
		dir := t.TempDir()
		lines := killChild(t, "durable", dir)
		var returned uint64
		for _, l := range lines {
			if seq, err := strconv.ParseUint(l, 10, 64); err == nil {
				returned = max(returned, seq)
			}
		}

		o := testOptions(t, dir)
		_, rec, err := openSpool(dir, &o, 0)
		if err != nil {
			t.Fatal(err)
		}
		k := uint64(rec.pending)
		if len(rec.lost) > 0 || rec.lastSeq != k {
			t.Fatalf("recovery: %d batches up to seq %d, lost %v", k, rec.lastSeq, rec.lost)
		}
		if returned <= 100 || k < returned {
			t.Fatalf("recovered 1..%d, but EnqueueDurable had returned up to %d", k, returned)
		}
		res := &fakeResolver{outcome: crashOutcome}
		o.Resolver = res.resolve
		target := &fakeTarget{}
		m := newMirror(t, target, o)
		defer closeMirror(t, m)
		waitApplied(t, m, k)
		var want []uint64
		for seq := uint64(1); seq <= k; seq++ {
			if crashCommitted(crashXid(int(seq))) {
				want = append(want, seq)
			}
		}
		if got := target.seqs(); !slices.Equal(got, want) {
			t.Fatalf("applied %d batches, want the %d committed of 1..%d in order", len(got), len(want), k)
		}
		for _, b := range target.batches() {
			if batchID(b) != int(b.Seq) || b.Xid != crashXid(int(b.Seq)) {
				t.Fatalf("seq %d carries id %d xid %d", b.Seq, batchID(b), b.Xid)
			}
		}
		st := m.Stats()
		if st.Aborted != k-uint64(len(want)) || st.Dropped != 0 || st.Overflowed || st.Pending != 0 {
			t.Fatalf("stats: %+v", st)
		}
		if calls := len(res.callList()); uint64(calls) > k/resolveBatch+1 {
			t.Fatalf("%d resolver calls for %d intents: not batched", calls, k)
		}
	})
}

func crashChild(t *testing.T, dir string) {
	o := testOptions(t, dir)
	o.QueueLen = -1
	o.Fsync = FsyncAlways
	o.SegmentSize = 16 << 10
	m := newMirror(t, &fakeTarget{down: true}, o)
	for i := 1; i <= 100; i++ {
		m.Enqueue(batch("public.t", i))
	}
	eventually(t, "100 batches spooled", func() bool { return spooledRecords(m) >= 100 })
	os.Stdout.WriteString("ready\n")
	for i := 101; ; i++ {
		m.Enqueue(batch("public.t", i))
	}
}

// framed encodes batches for seqs back to back, as the spool writer does.
func framed(t *testing.T, seqs ...uint64) ([]byte, []spoolRec) {
	t.Helper()
	var buf []byte
	var recs []spoolRec
	for _, s := range seqs {
		b := batch("public.t", int(s))
		b.Seq = s
		start := len(buf)
		var err error
		if buf, err = appendFrame(buf, b); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, spoolRec{off: start, n: len(buf) - start, seq: s})
	}
	return buf, recs
}

// spool.write: runs are split at segment and capacity limits, a failed
// write loses exactly its records, and the spool continues in a new segment.
func TestSpoolWrite(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir)
	o.SegmentSize = 400 // three ~120-byte records per segment
	o.MaxSpoolBytes = 10 << 10
	o, _ = o.withDefaults()
	s, _, err := openSpool(dir, &o, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf, recs := framed(t, 1, 2, 3, 4, 5, 6, 7)
	if errs := s.write(buf, recs); errs != nil {
		t.Fatalf("write: %v", errs)
	}
	var got [][]uint64
	for _, p := range segments(t, dir) {
		got = append(got, seqsIn(t, p))
	}
	if want := [][]uint64{{1, 2, 3}, {4, 5, 6}, {7}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("segments hold %v, want %v", got, want)
	}

	// A disk error: the file is gone from under the writer.
	s.f.Close()
	buf, recs = framed(t, 8, 9)
	errs := s.write(buf, recs)
	if len(errs) != 2 || errs[0] == nil || errs[1] == nil {
		t.Fatalf("write to a closed file: %v", errs)
	}
	buf, recs = framed(t, 10)
	if errs := s.write(buf, recs); errs != nil {
		t.Fatalf("write after the failure: %v", errs)
	}
	s.close()
	_, rec, err := openSpool(dir, &o, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rec.pending != 8 || rec.lastSeq != 10 || len(rec.lost) != 0 {
		t.Fatalf("recovered %+v", rec)
	}

	// Capacity: what does not fit is refused, the rest is written.
	dir2 := t.TempDir()
	o.Dir, o.MaxSpoolBytes, o.SegmentSize = dir2, 300, 1<<20
	s2, _, err := openSpool(dir2, &o, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf, recs = framed(t, 1, 2, 3)
	errs = s2.write(buf, recs)
	if len(errs) != 3 || errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrSpoolFull) {
		t.Fatalf("write beyond MaxSpoolBytes: %v", errs)
	}
	if b := s2.bytes(); b > 300 {
		t.Fatalf("spool holds %d bytes, more than its 300", b)
	}
	s2.close()
}
