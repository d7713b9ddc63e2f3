//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/shadowproxy/shadowproxy/protocol"
)

// eventLoop forwards the traffic of plain (non-TLS) sessions on one
// goroutine waiting on one epoll set, as pgbouncer does. The two goroutines
// per session the rest of the proxy uses cost, on a small machine, about
// half again as much CPU per round trip: each wait goes through the Go
// scheduler (an extra read that finds nothing, a park, a netpoll wake-up,
// often a thread hand-off). The loop reads and writes with non-blocking
// system calls and waits only in epoll_wait.
//
// The loop does only what never blocks. In the dual-write phases it runs
// the same trackClient and trackServer as the goroutines (capture, the
// journal write before a COMMIT, shadow captures), up to a message that
// could make them wait (clientMayWait, serverMayWait, rowMayWait). That message, and
// anything else — a message larger than the buffer, a write the socket
// cannot take whole, an error, end of stream, Terminate — makes it hand
// the session back ("demote") to the goroutine path, which carries on from
// the same buffered bytes and the same tracking state and handles it as it
// always does. A session is served by the loop or by its goroutines, never
// both: the hand-over is serialized by the session's lmu and the released
// channel.
type eventLoop struct {
	srv  *Server
	epfd int

	mu       sync.Mutex
	sessions map[uint64]*session // by loop id
	nextID   uint64
	closed   bool

	// awaiting counts the sessions in the loop with a request the old
	// database has not answered: a wait then is a wait for an answer (see
	// busyPoller). Sessions leave the loop from other goroutines too.
	awaiting atomic.Int32

	startOnce sync.Once
	// scanEvery is how often idle sessions are looked for: a quarter of
	// the shortest idle timeout seen, at most a second.
	scanEvery atomic.Int64

	// Used by the loop goroutine only: the writer trackClient is given
	// (which must never write: see clientMayWait), the pieces of a run with
	// rewritten messages, and the buffer they are joined in.
	w    upstreamWriter
	out  gather
	buf  []byte
	busy *busyPoller
}

// Loop event tokens: the session's loop id and which side is readable.
const (
	sideClient = 0
	sideUp     = 1
)

// yieldEvery is how often a busy loop lets the scheduler run: a goroutine
// that never reschedules makes sysmon retake its P on every system call
// (and keeps sysmon waking every 20µs).
const yieldEvery = 5 * time.Millisecond

var errWouldBlock = errors.New("would block")

func newEventLoop(srv *Server) *eventLoop {
	if disableEventLoop {
		return nil
	}
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		srv.log.Warn("event loop unavailable; every session uses goroutines", "err", err)
		return nil
	}
	l := &eventLoop{srv: srv, epfd: fd, sessions: map[uint64]*session{}}
	l.scanEvery.Store(int64(time.Second))
	return l
}

// dupFD returns a duplicate of a plain socket's descriptor, or false for
// anything else (TLS).
func dupFD(c net.Conn) (int, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) {
		var r uintptr
		var e syscall.Errno
		r, _, e = syscall.Syscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(r)
	}); err != nil || derr != nil {
		return 0, false
	}
	return fd, true
}

// fdConn turns a descriptor back into a net.Conn (registered with Go's
// poller), taking it over.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	c, err := net.FileConn(f) // dups fd
	f.Close()
	return c, err
}

// fdReader reads a non-blocking socket without waiting: errWouldBlock
// when nothing is there. It and writeFD use recvfrom and sendto rather
// than read and write, which on a socket take a longer way through the
// kernel (file-position and notification hooks) to the same place.
type fdReader struct{ fd int }

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(r.fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return 0, errWouldBlock
		case e != 0:
			return 0, e
		case n == 0:
			return 0, io.EOF
		}
		return int(n), nil
	}
}

// epollPoll is epoll_wait with a zero timeout, as a raw system call: it
// never blocks.
func epollPoll(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// writeFD writes as much of b as the socket takes now.
func writeFD(fd int, b []byte) (int, error) {
	done := 0
	for done < len(b) {
		p := b[done:]
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return done, e
		}
		done += int(n)
	}
	return done, nil
}

// adopt hands a session to the loop if it qualifies, and blocks until the
// loop hands it back. It reports false (at once) when the session does not
// qualify, and otherwise how it came back.
func (l *eventLoop) adopt(ss *session, cr, ur *protocol.Reader) (loopExit, bool) {
	if l == nil {
		return loopExit{}, false
	}
	// The client's reader may sit on a bufio.Reader from the startup
	// exchange; bytes held there would be invisible to the loop.
	if b, ok := cr.Source().(interface{ Buffered() int }); ok && b.Buffered() > 0 {
		return loopExit{}, false
	}
	if ur.Source() != io.Reader(ss.up) {
		return loopExit{}, false
	}
	cfd, ok := dupFD(ss.client)
	if !ok {
		return loopExit{}, false
	}
	ufd, ok := dupFD(ss.up)
	if !ok {
		syscall.Close(cfd)
		return loopExit{}, false
	}
	l.startOnce.Do(func() { go l.run() })
	ss.loopable = true

	ss.lmu.Lock()
	l.mu.Lock()
	if l.closed || ss.closed.Load() {
		l.mu.Unlock()
		ss.lmu.Unlock()
		syscall.Close(cfd)
		syscall.Close(ufd)
		return loopExit{}, false
	}
	// Go's poller must not hear of these sockets while the loop serves
	// them (every packet would wake a thread for nothing): the loop keeps
	// only its duplicates, and release makes new connections.
	ss.client.Close()
	ss.up.Close()
	ss.cr, ss.ur = cr, ur
	cr.SetSource(fdReader{cfd})
	ur.SetSource(fdReader{ufd})
	ss.cfd, ss.ufd = cfd, ufd
	ss.released = make(chan loopExit, 1)
	ss.lastClient = time.Now().UnixNano()
	l.nextID++
	ss.loopID = l.nextID
	if t := ss.st.cfg.Limits.IdleTimeout; t > 0 && int64(t/4) < l.scanEvery.Load() {
		l.scanEvery.Store(int64(max(t/4, time.Millisecond)))
	}
	l.sessions[ss.loopID] = ss
	l.mu.Unlock()
	// Level-triggered: the loop reads once per event and hears again about
	// what it left.
	ss.inLoop = true
	ss.srv.metrics.EventLoopSessions.Inc()
	if l.ctl(syscall.EPOLL_CTL_ADD, cfd, ss.loopID<<1|sideClient) != nil || l.ctl(syscall.EPOLL_CTL_ADD, ufd, ss.loopID<<1|sideUp) != nil {
		l.release(ss, loopExit{kind: exitDemote})
	}
	ss.lmu.Unlock()
	x := <-ss.released
	return x, true
}

func (l *eventLoop) ctl(op, fd int, token uint64) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	// EpollEvent's Fd and Pad hold the 64-bit user data.
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = token
	return syscall.EpollCtl(l.epfd, op, fd, &ev)
}

// removeLocked takes a session out of the epoll set and the table. The
// caller holds ss.lmu.
func (l *eventLoop) removeLocked(ss *session) {
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ss.cfd, nil)
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ss.ufd, nil)
	l.mu.Lock()
	delete(l.sessions, ss.loopID)
	l.mu.Unlock()
}

// release hands a session back to its goroutine. The caller holds ss.lmu
// and ss.inLoop is set.
func (l *eventLoop) release(ss *session, x loopExit) {
	ss.inLoop = false
	l.noteAwaiting(ss, false)
	ss.srv.metrics.EventLoopSessions.Dec()
	if x.kind == exitDemote {
		ss.srv.metrics.EventLoopHandovers.Inc()
	}
	l.removeLocked(ss)
	if x.kind != exitClosed {
		client, err1 := fdConn(ss.cfd)
		up, err2 := fdConn(ss.ufd)
		if err := errors.Join(err1, err2); err != nil {
			ss.log.Error("event loop: cannot hand the session back", "err", err)
			if client != nil {
				client.Close()
			}
			if up != nil {
				up.Close()
			}
			if x.clientLocked {
				ss.wmu.Unlock()
			}
			ss.released <- loopExit{kind: exitClosed}
			return
		}
		ss.client, ss.up = client, up
		ss.cr.SetSource(client)
		ss.ur.SetSource(up)
	} else {
		syscall.Close(ss.cfd)
		syscall.Close(ss.ufd)
	}
	ss.released <- x
}

// whileServed runs f under the session's loop lock if the loop serves the
// session, and reports whether it did.
func (l *eventLoop) whileServed(ss *session, f func()) bool {
	if l == nil {
		return false
	}
	ss.lmu.Lock()
	defer ss.lmu.Unlock()
	if !ss.inLoop {
		return false
	}
	f()
	return true
}

// writeClient writes b to the client of a session the loop serves, best
// effort and without waiting; false when the loop does not serve it.
func (l *eventLoop) writeClient(ss *session, b []byte) bool {
	return l.whileServed(ss, func() {
		ss.wmu.Lock()
		_, _ = writeFD(ss.cfd, b)
		ss.wmu.Unlock()
	})
}

// leave takes a session out of the loop from outside and hands x to its
// goroutine. It reports whether the session was in the loop.
func (l *eventLoop) leave(ss *session, x loopExit) bool {
	return l.whileServed(ss, func() { l.release(ss, x) })
}

// close makes the loop take no more sessions; it stops within a second
// of its last session leaving.
func (l *eventLoop) close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	started := true
	l.startOnce.Do(func() { started = false })
	if !started {
		syscall.Close(l.epfd)
	}
}

func (l *eventLoop) run() {
	defer syscall.Close(l.epfd)
	l.busy = newBusyPoller(l.srv.metrics.EventLoopBusyPolls.WithLabelValues("hit"), l.srv.metrics.EventLoopBusyPolls.WithLabelValues("miss"))
	defer l.busy.close()
	events := make([]syscall.EpollEvent, 128)
	lastYield := time.Now()
	lastScan := lastYield
	busy := false // the last wait found more than one session ready
	for {
		// Wake up now and then to notice close and idle sessions.
		every := time.Duration(l.scanEvery.Load())
		// Under load something is usually ready: then look without the
		// scheduler's system-call bookkeeping first, and block (letting
		// the runtime hand the P on) only when nothing is.
		n, err := 0, error(nil)
		if busy {
			n, err = epollPoll(l.epfd, events)
		}
		window := l.srv.cfg.Load().Loop.BusyPoll
		kind := waitClients
		if l.awaiting.Load() > 0 {
			kind = waitAnswer
		}
		if n == 0 && err == nil {
			n, err = l.busy.poll(l.epfd, events, window, kind)
		}
		if n == 0 && err == nil {
			slept := time.Now()
			n, err = syscall.EpollWait(l.epfd, events, int(every.Milliseconds()))
			l.busy.slept(time.Since(slept), n, window, kind)
		}
		busy = n > 1
		if err != nil && err != syscall.EINTR {
			l.srv.log.Error("event loop: epoll_wait failed", "err", err)
			time.Sleep(10 * time.Millisecond)
		}
		for i := range max(n, 0) {
			token := *(*uint64)(unsafe.Pointer(&events[i].Fd))
			l.mu.Lock()
			ss := l.sessions[token>>1]
			l.mu.Unlock()
			if ss != nil {
				l.serve(ss, token&1)
			}
		}
		now := time.Now()
		if now.Sub(lastScan) >= every {
			lastScan = now
			if l.scan(now) {
				return
			}
		}
		if now.Sub(lastYield) >= yieldEvery {
			runtime.Gosched()
			lastYield = time.Now()
		}
	}
}

// scan ends sessions idle past their idle timeout, and reports whether the
// loop is closed and empty.
func (l *eventLoop) scan(now time.Time) bool {
	l.mu.Lock()
	if l.closed && len(l.sessions) == 0 {
		l.mu.Unlock()
		return true
	}
	var idle []*session
	for _, ss := range l.sessions {
		idle = append(idle, ss)
	}
	l.mu.Unlock()
	for _, ss := range idle {
		ss.lmu.Lock()
		if t := ss.st.cfg.Limits.IdleTimeout; ss.inLoop && t > 0 && now.UnixNano()-ss.lastClient >= int64(t) && ss.idle() {
			l.release(ss, loopExit{kind: exitTerminate, err: protocol.Fatal(protocol.CodeIdleSessionTimeout, "terminating connection due to idle-session timeout")})
		}
		ss.lmu.Unlock()
	}
	return false
}

// serve handles one readiness event of a session.
func (l *eventLoop) serve(ss *session, side uint64) {
	ss.lmu.Lock()
	defer ss.lmu.Unlock()
	if !ss.inLoop {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			l.out = gather{}
			ss.log.Error("session panic (event loop)", "panic", r, "stack", string(debug.Stack()))
			l.release(ss, loopExit{kind: exitTerminate, err: protocol.Fatal(protocol.CodeInternalError, "internal proxy error")})
		}
	}()
	var x *loopExit
	if side == sideClient {
		x = l.fromClient(ss)
	} else {
		x = l.fromUpstream(ss)
	}
	if x != nil {
		l.release(ss, *x)
		return
	}
	l.noteAwaiting(ss, ss.pending.len() > 0)
}

// noteAwaiting records whether the session has requests upstream. The
// caller holds ss.lmu.
func (l *eventLoop) noteAwaiting(ss *session, a bool) {
	if a == ss.awaiting {
		return
	}
	ss.awaiting = a
	if a {
		l.awaiting.Add(1)
	} else {
		l.awaiting.Add(-1)
	}
}

var demote = &loopExit{kind: exitDemote}

// fromClient forwards what the client sent, as clientToUpstream does. A
// tracking session's messages go through trackClient as there, up to one
// that could make it wait (clientMayWait): the session's goroutines take
// over from that message.
func (l *eventLoop) fromClient(ss *session) *loopExit {
	cr := ss.cr
	if err := cr.Fill(); err != nil {
		if err == errWouldBlock {
			return nil
		}
		return demote // end of stream or an error: the goroutine path reads it again
	}
	ss.lastClient = time.Now().UnixNano()
	start := cr.Offset()
	l.w = upstreamWriter{ss: ss, loop: true}
	var exit *loopExit
	for {
		typ, n, ok, err := cr.Header()
		if err != nil || (ok && !cr.Fits(n)) || typ == protocol.MsgTerminate && ok {
			exit = demote
			break
		}
		if !ok {
			break
		}
		if !ss.inRequest && ss.idle() {
			ss.refreshPhase()
		}
		before := cr.Offset()
		msg, ok, _ := cr.Next()
		if !ok {
			break
		}
		tracking := ss.tracking.Load()
		if tracking && ss.clientMayWait(msg) {
			cr.Rewind(before)
			exit = demote
			break
		}
		ss.inRequest = !endsRequest(msg.Type)
		if !tracking {
			ss.onClientMessage(msg)
			continue
		}
		out, replace := ss.trackClient(msg, &l.w)
		if l.w.n > 0 {
			panic("event loop: trackClient wrote for a message clientMayWait passed")
		}
		if replace {
			l.out.add(cr.Slice(start, before))
			l.out.add(out)
			start = cr.Offset()
		}
	}
	l.out.add(cr.Span(start))
	run := l.out.bytes(&l.buf)
	if len(run) == 0 {
		return exit
	}
	w, err := writeFD(ss.ufd, run)
	ss.srv.metrics.BytesClientToUpstream.Add(float64(w))
	if err != nil {
		// Full socket buffer, or the old database went away: the goroutine
		// path writes the rest, blocking or reporting the error. The rest
		// may lie in the loop's own buffer, which is reused.
		return &loopExit{kind: exitDemote, pendingUp: append([]byte(nil), run[w:]...)}
	}
	return exit
}

// fromUpstream forwards what the old database sent, as upstreamToClient
// does, through trackServer for a tracking session.
func (l *eventLoop) fromUpstream(ss *session) *loopExit {
	ur := ss.ur
	if err := ur.Fill(); err != nil {
		if err == errWouldBlock {
			return nil
		}
		return demote
	}
	start := ur.Offset()
	var exit *loopExit
	for {
		typ, n, ok, err := ur.Header()
		if err != nil || (ok && !ur.Fits(n)) {
			exit = demote
			break
		}
		if !ok {
			break
		}
		if ss.tracking.Load() && ss.serverMayWait(typ) {
			exit = demote
			break
		}
		before := ur.Offset()
		msg, ok, _ := ur.Next()
		if !ok {
			break
		}
		if typ == protocol.MsgDataRow && ss.tracking.Load() && ss.rowMayWait(msg.Body) {
			ur.Rewind(before)
			exit = demote
			break
		}
		if out, replace := ss.serverMessage(msg); replace {
			l.out.add(ur.Slice(start, before))
			l.out.add(out)
			start = ur.Offset()
		}
		if ss.endAfter {
			exit = &loopExit{kind: exitTerminate, err: protocol.Fatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")}
			break
		}
	}
	l.out.add(ur.Span(start))
	run := l.out.bytes(&l.buf)
	if len(run) == 0 {
		return exit
	}
	ss.wmu.Lock()
	w, err := writeFD(ss.cfd, run)
	ss.srv.metrics.BytesUpstreamToClient.Add(float64(w))
	if err != nil {
		// The goroutine path writes the rest; the client's write lock goes
		// with it, so that nothing else gets in between.
		return &loopExit{kind: exitDemote, pendingClient: append([]byte(nil), run[w:]...), clientLocked: true}
	}
	ss.wmu.Unlock()
	return exit
}

// awaitingCount is for tests.
func (l *eventLoop) awaitingCount() int { return int(l.awaiting.Load()) }
