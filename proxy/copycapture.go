package proxy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shadowproxy/shadowproxy/protocol"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// This file captures COPY FROM: the rows go to a staging table first, and
// an INSERT ... SELECT from it, with the capture RETURNING, writes them to
// the client's table, so that they are captured like any insert.

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
