package proxy

import (
	"slices"
	"strings"
	"sync"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

// searchPath follows the search_path of a client session, so that the
// session's reads are shadowed with it (shadow.Request.SearchPath): a
// schema-per-tenant application sets it, by a startup parameter (PgJDBC's
// currentSchema, libpq's options) or with SET, and its unqualified names
// mean that tenant's tables.
//
// Postgres undoes a SET with the transaction it ran in, so a SET is
// tentative until the transaction ends: it takes effect for the session
// at the ReadyForQuery that ends the transaction, unless the transaction
// rolled back (a ROLLBACK tag, or an error in an implicit transaction). SET
// LOCAL lasts until that ReadyForQuery. ROLLBACK TO SAVEPOINT may or may
// not undo a SET, so it makes the transaction's path unknown. Whatever
// the proxy cannot follow (set_config, SET ... FROM CURRENT, a session
// that mentioned search_path while the proxy did not track it) makes the
// path unknown, and the session's reads of unqualified names are not
// shadowed until a SET or RESET the proxy sees.
//
// The client goroutine calls sending and untracked and reads current; the
// upstream goroutine calls answered, rolledBack, errored and ready. A nil
// *searchPath (a session without a startup message, in tests) is the
// default path.
type searchPath struct {
	mu      sync.Mutex
	session pathValue  // in force outside a transaction
	tx      *pathValue // set by SET in the open transaction
	local   *pathValue // set by SET LOCAL
	// pending counts statements that may change the path, sent and not
	// answered yet: while there are any the path is unknown.
	pending int
	// rollback and failed note, since the last ReadyForQuery, a ROLLBACK
	// tag and an error.
	rollback, failed bool
}

// pathValue is a search_path as SHOW prints it ("": the default).
type pathValue struct {
	path  string
	known bool
}

// newSearchPath returns the tracker of a session that started with the
// startup parameters params.
func newSearchPath(params map[string]string) *searchPath {
	sp := &searchPath{session: pathValue{known: true}}
	if p, ok := params["search_path"]; ok {
		sp.session.path = p
	}
	if opts := params["options"]; strings.Contains(strings.ToLower(opts), "search") {
		if p, ok := optionsSearchPath(opts); ok {
			sp.session.path = p
		} else {
			sp.session.known = false
		}
	}
	return sp
}

// optionsSearchPath finds the search_path set in a startup "options"
// parameter: "-c search_path=a,b" or "--search_path=a,b", spaces in the
// value escaped with a backslash.
func optionsSearchPath(opts string) (string, bool) {
	var args []string
	var cur strings.Builder
	for i := 0; i < len(opts); i++ {
		switch c := opts[i]; {
		case c == '\\' && i+1 < len(opts):
			i++
			cur.WriteByte(opts[i])
		case c == ' ' || c == '\t':
			if cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	path, found := "", false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-c" && i+1 < len(args):
			i++
			a = args[i]
		case strings.HasPrefix(a, "--"):
			a = a[2:]
		case strings.HasPrefix(a, "-c"):
			a = a[2:]
		default:
			continue
		}
		name, value, ok := strings.Cut(a, "=")
		if ok && strings.EqualFold(strings.ReplaceAll(name, "-", "_"), "search_path") {
			path, found = value, true
		}
	}
	return path, found
}

// changesSearchPath reports whether a statement may change the session's
// search_path.
func changesSearchPath(st *rewrite.Statement) bool {
	if st == nil {
		return false
	}
	switch st.Command {
	case "SET":
		return st.Name == "search_path"
	case "RESET":
		return st.Name == "search_path" || st.Name == "all"
	case "DISCARD ALL":
		return true
	}
	return slices.ContainsFunc(st.Functions, func(f string) bool { return f == "set_config" || f == "pg_catalog.set_config" })
}

// pathUntracked notes, for a session the proxy does not track, a statement
// that may change its search_path (or, unparsed, mentions one): the path is
// unknown from then on, until a SET or RESET the proxy tracks.
func (ss *session) pathUntracked(st *rewrite.Statement) {
	if changesSearchPath(st) || st != nil && st.Kind == rewrite.Unparsed && strings.Contains(strings.ToLower(st.SQL), "search_path") {
		ss.path.untracked()
	}
}

// sending notes that the client sent a statement changesSearchPath
// reports.
func (sp *searchPath) sending() {
	if sp == nil {
		return
	}
	sp.mu.Lock()
	sp.pending++
	sp.mu.Unlock()
}

// untracked notes that the session mentioned search_path in a statement
// the proxy did not classify (the phase did not track sessions).
func (sp *searchPath) untracked() {
	if sp == nil {
		return
	}
	sp.mu.Lock()
	sp.session, sp.tx, sp.local = pathValue{}, nil, nil
	sp.mu.Unlock()
}

// answered records the outcome of a statement sending counted: ok when
// it completed, not when it failed.
func (sp *searchPath) answered(st *rewrite.Statement, ok bool) {
	if sp == nil {
		return
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.pending = max(sp.pending-1, 0)
	if !ok {
		return
	}
	// set_config (in any statement) leaves v unknown.
	var v pathValue
	switch st.Command {
	case "SET":
		v = pathValue{path: st.SetValue, known: !st.SetUnknown}
	case "RESET", "DISCARD ALL":
		v = pathValue{known: true}
	}
	if st.SetLocal {
		sp.local = &v
	} else {
		sp.tx = &v
	}
}

// rolledBack notes a ROLLBACK tag: of the transaction, or to a savepoint.
func (sp *searchPath) rolledBack() {
	if sp == nil {
		return
	}
	sp.mu.Lock()
	sp.rollback = true
	sp.mu.Unlock()
}

// errored notes an error: in an implicit transaction it rolls the
// transaction back.
func (sp *searchPath) errored() {
	if sp == nil {
		return
	}
	sp.mu.Lock()
	sp.failed = true
	sp.mu.Unlock()
}

// ready applies a ReadyForQuery with the transaction status: 'I' ends the
// transaction, committing its SETs unless it rolled back; 'T' after a
// ROLLBACK TO SAVEPOINT makes what the transaction set unknown. idle says
// no request is outstanding, so no statement sending counted is left.
func (sp *searchPath) ready(status byte, idle bool) {
	if sp == nil {
		return
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	switch status {
	case 'I':
		if sp.tx != nil && !sp.rollback && !sp.failed {
			sp.session = *sp.tx
		}
		sp.tx, sp.local = nil, nil
		sp.rollback, sp.failed = false, false
	case 'T':
		if sp.rollback {
			if sp.tx != nil {
				sp.tx = &pathValue{}
			}
			if sp.local != nil {
				sp.local = &pathValue{}
			}
		}
		sp.rollback, sp.failed = false, false
	}
	if idle {
		sp.pending = 0
	}
}

// current returns the session's search_path, and whether it is known.
func (sp *searchPath) current() (string, bool) {
	if sp == nil {
		return "", true
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	v := sp.session
	switch {
	case sp.pending > 0:
		return "", false
	case sp.local != nil:
		v = *sp.local
	case sp.tx != nil:
		v = *sp.tx
	}
	return v.path, v.known
}
