package proxy

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/protocol"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// This file is the server's side of the dual-write path: responses are
// paired with the requests that caused them (expect.go), captured rows are
// split from what the client sees and turned into row images, and each
// statement's completion is recorded.

// trackServer handles one upstream message of a tracking session. It
// returns what the client gets instead when replace is set (nil: nothing).
func (ss *session) trackServer(msg protocol.Message) (out []byte, replace bool) {
	ss.txMu.Lock()
	defer ss.txMu.Unlock()
	switch msg.Type {
	case protocol.MsgNoticeResponse, 'A', protocol.MsgParameterStatus:
		return nil, false // asynchronous: belongs to no request
	}
	e, ok := ss.exp.peek()
	if !ok {
		return nil, false
	}
	if e.shadow != nil {
		switch msg.Type {
		case 'T', 'D', 'C', protocol.MsgErrorResponse:
			ss.shadowServer(e, msg)
		case 's': // PortalSuspended: a partial result cannot be compared
			ss.srv.shadower.NotShadowed("portal suspended")
			ss.srv.shadower.Release(e.shadow.size)
		}
	}
	drop := func() ([]byte, bool) {
		if e.swallow {
			return nil, true
		}
		return nil, false
	}
	switch msg.Type {
	case '1', '2', '3': // ParseComplete, BindComplete, CloseComplete
		ss.exp.pop()
		return drop()
	case 't': // ParameterDescription, first half of a Describe S answer
		if e.kind == expDescribe && e.desc != nil {
			e.desc.paramTypes = parseParamDescription(msg.Body)
		}
		if e.kind == expDescribe && e.stmt != nil {
			types := parseParamDescription(msg.Body)
			e.stmt.paramTypes.Store(&types)
		}
		return drop()
	case 'n': // NoData
		if e.kind == expDescribe {
			ss.exp.pop()
			if e.desc != nil {
				e.desc.setReady()
			}
		}
		return drop()
	case 'T':
		return ss.trackRowDescription(e, msg)
	case 'D':
		l, st, mode, plan := e.captured()
		if l == nil {
			return nil, false
		}
		client, vals, err := l.splitDataRow(msg.Body, ss.vals)
		if err != nil {
			ss.log.Error("cannot split a captured row; its image is lost to the mirror", "err", err)
			ss.srv.mirroring.recordNotMirrored(st, "malformed captured row: "+err.Error())
			return nil, false
		}
		ss.vals = vals
		if mode.mirrored() {
			ss.captureRow(l, st, mode, plan, vals)
		}
		if lp := e.limited; lp != nil {
			if lp.sent >= int(e.limit) {
				lp.hold(client)
				return nil, true
			}
			lp.sent++
		}
		return client, true
	case 'C', 'I': // CommandComplete, EmptyQueryResponse
		switch e.kind {
		case expCommit:
			ss.resolveCommit(e.seq, nil, msg)
			ss.dropTx()
			return nil, true
		case expExecute:
			ss.exp.pop()
			if e.swallow { // the proxy's BEGIN
				ss.tx.explicit = true
				return nil, true
			}
			if lp := e.limited; lp != nil && e.resume {
				return lp.next(e.limit), true
			}
			if e.sqlEff != nil {
				e.sqlEff.done()
			}
			var st *rewrite.Statement
			if e.portal != nil {
				st = e.portal.st
			}
			ss.resolveCommit(e.seq, st, msg)
			if e.portal != nil {
				ss.statementComplete(e.portal.st, e.portal.mode, msg, e.portal)
			} else {
				ss.statementComplete(nil, modeNone, msg, nil)
			}
			if lp := e.limited; lp != nil {
				if out, ok := lp.ran(msg, e.limit); ok {
					return out, true
				}
			}
		case expQuery:
			if e.q.begin { // the proxy's BEGIN in front of the client's statements
				e.q.begin = false
				ss.tx.explicit = true
				return nil, true
			}
			if cs := e.q.copy; cs != nil {
				// The staging steps answer for the client's COPY: its
				// CommandComplete is held until the rows are captured.
				if !e.q.apply && bytes.HasPrefix(msg.Body, []byte("COPY ")) {
					cs.held = append([]byte(nil), msg.Raw...)
				}
				if e.q.apply && e.q.idx == 0 {
					ss.statementComplete(nil, modeCapture, msg, nil)
				}
				e.q.idx++
				e.q.cur = nil
				return nil, true
			}
			if f := e.q.effect(); f != nil {
				f.done()
				if f.hidden { // the proxy's own statement in front of an EXECUTE
					e.q.idx++
					return nil, true
				}
			}
			st, mode, _ := e.q.current()
			if st != nil && (st.TxOp == rewrite.Commit || st.TxOp == rewrite.Prepare) {
				ss.resolveCommit(e.seq, st, msg)
			}
			ss.statementComplete(st, mode, msg, nil)
			e.q.idx++
			e.q.cur = nil
		}
		return nil, false
	case 's': // PortalSuspended: more rows on the next Execute
		if e.kind == expExecute {
			ss.exp.pop()
		}
		return nil, false
	case protocol.MsgErrorResponse:
		ss.tx.statementFailed()
		ss.stmtRows = 0
		ss.path.errored()
		if e.seq != 0 {
			// The COMMIT failed (serialization, deferred constraint): the
			// journaled transaction did not happen.
			ss.srv.mirroring.resolve(e.seq, false)
			e.seq = 0
			ss.exp.setSeq(0)
		}
		switch e.kind {
		case expQuery:
			e.q.cur = nil
			if e.q.copy != nil {
				e.q.copy.failed = true
			}
			return nil, false
		case expSync, expFunc, expCommit:
			return nil, false // an error at Sync (e.g. a deferred constraint), from a function, or at the proxy's COMMIT
		}
		ss.exp.pop()
		if e.sqlEff != nil {
			e.sqlEff.failed()
		}
		if e.desc != nil {
			e.desc.setReady()
		}
		ss.skipToSync()
		return nil, false
	case protocol.MsgReadyForQuery:
		ss.exp.pop()
		if e.kind == expQuery {
			e.q.settle()
		}
		return ss.requestDone(e, msg)
	}
	return nil, false
}

// resolveCommit tells the journal how the COMMIT or PREPARE TRANSACTION
// st of a journaled transaction ended, from its CommandComplete: "COMMIT";
// "ROLLBACK" for a transaction that had failed; "PREPARE TRANSACTION",
// after which the gid stands for the transaction until COMMIT PREPARED or
// ROLLBACK PREPARED resolves it (resolvePrepared). The gid is taken only
// from the server's answer: a PREPARE that failed (its gid in use, say)
// must not take the gid of the transaction that holds it. An error
// resolves the transaction as aborted (trackServer).
func (ss *session) resolveCommit(seq uint64, st *rewrite.Statement, msg protocol.Message) {
	if seq == 0 || msg.Type != 'C' {
		return
	}
	tag, _, _ := protocol.CString(msg.Body)
	m := ss.srv.mirroring
	switch {
	case string(tag) != "PREPARE TRANSACTION":
		m.resolve(seq, string(tag) == "COMMIT")
	case st != nil:
		m.notePrepared(st.Name, seq)
	default:
		// Prepared, its gid unknown: the mirror asks the old database how
		// the transaction ended.
	}
	ss.exp.setSeq(0)
}

// skipToSync drops what the server will skip after an extended-protocol
// error, releasing anyone waiting for a skipped statement description.
func (ss *session) skipToSync() {
	for {
		e, ok := ss.exp.peek()
		if !ok || e.kind == expSync {
			return
		}
		if e.desc != nil {
			e.desc.setReady()
		}
		if e.beginParse {
			ss.beginLost.Store(true)
		}
		if e.sqlEff != nil {
			e.sqlEff.failed()
		}
		ss.exp.pop()
	}
}

func (ss *session) trackRowDescription(e expectation, msg protocol.Message) ([]byte, bool) {
	var mode stmtMode
	switch e.kind {
	case expDescribe:
		ss.exp.pop()
		if e.portal != nil {
			mode = e.portal.mode
		}
		if e.desc != nil {
			mode = modeCapture // only capture statements are described by the proxy
		}
	case expQuery:
		var st *rewrite.Statement
		st, mode, _ = e.q.current()
		if (mode == modeNone || mode == modeUnseen) && st != nil && st.Command == "EXECUTE" {
			mode = ss.strayCapture(e.q, st, msg.Body)
		}
	default:
		return nil, false
	}
	var l *layout
	if mode != modeNone && mode != modeUnseen {
		var err error
		if l, err = ss.layoutOf(msg.Body); err != nil {
			ss.log.Error("unexpected RowDescription for a captured write", "err", err)
		}
	}
	if e.kind == expQuery {
		e.q.cur = l
	}
	if e.desc != nil {
		e.desc.layout = l
		e.desc.setReady()
	}
	if e.swallow {
		return nil, true
	}
	if l == nil {
		return nil, false
	}
	if l.clientRowDesc != nil {
		return l.clientRowDesc, true
	}
	if e.kind == expDescribe {
		return []byte{'n', 0, 0, 0, 4}, true // NoData: the client's statement returns no rows
	}
	return nil, true
}

// captureRow turns one captured row into a row image in the transaction
// buffer. vals alias the reader's buffer: everything kept is copied.
func (ss *session) captureRow(l *layout, st *rewrite.Statement, mode stmtMode, plan *rewrite.Capture, vals [][]byte) {
	xid, err := strconv.ParseUint(string(vals[l.xidIdx]), 10, 64)
	if err != nil {
		ss.log.Error("captured row without a valid transaction id", "value", string(vals[l.xidIdx]))
	}
	ss.tx.xid = xid
	ss.stmtRows++
	oid, _ := strconv.ParseUint(string(vals[l.tabIdx]), 10, 32)
	m := ss.srv.mirroring
	if mode == modeStatement {
		// The statement is mirrored once, at its CommandComplete, unless
		// its table turns out to be one not mirrored (a temporary table
		// that hides a permanent one of the same name).
		if ss.stmtRows == 1 {
			_, _, ss.unresolved = ss.rowTable(uint32(oid), plan)
		}
		return
	}
	table, key, why := ss.rowTable(uint32(oid), plan)
	if why != "" {
		ss.unresolved = why
		return
	}
	if len(key) == 0 {
		m.markPKLess(table)
	}
	row := make([]mirror.Value, 0, l.rowEnd-l.rowStart)
	for _, v := range vals[l.rowStart:l.rowEnd] {
		row = append(row, textValue(v))
	}
	if ss.dates.Load() != datesISO {
		if err := ss.isoValues(l.cols, nil, row); err != nil {
			ss.unresolved = "captured date/time value not readable: " + err.Error()
			return
		}
	}
	fp := ""
	if st != nil {
		fp = st.Fingerprint
	}
	if len(l.oldKeyIdx) > 0 {
		oldKey := make([]mirror.Value, len(l.oldKeyIdx))
		for i, idx := range l.oldKeyIdx {
			oldKey[i] = textValue(vals[idx])
		}
		if ss.dates.Load() != datesISO {
			if err := ss.isoValues(l.cols, key, oldKey); err != nil {
				ss.unresolved = "captured date/time value not readable: " + err.Error()
				return
			}
		}
		changed := false
		for i := range l.oldKeyIdx {
			if nv := keyValue(l, row, key[i]); nv != oldKey[i] {
				changed = true
			}
		}
		if changed {
			ss.addChange(mirror.Change{Op: mirror.OpDelete, Table: table, KeyCols: key, Key: oldKey, Fingerprint: fp})
		}
	}
	switch plan.Op {
	case rewrite.CaptureDelete:
		if len(key) == 0 {
			return // handled as a statement
		}
		k := make([]mirror.Value, len(key))
		for i, c := range key {
			k[i] = keyValue(l, row, c)
		}
		ss.addChange(mirror.Change{Op: mirror.OpDelete, Table: table, KeyCols: key, Key: k, Fingerprint: fp})
	default:
		ss.addChange(mirror.Change{Op: mirror.OpUpsert, Table: table, Columns: l.cols, Row: row, KeyCols: key, Fingerprint: fp})
	}
}

// rowTable resolves the table of a captured row (see
// Mirroring.resolveTable). A table unknown to the catalog that the
// statement names as one of the session's temporary tables is that
// temporary table: the old database cannot say so while the transaction
// that created it is open, and asking would hold up the session.
func (ss *session) rowTable(oid uint32, plan *rewrite.Capture) (table string, key []string, reason string) {
	m := ss.srv.mirroring
	if plan != nil && ss.temps.has(plan.Table) && !m.knowsOID(oid) {
		return "", nil, reasonTemporary
	}
	return m.resolveTable(oid)
}

func keyValue(l *layout, row []mirror.Value, col string) mirror.Value {
	for i, c := range l.cols {
		if c.Name == col {
			return row[i]
		}
	}
	return mirror.Null
}

func textValue(v []byte) mirror.Value {
	if v == nil {
		return mirror.Null
	}
	return mirror.Value{Text: string(v)}
}

// statementComplete applies a finished statement's effect on the open
// transaction.
func (ss *session) statementComplete(st *rewrite.Statement, mode stmtMode, msg protocol.Message, p *portalState) {
	tag := ""
	if msg.Type == 'C' {
		t, _, _ := protocol.CString(msg.Body)
		tag = string(t)
	}
	if changesSearchPath(st) {
		ss.path.answered(st, true)
	}
	if tag == "ROLLBACK" {
		ss.path.rolledBack()
	}
	m := ss.srv.mirroring
	if mode == modeStatement && ss.stmtRows > 0 && st != nil && ss.unresolved == "" {
		if c, ok := ss.statementChange(st, p); ok {
			ss.addChange(c)
		}
	}
	if mode == modeTruncate && msg.Type == 'C' && st != nil {
		ss.truncateChanges(st)
	}
	if mode == modeUnseen && st != nil && writeTag(tag) {
		m.recordNotMirrored(st, "EXECUTE of a write the proxy did not see prepared")
	}
	if ss.unresolved != "" && st != nil {
		m.recordNotMirrored(st, ss.unresolved)
	}
	ss.stmtRows, ss.unresolved = 0, ""
	schemaChanged := false
	if st != nil && st.Kind == rewrite.DDL && ss.capture {
		schemaChanged = !ss.temps.isTemporaryDDL(st)
		ss.temps.ddlDone(st, ss.tx.explicit)
	}
	cmd, _, _ := strings.Cut(tag, " ")
	switch cmd {
	case "BEGIN", "START":
		ss.tx.explicit = true
	case "COMMIT":
		if strings.HasPrefix(tag, "COMMIT PREPARED") {
			if st != nil {
				m.resolvePrepared(st.Name, true)
			}
			break
		}
		// The images went to the journal before the COMMIT; anything left
		// arrived too late for that (a client that pipelined past the
		// proxy's wait) and goes now, after the commit.
		ss.journalLate()
		ss.dropTx()
		ss.tx.explicit = st != nil && st.TxChain
		ss.temps.txEnded(true)
	case "DISCARD":
		if tag == "DISCARD ALL" || tag == "DISCARD TEMP" {
			ss.temps.discard()
		}
	case "ROLLBACK":
		switch {
		case strings.HasPrefix(tag, "ROLLBACK PREPARED"):
			if st != nil {
				m.resolvePrepared(st.Name, false)
			}
		case st != nil && st.TxOp == rewrite.RollbackTo:
			if chunks := ss.tx.rollbackTo(st.Name); chunks != nil {
				ss.log.Error("ROLLBACK TO SAVEPOINT undid row images of a transaction larger than mirror.max_tx_bytes that were already journaled; the transaction will be dead-lettered without its rows and its tables marked dirty",
					"savepoint", st.Name)
				m.resolveAll(chunks, false)
			}
		default:
			ss.dropTx()
			ss.tx.explicit = st != nil && st.TxChain
			ss.temps.txEnded(false)
		}
	case "SAVEPOINT":
		if st != nil {
			ss.tx.savepoint(st.Name)
		}
	case "RELEASE":
		if st != nil {
			ss.tx.release(st.Name)
		}
	case "PREPARE":
		if tag == "PREPARE TRANSACTION" {
			ss.dropTx() // journaled before the PREPARE
		}
	}
	if schemaChanged {
		m.schemaChanged()
	}
	ss.tx.statementDone()
}

// writeTag reports whether a command tag is a write's.
func writeTag(tag string) bool {
	cmd, _, _ := strings.Cut(tag, " ")
	switch cmd {
	case "INSERT", "UPDATE", "DELETE", "MERGE":
		return true
	}
	return false
}

// statementChange builds the change that mirrors a statement on a table
// without a primary key, with the parameters the client bound.
func (ss *session) statementChange(st *rewrite.Statement, p *portalState) (mirror.Change, bool) {
	m := ss.srv.mirroring
	c := mirror.Change{Op: mirror.OpStatement, SQL: st.SQL, Fingerprint: st.Fingerprint}
	if len(st.WriteTables) > 0 {
		c.Table = st.WriteTables[0]
	}
	var args []mirror.Value
	if p != nil {
		for i, raw := range p.params {
			f := int16(0)
			if len(p.paramFormats) == 1 {
				f = p.paramFormats[0]
			} else if i < len(p.paramFormats) {
				f = p.paramFormats[i]
			}
			var types []uint32
			if p.desc != nil {
				types = p.desc.paramTypes
			}
			v, err := paramText(types, i, f, raw)
			if err != nil {
				m.recordNotMirrored(st, "binary parameter cannot be converted: "+err.Error())
				return c, false
			}
			args = append(args, v)
		}
	}
	c.Args = args
	if m.translate != nil {
		sql, argMap, err := m.translate(st.SQL)
		if err != nil {
			m.recordNotMirrored(st, "no MySQL translation: "+err.Error())
			return c, false
		}
		c.SQL = sql
		c.Args = make([]mirror.Value, len(argMap))
		for i, a := range argMap {
			if a < len(args) {
				c.Args[i] = args[a]
			}
		}
	}
	return c, true
}

var pgTypes = pgtype.NewMap()

// paramText returns a bound parameter in Postgres text format.
func paramText(types []uint32, i int, format int16, raw []byte) (mirror.Value, error) {
	if raw == nil {
		return mirror.Null, nil
	}
	if format == 0 {
		return mirror.Value{Text: string(raw)}, nil
	}
	if i >= len(types) {
		return mirror.Value{}, errors.New("parameter type unknown")
	}
	t, ok := pgTypes.TypeForOID(types[i])
	if !ok {
		return mirror.Value{}, errors.New("parameter type " + strconv.Itoa(int(types[i])) + " unknown")
	}
	v, err := t.Codec.DecodeValue(pgTypes, types[i], pgtype.BinaryFormatCode, raw)
	if err != nil {
		return mirror.Value{}, err
	}
	text, err := pgTypes.Encode(types[i], pgtype.TextFormatCode, v, nil)
	if err != nil {
		return mirror.Value{}, err
	}
	return mirror.Value{Text: string(text)}, nil
}

// requestDone handles the ReadyForQuery that ends a request. It returns
// what replaces it for the client (replace set, nil: nothing).
func (ss *session) requestDone(e expectation, msg protocol.Message) ([]byte, bool) {
	status := byte('I')
	if len(msg.Body) > 0 {
		status = msg.Body[0]
	}
	if e.kind == expQuery && e.q.copy != nil {
		return ss.copyStepDone(e, msg, status)
	}
	if e.convert {
		// The proxy's own transaction is still open: this is not the
		// client's ReadyForQuery. The client goroutine commits (or rolls
		// back) now; the ReadyForQuery of that ends the client's request.
		select {
		case ss.converted <- status:
		case <-ss.done:
		}
		return nil, true
	}
	if status == 'I' {
		if ss.tx.failed {
			ss.dropTx()
		} else {
			ss.journalLate()
		}
		ss.tx.explicit = false
	}
	ss.observeReady(msg)
	return nil, false
}
