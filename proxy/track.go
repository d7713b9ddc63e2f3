package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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
		}
		return modeNone, nil
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

const stagingTable = "__shadowproxy_copy"

// trackCopy runs a COPY FROM through a staging table so that the rows it
// writes can be captured (see copyState). The client sees its COPY
// exchange unchanged. It returns false, having recorded why, when the COPY
// cannot be captured; it then runs as it is and is not mirrored.
func (ss *session) trackCopy(st *rewrite.Statement, w *upstreamWriter) bool {
	m := ss.srv.mirroring
	cf, err := rewrite.ParseCopyFrom(st.SQL)
	if err != nil {
		m.recordNotMirrored(st, "cannot parse COPY: "+err.Error())
		return false
	}
	all, always, ok := m.catalog.CopyColumns(cf.Table)
	if !ok {
		m.recordNotMirrored(st, "COPY into a table missing from the catalog (temporary table?)")
		return false
	}
	cols := cf.Columns
	if len(cols) == 0 {
		cols = all
	}
	quoted := make([]string, len(cols))
	overriding := ""
	for i, c := range cols {
		quoted[i] = rewrite.QuoteIdent(c)
		if slices.Contains(always, c) {
			overriding = " OVERRIDING SYSTEM VALUE"
		}
	}
	table := quoteTable(cf.Table)
	list := strings.Join(quoted, ", ")
	copySQL, err := rewrite.RetargetCopy(st.SQL, stagingTable, cols)
	if err != nil {
		m.recordNotMirrored(st, "cannot stage COPY: "+err.Error())
		return false
	}
	plan, err := m.capturer.Plan(fmt.Sprintf("INSERT INTO %s (%s)%s SELECT %s FROM pg_temp.%s", table, list, overriding, list, stagingTable))
	if err != nil {
		m.recordNotMirrored(st, "cannot capture COPY: "+err.Error())
		return false
	}
	cs := &copyState{st: st, stdin: cf.Stdin, convert: !ss.clientTx, plan: plan,
		applySQL: plan.SQL + ";\nDROP TABLE pg_temp." + stagingTable}
	stage := fmt.Sprintf("CREATE TEMP TABLE %s AS SELECT %s FROM %s WITH NO DATA;\n%s", stagingTable, list, table, copySQL)
	q := &queryState{stmts: []*rewrite.Statement{st}, modes: []stmtMode{modeNone}, plans: []*rewrite.Capture{nil}, copy: cs}
	if cs.convert {
		stage = "BEGIN;\n" + stage
		q.begin = true
		ss.clientTx = true
	}
	ss.txWrote = true
	ss.exp.push(expectation{kind: expQuery, q: q, convert: cs.convert})
	w.send(encodeQuery(stage))
	if cs.stdin {
		ss.copyWait = cs // the rest waits for the client's CopyDone
		return true
	}
	ss.copyFinish(w, cs)
	return true
}

// quoteTable quotes a table name as written ("name" or "schema.name", raw).
func quoteTable(name string) string {
	if schema, table, ok := strings.Cut(name, "."); ok {
		return rewrite.QuoteIdent(schema) + "." + rewrite.QuoteIdent(table)
	}
	return rewrite.QuoteIdent(name)
}

// copyFinish runs the steps of a staged COPY once its data is in: insert
// from the staging table with capture, then, for an autocommit COPY,
// journal and commit. Each step waits for the previous one's answer; the
// upstream goroutine reports 'T' (go on), 'E' (failed: the proxy's
// transaction must be rolled back) or 'F' (finished: the client has its
// answer).
func (ss *session) copyFinish(w *upstreamWriter, cs *copyState) {
	if !w.flush() {
		return
	}
	status, ok := ss.awaitStatus()
	if !ok || status == 'F' {
		return
	}
	if status == 'T' {
		q := &queryState{stmts: []*rewrite.Statement{cs.st}, modes: []stmtMode{modeCapture}, plans: []*rewrite.Capture{cs.plan}, copy: cs, apply: true}
		ss.exp.push(expectation{kind: expQuery, q: q, convert: cs.convert})
		w.send(encodeQuery(cs.applySQL))
		if !w.flush() {
			return
		}
		if status, ok = ss.awaitStatus(); !ok || status == 'F' {
			return
		}
	}
	ss.endProxyTx(w, status)
}

// awaitStatus waits for the upstream goroutine's report on a request the
// proxy is driving.
func (ss *session) awaitStatus() (byte, bool) {
	t := time.NewTimer(10 * time.Minute)
	defer t.Stop()
	select {
	case s := <-ss.converted:
		return s, true
	case <-ss.done:
		return 0, false
	case <-t.C:
		ss.terminate(protocol.Fatal(protocol.CodeInternalError, "proxy timed out waiting for the upstream database"))
		return 0, false
	}
}

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
// earlier response. It returns the journal position, or 0.
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
	if st.TxOp == rewrite.Prepare {
		m.mu.Lock()
		m.prepared[st.Name] = seq
		m.mu.Unlock()
		return 0 // resolved by COMMIT PREPARED, or by asking the old database
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
			ss.resolveCommit(e.seq, msg)
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
			ss.resolveCommit(e.seq, msg)
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
				ss.resolveCommit(e.seq, msg)
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

// resolveCommit tells the journal how the COMMIT of a journaled
// transaction ended, from its CommandComplete: "COMMIT", or "ROLLBACK" for
// a transaction that had failed.
func (ss *session) resolveCommit(seq uint64, msg protocol.Message) {
	if seq == 0 || msg.Type != 'C' {
		return
	}
	tag, _, _ := protocol.CString(msg.Body)
	ss.srv.mirroring.resolve(seq, string(tag) == "COMMIT")
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
				m.mu.Lock()
				seq, ok := m.prepared[st.Name]
				delete(m.prepared, st.Name)
				m.mu.Unlock()
				if ok {
					m.resolve(seq, true)
				}
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
				m.mu.Lock()
				seq, ok := m.prepared[st.Name]
				delete(m.prepared, st.Name)
				m.mu.Unlock()
				if ok {
					m.resolve(seq, false)
				}
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

// copyStepDone handles the ReadyForQuery after a step of a staged COPY and
// tells the client goroutine what to do next (see copyFinish).
func (ss *session) copyStepDone(e expectation, msg protocol.Message, status byte) ([]byte, bool) {
	cs := e.q.copy
	report := func(s byte) {
		select {
		case ss.converted <- s:
		case <-ss.done:
		}
	}
	switch {
	case cs.failed && !cs.convert:
		// Inside the client's transaction: the error and this
		// ReadyForQuery are the client's answer.
		ss.observeReady(msg)
		report('F')
		return nil, false
	case cs.failed:
		report('E')
		return nil, true
	case !e.q.apply:
		report('T') // staged: insert next
		return nil, true
	case !cs.convert:
		ss.observeReady(msg)
		report('F')
		return append(append([]byte(nil), cs.held...), msg.Raw...), true
	default:
		report('T') // captured: journal and commit next
		return cs.held, true
	}
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

// textResults reports whether a well-formed Bind asks for every result
// column in text, without decoding the rest of it: the common case, checked
// on every execution of a captured write.
func textResults(body []byte) bool {
	for range 2 { // portal and statement names
		i := bytes.IndexByte(body, 0)
		if i < 0 {
			return false
		}
		body = body[i+1:]
	}
	skip := func(n int) bool {
		if n < 0 || len(body) < n {
			return false
		}
		body = body[n:]
		return true
	}
	count := func() int {
		if len(body) < 2 {
			return -1
		}
		return int(int16(binary.BigEndian.Uint16(body)))
	}
	if n := count(); !skip(2) || !skip(2*n) {
		return false
	}
	n := count()
	if !skip(2) || n < 0 {
		return false
	}
	for range n {
		if len(body) < 4 {
			return false
		}
		sz := int(int32(binary.BigEndian.Uint32(body)))
		body = body[4:]
		if sz > 0 && !skip(sz) {
			return false
		}
	}
	n = count()
	if !skip(2) || n < 0 || len(body) != 2*n {
		return false
	}
	for i := 0; i < len(body); i += 2 {
		if body[i] != 0 || body[i+1] != 0 {
			return false
		}
	}
	return true
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

func encodeBind(out []byte, portal, stmt string) []byte {
	start := len(out)
	out = append(out, 'B', 0, 0, 0, 0)
	out = append(out, portal...)
	out = append(out, 0)
	out = append(out, stmt...)
	out = append(out, 0, 0, 0, 0, 0, 0, 0) // no parameter formats, no parameters, no result formats
	binary.BigEndian.PutUint32(out[start+1:], uint32(len(out)-start-1))
	return out
}

// executeLimit returns an Execute message's row limit (0: all rows).
func executeLimit(body []byte) uint32 {
	if len(body) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(body[len(body)-4:])
}

func encodeExecute(out []byte, portal string) []byte {
	out = append(out, 'E')
	out = binary.BigEndian.AppendUint32(out, uint32(4+len(portal)+1+4))
	out = append(out, portal...)
	return append(out, 0, 0, 0, 0, 0)
}
