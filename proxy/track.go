package proxy

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/protocol"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// This file is the dual-write path of a session: how client messages are
// rewritten so that the old database returns row images, and how its
// responses are split between the client (exactly what it would have seen
// without the proxy) and the mirror.

// capturePhase reports whether writes are mirrored in phase p.
func capturePhase(p config.Phase) bool { return p == config.DualWrite || p == config.ShadowRead }

// refreshPhase picks up a configuration change. It is called only between
// requests while no transaction is open, so a phase never changes inside a
// transaction.
func (ss *session) refreshPhase() {
	st := ss.srv.state.Load()
	if st == ss.st {
		return
	}
	ss.st = st
	ss.capture = ss.srv.mirroring != nil && capturePhase(st.cfg.Phase)
	if ss.capture && !ss.tracking.Load() {
		// From now on both goroutines pair responses with requests. A
		// session never stops tracking: statements it prepared with
		// capture columns must be re-prepared if the phase goes back.
		ss.tracking.Store(true)
	}
}

// planWrite decides how a statement is mirrored, recording why when it
// cannot be.
func (ss *session) planWrite(st *rewrite.Statement) (stmtMode, *rewrite.Capture) {
	m := ss.srv.mirroring
	if !ss.capture || m == nil || st == nil {
		return modeNone, nil
	}
	if st.Kind == rewrite.DDL {
		m.recordDrift(st)
		return modeNone, nil
	}
	if !st.IsWrite() {
		if st.Command == "EXECUTE" && st.Body != nil && st.Body.IsWrite() {
			m.recordNotMirrored(st, "EXECUTE of a write prepared with SQL PREPARE")
		} else if st.Kind == rewrite.Read && st.HasSideEffects {
			m.recordNotMirrored(st, "SELECT calling a function with side effects")
		} else if st.Kind == rewrite.Other && (st.Command == "CALL" || st.Command == "DO") {
			m.recordNotMirrored(st, st.Command+" (effects unknown)")
		}
		return modeNone, nil
	}
	switch st.Command {
	case "INSERT", "UPDATE", "DELETE":
	default:
		m.recordNotMirrored(st, st.Command+" is not mirrored yet")
		return modeNone, nil
	}
	plan, err := m.capturer.Plan(st.SQL)
	if err != nil {
		var nc *rewrite.NotCapturableError
		reason := "cannot capture: " + err.Error()
		if errors.As(err, &nc) {
			reason = nc.Reason
		}
		m.recordNotMirrored(st, reason)
		return modeNone, nil
	}
	if plan.Op != rewrite.CaptureInsert {
		if key, known := m.catalog.KeyOf(plan.Table); known && len(key) == 0 {
			// No key to apply row images by: mirror the statement itself,
			// which is only faithful if it computes nothing volatile.
			if st.HasVolatile {
				m.recordNotMirrored(st, "volatile function in a write to a table without a primary key")
				return modeNone, nil
			}
			if m.translate != nil {
				if _, _, err := m.translate(st.SQL); err != nil {
					m.recordNotMirrored(st, "no MySQL translation: "+err.Error())
					return modeNone, nil
				}
			}
			return modeStatement, plan
		}
	}
	return modeCapture, plan
}

// trackClient handles one client message of a tracking session. It returns
// the bytes to send upstream instead of the message when replace is set.
func (ss *session) trackClient(msg protocol.Message, w *upstreamWriter) (out []byte, replace bool) {
	switch msg.Type {
	case protocol.MsgQuery:
		return ss.trackQuery(msg)
	case protocol.MsgParse:
		return ss.trackParse(msg)
	case protocol.MsgBind:
		return ss.trackBind(msg, w)
	case 'D': // Describe
		if len(msg.Body) < 2 {
			return nil, false
		}
		name, _, _ := protocol.CString(msg.Body[1:])
		if msg.Body[0] == 'S' {
			var p *portalState
			if st := ss.stmts[string(name)]; st != nil {
				// Described as the server has it now.
				p = &portalState{st: st.st, mode: st.mode, plan: st.plan, desc: st.desc}
			}
			ss.exp.push(expectation{kind: expDescribe, portal: p})
			return nil, false
		}
		ss.exp.push(expectation{kind: expDescribe, portal: ss.tportals[string(name)]})
	case protocol.MsgExecute:
		portal, _, _ := protocol.CString(msg.Body)
		p := ss.tportals[string(portal)]
		if p != nil && p.st != nil {
			ss.srv.metrics.CountQuery(kindOf(p.st))
		} else {
			ss.srv.metrics.CountQuery(metrics.QueryUnparsed)
		}
		ss.exp.push(expectation{kind: expExecute, portal: p})
	case protocol.MsgClose:
		if len(msg.Body) > 0 {
			name, _, _ := protocol.CString(msg.Body[1:])
			if msg.Body[0] == 'S' {
				delete(ss.stmts, string(name))
			} else {
				delete(ss.tportals, string(name))
			}
		}
		ss.exp.push(expectation{kind: expClose})
	case protocol.MsgSync:
		ss.pending.push(request{sent: time.Now(), extended: true})
		ss.exp.push(expectation{kind: expSync, ticket: ss.srv.mirroring.seq.begin()})
	case protocol.MsgFunctionCall:
		ss.pending.push(request{sent: time.Now()})
		ss.exp.push(expectation{kind: expFunc, ticket: ss.srv.mirroring.seq.begin()})
	}
	return nil, false
}

func (ss *session) trackQuery(msg protocol.Message) ([]byte, bool) {
	ss.pending.push(request{sent: time.Now()})
	sql, _, _ := protocol.CString(msg.Body)
	stmts, _ := ss.srv.classifier.Classify(string(sql))
	q := &queryState{stmts: stmts, modes: make([]stmtMode, len(stmts)), plans: make([]*rewrite.Capture, len(stmts))}
	rewritten := false
	parts := make([]string, len(stmts))
	for i, st := range stmts {
		ss.srv.metrics.CountQuery(kindOf(st))
		parts[i] = st.SQL
		if st.Kind == rewrite.Unparsed {
			rewritten = false
			break
		}
		mode, plan := ss.planWrite(st)
		q.modes[i], q.plans[i] = mode, plan
		if mode != modeNone {
			parts[i] = plan.SQL
			rewritten = true
		}
	}
	ss.exp.push(expectation{kind: expQuery, q: q, ticket: ss.srv.mirroring.seq.begin()})
	if !rewritten {
		return nil, false
	}
	return encodeQuery(strings.Join(parts, ";\n")), true
}

func (ss *session) trackParse(msg protocol.Message) ([]byte, bool) {
	name, rest, _ := protocol.CString(msg.Body)
	sql, params, _ := protocol.CString(rest)
	st := ss.newStmt(string(sql), params)
	ss.stmts[string(name)] = st
	st.mode, st.plan = ss.planWrite(st.st)
	ss.exp.push(expectation{kind: expParse})
	st.desc = newStmtDesc()
	if st.mode == modeNone {
		st.serverSQL = st.sql
		st.desc.setReady()
		return nil, false
	}
	st.serverSQL = st.plan.SQL
	out := encodeParse(nil, string(name), st.plan.SQL, st.paramOIDs)
	// Learn the rewritten statement's shape now, so that Bind can ask for
	// the capture columns in text and Execute can split rows even if the
	// client never describes the statement.
	out = encodeDescribe(out, 'S', string(name))
	ss.exp.push(expectation{kind: expDescribe, desc: st.desc, swallow: true})
	return out, true
}

// trackBind re-prepares a statement whose server-side form no longer fits
// the phase, and makes sure the capture columns come back as text.
func (ss *session) trackBind(msg protocol.Message, w *upstreamWriter) ([]byte, bool) {
	portal, rest, _ := protocol.CString(msg.Body)
	name, _, _ := protocol.CString(rest)
	st := ss.stmts[string(name)]
	var prefix []byte
	p := &portalState{}
	if st != nil {
		prefix = ss.reprepare(string(name), st)
		p = &portalState{st: st.st, mode: st.mode, plan: st.plan, desc: st.desc}
	}
	if len(ss.tportals) >= maxPortals {
		clear(ss.tportals)
	}
	ss.tportals[string(portal)] = p
	ss.exp.push(expectation{kind: expBind})
	pass := func() ([]byte, bool) {
		if prefix != nil {
			return append(prefix, msg.Raw...), true
		}
		return nil, false
	}
	if p.mode == modeNone {
		return pass()
	}
	b, err := parseBind(msg.Body)
	if err != nil {
		return pass() // the server will say what is wrong
	}
	if p.mode == modeStatement {
		p.params = make([][]byte, len(b.params))
		for i, v := range b.params {
			if v != nil {
				p.params[i] = append([]byte{}, v...)
			}
		}
		p.paramFormats = b.paramFormats
	}
	if len(b.resultFormats) == 0 || (len(b.resultFormats) == 1 && b.resultFormats[0] == 0) {
		return pass() // every column comes back as text already
	}
	// The client asked for binary or per-column formats: extend them to
	// the capture columns, which must come back as text. That needs the
	// statement's column count, which the injected Describe brings.
	if !p.desc.isReady() {
		w.send(prefix)
		prefix = nil
		if !w.flush() || !p.desc.waitReady(30*time.Second) {
			return nil, false
		}
	}
	l := p.desc.layout
	if l == nil {
		return pass()
	}
	formats := make([]int16, l.total)
	for i := range l.clientCols {
		if len(b.resultFormats) == 1 {
			formats[i] = b.resultFormats[0]
		} else if i < len(b.resultFormats) {
			formats[i] = b.resultFormats[i]
		}
	}
	return append(prefix, b.encode(formats)...), true
}

// reprepare returns the messages that make the server's copy of a named
// statement match what the current phase needs (the capture form in
// dual-write, the client's own otherwise), or nil when it already does.
func (ss *session) reprepare(name string, st *stmtState) []byte {
	want, mode, plan := st.sql, modeNone, (*rewrite.Capture)(nil)
	if ss.capture && st.st != nil {
		mode, plan = ss.planWrite(st.st)
		if mode != modeNone {
			want = plan.SQL
		}
	}
	if want == st.serverSQL {
		return nil
	}
	var out []byte
	if name != "" {
		out = encodeClose(out, 'S', name)
		ss.exp.push(expectation{kind: expClose, swallow: true})
	}
	out = encodeParse(out, name, want, st.paramOIDs)
	ss.exp.push(expectation{kind: expParse, swallow: true})
	st.serverSQL, st.mode, st.plan = want, mode, plan
	st.desc = newStmtDesc()
	if mode != modeNone {
		out = encodeDescribe(out, 'S', name)
		ss.exp.push(expectation{kind: expDescribe, desc: st.desc, swallow: true})
	} else {
		st.desc.setReady()
	}
	return out
}

// trackServer handles one upstream message of a tracking session. It
// returns what the client gets instead when replace is set (nil: nothing).
func (ss *session) trackServer(msg protocol.Message) (out []byte, replace bool) {
	switch msg.Type {
	case protocol.MsgNoticeResponse, 'A', protocol.MsgParameterStatus:
		return nil, false // asynchronous: belongs to no request
	}
	e, ok := ss.exp.peek()
	if !ok {
		return nil, false
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
		var l *layout
		var st *rewrite.Statement
		var mode stmtMode
		var plan *rewrite.Capture
		switch e.kind {
		case expExecute:
			if e.portal != nil && e.portal.desc != nil {
				l, st, mode, plan = e.portal.desc.layout, e.portal.st, e.portal.mode, e.portal.plan
			}
		case expQuery:
			st, mode, plan = e.q.current()
			l = e.q.cur
		}
		if l == nil || mode == modeNone {
			return nil, false
		}
		client, vals, err := l.splitDataRow(msg.Body, ss.vals)
		if err != nil {
			ss.log.Error("cannot split a captured row; its image is lost to the mirror", "err", err)
			ss.srv.mirroring.recordNotMirrored(st, "malformed captured row: "+err.Error())
			return nil, false
		}
		ss.vals = vals
		ss.captureRow(l, st, mode, plan, vals)
		return client, true
	case 'C', 'I': // CommandComplete, EmptyQueryResponse
		switch e.kind {
		case expExecute:
			ss.exp.pop()
			if e.portal != nil {
				ss.statementComplete(e.portal.st, e.portal.mode, msg, e.portal)
			} else {
				ss.statementComplete(nil, modeNone, msg, nil)
			}
		case expQuery:
			st, mode, _ := e.q.current()
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
		ss.stmtRows, ss.stmtLSN = 0, 0
		if e.kind == expQuery {
			e.q.cur = nil
			return nil, false
		}
		if e.kind == expSync || e.kind == expFunc {
			return nil, false // an error at Sync (e.g. a deferred constraint) or from a function call
		}
		ss.exp.pop()
		if e.desc != nil {
			e.desc.setReady()
		}
		ss.skipToSync()
		return nil, false
	case protocol.MsgReadyForQuery:
		ss.exp.pop()
		ss.requestDone(e, msg)
		return nil, false
	}
	return nil, false
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
		_, mode, _ = e.q.current()
	default:
		return nil, false
	}
	var l *layout
	if mode != modeNone {
		var err error
		if l, err = parseLayout(msg.Body); err != nil {
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
	lsn, err := parseLSN(vals[l.lsnIdx])
	if err != nil {
		ss.log.Error("captured row without a valid LSN", "err", err)
	}
	ss.stmtRows++
	ss.stmtLSN = max(ss.stmtLSN, lsn)
	if mode == modeStatement {
		return // the statement is mirrored once, at its CommandComplete
	}
	oid, _ := strconv.ParseUint(string(vals[l.tabIdx]), 10, 32)
	m := ss.srv.mirroring
	table, key, ok := m.resolveTable(uint32(oid))
	if !ok {
		ss.unresolved++
		return
	}
	if len(key) == 0 {
		m.markPKLess(table)
	}
	row := make([]mirror.Value, 0, l.rowEnd-l.rowStart)
	for _, v := range vals[l.rowStart:l.rowEnd] {
		row = append(row, textValue(v))
	}
	fp := ""
	if st != nil {
		fp = st.Fingerprint
	}
	if len(l.oldKeyIdx) > 0 {
		oldKey := make([]mirror.Value, len(l.oldKeyIdx))
		changed := false
		for i, idx := range l.oldKeyIdx {
			oldKey[i] = textValue(vals[idx])
			if nv := keyValue(l, row, key[i]); nv != oldKey[i] {
				changed = true
			}
		}
		if changed {
			ss.tx.add(mirror.Change{Op: mirror.OpDelete, Table: table, KeyCols: key, Key: oldKey, Fingerprint: fp}, lsn)
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
		ss.tx.add(mirror.Change{Op: mirror.OpDelete, Table: table, KeyCols: key, Key: k, Fingerprint: fp}, lsn)
	default:
		ss.tx.add(mirror.Change{Op: mirror.OpUpsert, Table: table, Columns: l.cols, Row: row, KeyCols: key, Fingerprint: fp}, lsn)
	}
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
	m := ss.srv.mirroring
	if mode == modeStatement && ss.stmtRows > 0 && st != nil {
		if c, ok := ss.statementChange(st, p); ok {
			ss.tx.add(c, ss.stmtLSN)
		}
	}
	if ss.unresolved > 0 && st != nil {
		m.recordNotMirrored(st, "rows of a table missing from the catalog (temporary table?)")
	}
	ss.stmtRows, ss.stmtLSN, ss.unresolved = 0, 0, 0
	cmd, _, _ := strings.Cut(tag, " ")
	switch cmd {
	case "BEGIN", "START":
		ss.tx.explicit = true
	case "COMMIT":
		if strings.HasPrefix(tag, "COMMIT PREPARED") {
			if st != nil {
				m.mu.Lock()
				ptx := m.prepared[st.Name]
				delete(m.prepared, st.Name)
				m.mu.Unlock()
				if ptx != nil {
					ss.committed = append(ss.committed, committedTx(*ptx))
				}
			}
			break
		}
		b, lsn := ss.tx.take()
		if b != nil {
			ss.committed = append(ss.committed, committedTx{b, lsn})
		}
		ss.tx.explicit = st != nil && st.TxChain
	case "ROLLBACK":
		switch {
		case strings.HasPrefix(tag, "ROLLBACK PREPARED"):
			if st != nil {
				m.mu.Lock()
				delete(m.prepared, st.Name)
				m.mu.Unlock()
			}
		case st != nil && st.TxOp == rewrite.RollbackTo:
			ss.tx.rollbackTo(st.Name)
		default:
			ss.tx.discard()
			ss.tx.explicit = st != nil && st.TxChain
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
		if tag == "PREPARE TRANSACTION" && st != nil {
			b, lsn := ss.tx.take()
			if b != nil {
				m.mu.Lock()
				m.prepared[st.Name] = &preparedTx{b, lsn}
				m.mu.Unlock()
			}
		}
	}
	if st != nil && st.Kind == rewrite.DDL && ss.capture {
		m.schemaChanged()
	}
	ss.tx.statementDone()
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

// committedTx is a transaction the old database committed, waiting to be
// handed to the sequencer at its request's ReadyForQuery.
type committedTx struct {
	b   *mirror.Batch
	lsn uint64
}

// requestDone ends a request at its ReadyForQuery: an implicit transaction
// commits (or rolled back), and what committed goes to the sequencer.
func (ss *session) requestDone(e expectation, msg protocol.Message) {
	if len(msg.Body) > 0 && msg.Body[0] == 'I' {
		if ss.tx.failed {
			ss.tx.discard()
		} else if b, lsn := ss.tx.take(); b != nil {
			ss.committed = append(ss.committed, committedTx{b, lsn})
		}
	}
	switch e.kind {
	case expSync, expQuery, expFunc:
		ss.srv.mirroring.seq.end(e.ticket, ss.committed)
		clear(ss.committed)
		ss.committed = ss.committed[:0]
	}
}

func kindOf(st *rewrite.Statement) metrics.QueryKind { return metrics.QueryKind(st.Kind.String()) }

// bind is a decoded Bind message body.
type bind struct {
	head          []byte // portal and statement names
	paramFormats  []int16
	params        [][]byte
	paramsRaw     []byte // from the parameter format count to the result format count
	resultFormats []int16
}

func parseBind(body []byte) (*bind, error) {
	bad := errors.New("malformed Bind")
	_, rest, ok := protocol.CString(body)
	if !ok {
		return nil, bad
	}
	_, rest, ok = protocol.CString(rest)
	if !ok {
		return nil, bad
	}
	b := &bind{head: body[:len(body)-len(rest)]}
	start := rest
	readInt16 := func() (int, bool) {
		if len(rest) < 2 {
			return 0, false
		}
		v := int(int16(binary.BigEndian.Uint16(rest)))
		rest = rest[2:]
		return v, true
	}
	n, ok := readInt16()
	if !ok || n < 0 {
		return nil, bad
	}
	for range n {
		f, ok := readInt16()
		if !ok {
			return nil, bad
		}
		b.paramFormats = append(b.paramFormats, int16(f))
	}
	n, ok = readInt16()
	if !ok || n < 0 {
		return nil, bad
	}
	for range n {
		if len(rest) < 4 {
			return nil, bad
		}
		sz := int(int32(binary.BigEndian.Uint32(rest)))
		rest = rest[4:]
		if sz < 0 {
			b.params = append(b.params, nil)
			continue
		}
		if len(rest) < sz {
			return nil, bad
		}
		b.params = append(b.params, rest[:sz:sz])
		rest = rest[sz:]
	}
	b.paramsRaw = start[:len(start)-len(rest)]
	n, ok = readInt16()
	if !ok || n < 0 {
		return nil, bad
	}
	for range n {
		f, ok := readInt16()
		if !ok {
			return nil, bad
		}
		b.resultFormats = append(b.resultFormats, int16(f))
	}
	return b, nil
}

// encode returns the Bind message with other result formats.
func (b *bind) encode(resultFormats []int16) []byte {
	out := make([]byte, 0, protocol.HeaderLen+len(b.head)+len(b.paramsRaw)+2+2*len(resultFormats))
	out = append(out, 'B', 0, 0, 0, 0)
	out = append(out, b.head...)
	out = append(out, b.paramsRaw...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(resultFormats)))
	for _, f := range resultFormats {
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
	return out
}

func parseParamDescription(body []byte) []uint32 {
	if len(body) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+4*n {
		return nil
	}
	out := make([]uint32, n)
	for i := range n {
		out[i] = binary.BigEndian.Uint32(body[2+4*i:])
	}
	return out
}

func encodeQuery(sql string) []byte {
	out := make([]byte, 0, protocol.HeaderLen+len(sql)+1)
	out = append(out, 'Q', 0, 0, 0, 0)
	out = append(out, sql...)
	out = append(out, 0)
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
	return out
}

// encodeParse appends a Parse message; paramOIDs is the raw parameter
// type section (count and OIDs) of the client's Parse.
func encodeParse(out []byte, name, sql string, paramOIDs []byte) []byte {
	start := len(out)
	out = append(out, 'P', 0, 0, 0, 0)
	out = append(out, name...)
	out = append(out, 0)
	out = append(out, sql...)
	out = append(out, 0)
	if len(paramOIDs) == 0 {
		out = append(out, 0, 0)
	} else {
		out = append(out, paramOIDs...)
	}
	binary.BigEndian.PutUint32(out[start+1:], uint32(len(out)-start-1))
	return out
}

func encodeDescribe(out []byte, kind byte, name string) []byte {
	out = append(out, 'D')
	out = binary.BigEndian.AppendUint32(out, uint32(4+1+len(name)+1))
	out = append(out, kind)
	out = append(out, name...)
	return append(out, 0)
}

func encodeClose(out []byte, kind byte, name string) []byte {
	out = append(out, 'C')
	out = binary.BigEndian.AppendUint32(out, uint32(4+1+len(name)+1))
	out = append(out, kind)
	out = append(out, name...)
	return append(out, 0)
}
