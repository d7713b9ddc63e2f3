package proxy

import (
	"time"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// This file takes a transaction's row images to the mirror's journal: the
// proxy's own BEGIN for autocommit writes, the journal write before a
// COMMIT reaches the old database, and what ends a transaction otherwise.

// noteTxControl follows the transaction state the server will be in once
// a forwarded statement runs, and whether the proxy's prepared BEGIN (see
// injectBegin) survives it.
func (ss *session) noteTxControl(st *rewrite.Statement) {
	if st == nil {
		return
	}
	if st.Kind == rewrite.Session {
		if st.Command == "DEALLOCATE ALL" || st.Command == "DISCARD ALL" || st.Command == "DEALLOCATE" && st.Name == beginStmt {
			ss.beginPrepared = false
		}
		return
	}
	if st.Kind != rewrite.Tx {
		return
	}
	switch st.TxOp {
	case rewrite.Begin:
		ss.clientTx = true
	case rewrite.Commit, rewrite.Rollback, rewrite.Prepare:
		ss.clientTx = st.TxChain
		ss.txWrote = false
		clear(ss.limited)
	}
}

// injectBegin returns the messages that open a transaction in the middle of
// an extended-protocol batch, on a statement and portal of the proxy's own
// so the client's unnamed ones are left alone. Postgres turns the batch's
// implicit transaction into this explicit one.
//
// The statement is prepared once per connection, and again when it may be
// gone: after the client's DEALLOCATE ALL or DISCARD ALL (psycopg sends
// DEALLOCATE ALL after a rollback), after the server skipped the Parse for
// an earlier error in its batch (beginLost), and whenever earlier requests
// are still unanswered, since one of them may yet turn out to have done
// either. Close first makes preparing again harmless when it still exists.
func (ss *session) injectBegin() []byte {
	var out []byte
	if ss.beginLost.Swap(false) {
		ss.beginPrepared = false
	}
	if !ss.beginPrepared || ss.pending.len() > 0 {
		out = encodeClose(out, 'S', beginStmt)
		ss.exp.push(expectation{kind: expClose, swallow: true})
		out = encodeParse(out, beginStmt, "BEGIN", nil)
		ss.exp.push(expectation{kind: expParse, swallow: true, beginParse: true})
		ss.beginPrepared = true
	}
	out = encodeBind(out, beginStmt, beginStmt)
	ss.exp.push(expectation{kind: expBind, swallow: true})
	out = encodeExecute(out, beginStmt)
	ss.exp.push(expectation{kind: expExecute, swallow: true})
	return out
}

const beginStmt = "__shadowproxy_begin"

// journalBeforeCommit writes the open transaction's row images to the
// mirror's journal before the client's COMMIT (or PREPARE TRANSACTION) is
// forwarded. The images of statements still in flight must arrive first:
// the server is asked to flush its output and the proxy waits for every
// earlier response. It returns the journal position, or 0; the server's
// answer resolves it (resolveCommit).
func (ss *session) journalBeforeCommit(w *upstreamWriter, st *rewrite.Statement) uint64 {
	if !ss.txWrote {
		return 0
	}
	if ss.exp.resultsDue() {
		// Results are still due (a pipelining client): have the server
		// send them now and wait for their rows. Usually the client has
		// read its results before committing and there is nothing to wait
		// for.
		w.send(flushMsg)
		if !w.flush() || !ss.waitResponses() {
			// The COMMIT goes out all the same: what is left reaches the
			// journal late (journalLate), and the chunks' outcome is the
			// old database's to tell.
			ss.txMu.Lock()
			ss.tx.forgetChunks()
			ss.txMu.Unlock()
			return 0
		}
	}
	m := ss.srv.mirroring
	ss.txMu.Lock()
	b, chunks, over := ss.tx.take()
	ss.txMu.Unlock()
	m.uncaptured(b, over)
	seq, ok := m.journalTx(b, chunks)
	if !ok {
		return 0
	}
	return seq
}

var flushMsg = []byte{'H', 0, 0, 0, 4}

// waitResponses waits until the old database has answered everything
// forwarded so far. Bounded: a client that pipelines without reading could
// otherwise deadlock with the proxy.
func (ss *session) waitResponses() bool {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-ss.exp.emptied():
		return true
	case <-ss.done:
		return false
	case <-t.C:
		ss.log.Warn("timed out waiting for responses before a COMMIT; its row images reach the mirror late")
		return false
	}
}

// finishConverted ends an autocommit request the proxy ran in a
// transaction of its own: once the old database has answered it (the
// upstream goroutine reports the transaction status), the images go to the
// journal and the proxy commits — or rolls back after an error, as the
// autocommit transaction would have. The client's next messages wait until
// then, so none of them runs inside the proxy's transaction.
func (ss *session) finishConverted(w *upstreamWriter) {
	if !w.flush() {
		return
	}
	if status, ok := ss.awaitStatus(); ok {
		ss.endProxyTx(w, status)
	}
}

// endProxyTx ends the transaction the proxy opened for an autocommit
// request: commit after journaling its images, or roll back when it
// failed, as the autocommit transaction would have.
func (ss *session) endProxyTx(w *upstreamWriter, status byte) {
	ss.clientTx, ss.txWrote = false, false
	ss.txMu.Lock()
	failed := status != 'T' || ss.tx.failed
	b, chunks, over := ss.tx.take()
	ss.txMu.Unlock()
	m := ss.srv.mirroring
	if !failed {
		m.uncaptured(b, over)
	}
	if failed {
		m.resolveAll(chunks, false)
		ss.exp.push(expectation{kind: expCommit})
		if status == 'I' {
			// No transaction is open: an earlier error in the batch made
			// the server skip the proxy's BEGIN. A ROLLBACK would answer
			// with a warning the client never caused; an empty query
			// brings the ReadyForQuery that ends the client's request.
			w.send(encodeQuery(""))
			return
		}
		w.send(encodeQuery("ROLLBACK"))
		return
	}
	seq, _ := m.journalTx(b, chunks)
	ss.exp.push(expectation{kind: expCommit, seq: seq})
	w.send(encodeQuery("COMMIT"))
}

// addChange adds a row image to the open transaction, within
// mirror.max_tx_bytes: past it the images are journaled in chunks (see
// txBuffer). Not on the event loop, which must never wait for the disk
// (a first spill writes max_tx_bytes, fsync = always waits for an fsync):
// there the spill is left due, and the next captured row hands the session
// to its goroutines (rowMayWait); anything left before then goes with the
// COMMIT.
func (ss *session) addChange(c mirror.Change) {
	max := ss.srv.mirroring.maxTxBytes.Load()
	if ss.tx.add(c, max) && !ss.inLoop {
		ss.spill(max)
	}
}

// spill journals the open transaction's images as pending chunks.
func (ss *session) spill(max int64) {
	m := ss.srv.mirroring
	chunks, err := ss.tx.spill(min(max, maxChunkBytes), m.journalChunk)
	if err != nil {
		ss.log.Error("a transaction's row images outgrew mirror.max_tx_bytes and cannot be journaled in chunks; it will be dead-lettered without its rows and its tables marked dirty",
			"xid", ss.tx.xid, "err", err)
		m.resolveAll(chunks, false)
	}
}

// dropTx ends the open transaction without its images reaching the mirror
// (it rolled back, or they are journaled already) and resolves the chunks
// left in the buffer as aborted.
func (ss *session) dropTx() {
	if chunks := ss.tx.discard(); chunks != nil {
		ss.srv.mirroring.resolveAll(chunks, false)
	}
}

// abandonTx settles, as the session ends, the transaction it leaves open:
// the old database rolls it back as the connection closes, so its chunks
// are resolved as aborted. The chunks of COMMITs still unanswered are left
// to the mirror, which asks the old database how they ended.
func (ss *session) abandonTx() {
	m := ss.srv.mirroring
	if m == nil {
		return
	}
	ss.txMu.Lock()
	if chunks := ss.tx.discard(); chunks != nil {
		ss.log.Info("the session ended inside a transaction journaled in chunks; they are resolved as aborted", "chunks", len(chunks))
		m.resolveAll(chunks, false)
	}
	ss.txMu.Unlock()
	if m.nChunked.Load() > 0 {
		for _, seq := range ss.exp.seqs() {
			m.takeChunks(seq)
		}
	}
}

// journalLate journals images left in the buffer once their transaction
// committed: an autocommit write the proxy could not put in a transaction
// of its own, or rows that arrived after the proxy stopped waiting before
// a COMMIT. They are correct but ordered by when they arrive, not by the
// commit; a crash before this write would lose them.
func (ss *session) journalLate() {
	m := ss.srv.mirroring
	b, chunks, over := ss.tx.take()
	m.uncaptured(b, over)
	seq, ok := m.journalTx(b, chunks)
	if !ok {
		return
	}
	m.resolve(seq, true)
	if b != nil {
		ss.log.Warn("row images journaled after their commit", "changes", len(b.Changes))
	}
}
