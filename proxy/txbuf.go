package proxy

import (
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
// proxy by as much. Past the bound the buffer keeps only which tables and
// statements the transaction wrote (overflow); at its commit these are
// dead-lettered and the tables marked dirty, for repair. A ROLLBACK TO
// cannot undo that: the tables are reported even if the writes past the
// bound are rolled back, which errs on the side of repairing.
type txBuffer struct {
	changes    []mirror.Change
	bytes      int64  // approximate size of changes
	xid        uint64 // the transaction's id on the old database, from its rows
	savepoints []savepoint
	stmtStart  int  // where the current statement's changes begin
	explicit   bool // inside BEGIN ... COMMIT
	failed     bool // an implicit transaction failed and will roll back
	overflow   *txOverflow
}

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

// add keeps a change, or only notes it once the transaction outgrew max
// bytes (0: no bound).
func (t *txBuffer) add(c mirror.Change, max int64) {
	if t.overflow != nil {
		t.overflow.note(&c)
		return
	}
	t.changes = append(t.changes, c)
	t.bytes += changeSize(&c)
	if max > 0 && t.bytes > max {
		t.overflow = &txOverflow{}
		for i := range t.changes {
			t.overflow.note(&t.changes[i])
		}
		clear(t.changes)
		t.changes, t.bytes, t.stmtStart, t.savepoints = nil, 0, 0, nil
	}
}

// statementDone marks the end of a statement that succeeded.
func (t *txBuffer) statementDone() { t.stmtStart = len(t.changes) }

// statementFailed drops the changes of a failed statement; outside an
// explicit transaction the whole implicit transaction will roll back.
func (t *txBuffer) statementFailed() {
	t.truncate(t.stmtStart)
	if !t.explicit {
		t.failed = true
	}
}

func (t *txBuffer) truncate(n int) {
	if t.overflow != nil || n >= len(t.changes) {
		return
	}
	for i := n; i < len(t.changes); i++ {
		t.bytes -= changeSize(&t.changes[i])
	}
	clear(t.changes[n:])
	t.changes = t.changes[:n]
	t.stmtStart = min(t.stmtStart, n)
}

func (t *txBuffer) savepoint(name string) {
	t.savepoints = append(t.savepoints, savepoint{name, len(t.changes)})
}

// rollbackTo drops what followed the named savepoint, which stays.
func (t *txBuffer) rollbackTo(name string) {
	for i := len(t.savepoints) - 1; i >= 0; i-- {
		if t.savepoints[i].name == name {
			t.truncate(t.savepoints[i].pos)
			t.savepoints = t.savepoints[:i+1]
			return
		}
	}
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
// its xid, or nil when it changed nothing; or, for a transaction that
// outgrew its bound, what was noted of it.
func (t *txBuffer) take() (*mirror.Batch, *txOverflow) {
	var b *mirror.Batch
	if len(t.changes) > 0 {
		b = &mirror.Batch{Changes: t.changes, Xid: t.xid}
	}
	o := t.overflow
	*t = txBuffer{}
	return b, o
}

// discard ends the transaction, dropping its changes.
func (t *txBuffer) discard() { *t = txBuffer{} }
