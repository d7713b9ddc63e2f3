package proxy

import (
	"testing"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

// statements classifies a query string as a session does.
func statements(t *testing.T, sql string, n int) []*rewrite.Statement {
	t.Helper()
	sts, err := sessionClassifier.Classify(sql)
	if err != nil || len(sts) != n {
		t.Fatalf("%s: %d statements, %v", sql, len(sts), err)
	}
	return sts
}

var sessionClassifier = func() *rewrite.Classifier {
	c, err := rewrite.NewClassifier(64)
	if err != nil {
		panic(err)
	}
	return c
}()

// The session believes a PREPARE or DEALLOCATE once sent, and the server's
// answers correct it: a PREPARE that failed gives the name back its
// earlier meaning, a DEALLOCATE that failed leaves the name as it was.
func TestSQLStmtsFollowTheServer(t *testing.T) {
	ss := &session{sqlStmts: map[string]*sqlStmt{}, stmts: map[string]*stmtState{}}
	sts := statements(t, "PREPARE a AS INSERT INTO t VALUES ($1); PREPARE a AS DELETE FROM t WHERE id = $1; DEALLOCATE a; DEALLOCATE ALL", 4)
	prepA, prepA2, dealloc, deallocAll := sts[0], sts[1], sts[2], sts[3]

	_, f1 := ss.sqlSession(prepA, true)
	first := ss.sqlLookup("a")
	if first == nil || first.prepare != prepA {
		t.Fatal("a PREPARE sent is not believed")
	}
	f1.done()
	if _, f := ss.sqlSession(prepA2, true); f != nil {
		t.Fatal("a PREPARE of a name in use must be left to fail")
	}

	// DEALLOCATE a; PREPARE a AS ... in one Query, which fails.
	_, fd := ss.sqlSession(dealloc, true)
	_, f2 := ss.sqlSession(prepA2, true)
	if e := ss.sqlLookup("a"); e == nil || e.prepare != prepA2 {
		t.Fatal("a PREPARE after a DEALLOCATE is not believed")
	}
	fd.failed()
	f2.failed()
	if e := ss.sqlLookup("a"); e != first {
		t.Fatal("after both failed, the name must mean the first PREPARE again")
	}

	// The same, succeeding.
	_, fd = ss.sqlSession(dealloc, true)
	_, f2 = ss.sqlSession(prepA2, true)
	fd.done()
	f2.done()
	if e := ss.sqlLookup("a"); e == nil || e.prepare != prepA2 || e.prev != nil {
		t.Fatalf("after both succeeded, the name must mean the second PREPARE alone, got %+v", e)
	}

	// DEALLOCATE ALL, answered.
	_, fa := ss.sqlSession(deallocAll, true)
	fa.done()
	if ss.sqlLookup("a") != nil || len(ss.sqlStmts) != 0 {
		t.Fatal("DEALLOCATE ALL left a name")
	}
}

// Untracked sessions cannot read answers: a name prepared twice is marked
// unsure rather than guessed.
func TestSQLUntrackedPreparedTwice(t *testing.T) {
	ss := &session{sqlStmts: map[string]*sqlStmt{}}
	sts := statements(t, "PREPARE a AS INSERT INTO t VALUES (1); PREPARE a AS DELETE FROM t; DISCARD ALL", 3)
	ss.sqlUntracked(sts[0])
	if e := ss.sqlLookup("a"); e == nil || e.unsure {
		t.Fatal("one PREPARE must be believed")
	}
	ss.sqlUntracked(sts[1])
	if e := ss.sqlLookup("a"); e == nil || !e.unsure {
		t.Fatal("a second PREPARE must make the name unsure")
	}
	ss.sqlUntracked(sts[2])
	if ss.sqlLookup("a") != nil {
		t.Fatal("DISCARD ALL left a name")
	}
}

// The statements the proxy puts in front of an EXECUTE take their place
// in the Query's statements, so that answers are paired with the right
// statement, and are marked hidden.
func TestQueryEffectsApply(t *testing.T) {
	sts := statements(t, "SELECT 1; EXECUTE a(1)", 2)
	st0, st1 := sts[0], sts[1]
	q := &queryState{stmts: []*rewrite.Statement{st0, st1}, modes: []stmtMode{modeNone, modeCapture}, plans: []*rewrite.Capture{nil, {}}}
	var fx queryEffects
	prefix := fx.hide(1, []hiddenStmt{{sql: "DEALLOCATE a", eff: &sqlEffect{hidden: true}}, {sql: "PREPARE a AS x", eff: &sqlEffect{hidden: true}}})
	if prefix != "DEALLOCATE a;\nPREPARE a AS x;\n" {
		t.Fatalf("prefix %q", prefix)
	}
	own := &sqlEffect{}
	fx.set(0, own)
	fx.apply(q)
	if len(q.stmts) != 4 || q.stmts[0] != st0 || q.stmts[3] != st1 || q.modes[3] != modeCapture || q.plans[3] == nil {
		t.Fatalf("statements %v, modes %v", q.stmts, q.modes)
	}
	if q.effects[0] != own || !q.effects[1].hidden || !q.effects[2].hidden || q.effects[3] != nil {
		t.Fatalf("effects %+v", q.effects)
	}
}
