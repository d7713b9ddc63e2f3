package mirror

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The spool is a directory of segment files named after the Seq of their
// first record (%020d.seg, so that lexical order is numeric order). Each file
// starts with an 8-byte header (magic "SPMS", u32le format version) followed
// by framed records (see appendFrame). One appender at a time (the holder
// of spool.wmu: the spool writer goroutine or an EnqueueDurable caller)
// appends, only to the last ("active") segment; only the applier reads.
// Segments whose records are all applied are deleted.
//
// We use our own segment files rather than github.com/tidwall/wal: that log
// frames entries as uvarint length + data with no checksum (a torn or
// garbage tail cannot be told from data), refuses to open a log with a torn
// tail (ErrCorrupt) instead of truncating it, keeps the whole tail segment in
// memory, offers fsync per write or never but no group commit, and needs at
// least one entry to remain after TruncateFront, so "everything applied"
// cannot be represented. Each of those is exactly what this spool needs.
//
// Segment version 2 holds records of codec version 2 (batches with an Xid).
// The framing did not change, but a build that only knows version 1 records
// would take them for corruption and truncate the spool; the new segment
// version makes it refuse the spool instead. Version 1 segments are still
// read.
const (
	segmentExt        = ".seg"
	segmentHeaderSize = 8
	segmentVersion    = 2
	minSegmentVersion = 1
)

var segmentMagic = [4]byte{'S', 'P', 'M', 'S'}

// ErrSpoolFull is wrapped by the error of EnqueueDurable when the batch would
// take the spool beyond Options.MaxSpoolBytes.
var ErrSpoolFull = errors.New("mirror: spool full")

// errSpoolClosed is reported by spool.write after close.
var errSpoolClosed = errors.New("mirror: spool closed")

type segment struct {
	first   uint64 // Seq of its first record; also its file name
	path    string
	size    int64  // bytes of whole records written (and readable)
	records int    // records in the file
	last    uint64 // Seq of its last record
	sealed  bool   // no more appends: rotated, or recovered from a previous run
}

type spool struct {
	dir      string
	fsync    FsyncPolicy
	segSize  int64
	maxBytes int64
	log      *slog.Logger

	mu      sync.Mutex // guards segs, total, written and the fields of each segment
	segs    []*segment // ordered by first
	total   int64      // bytes of all segment files
	written uint64     // highest Seq written in this run
	writes  uint64     // write calls that succeeded, for benchmarks

	// wmu is held by whoever appends (the writer goroutine or an
	// EnqueueDurable caller) and guards the appender state below. The
	// Mirror holds it across taking batches from the hand-off and writing
	// them, which is what keeps the spool in Seq order.
	wmu    sync.Mutex
	active *segment
	f      *os.File
	dirty  bool // written since the last fsync
	closed bool
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentExt) }

// recovery is what openSpool found on disk.
type recovery struct {
	pending   int    // records with Seq > applied
	lastSeq   uint64 // highest Seq in the spool
	startSeg  *segment
	startOff  int64 // offset of the first record with Seq > applied in startSeg
	startRecs int   // records of startSeg before startOff
	lost      []lostSpan
}

// lostSpan is spool data that recovery had to discard somewhere other than
// the tail of the last segment (a torn tail is an expected result of a
// crash; anything else is disk corruption and data loss).
type lostSpan struct {
	path  string
	off   int64
	bytes int64
	err   error
}

// openSpool scans every segment in dir: it checks each record's frame and
// CRC, truncates each file after its last valid record, deletes empty
// segments and those whose records are all applied, and returns where the
// applier has to start. Recovered segments are sealed: new records go to a
// new segment.
func openSpool(dir string, o *Options, applied uint64) (*spool, *recovery, error) {
	s := &spool{dir: dir, fsync: o.Fsync, segSize: o.SegmentSize, maxBytes: o.MaxSpoolBytes, log: o.Logger}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("mirror: spool: %w", err)
	}
	var firsts []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil || len(name) != 20 {
			continue
		}
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)

	rec := &recovery{}
	var prevSeq uint64
	for i, first := range firsts {
		seg := &segment{first: first, path: filepath.Join(dir, segmentName(first)), sealed: true}
		isLast := i == len(firsts)-1
		res, err := scanSegment(seg, prevSeq, applied)
		if err != nil {
			return nil, nil, err
		}
		if res.badTail > 0 {
			if isLast {
				s.log.Warn("mirror: spool: truncated a torn record at the end of the spool (crash during a write)",
					"segment", seg.path, "offset", seg.size, "bytes", res.badTail, "reason", res.badErr)
			} else {
				s.log.Error("mirror: spool: discarded corrupt data inside the spool; the batches in it are lost",
					"segment", seg.path, "offset", seg.size, "bytes", res.badTail, "reason", res.badErr)
				rec.lost = append(rec.lost, lostSpan{path: seg.path, off: seg.size, bytes: res.badTail, err: res.badErr})
			}
		}
		if seg.records > 0 {
			prevSeq = seg.last
			rec.lastSeq = seg.last
		}
		if seg.records == 0 || seg.last <= applied {
			// Nothing left to apply here.
			if err := os.Remove(seg.path); err != nil {
				return nil, nil, fmt.Errorf("mirror: spool: %w", err)
			}
			continue
		}
		rec.pending += seg.records - res.appliedRecs
		if rec.startSeg == nil {
			rec.startSeg, rec.startOff, rec.startRecs = seg, res.startOff, res.appliedRecs
		}
		s.segs = append(s.segs, seg)
		s.total += seg.size
	}
	return s, rec, nil
}

type scanResult struct {
	badTail     int64 // bytes discarded after the last valid record
	badErr      error
	startOff    int64 // offset of the first record with Seq > applied
	appliedRecs int   // records with Seq <= applied
}

// scanSegment validates seg's file, truncating it after its last valid
// record, and fills seg.size, seg.records and seg.last. Records must have
// increasing Seqs greater than prevSeq; a record that does not is treated as
// corrupt like a bad CRC.
func scanSegment(seg *segment, prevSeq, applied uint64) (scanResult, error) {
	var res scanResult
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		return res, fmt.Errorf("mirror: spool: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, fmt.Errorf("mirror: spool: %w", err)
	}
	fileSize := fi.Size()
	br := bufio.NewReaderSize(f, 1<<20)

	var hdr [segmentHeaderSize]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		// A crash right after creating the file: no record can be in it.
		res.badTail, res.badErr = fileSize, errors.New("incomplete segment header")
		return res, nil
	}
	if v := binary.LittleEndian.Uint32(hdr[4:]); [4]byte(hdr[:4]) != segmentMagic || v < minSegmentVersion || v > segmentVersion {
		// Not a segment we can read: refuse to start rather than guess, so an
		// operator looks at it (and nothing is deleted).
		return res, fmt.Errorf("mirror: spool: %s: not a version %d to %d spool segment", seg.path, minSegmentVersion, segmentVersion)
	}

	off := int64(segmentHeaderSize)
	res.startOff = -1
	var payload []byte
	var badErr error
	for {
		var fh [frameHeaderSize]byte
		n, err := io.ReadFull(br, fh[:])
		if err == io.EOF {
			break
		}
		if err != nil {
			badErr = fmt.Errorf("short record header (%d bytes)", n)
			break
		}
		length := int64(binary.LittleEndian.Uint32(fh[:4]))
		if length == 0 || length > fileSize-off-frameHeaderSize {
			badErr = fmt.Errorf("record length %d runs past the end of the file", length)
			break
		}
		payload = slices.Grow(payload[:0], int(length))[:length]
		if _, err := io.ReadFull(br, payload); err != nil {
			badErr = fmt.Errorf("short record: %w", err)
			break
		}
		if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(fh[4:]) {
			badErr = errors.New("CRC mismatch")
			break
		}
		seq, err := peekSeq(payload)
		if err != nil {
			badErr = err
			break
		}
		if seq <= prevSeq || seq < seg.first {
			badErr = fmt.Errorf("seq %d out of order (after %d)", seq, prevSeq)
			break
		}
		if seq <= applied {
			res.appliedRecs++
		} else if res.startOff < 0 {
			res.startOff = off
		}
		prevSeq = seq
		seg.records++
		seg.last = seq
		off += frameHeaderSize + length
	}
	seg.size = off
	if badErr != nil {
		res.badTail, res.badErr = fileSize-off, badErr
		if err := f.Truncate(off); err != nil {
			return res, fmt.Errorf("mirror: spool: truncate %s: %w", seg.path, err)
		}
		if err := f.Sync(); err != nil {
			return res, fmt.Errorf("mirror: spool: %w", err)
		}
	}
	if res.startOff < 0 {
		res.startOff = off
	}
	return res, nil
}

// spoolRec locates one framed record in the buffer given to write.
type spoolRec struct {
	off, n int
	seq    uint64
}

// write appends records, framed back to back in buf, in order. Consecutive
// records that go to the same segment are written with one write call, which
// is what makes spooling cheap. It returns nil when every record was
// written, else one error per record (nil for those written): ErrSpoolFull
// for a record that would take the spool beyond MaxSpoolBytes, or the
// I/O error that lost it. Caller holds s.wmu.
func (s *spool) write(buf []byte, recs []spoolRec) []error {
	var errs []error
	fail := func(k int, err error) {
		if errs == nil {
			errs = make([]error, len(recs))
		}
		errs[k] = err
	}
	if s.closed {
		for k := range recs {
			fail(k, errSpoolClosed)
		}
		return errs
	}
	s.mu.Lock()
	total := s.total
	s.mu.Unlock()
	for i := 0; i < len(recs); {
		r := recs[i]
		rotate := s.active != nil && s.active.records > 0 && s.active.size+int64(r.n) > s.segSize
		need := int64(r.n)
		if rotate || s.active == nil {
			need += segmentHeaderSize
		}
		if total+need > s.maxBytes {
			fail(i, ErrSpoolFull)
			i++
			continue
		}
		if rotate {
			if err := s.seal(); err != nil {
				// The records are written; only their durability is in doubt.
				s.log.Error("mirror: spool: sealing a full segment", "err", err)
			}
		}
		if s.active == nil {
			if err := s.create(r.seq); err != nil {
				fail(i, err)
				i++
				continue
			}
			total += segmentHeaderSize
		}
		// The run of records that fit in this segment and in the spool.
		seg := s.active
		end, j := seg.size+int64(r.n), i+1
		total += int64(r.n)
		for j < len(recs) && end+int64(recs[j].n) <= s.segSize && total+int64(recs[j].n) <= s.maxBytes {
			end += int64(recs[j].n)
			total += int64(recs[j].n)
			j++
		}
		data := buf[r.off : recs[j-1].off+recs[j-1].n]
		// WriteAt at the published size: a failed write leaves nothing the
		// reader can see, and the next write overwrites whatever it left.
		if _, err := s.f.WriteAt(data, seg.size); err != nil {
			total -= int64(len(data))
			err = fmt.Errorf("mirror: spool: write %s: %w", seg.path, err)
			for k := i; k < j; k++ {
				fail(k, err)
			}
			if terr := s.f.Truncate(seg.size); terr != nil {
				// Garbage may follow the last record: stop appending here.
				s.log.Error("mirror: spool: cannot truncate after a failed write; sealing the segment", "segment", seg.path, "err", terr)
				_ = s.seal()
			}
			i = j
			continue
		}
		s.dirty = true
		s.mu.Lock()
		seg.size += int64(len(data))
		seg.records += j - i
		seg.last = recs[j-1].seq
		s.written = seg.last
		s.writes++
		s.total += int64(len(data))
		s.mu.Unlock()
		i = j
	}
	return errs
}

// create starts a new active segment whose first record will have Seq
// first.
func (s *spool) create(first uint64) error {
	seg := &segment{first: first, path: filepath.Join(s.dir, segmentName(first)), size: segmentHeaderSize}
	// O_EXCL: Seqs are never reused, so an existing file means something is
	// badly wrong; refuse rather than overwrite spooled data.
	f, err := os.OpenFile(seg.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("mirror: spool: %w", err)
	}
	var hdr [segmentHeaderSize]byte
	copy(hdr[:], segmentMagic[:])
	binary.LittleEndian.PutUint32(hdr[4:], segmentVersion)
	if _, err := f.Write(hdr[:]); err != nil {
		f.Close()
		os.Remove(seg.path)
		return fmt.Errorf("mirror: spool: %w", err)
	}
	if s.fsync != FsyncNever {
		// Make the new file's directory entry durable with its records.
		if err := syncDir(s.dir); err != nil {
			s.log.Warn("mirror: spool: fsync of the spool directory failed", "err", err)
		}
	}
	s.active, s.f, s.dirty = seg, f, true
	s.mu.Lock()
	s.segs = append(s.segs, seg)
	s.total += seg.size
	s.mu.Unlock()
	return nil
}

// sync makes the active segment durable if anything was written since the
// last sync. Caller holds s.wmu.
func (s *spool) sync() error {
	if s.f == nil || !s.dirty {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("mirror: spool: fsync %s: %w", s.active.path, err)
	}
	s.dirty = false
	return nil
}

// syncInBackground is sync for the periodic fsync of FsyncInterval: it
// holds s.wmu only to pick the file, so appends go on while the fsync runs.
// os.File keeps the descriptor open until a concurrent Sync returns, so a
// seal in the meantime is safe (and seal syncs itself).
func (s *spool) syncInBackground() error {
	s.wmu.Lock()
	f, dirty := s.f, s.dirty
	s.dirty = false
	path := ""
	if s.active != nil {
		path = s.active.path
	}
	s.wmu.Unlock()
	if f == nil || !dirty {
		return nil
	}
	err := f.Sync()
	if errors.Is(err, os.ErrClosed) {
		return nil // sealed (and synced) meanwhile
	}
	if err != nil {
		s.wmu.Lock()
		if s.f == f {
			s.dirty = true // try again next time
		}
		s.wmu.Unlock()
		return fmt.Errorf("mirror: spool: fsync %s: %w", path, err)
	}
	return nil
}

// seal closes the active segment; the next record starts a new one. It syncs
// first unless the policy is never, so that only the active segment can have
// a torn tail after a crash; it syncs even when nothing is dirty, because a
// concurrent syncInBackground may have cleared the flag before its fsync.
// Caller holds s.wmu.
func (s *spool) seal() error {
	if s.f == nil {
		return nil
	}
	var err error
	if s.fsync != FsyncNever {
		if err = s.f.Sync(); err != nil {
			err = fmt.Errorf("mirror: spool: fsync %s: %w", s.active.path, err)
		}
	}
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("mirror: spool: %w", cerr)
	}
	s.mu.Lock()
	s.active.sealed = true
	s.mu.Unlock()
	s.active, s.f, s.dirty = nil, nil, false
	return err
}

// close syncs and closes the active segment without sealing it; later
// writes fail. Caller holds s.wmu (the writer goroutine, as it exits).
func (s *spool) close() error {
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := s.f.Sync()
	if err != nil {
		err = fmt.Errorf("mirror: spool: fsync %s: %w", s.active.path, err)
	}
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("mirror: spool: %w", cerr)
	}
	s.f, s.dirty = nil, false
	return err
}

// gc deletes the sealed segments at the front of the spool whose records
// are all applied.
func (s *spool) gc(applied uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.segs) > 0 {
		seg := s.segs[0]
		if !seg.sealed || seg.last > applied {
			return
		}
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("mirror: spool: cannot delete an applied segment", "segment", seg.path, "err", err)
			return
		}
		s.total -= seg.size
		s.segs = s.segs[1:]
	}
}

// bytes returns the size of the spool on disk.
func (s *spool) bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// after returns the first segment whose first Seq is greater than first.
// Caller holds s.mu.
func (s *spool) after(first uint64) *segment {
	i, found := slices.BinarySearchFunc(s.segs, first, func(seg *segment, t uint64) int {
		switch {
		case seg.first < t:
			return -1
		case seg.first > t:
			return 1
		}
		return 0
	})
	if found {
		i++
	}
	if i < len(s.segs) {
		return s.segs[i]
	}
	return nil
}

// spoolReader reads records in order for the applier; only the applier
// goroutine uses it. It reads a segment only up to the size the writer has
// published, so it never sees a partial record.
type spoolReader struct {
	s        *spool
	seg      *segment // current segment, nil before the first or between two
	prev     uint64   // first Seq of the previous segment; 0 before any
	f        *os.File
	off      int64 // offset of the next record in seg
	consumed int   // records of seg read so far
	limit    int64 // end of the section br reads
	br       *bufio.Reader
	payload  []byte

	// The recovered start position, used when the reader opens that segment.
	startSeg  *segment
	startOff  int64
	startRecs int
}

// readError is a record the reader could not return. lost records were
// skipped; the reader continues after them.
type readError struct {
	path string
	off  int64
	lost int
	seq  uint64 // Seq of the skipped record when known (undecodable payload)
	err  error
}

func (e *readError) Error() string {
	return fmt.Sprintf("mirror: spool: %s at offset %d: %v (%d batches skipped)", e.path, e.off, e.err, e.lost)
}

func (e *readError) Unwrap() error { return e.err }

func newSpoolReader(s *spool, rec *recovery) *spoolReader {
	return &spoolReader{
		s:         s,
		br:        bufio.NewReaderSize(nil, 256<<10),
		startSeg:  rec.startSeg,
		startOff:  rec.startOff,
		startRecs: rec.startRecs,
	}
}

// next returns the next record whose Seq is at least from, or nil when none
// is available yet. Records below from (copies of batches the applier took
// from memory, see Mirror.spoolFrom) are skipped without being decoded.
func (r *spoolReader) next(from uint64) (*Batch, error) {
	for {
		if r.seg == nil {
			r.s.mu.Lock()
			seg := r.s.after(r.prev)
			r.s.mu.Unlock()
			if seg == nil {
				return nil, nil
			}
			if err := r.open(seg); err != nil {
				return nil, err
			}
			if r.seg == nil {
				continue // deleted by gc meanwhile: on to the next one
			}
		}
		r.s.mu.Lock()
		size, sealed := r.seg.size, r.seg.sealed
		r.s.mu.Unlock()
		if r.off >= size {
			if !sealed {
				return nil, nil
			}
			r.closeSeg()
			continue
		}
		if r.limit != size {
			r.br.Reset(io.NewSectionReader(r.f, r.off, size-r.off))
			r.limit = size
		}
		b, skipped, err := r.read(size, from)
		if skipped {
			continue
		}
		return b, err
	}
}

func (r *spoolReader) open(seg *segment) error {
	f, err := os.Open(seg.path)
	if errors.Is(err, fs.ErrNotExist) {
		// Deleted by gc: all its records were applied.
		r.prev = seg.first
		return nil
	}
	if err != nil {
		return fmt.Errorf("mirror: spool: %w", err)
	}
	r.seg, r.f, r.limit = seg, f, -1
	r.off, r.consumed = segmentHeaderSize, 0
	if seg == r.startSeg {
		r.off, r.consumed = r.startOff, r.startRecs
		r.startSeg = nil
	}
	return nil
}

func (r *spoolReader) closeSeg() {
	if r.f != nil {
		r.f.Close()
	}
	r.prev = r.seg.first
	r.seg, r.f = nil, nil
}

// read reads the record at r.off; skipped says it was below from.
func (r *spoolReader) read(size int64, from uint64) (_ *Batch, skipped bool, _ error) {
	var fh [frameHeaderSize]byte
	fail := func(err error) (*Batch, bool, error) {
		// The frame boundaries after this point are unknown: skip to the end
		// of what is written. The writer appends at that offset, so reading
		// stays aligned.
		r.s.mu.Lock()
		lost := r.seg.records - r.consumed
		r.s.mu.Unlock()
		e := &readError{path: r.seg.path, off: r.off, lost: lost, err: err}
		r.off, r.consumed, r.limit = size, r.consumed+lost, -1
		return nil, false, e
	}
	if _, err := io.ReadFull(r.br, fh[:]); err != nil {
		return fail(fmt.Errorf("read record header: %w", err))
	}
	length := int64(binary.LittleEndian.Uint32(fh[:4]))
	if length == 0 || length > size-r.off-frameHeaderSize {
		return fail(fmt.Errorf("%w: record length %d", ErrCorrupt, length))
	}
	r.payload = slices.Grow(r.payload[:0], int(length))[:length]
	if _, err := io.ReadFull(r.br, r.payload); err != nil {
		return fail(fmt.Errorf("read record: %w", err))
	}
	if crc32.Checksum(r.payload, crcTable) != binary.LittleEndian.Uint32(fh[4:]) {
		return fail(fmt.Errorf("%w: CRC mismatch", ErrCorrupt))
	}
	off := r.off
	r.off += frameHeaderSize + length
	r.consumed++
	if seq, err := peekSeq(r.payload); err == nil && seq < from {
		return nil, true, nil
	}
	b, err := DecodeBatch(r.payload)
	if err != nil {
		// The frame is intact, so only this record is lost.
		seq, _ := peekSeq(r.payload)
		return nil, false, &readError{path: r.seg.path, off: off, lost: 1, seq: seq, err: err}
	}
	return b, false, nil
}

// atEnd reports whether the reader has consumed every record written so far.
func (r *spoolReader) atEnd() bool {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if r.seg == nil {
		return r.s.after(r.prev) == nil
	}
	return r.off >= r.seg.size && r.s.after(r.seg.first) == nil
}

func (r *spoolReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// syncDir fsyncs a directory so that a created, renamed or removed entry is
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
