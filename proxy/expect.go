package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

// expKind is the client message an expectation stands for.
type expKind uint8

const (
	expParse expKind = iota + 1
	expBind
	expDescribe
	expExecute
	expClose
	expSync
	expQuery
	expFunc
	// expCommit is the COMMIT (or ROLLBACK) the proxy sends itself to end
	// an autocommit write it ran in a transaction of its own.
	expCommit
)

// expectation is one client message (or one the proxy injected) whose
// response the upstream goroutine has yet to see. Expectations let the
// proxy pair each response with what asked for it: a RowDescription with
// the Describe or Query it answers, DataRows with their Execute, an
// ErrorResponse with the messages the server will now skip.
type expectation struct {
	kind    expKind
	swallow bool         // injected by the proxy: its responses never reach the client
	desc    *stmtDesc    // Describe S injected by the proxy: fill it
	portal  *portalState // Execute, Describe P, Bind
	q       *queryState  // Query
	// convert marks a Query or Sync whose autocommit writes the proxy put
	// in a transaction of its own: its ReadyForQuery is not the client's,
	// the COMMIT the proxy sends next ends it.
	convert bool
	// seq is the journal position of the transaction a COMMIT (the client's
	// or the proxy's) ends; zero when nothing was journaled.
	seq uint64
	// shadow captures the result of a read that is shadowed.
	shadow *shadowCapture
	// stmt is the statement a client's Describe S describes.
	stmt *stmtState
	// beginParse marks the Parse of the proxy's own BEGIN (injectBegin).
	beginParse bool
	// limited is set on the Execute of a captured write with the client's
	// own RETURNING and a row limit (the client's, in limit): the first
	// runs the write whole, a resume hands out the rows held back.
	limited *limitedPortal
	limit   uint32
	resume  bool
	// sqlEff is what the Execute of a PREPARE, DEALLOCATE or DISCARD ALL
	// does to the session's SQL prepared statements (see sqlprepare.go).
	sqlEff *sqlEffect
}

// expectQueue is a FIFO shared by the two goroutines of a session.
type expectQueue struct {
	mu      sync.Mutex
	q       []expectation
	head    int
	waiters []chan struct{} // closed when the queue empties
}

func (e *expectQueue) push(x expectation) {
	e.mu.Lock()
	e.q = append(e.q, x)
	e.mu.Unlock()
}

// empty reports whether every expectation pushed so far was answered.
func (e *expectQueue) empty() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.head == len(e.q)
}

// peek returns the oldest expectation.
func (e *expectQueue) peek() (expectation, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.head == len(e.q) {
		return expectation{}, false
	}
	return e.q[e.head], true
}

func (e *expectQueue) pop() {
	e.mu.Lock()
	if e.head < len(e.q) {
		e.q[e.head] = expectation{}
		e.head++
		if e.head == len(e.q) {
			e.q, e.head = e.q[:0], 0
			for _, w := range e.waiters {
				close(w)
			}
			e.waiters = e.waiters[:0]
		}
	}
	e.mu.Unlock()
}

// setSeq changes the journal position of the oldest expectation, once its
// COMMIT's outcome has been passed on.
func (e *expectQueue) setSeq(seq uint64) {
	e.mu.Lock()
	if e.head < len(e.q) {
		e.q[e.head].seq = seq
	}
	e.mu.Unlock()
}

// seqs returns the journal positions of the COMMITs still unanswered.
func (e *expectQueue) seqs() []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var seqs []uint64
	for _, x := range e.q[e.head:] {
		if x.seq != 0 {
			seqs = append(seqs, x.seq)
		}
	}
	return seqs
}

// shareDescribe lets a shadow capture take its result shape from the
// client's own Describe of portal p, when that is the last message pushed
// and still unanswered. It reports whether it did.
func (e *expectQueue) shareDescribe(p *portalState, c *shadowCapture) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.head == len(e.q) {
		return false
	}
	x := &e.q[len(e.q)-1]
	if x.kind != expDescribe || x.portal != p || p == nil || x.swallow || x.shadow != nil || x.desc != nil || x.stmt != nil {
		return false
	}
	x.shadow = c
	return true
}

// resultsDue reports whether an Execute or Query pushed so far is still
// unanswered: only those carry the rows a transaction's images are made
// of. The Parse and Bind of the COMMIT being handled are in the queue too,
// but waiting for their answers would cost a round trip per transaction.
func (e *expectQueue) resultsDue() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range e.q[e.head:] {
		if x.kind == expExecute || x.kind == expQuery {
			return true
		}
	}
	return false
}

// emptied returns a channel closed once every expectation pushed so far has
// been answered.
func (e *expectQueue) emptied() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := make(chan struct{})
	if e.head == len(e.q) {
		close(ch)
		return ch
	}
	e.waiters = append(e.waiters, ch)
	return ch
}

// stmtMode is how a write is mirrored.
type stmtMode uint8

const (
	modeNone      stmtMode = iota // not a capturable write (or not a write)
	modeCapture                   // row images via RETURNING
	modeStatement                 // the statement itself (tables without a primary key)
	modeTruncate                  // TRUNCATE, mirrored as a statement
	// modeStripOnly: the answer carries capture columns (an EXECUTE of a
	// statement prepared with them), which the client must not see, but
	// its rows are not mirrored (the reason is recorded).
	modeStripOnly
	// modeUnseen: an EXECUTE of a name the proxy did not see prepared (it
	// should fail), recorded as not mirrored should it write after all.
	modeUnseen
)

// mirrored reports whether a statement in this mode is mirrored.
func (m stmtMode) mirrored() bool { return m == modeCapture || m == modeStatement || m == modeTruncate }

// stmtState is a prepared statement of the session.
type stmtState struct {
	info      *stmtInfo
	st        *rewrite.Statement // nil when it did not parse
	sql       string             // the client's text
	paramOIDs []byte             // the Parse message's parameter type section
	// Tracking sessions only, owned by the client goroutine.
	serverSQL string // what the server has prepared under the name
	mode      stmtMode
	plan      *rewrite.Capture
	desc      *stmtDesc // the server-side form's description
	// plannedFor is the configuration the server-side form was chosen
	// under; Bind re-plans only when it changed.
	plannedFor *runtimeState
	// execOf is, for EXECUTE name(...), the SQL prepared statement it was
	// planned against; Bind re-plans when name has changed since.
	execOf *sqlStmt
	// paramTypes are the parameter types the server reported for the
	// client's own Describe (set by the upstream goroutine).
	paramTypes atomic.Pointer[[]uint32]
	// portal is the portal state shared by the statement's portals that
	// keep nothing of their own; see boundPortal.
	portal *portalState
}

// boundPortal returns the state of a portal bound to the statement that
// keeps no parameters: one read-only value for every such Bind, rebuilt
// when the statement was re-planned.
func (st *stmtState) boundPortal() *portalState {
	if p := st.portal; p != nil && p.st == st.st && p.mode == st.mode && p.plan == st.plan && p.desc == st.desc {
		return p
	}
	st.portal = &portalState{st: st.st, mode: st.mode, plan: st.plan, desc: st.desc}
	return st.portal
}

// stmtDesc is the description of a statement's server-side form, filled by
// the upstream goroutine from a Describe the proxy injects.
type stmtDesc struct {
	layout     *layout  // set before ready is closed; nil: not a capture shape
	paramTypes []uint32 // from ParameterDescription
	ready      chan struct{}
	once       sync.Once
}

func newStmtDesc() *stmtDesc { return &stmtDesc{ready: make(chan struct{})} }

func (d *stmtDesc) setReady() { d.once.Do(func() { close(d.ready) }) }

func (d *stmtDesc) isReady() bool {
	select {
	case <-d.ready:
		return true
	default:
		return false
	}
}

// waitReady waits for the description, bounded.
func (d *stmtDesc) waitReady(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.ready:
		return true
	case <-t.C:
		return false
	}
}

// portalState is a bound portal in a tracking session: the statement as it
// was when bound.
type portalState struct {
	st   *rewrite.Statement
	mode stmtMode
	plan *rewrite.Capture
	desc *stmtDesc
	// params are the Bind parameters, kept for statements mirrored as SQL
	// and for reads to be shadowed.
	params       [][]byte
	paramFormats []int16
	// shadow is set when the portal's read is shadowed; resultFormats and
	// sql are then kept for it.
	shadow        bool
	resultFormats []int16
	sql           string
	paramOIDs     []uint32
}

// queryState follows a simple Query through its statements.
type queryState struct {
	stmts []*rewrite.Statement
	modes []stmtMode
	plans []*rewrite.Capture
	idx   int     // statement whose results are arriving
	cur   *layout // layout of the current statement's rows, if captured
	// begin is set while the BEGIN the proxy put in front of the client's
	// statements has not answered yet.
	begin bool
	// copy is set for a COPY FROM the proxy runs through a staging table:
	// on the staging step (apply false) and on the insert that follows it.
	copy  *copyState
	apply bool
	// effects are what each statement does to the session's SQL prepared
	// statements, nil when none does anything (see sqlprepare.go).
	effects []*sqlEffect
}

// effect returns the current statement's effect on SQL prepared
// statements, or nil.
func (q *queryState) effect() *sqlEffect {
	if q.idx < len(q.effects) {
		return q.effects[q.idx]
	}
	return nil
}

// settle marks the PREPAREs of the Query that the server did not answer
// as failed: an error stopped the Query before them.
func (q *queryState) settle() {
	for _, f := range q.effects {
		if f != nil {
			f.failed()
		}
	}
}

// copyState follows a COPY FROM that the proxy runs in two steps: the
// client's data is copied, with all of COPY's parsing and options, into a
// temporary staging table, then inserted into the real table with
// RETURNING, which captures the rows as stored (defaults, sequences,
// triggers included).
type copyState struct {
	st       *rewrite.Statement
	applySQL string           // INSERT ... SELECT FROM the staging table, then DROP it
	plan     *rewrite.Capture // the INSERT's capture plan
	stdin    bool
	convert  bool   // autocommit: the proxy's transaction ends it
	held     []byte // the staging COPY's CommandComplete, for the client
	failed   bool
}

func (q *queryState) current() (*rewrite.Statement, stmtMode, *rewrite.Capture) {
	if q.idx < len(q.stmts) {
		return q.stmts[q.idx], q.modes[q.idx], q.plans[q.idx]
	}
	return nil, modeNone, nil
}
