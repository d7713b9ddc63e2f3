package proxy

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/protocol"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// This file is the dual-write path of a session: how client messages are
// rewritten so that the old database returns row images, how its responses
// are split between the client (exactly what it would have seen without the
// proxy) and the mirror, and how each transaction's images reach the
// mirror's journal before its COMMIT reaches the old database.
//
// Autocommit writes commit on the server before the proxy sees their rows,
// so the proxy runs them in a transaction of its own (BEGIN in front of the
// client's statements, its own COMMIT after them) and holds the client's
// next messages until that COMMIT is sent. The client sees exactly the
// autocommit exchange; it pays one more round trip to the old database.
//
// The server's side is in trackserver.go, the transaction's way to the
// journal in txcommit.go, COPY FROM in copycapture.go, and the messages the
// proxy decodes and builds itself in wire.go.

// capturePhase reports whether writes are mirrored in phase p.
func capturePhase(p config.Phase) bool { return p == config.DualWrite || p == config.ShadowRead }

// refreshPhase picks up a configuration change. It is called only between
// requests while no transaction is open, so a phase never changes inside a
// transaction.
func (ss *session) refreshPhase() {
	ss.clientTx, ss.txWrote = false, false
	st := ss.srv.state.Load()
	if st == ss.st {
		return
	}
	ss.st = st
	ss.capture = ss.srv.mirroring != nil && capturePhase(st.cfg.Phase)
	ss.shadowing = ss.capture && ss.srv.shadower != nil && shadowPhase(st.cfg.Phase)
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
		if !ss.temporaryDDL(st) {
			m.recordDrift(st)
		}
		return modeNone, nil
	}
	if !st.IsWrite() {
		if st.Kind == rewrite.Read && st.HasSideEffects {
			m.recordNotMirrored(st, "SELECT calling a function with side effects")
		} else if st.Kind == rewrite.Other && (st.Command == "CALL" || st.Command == "DO") {
			m.recordNotMirrored(st, st.Command+" (effects unknown)")
		} else if why := ss.callsWritingFunction(st); why != "" {
			m.recordNotMirrored(st, "calls a function that may write tables ("+why+")")
		}
		return modeNone, nil
	}
	if why := ss.callsWritingFunction(st); why != "" {
		// The write's own rows are captured as usual; what the function
		// writes is not.
		m.recordNotMirrored(st, "calls a function that may write tables ("+why+")")
	}
	if ss.dates.Load() == datesUnreadable {
		// Row images are read back as text in the session's DateStyle,
		// which the proxy cannot turn into ISO.
		m.recordNotMirrored(st, "session DateStyle the proxy cannot read")
		return modeNone, nil
	}
	switch st.Command {
	case "INSERT", "UPDATE", "DELETE":
	case "TRUNCATE TABLE":
		return ss.planTruncate(st)
	case "COPY FROM":
		m.recordNotMirrored(st, "COPY FROM in the extended protocol or in a multi-statement query")
		return modeNone, nil
	case "SELECT":
		m.recordNotMirrored(st, "write inside a data-modifying WITH (its rows are not captured)")
		return modeNone, nil
	case "EXPLAIN":
		// EXPLAIN ANALYZE runs the write and returns its plan, never its
		// rows, so there is nothing to capture them with.
		m.recordNotMirrored(st, "EXPLAIN ANALYZE of a write (it runs the write; its rows cannot be captured)")
		return modeNone, nil
	default:
		m.recordNotMirrored(st, st.Command+" is not mirrored yet")
		return modeNone, nil
	}
	mode, plan, reason := ss.planCapture(st, true)
	if reason != "" {
		m.recordNotMirrored(st, reason)
		return modeNone, nil
	}
	return mode, plan
}

// callsWritingFunction returns why a statement calls a user-defined
// function that may write tables (schema.Catalog.FunctionMayWrite), or "".
func (ss *session) callsWritingFunction(st *rewrite.Statement) string {
	m := ss.srv.mirroring
	if m == nil {
		return ""
	}
	for _, f := range st.Functions {
		if why := m.catalog.FunctionMayWrite(f); why != "" {
			return why
		}
	}
	return ""
}

// planCapture plans the capture of an INSERT, UPDATE or DELETE, or of a
// PREPARE of one (see rewrite.PlanCapture), and says why when it cannot be
// captured. An UPDATE or DELETE of a table without a primary key is
// mirrored as a statement (modeStatement) where asStatement allows it.
func (ss *session) planCapture(st *rewrite.Statement, asStatement bool) (stmtMode, *rewrite.Capture, string) {
	m := ss.srv.mirroring
	plan, err := m.capturer.Plan(st.SQL)
	if err != nil {
		var nc *rewrite.NotCapturableError
		if errors.As(err, &nc) {
			return modeNone, nil, nc.Reason
		}
		return modeNone, nil, "cannot capture: " + err.Error()
	}
	if plan.Op == rewrite.CaptureInsert {
		return modeCapture, plan, ""
	}
	if key, known := m.catalog.KeyOf(plan.Table); !known || len(key) > 0 {
		return modeCapture, plan, ""
	}
	if !asStatement {
		return modeStatement, plan, "" // the caller says why not
	}
	// No key to apply row images by: mirror the statement itself, which
	// is only faithful if it computes nothing volatile.
	switch {
	case st.HasVolatile:
		return modeNone, nil, "volatile function in a write to a table without a primary key"
	case ss.dates.Load() != datesISO:
		// The statement's own date literals would be read by the new
		// database in its DateStyle, not the session's.
		return modeNone, nil, "session DateStyle is not ISO (a table without a primary key is mirrored as a statement)"
	}
	if m.translate != nil {
		if _, _, err := m.translate(st.SQL); err != nil {
			return modeNone, nil, "no MySQL translation: " + err.Error()
		}
	}
	return modeStatement, plan, ""
}

// planTruncate checks that a TRUNCATE can be mirrored as a statement.
func (ss *session) planTruncate(st *rewrite.Statement) (stmtMode, *rewrite.Capture) {
	m := ss.srv.mirroring
	tr, err := rewrite.ParseTruncate(st.SQL)
	if err != nil {
		m.recordNotMirrored(st, "cannot parse TRUNCATE: "+err.Error())
		return modeNone, nil
	}
	ss.txMu.Lock()
	temp := slices.ContainsFunc(tr.Tables, ss.temps.has)
	ss.txMu.Unlock()
	if temp {
		m.recordNotMirrored(st, "TRUNCATE of a temporary table")
		return modeNone, nil
	}
	for _, t := range tr.Tables {
		if _, known := m.catalog.KeyOf(t); !known {
			m.recordNotMirrored(st, "TRUNCATE of a table missing from the catalog (temporary table?)")
			return modeNone, nil
		}
	}
	if m.translate != nil && tr.Cascade {
		m.recordNotMirrored(st, "TRUNCATE ... CASCADE has no MySQL form")
		return modeNone, nil
	}
	return modeTruncate, nil
}

// truncateChanges mirrors a TRUNCATE that succeeded: the statement itself
// for Postgres, a DELETE per table for MySQL (whose TRUNCATE would commit
// the transaction it is applied in).
func (ss *session) truncateChanges(st *rewrite.Statement) {
	m := ss.srv.mirroring
	tr, err := rewrite.ParseTruncate(st.SQL)
	if err != nil {
		return
	}
	if m.translate == nil {
		table := ""
		if len(tr.Tables) > 0 {
			table = qualify(tr.Tables[0])
		}
		ss.addChange(mirror.Change{Op: mirror.OpStatement, Table: table, SQL: st.SQL, Fingerprint: st.Fingerprint})
		return
	}
	for _, t := range tr.Tables {
		ss.addChange(mirror.Change{Op: mirror.OpStatement, Table: qualify(t), SQL: "DELETE FROM " + mysqlTable(t), Fingerprint: st.Fingerprint})
	}
}

// qualify returns "schema.table" for a name as written, with unqualified
// names in public (the proxy resolves names through search_path "public").
func qualify(name string) string {
	if strings.Contains(name, ".") {
		return name
	}
	return "public." + name
}

// mysqlTable quotes a table for MySQL: public tables are in the target
// database, other schemas are databases.
func mysqlTable(name string) string {
	q := func(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
	schema, table, ok := strings.Cut(qualify(name), ".")
	if !ok || schema == "public" {
		return q(table)
	}
	return q(schema) + "." + q(table)
}

// trackClient handles one client message of a tracking session. It returns
// the bytes to send upstream instead of the message when replace is set.
func (ss *session) trackClient(msg protocol.Message, w *upstreamWriter) (out []byte, replace bool) {
	switch msg.Type {
	case 'c', 'f': // CopyDone, CopyFail
		if cs := ss.copyWait; cs != nil {
			ss.copyWait = nil
			w.send(msg.Raw)
			ss.copyFinish(w, cs)
			return nil, true
		}
	case protocol.MsgQuery:
		return ss.trackQuery(msg, w)
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
			var prefix []byte
			st := ss.stmts[string(name)]
			if st == nil {
				st, prefix = ss.sqlParsed(string(name))
			}
			if st != nil {
				// Described as the server has it now.
				p = &portalState{st: st.st, mode: st.mode, plan: st.plan, desc: st.desc}
			}
			ss.exp.push(expectation{kind: expDescribe, portal: p, stmt: st})
			if prefix != nil {
				return append(prefix, msg.Raw...), true
			}
			return nil, false
		}
		ss.exp.push(expectation{kind: expDescribe, portal: ss.tportals[string(name)]})
	case protocol.MsgExecute:
		portal, _, _ := protocol.CString(msg.Body)
		p := ss.tportals[string(portal)]
		var st *rewrite.Statement
		if p != nil {
			st = p.st
		}
		if st != nil {
			ss.srv.metrics.CountQuery(kindOf(st))
			if changesSearchPath(st) {
				ss.path.sending()
			}
		} else {
			ss.srv.metrics.CountQuery(metrics.QueryUnparsed)
		}
		e := expectation{kind: expExecute, portal: p}
		var prefix []byte
		raw, lifted := msg.Raw, false
		if lp := ss.limited[string(portal)]; lp != nil {
			// A captured write with the client's own RETURNING, already
			// run whole (below): its rows come from the proxy.
			e.portal, e.limited, e.resume, e.limit = nil, lp, true, executeLimit(msg.Body)
			p = nil
		} else if limit := executeLimit(msg.Body); p != nil && p.plan != nil && limit != 0 {
			// A row limit on a captured write would suspend the portal on
			// the captured rows, and rows the client never fetches would
			// never be captured. The write runs whole instead: the proxy
			// hands the client its rows limit by limit (see limitedPortal).
			// A statement without RETURNING has no rows for the client, so
			// its limit changes nothing (PgJDBC sends 1 for every
			// executeUpdate and batch).
			raw, lifted = encodeExecute(nil, string(portal)), true
			if p.plan.ClientReturning {
				lp := &limitedPortal{}
				if ss.limited == nil {
					ss.limited = map[string]*limitedPortal{}
				}
				ss.limited[string(portal)] = lp
				e.limited, e.limit = lp, limit
			}
		}
		switch {
		case p != nil && p.mode.mirrored() && !ss.clientTx:
			// An autocommit write: open a transaction of the proxy's own
			// first; it is committed after the client's Sync.
			prefix = ss.injectBegin()
			ss.batchConverted = true
			ss.clientTx = true
			ss.txWrote = true
		case p != nil && p.mode.mirrored():
			ss.txWrote = true
		case st != nil && (st.TxOp == rewrite.Commit || st.TxOp == rewrite.Prepare):
			e.seq = ss.journalBeforeCommit(w, st)
		case p != nil && p.shadow && !ss.txWrote && executeLimit(msg.Body) == 0:
			// A shadowed read: learn the portal's result shape (with its
			// formats) first, from the client's own Describe of the portal
			// just before (as libpq sends), else on a Describe whose answer
			// the client never sees.
			e.shadow = ss.newShadowCapture(st, p.sql, p.paramOIDs, p.params, p.paramFormats, p.resultFormats)
			if !ss.exp.shareDescribe(p, e.shadow) {
				prefix = encodeDescribe(nil, 'P', string(portal))
				ss.exp.push(expectation{kind: expDescribe, swallow: true, shadow: e.shadow})
			}
		}
		if st != nil && st.Kind == rewrite.Session {
			_, e.sqlEff = ss.sqlSession(st, false)
		}
		ss.noteTxControl(st)
		ss.exp.push(e)
		if prefix != nil || lifted {
			return append(prefix, raw...), true
		}
	case protocol.MsgClose:
		if len(msg.Body) > 0 {
			name, _, _ := protocol.CString(msg.Body[1:])
			if msg.Body[0] == 'S' {
				delete(ss.stmts, string(name))
			} else {
				delete(ss.tportals, string(name))
				delete(ss.limited, string(name))
			}
		}
		ss.exp.push(expectation{kind: expClose})
	case protocol.MsgSync:
		ss.pending.push(request{sent: time.Now(), extended: true})
		if !ss.clientTx || ss.batchConverted {
			clear(ss.limited) // the transaction ends, and its portals
		}
		convert := ss.batchConverted
		ss.batchConverted = false
		ss.exp.push(expectation{kind: expSync, convert: convert})
		if convert {
			w.send(msg.Raw)
			ss.finishConverted(w)
			return nil, true
		}
	case protocol.MsgFunctionCall:
		ss.pending.push(request{sent: time.Now()})
		ss.exp.push(expectation{kind: expFunc})
	}
	return nil, false
}

// clientMayWait reports whether trackClient could wait while handling
// msg: for the old database's answers (an autocommit write the proxy runs
// in a transaction of its own, a COMMIT whose rows are still due, a staged
// COPY, a Bind that needs its capture form's description), for an fsync of
// the journal, or for the catalog reload after DDL. It changes nothing.
// The event loop serves every session on one goroutine and must never
// wait: it hands a session to its own goroutines before such a message.
// Keep it in step with trackClient and what it calls.
func (ss *session) clientMayWait(msg protocol.Message) bool {
	switch msg.Type {
	case 'c', 'f': // CopyDone, CopyFail
		return ss.copyWait != nil
	case protocol.MsgSync:
		return ss.batchConverted // finishConverted
	case protocol.MsgQuery:
		if !ss.capture {
			return false
		}
		sql, _, _ := protocol.CString(msg.Body)
		stmts, _ := ss.srv.classifier.Classify(string(sql))
		for i, st := range stmts {
			switch {
			case st.Kind == rewrite.Write && !ss.clientTx, // converted to a transaction of the proxy's own
				st.Command == "EXECUTE" && !ss.clientTx && ss.executesWrite(st.Name, stmts[:i]),
				st.Kind == rewrite.DDL && !ss.temporaryDDL(st),
				st.Command == "COPY FROM",
				isCommit(st) && ss.commitMayWait():
				return true
			}
		}
	case protocol.MsgBind:
		return ss.bindMayWait(msg.Body)
	case protocol.MsgExecute:
		portal, _, _ := protocol.CString(msg.Body)
		p := ss.tportals[string(portal)]
		if p == nil || p.st == nil {
			return false
		}
		return ss.capture && p.st.Kind == rewrite.DDL && !ss.temporaryDDL(p.st) || isCommit(p.st) && ss.commitMayWait()
	}
	return false
}

func isCommit(st *rewrite.Statement) bool {
	return st.Kind == rewrite.Tx && (st.TxOp == rewrite.Commit || st.TxOp == rewrite.Prepare)
}

// commitMayWait reports whether journalBeforeCommit could wait: for rows
// still due from the old database, or for an fsync of the journal.
func (ss *session) commitMayWait() bool {
	return ss.txWrote && (ss.exp.resultsDue() || ss.srv.mirroring.journal.SyncsEachWrite())
}

// bindMayWait reports whether trackBind could wait for the description of
// a statement's capture form (see trackBind).
func (ss *session) bindMayWait(body []byte) bool {
	_, rest, _ := protocol.CString(body)
	name, _, _ := protocol.CString(rest)
	st := ss.stmts[string(name)]
	switch {
	case st == nil:
		// A statement prepared with SQL PREPARE: described anew.
		e := ss.sqlStmts[string(name)]
		return e != nil && e.plan != nil && !textResults(body)
	case st.plannedFor != ss.st || ss.executeStale(st):
		return true // re-prepared: a new description is due
	case st.plan == nil || st.desc.isReady():
		return false
	case st.mode != modeStatement && textResults(body):
		return false
	}
	b, err := parseBind(body)
	if err != nil {
		return false
	}
	return !(len(b.resultFormats) == 0 || len(b.resultFormats) == 1 && b.resultFormats[0] == 0)
}

// captured returns how a DataRow answering e is captured: l is nil when
// its rows are not.
func (e expectation) captured() (l *layout, st *rewrite.Statement, mode stmtMode, plan *rewrite.Capture) {
	switch e.kind {
	case expExecute:
		if e.portal != nil && e.portal.desc != nil {
			l, st, mode, plan = e.portal.desc.layout, e.portal.st, e.portal.mode, e.portal.plan
		}
	case expQuery:
		st, mode, plan = e.q.current()
		l = e.q.cur
	}
	if mode == modeNone || mode == modeUnseen {
		l = nil
	}
	return l, st, mode, plan
}

// rowMayWait reports whether trackServer could wait on a DataRow: a
// captured row of a table the catalog does not know makes the proxy look
// the table up on the old database (see Mirroring.resolveTable), and one
// of a transaction whose images outgrew their bound journals them (see
// addChange).
func (ss *session) rowMayWait(body []byte) bool {
	e, ok := ss.exp.peek()
	if !ok {
		return false
	}
	l, _, mode, plan := e.captured()
	if l == nil || !mode.mirrored() {
		return false
	}
	if ss.tx.due {
		return true // the images outgrew their bound: spill them (see addChange)
	}
	v, ok := dataRowColumn(body, l.tabIdx)
	if !ok || string(v) == ss.knownOID {
		return false // malformed (trackServer reports it), or as the last row's
	}
	oid, err := strconv.ParseUint(string(v), 10, 32)
	if err != nil {
		return false
	}
	m := ss.srv.mirroring
	if _, _, ok := m.catalog.TableByOID(uint32(oid)); ok {
		// Remembered only while the catalog knows it: a table does not
		// leave the catalog while its rows still come back.
		ss.knownOID = string(v)
		return false
	}
	if m.knowsOID(uint32(oid)) {
		return false
	}
	return plan == nil || !ss.temps.has(plan.Table) // see rowTable
}

// serverMayWait reports whether trackServer could wait on a ReadyForQuery
// of type typ: when it ends a request the client goroutine is driving (an
// autocommit request in the proxy's own transaction, a staged COPY), it
// reports to that goroutine and waits for it to take the report.
func (ss *session) serverMayWait(typ byte) bool {
	if typ != protocol.MsgReadyForQuery {
		return false
	}
	e, ok := ss.exp.peek()
	return ok && (e.convert || e.kind == expQuery && e.q != nil && e.q.copy != nil)
}

func (ss *session) trackQuery(msg protocol.Message, w *upstreamWriter) ([]byte, bool) {
	ss.pending.push(request{sent: time.Now()})
	sql, _, _ := protocol.CString(msg.Body)
	stmts, _ := ss.srv.classifier.Classify(string(sql))
	if len(stmts) == 1 && stmts[0].Command == "COPY FROM" && ss.capture && ss.dates.Load() != datesUnreadable {
		ss.srv.metrics.CountQuery(kindOf(stmts[0]))
		if ss.trackCopy(stmts[0], w) {
			return nil, true
		}
		ss.exp.push(expectation{kind: expQuery, q: &queryState{stmts: stmts, modes: []stmtMode{modeNone}, plans: []*rewrite.Capture{nil}}})
		return nil, false
	}
	q := &queryState{stmts: stmts, modes: make([]stmtMode, len(stmts)), plans: make([]*rewrite.Capture, len(stmts))}
	rewritten, writes, txControl := false, false, false
	var commit *rewrite.Statement
	var fx queryEffects
	parts := make([]string, len(stmts))
	for i, st := range stmts {
		ss.srv.metrics.CountQuery(kindOf(st))
		parts[i] = st.SQL
		if st.Kind == rewrite.Unparsed {
			ss.pathUntracked(st)
			rewritten, writes = false, false
			break
		}
		if changesSearchPath(st) {
			ss.path.sending()
		}
		if st.Kind == rewrite.Tx {
			txControl = true
			if st.TxOp == rewrite.Commit || st.TxOp == rewrite.Prepare {
				commit = st
			}
		}
		var mode stmtMode
		var plan *rewrite.Capture
		switch st.Command {
		case "EXECUTE":
			var hidden []hiddenStmt
			mode, plan, hidden = ss.planExecute(st, st.SQL, true)
			if len(hidden) > 0 {
				parts[i] = fx.hide(i, hidden) + st.SQL
				rewritten = true
			}
		case "PREPARE", "DEALLOCATE", "DEALLOCATE ALL", "DISCARD ALL":
			sql, f := ss.sqlSession(st, true)
			fx.set(i, f)
			if sql != "" {
				parts[i] = sql
				rewritten = true
			}
		default:
			mode, plan = ss.planWrite(st)
			if plan != nil {
				parts[i] = plan.SQL
				rewritten = true
			}
		}
		q.modes[i], q.plans[i] = mode, plan
		if mode.mirrored() {
			writes = true
		}
	}
	fx.apply(q)
	e := expectation{kind: expQuery, q: q}
	if len(stmts) == 1 && ss.wantShadow(stmts[0]) {
		e.shadow = ss.newShadowCapture(stmts[0], stmts[0].SQL, nil, nil, nil, nil)
	}
	switch {
	case writes && txControl:
		// COMMIT must come after the journal write, which needs the rows
		// of the statements before it: they cannot share one Query.
		rewritten = false
		for i, st := range q.stmts {
			if q.modes[i].mirrored() {
				ss.srv.mirroring.recordNotMirrored(st, "write in a multi-statement query with transaction control")
				q.modes[i] = modeNone
				if st.Command == "EXECUTE" {
					// What the server returns is as planned: strip it.
					q.modes[i] = modeStripOnly
				}
			}
		}
		for i, st := range stmts {
			if st.Command != "EXECUTE" && st.Kind != rewrite.Session {
				parts[i] = st.SQL
			}
			rewritten = rewritten || parts[i] != st.SQL
		}
	case writes && !ss.clientTx:
		// Autocommit: run the statements in a transaction of the proxy's
		// own, committed once their images are in the journal.
		e.convert, q.begin, rewritten = true, true, true
		parts[0] = "BEGIN;\n" + parts[0]
		ss.clientTx, ss.txWrote = true, true
	case writes:
		ss.txWrote = true
	case len(stmts) == 1 && commit != nil:
		e.seq = ss.journalBeforeCommit(w, commit)
	}
	for _, st := range stmts {
		ss.noteTxControl(st)
	}
	ss.exp.push(e)
	var out []byte
	if rewritten {
		out = encodeQuery(strings.Join(parts, ";\n"))
	}
	if e.convert {
		w.send(out)
		ss.finishConverted(w)
		return nil, true
	}
	return out, rewritten
}

func (ss *session) trackParse(msg protocol.Message) ([]byte, bool) {
	name, rest, _ := protocol.CString(msg.Body)
	sql, params, _ := protocol.CString(rest)
	if st := ss.stmts[string(name)]; st != nil && passedThrough(st) && st.plannedFor == ss.st &&
		st.sql == string(sql) && string(st.paramOIDs) == string(params) {
		// Drivers re-parse the unnamed statement with the same text for
		// every query. For a statement the proxy passes through as is,
		// everything known about it still holds. (A captured write is
		// described afresh every time: DDL may have changed its rows.)
		ss.exp.push(expectation{kind: expParse})
		return nil, false
	}
	st := ss.newStmt(string(sql), params)
	ss.stmts[string(name)] = st
	st.mode, st.plan = ss.planStmt(st)
	st.plannedFor = ss.st
	ss.exp.push(expectation{kind: expParse})
	st.desc = newStmtDesc()
	if st.plan == nil {
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

// passedThrough reports whether a statement goes to the old database as
// the client wrote it, with nothing recorded about it: a read without side
// effects, transaction control or a session command.
func passedThrough(st *stmtState) bool {
	if st.mode != modeNone || st.st == nil {
		return false
	}
	switch st.st.Kind {
	case rewrite.Read:
		return !st.st.HasSideEffects
	case rewrite.Tx, rewrite.Session:
		return true
	}
	return false
}

// trackBind re-prepares a statement whose server-side form no longer fits
// the phase, and makes sure the capture columns come back as text.
func (ss *session) trackBind(msg protocol.Message, w *upstreamWriter) ([]byte, bool) {
	portal, rest, _ := protocol.CString(msg.Body)
	name, _, _ := protocol.CString(rest)
	st := ss.stmts[string(name)]
	var prefix []byte
	if st == nil {
		st, prefix = ss.sqlParsed(string(name))
	}
	var p *portalState
	shadow := false
	if st != nil {
		if st.plannedFor != ss.st || ss.executeStale(st) {
			prefix = ss.reprepare(string(name), st)
		}
		shadow = st.mode == modeNone && ss.wantShadow(st.st)
		if shadow || st.mode == modeStatement {
			// This portal's own parameters are kept below.
			p = &portalState{st: st.st, mode: st.mode, plan: st.plan, desc: st.desc}
		} else {
			p = st.boundPortal()
		}
	} else {
		p = &portalState{}
	}
	if len(ss.tportals) >= maxPortals {
		clear(ss.tportals)
	}
	ss.tportals[string(portal)] = p
	delete(ss.limited, string(portal))
	ss.exp.push(expectation{kind: expBind})
	if shadow {
		if b, err := parseBind(msg.Body); err == nil {
			p.shadow, p.sql, p.paramOIDs = true, st.sql, paramOIDsOf(st)
			p.params = make([][]byte, len(b.params))
			for i, v := range b.params {
				if v != nil {
					p.params[i] = append([]byte{}, v...)
				}
			}
			p.paramFormats = b.paramFormats
			p.resultFormats = b.resultFormats
		}
	}
	pass := func() ([]byte, bool) {
		if prefix != nil {
			return append(prefix, msg.Raw...), true
		}
		return nil, false
	}
	if p.plan == nil {
		return pass()
	}
	if p.mode != modeStatement && textResults(msg.Body) {
		return pass() // every column comes back as text already
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
		// The server answers the Describe only once told to flush its
		// output: without the Flush it would hold the answer until the
		// client's Sync, which comes after this Bind.
		w.send(prefix)
		w.send(flushMsg)
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
	if st.st != nil && (ss.capture || st.st.Command == "EXECUTE") {
		mode, plan = ss.planStmt(st)
		if plan != nil {
			want = plan.SQL
		}
	}
	st.plannedFor = ss.st
	// An EXECUTE is parsed again even with the same text: the server
	// describes it as its prepared statement was when it was parsed.
	if want == st.serverSQL && (st.st == nil || st.st.Command != "EXECUTE") {
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
	if plan != nil {
		out = encodeDescribe(out, 'S', name)
		ss.exp.push(expectation{kind: expDescribe, desc: st.desc, swallow: true})
	} else {
		st.desc.setReady()
	}
	return out
}

func kindOf(st *rewrite.Statement) metrics.QueryKind { return metrics.QueryKind(st.Kind.String()) }
