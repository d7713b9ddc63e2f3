package proxy

import (
	"errors"
	"slices"

	"github.com/shadowproxy/shadowproxy/mirror"
)

// txBuffer holds the row images of the transaction a session has open on
// the old database, until it commits (they go to the mirror) or rolls back
// (they are dropped). Savepoints mark positions so ROLLBACK TO drops only
// what it undoes. Owned by the session's upstream goroutine.
//
// The images are bounded (mirror.max_tx_bytes): a transaction that writes
// more, say a bulk UPDATE of millions of rows, would otherwise grow the
// proxy by as much. Past the bound the buffer is journaled, before the
// transaction ends, as pending chunks (spill): batches tagged with the
// transaction's xid, of at most maxChunkBytes each, that the mirror holds
// back like any transaction not yet resolved. From then on the buffer is
// journaled again whenever it holds a chunk's worth. At the COMMIT the rest
// is journaled as usual and every chunk is resolved with the COMMIT's
// outcome; however else the transaction ends, its chunks are resolved as
// aborted and never applied. The price of keeping every row: such a
// transaction reaches the new database as several transactions, applied
// one after the other once it has committed, not atomically; while it is
// open, every transaction journaled after its first chunk waits behind it
// in the mirror (the lag grows; nothing is lost), and shadow reads that
// wait for the mirror may time out meanwhile (they are counted).
//
// Applying the chunks where they stand in the journal, before transactions
// that committed while the big one was still open, is safe for the same
// reason the journal's order is (see Journal): those transactions cannot
// have touched a row a chunk holds. The big transaction wrote that row, and
// kept its row lock (or, for a key it inserted, its unique-index entry)
// until it ends, so a transaction writing the row waits for the big one's
// end and journals after its COMMIT. And a row the big transaction wrote
// after another transaction had written it was captured after that
// transaction's COMMIT, so after its journal entry, and went into a later
// chunk. Rows the big transaction inserts into a table without a primary
// key are the exception: they are invisible to the UPDATEs and DELETEs of
// that table that other transactions commit meanwhile, which are mirrored
// as statements and, replayed after the chunk on the new database, reach
// them too; such tables are verified by multiset only (see NotMirrored).
//
// What a ROLLBACK TO SAVEPOINT would undo of the chunks cannot be taken
// back: the transaction then falls back to what the proxy did before it
// journaled chunks (fallback). Its chunks are resolved as aborted at once,
// and the buffer keeps only which tables and statements the transaction
// wrote (overflow); at its commit these are dead-lettered and the tables
// marked dirty, for repair. The same happens when the journal refuses a
// chunk (spool full, say) or the transaction's xid is unknown. A ROLLBACK
// TO after the fallback cannot undo anything: the tables are reported even
// if the writes are rolled back, which errs on the side of repairing.
type txBuffer struct {
	changes    []mirror.Change
	bytes      int64  // approximate size of changes
	xid        uint64 // the transaction's id on the old database, from its rows
	savepoints []savepoint
	stmtStart  int  // where the current statement's changes begin
	explicit   bool // inside BEGIN ... COMMIT
	failed     bool // an implicit transaction failed and will roll back
	overflow   *txOverflow

	// Positions (savepoints, stmtStart) count from the transaction's start:
	// changes[0] is its change number base, the ones before are journaled
	// in chunks (pending journal positions). spilled notes what the chunks
	// hold, for a fallback. due says the images have outgrown the bound and
	// wait for a spill the event loop left to the session's goroutines.
	base    int
	chunks  []uint64
	spilled *txOverflow
	due     bool
}

// maxChunkBytes bounds the images in one chunk, so that a spill writes the
// journal in pieces and the mirror applies them in transactions of a
// bounded size.
const maxChunkBytes = 16 << 20

// txOverflow is what a txBuffer keeps of a transaction past its bound.
type txOverflow struct {
	tables, fingerprints []string
	changes              int
}

func (o *txOverflow) note(c *mirror.Change) {
	o.changes++
	if !slices.Contains(o.tables, c.Table) {
		o.tables = append(o.tables, c.Table)
	}
	if c.Fingerprint != "" && !slices.Contains(o.fingerprints, c.Fingerprint) {
		o.fingerprints = append(o.fingerprints, c.Fingerprint)
	}
}

// changeSize approximates the memory a change holds.
func changeSize(c *mirror.Change) int64 {
	n := 64 + len(c.Table) + len(c.SQL) + len(c.Fingerprint)
	for _, vs := range [][]mirror.Value{c.Row, c.Key, c.Args} {
		for _, v := range vs {
			n += 24 + len(v.Text)
		}
	}
	return int64(n)
}

type savepoint struct {
	name string
	pos  int
}

// add keeps a change, or only notes it once the transaction fell back. It
// reports whether the images outgrew max bytes (0: no bound) and are due
// for a spill: max for the first chunk, so that a transaction within the
// bound stays one batch, then a chunk's worth.
func (t *txBuffer) add(c mirror.Change, max int64) bool {
	if t.overflow != nil {
		t.overflow.note(&c)
		return false
	}
	t.changes = append(t.changes, c)
	t.bytes += changeSize(&c)
	if max > 0 && t.bytes > t.bound(max) {
		t.due = true
	}
	return t.due
}

func (t *txBuffer) bound(max int64) int64 {
	if t.base > 0 {
		return min(max, maxChunkBytes)
	}
	return max
}

// spill journals the buffered images as chunks of at most chunkBytes each
// (one change at least) with journal, which returns the chunk's journal
// position. When the transaction cannot be journaled in chunks (journal
// fails, or its xid is unknown: a chunk tagged 0 would count as committed)
// it falls back, and spill returns why and the positions of its chunks, to
// be resolved as aborted.
func (t *txBuffer) spill(chunkBytes int64, journal func(*mirror.Batch) (uint64, error)) ([]uint64, error) {
	t.due = false
	if t.overflow != nil || len(t.changes) == 0 {
		return nil, nil
	}
	if t.xid == 0 {
		return t.fallback(), errors.New("the transaction's id is unknown")
	}
	all := t.changes
	for len(t.changes) > 0 {
		n, size := 0, int64(0)
		for n < len(t.changes) {
			s := changeSize(&t.changes[n])
			if n > 0 && size+s > chunkBytes {
				break
			}
			size += s
			n++
		}
		// A chunk of its own: the buffer's array is filled again.
		part := slices.Clone(t.changes[:n])
		seq, err := journal(&mirror.Batch{Changes: part, Xid: t.xid})
		if err != nil {
			if seq != 0 {
				t.chunks = append(t.chunks, seq)
			}
			return t.fallback(), err
		}
		if t.spilled == nil {
			t.spilled = &txOverflow{}
		}
		for i := range part {
			t.spilled.note(&part[i])
		}
		t.chunks = append(t.chunks, seq)
		t.base += n
		t.bytes -= size
		clear(t.changes[:n])
		t.changes = t.changes[n:]
	}
	t.changes = all[:0]
	return nil, nil
}

// fallback drops the images, journaled or not, keeping only what the
// overflow notes of them, and returns the chunks' positions, to be
// resolved as aborted.
func (t *txBuffer) fallback() []uint64 {
	o := t.spilled
	if o == nil {
		o = &txOverflow{}
	}
	for i := range t.changes {
		o.note(&t.changes[i])
	}
	clear(t.changes)
	chunks := t.chunks
	t.changes, t.bytes, t.stmtStart, t.savepoints, t.base, t.chunks, t.spilled, t.due = nil, 0, 0, nil, 0, nil, nil, false
	t.overflow = o
	return chunks
}

// statementDone marks the end of a statement that succeeded.
func (t *txBuffer) statementDone() { t.stmtStart = t.base + len(t.changes) }

// statementFailed drops the changes of a failed statement; outside an
// explicit transaction the whole implicit transaction will roll back.
//
// Changes of the statement already journaled in chunks stay there: a
// failed statement aborts its transaction, which can only roll back as a
// whole (a COMMIT answers ROLLBACK), aborting the chunks, or to a
// savepoint set before the statement, which falls back (rollbackTo).
func (t *txBuffer) statementFailed() {
	t.truncate(max(t.stmtStart, t.base))
	if !t.explicit {
		t.failed = true
	}
}

// truncate drops the changes from position n on. It reports false, doing
// nothing, when some of them are journaled in chunks already.
func (t *txBuffer) truncate(n int) bool {
	if t.overflow != nil {
		return true
	}
	if n < t.base {
		return false
	}
	n -= t.base
	if n >= len(t.changes) {
		return true
	}
	for i := n; i < len(t.changes); i++ {
		t.bytes -= changeSize(&t.changes[i])
	}
	clear(t.changes[n:])
	t.changes = t.changes[:n]
	t.stmtStart = min(t.stmtStart, t.base+n)
	return true
}

func (t *txBuffer) savepoint(name string) {
	t.savepoints = append(t.savepoints, savepoint{name, t.base + len(t.changes)})
}

// rollbackTo drops what followed the named savepoint, which stays. When
// that reaches into the chunks the transaction falls back, and the chunks'
// positions are returned, to be resolved as aborted.
func (t *txBuffer) rollbackTo(name string) []uint64 {
	for i := len(t.savepoints) - 1; i >= 0; i-- {
		if t.savepoints[i].name == name {
			if !t.truncate(t.savepoints[i].pos) {
				return t.fallback()
			}
			t.savepoints = t.savepoints[:i+1]
			return nil
		}
	}
	return nil
}

// release forgets the named savepoint and those after it; their changes
// stay in the transaction.
func (t *txBuffer) release(name string) {
	for i := len(t.savepoints) - 1; i >= 0; i-- {
		if t.savepoints[i].name == name {
			t.savepoints = t.savepoints[:i]
			return
		}
	}
}

// take ends the transaction and returns its changes as a batch tagged with
// its xid, or nil when it changed nothing since its last chunk; the
// positions of its chunks (nil for a transaction that stayed within its
// bound); or, for a transaction that fell back, what was noted of it.
func (t *txBuffer) take() (*mirror.Batch, []uint64, *txOverflow) {
	var b *mirror.Batch
	if len(t.changes) > 0 {
		b = &mirror.Batch{Changes: t.changes, Xid: t.xid}
	}
	chunks, o := t.chunks, t.overflow
	*t = txBuffer{}
	return b, chunks, o
}

// forgetChunks leaves the chunks journaled so far to the mirror's Resolver,
// which asks the old database how the transaction ended: for a COMMIT sent
// before the buffer could be taken (see journalBeforeCommit), so that
// nothing here resolves them as aborted.
func (t *txBuffer) forgetChunks() { t.chunks = nil }

// discard ends the transaction, dropping its changes. It returns the
// positions of its chunks, to be resolved as aborted.
func (t *txBuffer) discard() []uint64 {
	chunks := t.chunks
	*t = txBuffer{}
	return chunks
}
