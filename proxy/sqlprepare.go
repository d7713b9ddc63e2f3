package proxy

import (
	"strings"
	"sync/atomic"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

// This file follows the statements a client prepares with SQL PREPARE, so
// that EXECUTE name(...) of a write is mirrored like the write itself.
//
// In the capturing phases PREPARE name AS <write> is sent with the capture
// columns appended to its body's RETURNING (rewrite.PlanCapture), and an
// EXECUTE of it is tracked as a captured write: its answer (RowDescription,
// DataRows, CommandComplete, as for a write with RETURNING) is split
// between the client and the transaction's row images by the same code.
// The EXECUTE itself goes to the server as the client wrote it, so errors
// about it (wrong parameters, no such statement) are the server's own.
//
// A statement prepared without the capture columns (before the phase
// captured, or by a session that was not tracked) is prepared again with
// them, under its own name, by DEALLOCATE and PREPARE statements the proxy
// puts in front of the EXECUTE in the same simple Query; their answers are
// not the client's. (Like a Parse the proxy repeats on a phase change, that
// PREPARE resolves table names by the search_path in force then.) A
// statement prepared with them keeps them when the phase stops capturing:
// its EXECUTE is then only stripped of them.
//
// The client goroutine decides from what it has sent; the server's answers
// (which the upstream goroutine sees) settle each PREPARE and DEALLOCATE
// through sqlStmt.state, so that one that failed is not believed.

// sqlStmt is one PREPARE the client sent.
type sqlStmt struct {
	prepare *rewrite.Statement // the client's PREPARE; its Body is what EXECUTE runs
	// serverSQL is the PREPARE the server was sent: the client's own, or
	// plan.SQL, whose body returns the capture columns.
	serverSQL string
	plan      *rewrite.Capture // nil when the server's form has no capture columns
	// unsure is set when the name was prepared again while the session was
	// not tracked: which of the PREPAREs the server kept is unknown.
	unsure bool
	// prev is what the name stood for before this PREPARE, in force again
	// should this one fail.
	prev *sqlStmt
	// dropping is set (client goroutine) once a DEALLOCATE of it is sent:
	// a PREPARE of the name after it is no duplicate.
	dropping bool
	state    atomic.Uint32 // sqlPending, sqlOK, sqlFailed or sqlGone; see sqlEffect
}

const (
	sqlPending = iota // sent, not answered yet
	sqlOK             // the server prepared it
	sqlFailed         // the PREPARE failed or was skipped: the name means what prev means
	sqlGone           // deallocated
)

// sqlEffect is what one statement (the client's, or one the proxy sent in
// front of an EXECUTE) does to the session's SQL prepared statements, for
// the upstream goroutine to settle once the server answers it.
type sqlEffect struct {
	hidden   bool // the proxy's own statement: its CommandComplete is not the client's
	prepared *sqlStmt
	dropped  []*sqlStmt
}

// done settles the statement that succeeded.
func (f *sqlEffect) done() {
	if f.prepared != nil {
		f.prepared.state.CompareAndSwap(sqlPending, sqlOK)
	}
	for _, d := range f.dropped {
		d.state.Store(sqlGone)
	}
}

// failed settles the statement that failed or was skipped; a DEALLOCATE
// that failed changed nothing.
func (f *sqlEffect) failed() {
	if f.prepared != nil {
		f.prepared.state.CompareAndSwap(sqlPending, sqlFailed)
	}
}

// sqlLookup returns what EXECUTE name would run, as far as the proxy
// knows, or nil.
func (ss *session) sqlLookup(name string) *sqlStmt {
	head := ss.sqlStmts[name]
	e := head
	for e != nil && e.state.Load() == sqlFailed {
		e = e.prev
	}
	switch {
	case e == nil || e.state.Load() == sqlGone:
		delete(ss.sqlStmts, name)
		return nil
	case e != head:
		ss.sqlStmts[name] = e
	}
	if e.state.Load() == sqlOK {
		e.prev = nil // settled: what came before no longer matters
	}
	return e
}

// sqlSession follows a PREPARE, DEALLOCATE, DEALLOCATE ALL or DISCARD ALL
// of a tracking session. It returns the text to send instead of st.SQL
// (empty: st.SQL) and what the statement does, for the upstream goroutine
// to settle (nil for other statements). A PREPARE of a write gets the
// capture columns only in a simple Query (rewriteBody set): in the extended
// protocol its text was sent with the Parse, before it runs.
func (ss *session) sqlSession(st *rewrite.Statement, rewriteBody bool) (string, *sqlEffect) {
	if st == nil || st.Kind != rewrite.Session {
		return "", nil
	}
	switch st.Command {
	case "PREPARE":
		cur := ss.sqlLookup(st.Name)
		if cur != nil && !cur.dropping || ss.stmts[st.Name] != nil {
			return "", nil // the name is taken: the server refuses it
		}
		e := &sqlStmt{prepare: st, serverSQL: st.SQL, prev: cur}
		if rewriteBody && ss.capture && st.Body != nil && st.Body.IsWrite() {
			if plan, reason := ss.planPrepare(st); reason == "" {
				e.plan, e.serverSQL = plan, plan.SQL
			}
		}
		ss.sqlStmts[st.Name] = e
		sql := ""
		if e.plan != nil {
			sql = e.serverSQL
		}
		return sql, &sqlEffect{prepared: e}
	case "DEALLOCATE":
		if e := ss.sqlLookup(st.Name); e != nil {
			e.dropping = true
			return "", &sqlEffect{dropped: []*sqlStmt{e}}
		}
	case "DEALLOCATE ALL", "DISCARD ALL":
		f := &sqlEffect{}
		for name := range ss.sqlStmts {
			if e := ss.sqlLookup(name); e != nil {
				e.dropping = true
				f.dropped = append(f.dropped, e)
			}
		}
		return "", f
	}
	return "", nil
}

// sqlUntracked follows PREPARE and DEALLOCATE in a session that is not
// tracked (no capturing phase yet), whose responses the proxy does not
// read: it believes every statement succeeds, except that a second
// PREPARE of a name makes it unsure which one the server kept.
func (ss *session) sqlUntracked(st *rewrite.Statement) {
	if st == nil || st.Kind != rewrite.Session {
		return
	}
	switch st.Command {
	case "PREPARE":
		if e := ss.sqlStmts[st.Name]; e != nil {
			e.unsure = true
			return
		}
		e := &sqlStmt{prepare: st, serverSQL: st.SQL}
		e.state.Store(sqlOK)
		ss.sqlStmts[st.Name] = e
	case "DEALLOCATE":
		delete(ss.sqlStmts, st.Name)
	case "DEALLOCATE ALL", "DISCARD ALL":
		clear(ss.sqlStmts)
	}
}

// planPrepare plans the capture form of a PREPARE of a write, or says why
// its EXECUTE cannot be mirrored.
func (ss *session) planPrepare(st *rewrite.Statement) (*rewrite.Capture, string) {
	if ss.dates.Load() == datesUnreadable {
		return nil, "session DateStyle the proxy cannot read"
	}
	mode, plan, reason := ss.planCapture(st, false)
	switch {
	case reason != "":
		return nil, reason
	case mode != modeCapture:
		// Mirrored as a statement, the write would need EXECUTE's
		// arguments substituted into the body.
		return nil, "EXECUTE of an UPDATE or DELETE prepared with SQL PREPARE on a table without a primary key"
	}
	return plan, ""
}

// hiddenStmt is a statement the proxy runs in front of a client's.
type hiddenStmt struct {
	sql string
	eff *sqlEffect
}

// planExecute decides how EXECUTE name(...) is mirrored; text is what the
// server is sent for it. In a simple Query (simple set) it may return
// statements to run first, which prepare the statement again with the
// capture columns. A returned plan (SQL: text) means the server's answer
// carries capture columns; mode says whether its rows are mirrored
// (modeCapture) or only stripped (modeStripOnly, the reason recorded).
// An EXECUTE of a name the proxy does not know is modeUnseen.
func (ss *session) planExecute(st *rewrite.Statement, text string, simple bool) (stmtMode, *rewrite.Capture, []hiddenStmt) {
	m := ss.srv.mirroring
	e := ss.sqlLookup(st.Name)
	if e == nil {
		if ps := ss.stmts[st.Name]; ps != nil && st.Name != "" {
			// Prepared with a Parse message, in the same namespace.
			return ss.executeParsed(st, ps, text)
		}
		if ss.capture && m != nil {
			return modeUnseen, nil, nil
		}
		return modeNone, nil, nil
	}
	strip := func(reason string) (stmtMode, *rewrite.Capture, []hiddenStmt) {
		if ss.capture && reason != "" {
			// Recorded as the PREPARE, which says what is run: every
			// EXECUTE has the same fingerprint.
			m.recordNotMirrored(e.prepare, reason)
		}
		if e.plan == nil {
			return modeNone, nil, nil
		}
		return modeStripOnly, executeCapture(e.plan, text), nil
	}
	if e.prepare.Body == nil || !e.prepare.Body.IsWrite() {
		return modeNone, nil, nil
	}
	if !ss.capture || m == nil {
		return strip("")
	}
	if e.unsure {
		return strip("EXECUTE of a name prepared more than once before dual-write (which PREPARE the server kept is unknown)")
	}
	plan, reason := ss.planPrepare(e.prepare)
	if reason != "" {
		return strip(reason)
	}
	if plan.SQL == e.serverSQL {
		return modeCapture, executeCapture(plan, text), nil
	}
	if !simple {
		return strip("EXECUTE in the extended protocol of a statement prepared without row capture (before dual-write)")
	}
	// Prepare it again with the capture columns. Should that fail, the
	// name means what the server has (prev), if the DEALLOCATE failed too.
	ne := &sqlStmt{prepare: e.prepare, serverSQL: plan.SQL, plan: plan, prev: e}
	e.dropping = true
	ss.sqlStmts[st.Name] = ne
	return modeCapture, executeCapture(plan, text), []hiddenStmt{
		{sql: "DEALLOCATE " + rewrite.QuoteIdent(st.Name), eff: &sqlEffect{hidden: true, dropped: []*sqlStmt{e}}},
		{sql: plan.SQL, eff: &sqlEffect{hidden: true, prepared: ne}},
	}
}

// executeParsed decides how an EXECUTE of a statement prepared with a
// Parse message is mirrored: as that statement, when its server-side form
// is the one for this phase.
func (ss *session) executeParsed(st *rewrite.Statement, ps *stmtState, text string) (stmtMode, *rewrite.Capture, []hiddenStmt) {
	m := ss.srv.mirroring
	if ps.plan == nil {
		if ss.capture && m != nil && ps.st != nil && ps.st.IsWrite() {
			m.recordNotMirrored(st, "EXECUTE of a write prepared with a Parse message that was not captured")
		}
		return modeNone, nil, nil
	}
	if ps.mode == modeCapture && ps.plannedFor == ss.st && ss.capture {
		return modeCapture, executeCapture(ps.plan, text), nil
	}
	if ss.capture {
		m.recordNotMirrored(st, "EXECUTE of a statement prepared with a Parse message, planned for another phase or mirrored as a statement")
	}
	return modeStripOnly, executeCapture(ps.plan, text), nil
}

// executeCapture returns the plan of an EXECUTE whose prepared statement
// runs plan: the same rows, with text sent as it is.
func executeCapture(plan *rewrite.Capture, text string) *rewrite.Capture {
	c := *plan
	c.SQL = text
	return &c
}

// queryEffects collects, while a simple Query is planned, the statements
// the proxy puts in front of the client's and what each statement does to
// the session's SQL prepared statements, by the index of the client's
// statement.
type queryEffects struct {
	hidden  map[int][]hiddenStmt
	effects map[int]*sqlEffect
}

// hide records statements to run before statement i and returns their
// text, to put in front of its own.
func (fx *queryEffects) hide(i int, hs []hiddenStmt) string {
	if fx.hidden == nil {
		fx.hidden = map[int][]hiddenStmt{}
	}
	fx.hidden[i] = hs
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(h.sql)
		b.WriteString(";\n")
	}
	return b.String()
}

// set records what statement i does.
func (fx *queryEffects) set(i int, f *sqlEffect) {
	if f == nil {
		return
	}
	if fx.effects == nil {
		fx.effects = map[int]*sqlEffect{}
	}
	fx.effects[i] = f
}

// apply puts the hidden statements and the effects into q, whose
// statements are then those the server runs.
func (fx *queryEffects) apply(q *queryState) {
	if fx.hidden == nil && fx.effects == nil {
		return
	}
	n := len(q.stmts)
	for _, hs := range fx.hidden {
		n += len(hs)
	}
	out := &queryState{
		stmts:   make([]*rewrite.Statement, 0, n),
		modes:   make([]stmtMode, 0, n),
		plans:   make([]*rewrite.Capture, 0, n),
		effects: make([]*sqlEffect, 0, n),
	}
	for i, st := range q.stmts {
		for _, h := range fx.hidden[i] {
			out.stmts, out.modes, out.plans = append(out.stmts, nil), append(out.modes, modeNone), append(out.plans, nil)
			out.effects = append(out.effects, h.eff)
		}
		out.stmts, out.modes, out.plans = append(out.stmts, st), append(out.modes, q.modes[i]), append(out.plans, q.plans[i])
		out.effects = append(out.effects, fx.effects[i])
	}
	q.stmts, q.modes, q.plans, q.effects = out.stmts, out.modes, out.plans, out.effects
}

// planStmt plans a statement prepared with a Parse message: an EXECUTE
// as its prepared statement, anything else as itself.
func (ss *session) planStmt(st *stmtState) (stmtMode, *rewrite.Capture) {
	if st.st != nil && st.st.Command == "EXECUTE" {
		mode, plan, _ := ss.planExecute(st.st, st.sql, false)
		st.execOf = ss.sqlLookup(st.st.Name)
		return mode, plan
	}
	return ss.planWrite(st.st)
}

// executeStale reports whether st is an EXECUTE whose prepared statement
// was prepared again (or deallocated) since st was planned.
func (ss *session) executeStale(st *stmtState) bool {
	return st.st != nil && st.st.Command == "EXECUTE" && ss.sqlLookup(st.st.Name) != st.execOf
}

// executesWrite reports whether EXECUTE name, after the statements
// before it in its Query, may run a write the proxy captures, for
// clientMayWait: it changes nothing.
func (ss *session) executesWrite(name string, before []*rewrite.Statement) bool {
	for _, st := range before {
		if st.Command == "PREPARE" && st.Name == name && st.Body != nil && st.Body.IsWrite() {
			return true
		}
	}
	for e := ss.sqlStmts[name]; e != nil; e = e.prev {
		if e.prepare.Body != nil && e.prepare.Body.IsWrite() {
			return true
		}
	}
	ps := ss.stmts[name]
	return ps != nil && ps.plan != nil
}

// strayCapture is the safety net for an EXECUTE in a simple Query that
// the proxy did not expect to return capture columns, having lost track of
// what its statement was prepared as: when its RowDescription has them,
// the client still must not see them. Its rows are not mirrored.
func (ss *session) strayCapture(q *queryState, st *rewrite.Statement, rowDesc []byte) stmtMode {
	if l, err := ss.layoutOf(rowDesc); err != nil || l == nil {
		return modeNone
	}
	q.modes[q.idx] = modeStripOnly
	if m := ss.srv.mirroring; m != nil {
		m.recordNotMirrored(st, "EXECUTE of a statement prepared with capture columns the proxy lost track of")
	}
	return modeStripOnly
}

// sqlParsed returns, for a name prepared with SQL PREPARE with capture
// columns that the client binds or describes with protocol messages, the
// state those messages need so that the capture columns are split off
// (and the rows mirrored, in a capturing phase), and the Describe that
// learns the statement's layout, to send first. It returns nil for any
// other name.
func (ss *session) sqlParsed(name string) (*stmtState, []byte) {
	e := ss.sqlLookup(name)
	if e == nil || e.plan == nil {
		return nil, nil
	}
	// The body, named by the PREPARE, stands for the statement.
	body := *e.prepare.Body
	body.SQL, body.Fingerprint = e.prepare.SQL, e.prepare.Fingerprint
	mode := modeStripOnly
	if ss.capture {
		plan, reason := ss.planPrepare(e.prepare)
		switch {
		case reason != "":
			ss.srv.mirroring.recordNotMirrored(e.prepare, reason)
		case plan.SQL != e.serverSQL:
			ss.srv.mirroring.recordNotMirrored(e.prepare, "statement prepared with SQL PREPARE before a catalog change, bound with a Bind message")
		default:
			mode = modeCapture
		}
	}
	st := &stmtState{info: infoFor(&body), st: &body, sql: e.serverSQL, serverSQL: e.serverSQL, mode: mode, plan: e.plan, desc: newStmtDesc(), plannedFor: ss.st}
	ss.exp.push(expectation{kind: expDescribe, desc: st.desc, swallow: true})
	return st, encodeDescribe(nil, 'S', name)
}
