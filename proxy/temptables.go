package proxy

import (
	"slices"
	"strings"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

// tempNames tracks the temporary tables a session has made, by name, so
// that DDL and TRUNCATE naming them are known to change that session only:
// they neither reload the catalog nor count as schema drift, and a
// TRUNCATE of one is never mirrored onto a permanent table of the same
// name on the new database. (Rows written to a temporary table are told
// apart by their table's OID instead; see Mirroring.resolveTable.)
//
// Names are as statements write them, without a "pg_temp." prefix: a
// temporary table hides a permanent one of the same name, since pg_temp
// comes first in the search path. Changes made inside a transaction are
// undone when it rolls back, and ON COMMIT DROP tables are forgotten when
// it ends. Guarded by the session's txMu.
type tempNames struct {
	names map[string]bool
	// The open transaction's changes: tables it created, dropped, and
	// made to be dropped when it ends.
	created, dropped, dropAtEnd []string
}

// tempName returns the name a statement uses for a table, as a temporary
// table's name: false for a name qualified by any schema but pg_temp.
func tempName(name string) (string, bool) {
	if rest, ok := strings.CutPrefix(name, "pg_temp."); ok {
		return rest, true
	}
	return name, !strings.Contains(name, ".")
}

// has reports whether name is one of the session's temporary tables.
func (t *tempNames) has(name string) bool {
	n, ok := tempName(name)
	return ok && t.names[n]
}

// hasAll reports whether names is not empty and all of them are the
// session's temporary tables.
func (t *tempNames) hasAll(names []string) bool {
	if len(names) == 0 || len(t.names) == 0 {
		return false
	}
	for _, n := range names {
		if !t.has(n) {
			return false
		}
	}
	return true
}

// isTemporaryDDL reports whether DDL changes only the session's temporary
// objects: it creates a temporary relation, or acts on temporary tables
// only.
func (t *tempNames) isTemporaryDDL(st *rewrite.Statement) bool {
	return st.Kind == rewrite.DDL && (st.Temporary || t.hasAll(st.WriteTables))
}

// ddlDone records a DDL statement that succeeded. inTx: it ran inside an
// explicit transaction.
func (t *tempNames) ddlDone(st *rewrite.Statement, inTx bool) {
	switch {
	case st.Temporary:
		if st.TempDropOnCommit && !inTx {
			return // gone already
		}
		if t.names == nil {
			t.names = map[string]bool{}
		}
		for _, name := range st.WriteTables {
			n, _ := tempName(name)
			t.names[n] = true
			if inTx {
				t.created = append(t.created, n)
			}
			if st.TempDropOnCommit {
				t.dropAtEnd = append(t.dropAtEnd, n)
			}
		}
	case strings.HasPrefix(st.Command, "DROP ") && t.hasAll(st.WriteTables):
		for _, name := range st.WriteTables {
			n, _ := tempName(name)
			delete(t.names, n)
			if inTx {
				t.dropped = append(t.dropped, n)
			}
		}
	}
}

// txEnded applies the end of a transaction.
func (t *tempNames) txEnded(committed bool) {
	if !committed {
		for _, n := range t.created {
			delete(t.names, n)
		}
		for _, n := range t.dropped {
			if !slices.Contains(t.created, n) {
				t.names[n] = true
			}
		}
	}
	for _, n := range t.dropAtEnd {
		delete(t.names, n)
	}
	t.created, t.dropped, t.dropAtEnd = t.created[:0], t.dropped[:0], t.dropAtEnd[:0]
}

// discard forgets every temporary table (DISCARD ALL, DISCARD TEMP).
func (t *tempNames) discard() {
	clear(t.names)
	t.created, t.dropped, t.dropAtEnd = t.created[:0], t.dropped[:0], t.dropAtEnd[:0]
}

// temporaryDDL reports whether st is DDL on the session's temporary
// objects only (see tempNames).
func (ss *session) temporaryDDL(st *rewrite.Statement) bool {
	if st == nil || st.Kind != rewrite.DDL {
		return false
	}
	if st.Temporary {
		return true
	}
	ss.txMu.Lock()
	defer ss.txMu.Unlock()
	return ss.temps.hasAll(st.WriteTables)
}

// readsTemporary reports whether a statement names one of the session's
// temporary tables, which the new database does not have.
func (ss *session) readsTemporary(st *rewrite.Statement) bool {
	ss.txMu.Lock()
	defer ss.txMu.Unlock()
	return len(ss.temps.names) > 0 && slices.ContainsFunc(st.Tables, ss.temps.has)
}
