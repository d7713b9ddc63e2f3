package proxy

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/protocol"
)

var errDraining = protocol.Fatal(protocol.CodeCannotConnectNow, "the database system is shutting down")

// session is one client connection and its upstream connection.
//
// Two goroutines serve it once started: the session's own goroutine runs
// clientToUpstream and owns everything about the client's stream
// (statement and portal tables, routing); upstreamToClient owns the
// upstream's stream. They share only the pending-request queue, the
// transaction status and the client's write lock. Writes to the client are
// serialized by wmu because the proxy sometimes speaks to the client
// itself (errors, shutdown notices).
type session struct {
	srv      *Server
	st       *runtimeState // configuration in force for this session (client goroutine)
	upstream *upstream     // where the session's upstream is; fixed at start
	log      *slog.Logger

	client net.Conn
	wmu    sync.Mutex // serializes writes to client
	up     net.Conn

	startup *pgproto3.StartupMessage
	pid     uint32 // the proxy's own backend key data given to the client
	key     []byte
	upPID   uint32 // the old database's key data, for cancelling
	upKey   []byte

	txStatus atomic.Uint32 // last ReadyForQuery status: 'I', 'T' or 'E'
	// The session's DateStyle and TimeZone, as the server reports them.
	// dates says how captured date/time text can be read (datesISO,
	// datesConverted, datesUnreadable) and is read by the client goroutine
	// (planWrite); dateStyle and zone are used by the upstream side, which
	// turns captured dates, timestamps and timestamptz values printed in a
	// style other than ISO into ISO (isoDateTime).
	dates     atomic.Uint32
	dateStyle dateStyle
	zone      *time.Location
	pending   pendingQueue
	draining  atomic.Bool

	closeOnce sync.Once
	closed    atomic.Bool // set before the proxy closes the connections itself

	// Owned by the client goroutine.
	stmts     map[string]*stmtState
	portals   map[string]*stmtState // untracked sessions
	tportals  map[string]*portalState
	sqlStmts  map[string]*sqlStmt       // prepared with SQL PREPARE; see sqlprepare.go
	limited   map[string]*limitedPortal // by portal name; see limitedPortal
	path      *searchPath               // the session's search_path, for shadow reads
	capture   bool                      // writes are captured (dual-write phases)
	shadowing bool                      // reads are shadowed (shadow-read)
	inRequest bool                      // messages sent since the last Sync or Query

	// Dual-write, client goroutine: the transaction state the server will
	// be in, whether a captured write was sent in it, whether the current
	// extended batch runs in a transaction the proxy opened.
	clientTx       bool
	txWrote        bool
	batchConverted bool
	beginPrepared  bool
	// beginLost is set by the upstream goroutine when the server skipped
	// the Parse of the proxy's BEGIN (see injectBegin).
	beginLost atomic.Bool
	copyWait  *copyState // a staged COPY waiting for the client's CopyDone

	// Dual-write: tracking is set once, by the client goroutine at a
	// request boundary, and read by both.
	tracking atomic.Bool
	exp      expectQueue
	// converted carries the transaction status at the end of a request
	// the proxy put in a transaction of its own, to the client goroutine
	// that commits it.
	converted chan byte
	done      chan struct{} // closed when the session closes

	// The open transaction's images: filled by the upstream goroutine,
	// taken by the client goroutine just before COMMIT. txMu also covers
	// the upstream goroutine's handling of each message.
	txMu       sync.Mutex
	tx         txBuffer
	vals       [][]byte
	stmtRows   int
	unresolved string // why the statement's rows were not mirrored
	temps      tempNames
	knownOID   string // event loop: the last captured row's table OID the catalog knew (see rowMayWait)
	endAfter   bool   // upstream goroutine: end the session after this message (draining)
	// layouts remembers parsed RowDescriptions of captured writes
	// (upstream goroutine); see layoutOf.
	layouts map[string]*layout

	// While the event loop serves the session it owns what the client
	// goroutine otherwise owns; lmu serializes it with leaving the loop.
	lmu sync.Mutex
	loopState
}

// serveConn runs one client connection to its end. It never panics out:
// a bug in one session must not take the proxy down.
func (s *Server) serveConn(conn net.Conn) {
	st := s.state.Load()
	ss := &session{
		srv:       s,
		st:        st,
		upstream:  st.up,
		done:      make(chan struct{}),
		converted: make(chan byte),
		client:    conn,
		log:       s.log.With("client", conn.RemoteAddr().String()),
	}
	ss.txStatus.Store('I')
	defer func() {
		if r := recover(); r != nil {
			ss.log.Error("session panic", "panic", r, "stack", string(debug.Stack()))
			ss.sendFatal(protocol.Fatal(protocol.CodeInternalError, "internal proxy error"))
		}
		ss.close()
		ss.abandonTx()
	}()
	stop := context.AfterFunc(s.ctx, func() {
		ss.sendFatal(protocol.Fatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command"))
		ss.close()
	})
	defer stop()
	ss.run()
}

func (ss *session) run() {
	cfg := ss.st.cfg
	deadline := time.Now().Add(cfg.Limits.StartupTimeout)
	_ = ss.client.SetDeadline(deadline)

	src, msg, err := ss.negotiate()
	if err != nil {
		ss.startupFailed(err)
		return
	}
	switch m := msg.(type) {
	case *pgproto3.CancelRequest:
		ss.srv.handleCancel(m)
		return
	case *pgproto3.StartupMessage:
		ss.startup = m
		ss.path = newSearchPath(m.Parameters)
	default:
		ss.startupFailed(protocol.Fatal(protocol.CodeProtocolViolation, fmt.Sprintf("unexpected startup packet %T", msg)))
		return
	}
	if u := m(ss.startup, "user"); u != "" {
		ss.log = ss.log.With("user", u, "database", m(ss.startup, "database"))
	}

	if ss.srv.Draining() {
		ss.srv.metrics.Reject(metrics.RejectDraining)
		ss.sendFatal(errDraining)
		return
	}
	if n := ss.srv.active.Add(1); n > int64(cfg.Limits.MaxClientConns) {
		ss.srv.active.Add(-1)
		ss.srv.metrics.Reject(metrics.RejectTooMany)
		ss.sendFatal(protocol.Fatal(protocol.CodeTooManyConnections, "sorry, too many clients already"))
		return
	}
	defer ss.srv.active.Add(-1)
	ss.srv.metrics.ConnOpened()
	defer ss.srv.metrics.ConnClosed()
	defer ss.srv.unregister(ss)

	cr := protocol.NewReader(src, protocol.DefaultBufferSize, cfg.Limits.MaxMessageSize)
	ctx, cancel := context.WithDeadline(ss.srv.ctx, deadline)
	var ur *protocol.Reader
	if cfg.Auth.Mode == "users" {
		ur, err = ss.loginWithOwnCredentials(ctx, cr)
	} else {
		ur, err = ss.loginPassthrough(ctx, cr)
	}
	cancel()
	if err != nil {
		ss.startupFailed(err)
		return
	}
	_ = ss.client.SetDeadline(time.Time{})
	_ = ss.up.SetDeadline(time.Time{})
	ss.log.Debug("session started", "pid", ss.pid, "upstream_pid", ss.upPID)

	ss.stmts = map[string]*stmtState{}
	ss.portals = map[string]*stmtState{}
	ss.tportals = map[string]*portalState{}
	ss.sqlStmts = map[string]*sqlStmt{}
	ss.st = nil // the first request picks up the configuration
	ss.refreshPhase()
	for {
		if x, ok := ss.srv.loop.adopt(ss, cr, ur); ok {
			if !ss.finishLoop(x) {
				return
			}
			ss.demotions++
		} else {
			ss.loopable = false
		}
		if !ss.serveGoroutines(cr, ur) {
			return
		}
	}
}

// serveGoroutines serves the session with a goroutine per direction until
// it ends, and reports false then. It reports true when the two stopped to
// give the session back to the event loop: the upstream goroutine asks for
// it at a quiet moment (handBackDue), the client goroutine agrees when
// that interrupts its wait for the client — so it is not in the middle of
// anything — and then stops the upstream goroutine the same way. Both stop
// between reads, having handled every whole message they read.
func (ss *session) serveGoroutines(cr, ur *protocol.Reader) bool {
	ss.pauseAsked.Store(false)
	ss.pausing.Store(false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				ss.log.Error("session panic (upstream→client)", "panic", r, "stack", string(debug.Stack()))
				ss.sendFatal(protocol.Fatal(protocol.CodeInternalError, "internal proxy error"))
				ss.close()
			}
		}()
		ss.upstreamToClient(ur)
	}()
	paused := ss.clientToUpstream(cr)
	if paused {
		ss.pausing.Store(true)
		_ = ss.up.SetReadDeadline(aLongTimeAgo)
	}
	<-done
	if !paused || ss.closed.Load() {
		return false
	}
	_ = ss.client.SetReadDeadline(time.Time{})
	_ = ss.up.SetReadDeadline(time.Time{})
	return true
}

// handBackDue reports, on the upstream goroutine after a response, whether
// to ask for the session to go back to the event loop that handed it over:
// nothing is outstanding, and enough requests went by — twice as many
// after each hand-over, so that a session whose traffic keeps making the
// loop hand it over (one autocommit write after another, say) settles on
// its goroutines, and one that met a large row once soon returns.
func (ss *session) handBackDue() bool {
	if !ss.loopable || ss.pending.len() != 0 || ss.closed.Load() || ss.tracking.Load() && !ss.exp.empty() {
		return false
	}
	ss.idleRuns++
	if ss.idleRuns < 1<<min(ss.demotions, 10) {
		return false
	}
	ss.idleRuns = 0
	return true
}

// askPause interrupts the client goroutine's wait for the client (see
// serveGoroutines). The flag is set before the deadline: the client
// goroutine checks it after setting an idle deadline of its own.
func (ss *session) askPause() {
	ss.pauseAsked.Store(true)
	_ = ss.client.SetReadDeadline(aLongTimeAgo)
}

var aLongTimeAgo = time.Unix(1, 0)

// m returns a startup parameter.
func m(sm *pgproto3.StartupMessage, k string) string { return sm.Parameters[k] }

// startupFailed reports a startup error to the client when it is one the
// client should see, counts it and closes.
func (ss *session) startupFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		// The client went away (e.g. psql probing for a password prompt).
		return
	case errors.As(err, &ne) && ne.Timeout():
		ss.srv.metrics.Reject(metrics.RejectStartupTimeout)
		ss.log.Info("startup timed out")
		return
	}
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		pe = protocol.Fatal(protocol.CodeConnectionFailure, err.Error())
	}
	reason := metrics.RejectProtocol
	switch pe.Code {
	case protocol.CodeInvalidPassword, protocol.CodeInvalidAuthSpec:
		reason = metrics.RejectAuth
	case protocol.CodeConnectionFailure, protocol.CodeCannotConnectNow:
		reason = metrics.RejectUpstream
	}
	ss.srv.metrics.Reject(reason)
	ss.log.Info("connection rejected", "err", pe.Message, "sqlstate", pe.Code)
	ss.sendFatal(pe)
}

// negotiate runs the startup-packet exchange up to the StartupMessage or
// CancelRequest: it answers SSLRequest (with TLS when configured) and
// GSSENCRequest, and accepts direct TLS. It returns the stream to read the
// client from, TLS-wrapped when negotiated.
func (ss *session) negotiate() (io.Reader, pgproto3.FrontendMessage, error) {
	br := bufio.NewReaderSize(ss.client, 512)
	tlsDone, gssDone := false, false
	for {
		msg, err := protocol.ReadStartup(br)
		if err != nil {
			return nil, nil, err
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest, *protocol.DirectTLS:
			_, direct := msg.(*protocol.DirectTLS)
			if tlsDone {
				return nil, nil, protocol.Fatal(protocol.CodeProtocolViolation, "SSL negotiation repeated")
			}
			tlsDone = true
			cfg := ss.st.tls
			if cfg == nil {
				if direct {
					return nil, nil, protocol.Fatal(protocol.CodeProtocolViolation, "direct SSL connection requested but SSL is not configured")
				}
				if err := ss.writeClient([]byte{'N'}); err != nil {
					return nil, nil, err
				}
				continue
			}
			if !direct {
				if err := ss.writeClient([]byte{'S'}); err != nil {
					return nil, nil, err
				}
				if br.Buffered() > 0 {
					// Bytes after SSLRequest and before the handshake could
					// be injected by a man in the middle (CVE-2021-23222).
					return nil, nil, protocol.Fatal(protocol.CodeProtocolViolation, "received unencrypted data after SSL request")
				}
			}
			tc := tls.Server(&bufConn{Conn: ss.client, r: br}, cfg)
			if err := tc.Handshake(); err != nil {
				return nil, nil, fmt.Errorf("TLS handshake: %w", err)
			}
			ss.client = tc // from here on, errors go to the client over TLS
			if direct && tc.ConnectionState().NegotiatedProtocol != "postgresql" {
				return nil, nil, protocol.Fatal(protocol.CodeProtocolViolation, "direct SSL connection requires ALPN protocol \"postgresql\"")
			}
			br = bufio.NewReaderSize(tc, 512)
		case *pgproto3.GSSEncRequest:
			if gssDone {
				return nil, nil, protocol.Fatal(protocol.CodeProtocolViolation, "GSS negotiation repeated")
			}
			gssDone = true
			if err := ss.writeClient([]byte{'N'}); err != nil {
				return nil, nil, err
			}
		default:
			return br, msg, nil
		}
	}
}

// bufConn reads through a bufio.Reader that may hold bytes already peeked
// from the connection.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// writeClient writes b to the client under the write lock.
func (ss *session) writeClient(b []byte) error {
	ss.wmu.Lock()
	_, err := ss.client.Write(b)
	ss.wmu.Unlock()
	return err
}

// sendFatal tells the client why the proxy is about to close its
// connection. Best effort: the client may be gone.
func (ss *session) sendFatal(e *protocol.Error) {
	if ss.closed.Load() {
		return
	}
	ss.srv.metrics.ObserveError(metrics.SourceProxy, e.Code)
	if ss.srv.loop.writeClient(ss, protocol.AppendErrorResponse(nil, e)) {
		return
	}
	ss.wmu.Lock()
	_ = ss.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = ss.client.Write(protocol.AppendErrorResponse(nil, e))
	ss.wmu.Unlock()
}

// close closes both connections once. The client is told nothing here.
func (ss *session) close() {
	ss.srv.loop.leave(ss, loopExit{kind: exitClosed})
	ss.closeOnce.Do(func() {
		ss.closed.Store(true)
		close(ss.done)
		ss.client.Close()
		if ss.up != nil {
			ss.up.Close()
		}
	})
}

// idle reports whether no request is outstanding and no transaction open:
// the only moment the proxy may end a session or change its phase.
func (ss *session) idle() bool {
	return ss.pending.len() == 0 && ss.txStatus.Load() == 'I'
}

// drain asks the session to end at its next transaction boundary, or now
// if it is idle.
func (ss *session) drain() {
	ss.draining.Store(true)
	if ss.idle() {
		ss.terminate(protocol.Fatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command"))
	}
}

// terminate sends a FATAL error (when e is not nil), closes the upstream politely and ends the
// session.
func (ss *session) terminate(e *protocol.Error) {
	if ss.srv.loop.leave(ss, loopExit{kind: exitTerminate, err: e}) {
		return // the session's goroutine ends it, out of the loop
	}
	if e != nil {
		ss.sendFatal(e)
	}
	if ss.up != nil && !ss.closed.Load() {
		_ = ss.up.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = ss.up.Write([]byte{'X', 0, 0, 0, 4})
	}
	ss.close()
}

// cancelUpstream asks the old database to cancel the session's running
// query.
func (ss *session) cancelUpstream() {
	if ss.upKey == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ss.upstream.cancel(ctx, ss.upPID, ss.upKey); err != nil {
		ss.log.Warn("forwarding cancel request failed", "err", err)
		return
	}
	ss.srv.metrics.CancelsForwarded.Inc()
}

// handleCancel serves a CancelRequest connection: if the key data belongs
// to a live session, the request is forwarded to the old database. As in
// Postgres, the requester is told nothing either way.
func (s *Server) handleCancel(req *pgproto3.CancelRequest) {
	ss := s.lookup(req.ProcessID)
	if ss == nil || subtle.ConstantTimeCompare(ss.key, req.SecretKey) != 1 {
		s.log.Info("cancel request with unknown key data ignored")
		return
	}
	ss.cancelUpstream()
}

// isClosedErr reports whether err comes from a connection the proxy, or
// the peer, closed: the ordinary end of a session, not worth a log line.
func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, os.ErrDeadlineExceeded)
}
