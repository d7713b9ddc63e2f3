package proxy

import (
	"github.com/shadowproxy/shadowproxy/mirror"
)

// txBuffer holds the row images of the transaction a session has open on
// the old database, until it commits (they go to the mirror) or rolls back
// (they are dropped). Savepoints mark positions so ROLLBACK TO drops only
// what it undoes. Owned by the session's upstream goroutine.
type txBuffer struct {
	changes    []mirror.Change
	xid        uint64 // the transaction's id on the old database, from its rows
	savepoints []savepoint
	stmtStart  int  // where the current statement's changes begin
	explicit   bool // inside BEGIN ... COMMIT
	failed     bool // an implicit transaction failed and will roll back
}

type savepoint struct {
	name string
	pos  int
}

func (t *txBuffer) add(c mirror.Change) { t.changes = append(t.changes, c) }

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
// its xid, or nil when it changed nothing.
func (t *txBuffer) take() *mirror.Batch {
	var b *mirror.Batch
	if len(t.changes) > 0 {
		b = &mirror.Batch{Changes: t.changes, Xid: t.xid}
	}
	*t = txBuffer{}
	return b
}

// discard ends the transaction, dropping its changes.
func (t *txBuffer) discard() { *t = txBuffer{} }
