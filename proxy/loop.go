package proxy

import (
	"os"
	"sync/atomic"

	"github.com/shadowproxy/shadowproxy/protocol"
)

// disableEventLoop turns the event loop off (SHADOWPROXY_EVENT_LOOP=0):
// every session then uses its two goroutines. For comparing the two and
// for ruling the loop out when chasing a problem.
var disableEventLoop = os.Getenv("SHADOWPROXY_EVENT_LOOP") == "0"

// exitKind is how the event loop hands a session back to its goroutine.
type exitKind uint8

const (
	// exitDemote: the goroutine path takes over from the same buffered
	// bytes (after writing what the loop could not).
	exitDemote exitKind = iota + 1
	// exitTerminate: end the session with err.
	exitTerminate
	// exitClosed: the session was closed from outside.
	exitClosed
)

// loopExit is what the event loop hands back with a session.
type loopExit struct {
	kind exitKind
	err  *protocol.Error
	// The rest of a run the loop could not write whole: to the old
	// database, or to the client. clientLocked: the loop holds the
	// client's write lock, which the goroutine releases after writing.
	pendingUp, pendingClient []byte
	clientLocked             bool
}

// loopState is the part of a session the event loop uses, guarded by lmu
// while the loop serves it.
type loopState struct {
	inLoop     bool
	loopID     uint64
	awaiting   bool // has requests upstream, counted in eventLoop.awaiting
	cfd, ufd   int
	cr, ur     *protocol.Reader
	released   chan loopExit
	lastClient int64 // unix nanoseconds of the last read from the client

	// Going back to the loop after it handed the session over (see
	// serveGoroutines): loopable is set once the loop took the session (a
	// plain connection), demotions counts hand-overs (session goroutine),
	// idleRuns the quiet moments since (upstream goroutine); pauseAsked and
	// pausing say why a read's deadline passed.
	loopable   bool
	demotions  int
	idleRuns   int
	pauseAsked atomic.Bool
	pausing    atomic.Bool
}

// finishLoop acts on how the event loop handed the session back. It
// reports whether the session goes on in its goroutines.
func (ss *session) finishLoop(x loopExit) bool {
	switch x.kind {
	case exitDemote:
		if len(x.pendingUp) > 0 {
			n, err := ss.up.Write(x.pendingUp)
			ss.srv.metrics.BytesClientToUpstream.Add(float64(n))
			if err != nil {
				ss.upstreamLost(err)
				return false
			}
		}
		if len(x.pendingClient) > 0 {
			n, err := ss.client.Write(x.pendingClient)
			if x.clientLocked {
				ss.wmu.Unlock()
			}
			ss.srv.metrics.BytesUpstreamToClient.Add(float64(n))
			if err != nil {
				ss.clientGone()
				return false
			}
		} else if x.clientLocked {
			ss.wmu.Unlock()
		}
		return true
	case exitTerminate:
		ss.terminate(x.err)
	}
	return false
}
