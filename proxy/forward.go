package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/protocol"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// stmtInfo is what the proxy knows about a prepared statement or portal.
type stmtInfo struct {
	kind metrics.QueryKind
}

var unparsedInfo = &stmtInfo{kind: metrics.QueryUnparsed}

// maxPortals bounds the portal table of a client that binds named portals
// and never closes them; portals end with their transaction anyway.
const maxPortals = 1024

// clientToUpstream forwards the client's messages to the old database
// until either side ends, or until the session goes back to the event loop
// (it then reports true). Messages are forwarded as raw bytes, a whole
// buffered run per write; only the types the proxy needs are looked at.
func (ss *session) clientToUpstream(cr *protocol.Reader) bool {
	idle := ss.st.cfg.Limits.IdleTimeout
	w := &upstreamWriter{ss: ss}
	for {
		start := cr.Offset()
		for {
			typ, n, ok, err := cr.Header()
			if err != nil {
				w.send(cr.Span(start))
				w.flush()
				ss.terminate(protocol.Fatal(protocol.CodeProtocolViolation, err.Error()))
				return false
			}
			if !ok {
				break
			}
			if !cr.Fits(n) {
				w.send(cr.Span(start))
				if !w.flush() {
					return false
				}
				if inspectsClient(typ) {
					cr.Grow(n)
					start = cr.Offset()
					break // read the rest of it
				}
				if _, err := cr.Stream(countingWriter{ss.up, ss.srv.metrics.BytesClientToUpstream}); err != nil {
					// A failed write is the old database's side.
					ss.endOnError(err, isWriteErr(err))
					return false
				}
				start = cr.Offset()
				continue
			}
			before := cr.Offset()
			msg, ok, _ := cr.Next()
			if !ok {
				break
			}
			if msg.Type == protocol.MsgTerminate {
				w.send(cr.Span(start))
				w.flush()
				ss.close()
				return false
			}
			if !ss.inRequest && ss.idle() {
				ss.refreshPhase()
			}
			ss.inRequest = !endsRequest(msg.Type)
			if !ss.tracking.Load() {
				ss.onClientMessage(msg)
				continue
			}
			// Dual-write: the message may be rewritten or preceded by
			// messages of the proxy's own. The run before it is cut off
			// only when that happens, so that a batch still goes out in one
			// piece.
			w.cr, w.start, w.before = cr, &start, before
			if out, replace := ss.trackClient(msg, w); replace {
				w.send(out)
				start = cr.Offset()
			}
			w.cr = nil
		}
		w.send(cr.Span(start))
		if !w.flush() {
			return false
		}
		if idle > 0 {
			_ = ss.client.SetReadDeadline(time.Now().Add(idle))
		}
		// Checked after the idle deadline is set: askPause sets its
		// deadline after the flag, so one of the two always wins.
		if ss.pauseAsked.Load() {
			return true
		}
		if err := cr.Fill(); err != nil {
			if ss.pauseAsked.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
				return true
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && idle > 0 && !ss.closed.Load() {
				if ss.idle() {
					ss.terminate(protocol.Fatal(protocol.CodeIdleSessionTimeout, "terminating connection due to idle-session timeout"))
					return false
				}
				continue // busy: the timeout only applies between transactions
			}
			ss.clientGone()
			return false
		}
	}
}

// endsRequest reports whether a client message of this type ends a request
// (the server answers it with ReadyForQuery).
func endsRequest(typ byte) bool {
	return typ == protocol.MsgSync || typ == protocol.MsgQuery || typ == protocol.MsgFunctionCall
}

// inspectsClient reports whether the proxy must see a whole client message
// of this type rather than stream it through.
func inspectsClient(typ byte) bool {
	switch typ {
	case protocol.MsgQuery, protocol.MsgParse, protocol.MsgBind, protocol.MsgExecute, protocol.MsgClose:
		return true
	}
	return false
}

// onClientMessage looks at one client message before it is forwarded.
func (ss *session) onClientMessage(msg protocol.Message) {
	switch msg.Type {
	case protocol.MsgQuery:
		ss.pending.push(request{sent: time.Now()})
		sql, _, _ := protocol.CString(msg.Body)
		stmts, _ := ss.srv.classifier.Classify(string(sql))
		for _, st := range stmts {
			ss.srv.metrics.CountQuery(metrics.QueryKind(st.Kind.String()))
			ss.sqlUntracked(st)
			ss.pathUntracked(st)
		}
	case protocol.MsgParse:
		name, rest, _ := protocol.CString(msg.Body)
		sql, params, _ := protocol.CString(rest)
		// Drivers re-parse the unnamed statement with the same text for
		// every query: keep what is known instead of allocating anew.
		if st := ss.stmts[string(name)]; st != nil && st.sql == string(sql) && string(st.paramOIDs) == string(params) {
			break
		}
		st := ss.newStmt(string(sql), params)
		st.serverSQL = st.sql
		ss.stmts[string(name)] = st
	case protocol.MsgBind:
		portal, rest, _ := protocol.CString(msg.Body)
		name, _, _ := protocol.CString(rest)
		st := ss.stmts[string(name)]
		if len(portal) > 0 && len(ss.portals) >= maxPortals {
			clear(ss.portals)
		}
		ss.portals[string(portal)] = st
	case protocol.MsgExecute:
		portal, _, _ := protocol.CString(msg.Body)
		if st := ss.portals[string(portal)]; st != nil {
			ss.srv.metrics.CountQuery(st.info.kind)
			ss.sqlUntracked(st.st)
			ss.pathUntracked(st.st)
		} else {
			ss.srv.metrics.CountQuery(metrics.QueryUnparsed)
		}
	case protocol.MsgClose:
		if len(msg.Body) > 0 {
			name, _, _ := protocol.CString(msg.Body[1:])
			if msg.Body[0] == 'S' {
				delete(ss.stmts, string(name))
			} else {
				delete(ss.portals, string(name))
			}
		}
	case protocol.MsgSync:
		ss.pending.push(request{sent: time.Now(), extended: true})
	case protocol.MsgFunctionCall:
		ss.pending.push(request{sent: time.Now()})
	}
}

// newStmt records a statement the client prepares.
func (ss *session) newStmt(sql string, params []byte) *stmtState {
	st := &stmtState{info: unparsedInfo, sql: sql, paramOIDs: append([]byte(nil), params...)}
	if cls, err := ss.srv.classifier.ClassifyOne(sql); err == nil && cls != nil {
		st.st = cls
		st.info = infoFor(cls)
	}
	return st
}

// infoFor returns the shared stmtInfo of a statement kind, so that tracking
// a prepared statement does not allocate.
func infoFor(st *rewrite.Statement) *stmtInfo {
	if k := int(st.Kind); k < len(kindInfos) && kindInfos[k] != nil {
		return kindInfos[k]
	}
	return unparsedInfo
}

var kindInfos = func() []*stmtInfo {
	all := []rewrite.Kind{rewrite.Read, rewrite.Write, rewrite.DDL, rewrite.Tx, rewrite.Session, rewrite.Other, rewrite.Unparsed}
	out := make([]*stmtInfo, 256)
	for _, k := range all {
		out[k] = &stmtInfo{kind: metrics.QueryKind(k.String())}
	}
	return out
}()

// gather collects the pieces of one batch, to be written with one system
// call.
type gather struct {
	bufs net.Buffers
	n    int
}

func (g *gather) add(b []byte) {
	if len(b) > 0 {
		g.bufs = append(g.bufs, b)
		g.n += len(b)
	}
}

// writeTo writes the batch to w and empties it, returning its size.
func (g *gather) writeTo(w io.Writer) (int, error) {
	n := g.n
	var err error
	if len(g.bufs) == 1 {
		_, err = w.Write(g.bufs[0])
	} else {
		bufs := g.bufs
		_, err = bufs.WriteTo(w)
	}
	clear(g.bufs)
	g.bufs, g.n = g.bufs[:0], 0
	return n, err
}

// bytes returns the batch as one slice and empties it: its only piece as
// it is, or the pieces joined in *buf.
func (g *gather) bytes(buf *[]byte) []byte {
	var b []byte
	switch len(g.bufs) {
	case 0:
	case 1:
		b = g.bufs[0]
	default:
		b = (*buf)[:0]
		for _, p := range g.bufs {
			b = append(b, p...)
		}
		*buf = b
	}
	clear(g.bufs)
	g.bufs, g.n = g.bufs[:0], 0
	return b
}

// upstreamWriter gathers what goes to the old database from one read of
// the client — runs of the client's bytes and messages the proxy rewrote or
// added — and writes them with one system call.
type upstreamWriter struct {
	ss *session
	gather
	// While a message is being handled: the reader, the start of the run
	// not yet sent and where the message begins.
	cr     *protocol.Reader
	start  *int
	before int
	// loop: the event loop's writer, which must never write (see
	// clientMayWait): a flush is a bug and panics.
	loop bool
}

// cut adds the run of client bytes before the message being handled.
func (w *upstreamWriter) cut() {
	if w.cr != nil && *w.start < w.before {
		w.add(w.cr.Slice(*w.start, w.before))
		*w.start = w.before
	}
}

// send adds b after everything before the message being handled.
func (w *upstreamWriter) send(b []byte) {
	w.cut()
	w.add(b)
}

// flush writes what was gathered. It reports false when the session is
// over.
func (w *upstreamWriter) flush() bool {
	if w.loop {
		panic("proxy: the event loop was asked to wait for the old database")
	}
	w.cut()
	if w.n == 0 {
		return true
	}
	n, err := w.writeTo(w.ss.up)
	w.ss.srv.metrics.BytesClientToUpstream.Add(float64(n))
	if err != nil {
		w.ss.endOnError(err, true)
		return false
	}
	return true
}

// clientGone ends a session whose client disconnected or failed. A query
// still running is cancelled on the old database, so it does not run on
// for nobody and its locks are released.
func (ss *session) clientGone() {
	if ss.closed.Load() {
		return
	}
	if ss.pending.len() > 0 || ss.txStatus.Load() != 'I' {
		ss.cancelUpstream()
	}
	ss.terminate(nil)
}

// endOnError ends the session after a failed read or write on either
// connection.
func (ss *session) endOnError(err error, upstreamSide bool) {
	if ss.closed.Load() {
		return
	}
	if upstreamSide {
		ss.upstreamLost(err)
		return
	}
	ss.clientGone()
}

// upstreamLost tells the client the old database went away, so it gets an
// error instead of a hang, and ends the session.
func (ss *session) upstreamLost(err error) {
	if ss.closed.Load() {
		return
	}
	var ne net.Error
	if !isClosedErr(err) && !(errors.As(err, &ne) && ne.Timeout()) {
		ss.log.Warn("upstream connection failed", "err", err)
	} else {
		ss.log.Info("upstream connection closed")
	}
	ss.sendFatal(protocol.Fatal(protocol.CodeConnectionFailure, "terminating connection because the connection to the upstream database was lost"))
	ss.close()
}

// upstreamToClient forwards the old database's messages to the client
// until either side ends.
func (ss *session) upstreamToClient(ur *protocol.Reader) {
	cw := &clientWriter{ss: ss}
	for {
		start := ur.Offset()
		for {
			_, n, ok, err := ur.Header()
			if err != nil {
				cw.send(ur.Span(start))
				cw.flush()
				ss.upstreamLost(err)
				return
			}
			if !ok {
				break
			}
			if !ur.Fits(n) {
				// A large row or COPY chunk: stream it through rather than
				// hold it whole.
				cw.send(ur.Span(start))
				if !cw.flush() {
					return
				}
				ss.wmu.Lock()
				_, err := ur.Stream(countingWriter{ss.client, ss.srv.metrics.BytesUpstreamToClient})
				ss.wmu.Unlock()
				if err != nil {
					ss.endOnError(err, !isWriteErr(err))
					return
				}
				start = ur.Offset()
				continue
			}
			before := ur.Offset()
			msg, ok, _ := ur.Next()
			if !ok {
				break
			}
			if out, replace := ss.serverMessage(msg); replace {
				cw.send(ur.Slice(start, before))
				cw.send(out)
				start = ur.Offset()
			}
			if ss.endAfter {
				cw.send(ur.Span(start))
				cw.flush()
				ss.terminate(protocol.Fatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command"))
				return
			}
		}
		cw.send(ur.Span(start))
		if !cw.flush() {
			return
		}
		if ss.handBackDue() {
			ss.askPause()
		}
		if err := ur.Fill(); err != nil {
			if ss.pausing.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
				return // back to the event loop
			}
			ss.upstreamLost(err)
			return
		}
	}
}

// serverMessage handles one upstream message before it is forwarded, as
// both forwarders (the goroutine and the event loop) do: through
// trackServer for a tracking session. It returns what the client gets
// instead when replace is set.
func (ss *session) serverMessage(msg protocol.Message) (out []byte, replace bool) {
	if !ss.tracking.Load() {
		ss.onServerMessage(msg)
		return nil, false
	}
	out, replace = ss.trackServer(msg)
	if msg.Type != protocol.MsgReadyForQuery { // trackServer handled it
		ss.onServerMessage(msg)
	}
	return out, replace
}

// onServerMessage looks at one upstream message before it is forwarded.
func (ss *session) onServerMessage(msg protocol.Message) {
	switch msg.Type {
	case protocol.MsgReadyForQuery:
		ss.observeReady(msg)
	case protocol.MsgErrorResponse:
		_, code := protocol.ErrorFields(msg.Body)
		ss.srv.metrics.ObserveError(metrics.SourceUpstream, code)
	case 'G': // CopyInResponse
		ss.pending.markCopyIn()
	case protocol.MsgParameterStatus:
		ss.noteParameterStatus(msg.Body)
	}
}

// noteParameterStatus follows the server-reported settings the capture
// path depends on.
func (ss *session) noteParameterStatus(body []byte) {
	name, rest, _ := protocol.CString(body)
	value, _, _ := protocol.CString(rest)
	ss.noteParameter(string(name), string(value))
}

// noteParameter records DateStyle and TimeZone (see session.dates).
func (ss *session) noteParameter(name, value string) {
	switch name {
	case "DateStyle":
		ss.dateStyle = parseDateStyle(value)
		switch {
		case ss.dateStyle.iso():
			ss.dates.Store(datesISO)
		case ss.dateStyle.convertible():
			ss.dates.Store(datesConverted)
		default:
			ss.dates.Store(datesUnreadable)
		}
	case "TimeZone":
		// nil when Go does not know the zone: timestamptz values printed
		// with an abbreviation then cannot be read back (see zoneOffset).
		ss.zone, _ = time.LoadLocation(value)
	}
}

// observeReady records the ReadyForQuery that ends a client's request:
// latency, the transaction status, and whether a draining session may end.
func (ss *session) observeReady(msg protocol.Message) {
	if len(msg.Body) > 0 {
		ss.txStatus.Store(uint32(msg.Body[0]))
	}
	r, left, ok := ss.pending.pop()
	if ok {
		ss.srv.metrics.ObserveUpstreamLatency(time.Since(r.sent))
	}
	if len(msg.Body) > 0 && ss.tracking.Load() {
		// Untracked, a session's search_path changes only by untracked,
		// which ready has nothing to settle for.
		ss.path.ready(msg.Body[0], left == 0)
	}
	if left == 0 && ss.draining.Load() && ss.txStatus.Load() == 'I' {
		ss.endAfter = true
	}
}

// clientWriter gathers what goes to the client from one read of the old
// database and writes it with one system call, under the client's write
// lock.
type clientWriter struct {
	ss *session
	gather
}

func (w *clientWriter) send(b []byte) { w.add(b) }

// flush writes what was gathered. It reports false when the session is
// over.
func (w *clientWriter) flush() bool {
	if w.n == 0 {
		return true
	}
	w.ss.wmu.Lock()
	n, err := w.writeTo(w.ss.client)
	w.ss.wmu.Unlock()
	w.ss.srv.metrics.BytesUpstreamToClient.Add(float64(n))
	if err != nil {
		w.ss.endOnError(err, false)
		return false
	}
	return true
}

// writeErr marks an error from writing to the client while streaming.
type writeErr struct{ error }

func (e writeErr) Unwrap() error { return e.error }

func isWriteErr(err error) bool {
	var we writeErr
	return errors.As(err, &we)
}

// countingWriter writes to a connection, counts the bytes in a metric, and
// marks its errors as write errors.
type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	c interface{ Add(float64) }
}

func (cw countingWriter) Write(b []byte) (int, error) {
	n, err := cw.w.Write(b)
	cw.c.Add(float64(n))
	if err != nil {
		return n, writeErr{err}
	}
	return n, nil
}
