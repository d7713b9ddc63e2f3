//go:build !linux

package proxy

import "github.com/shadowproxy/shadowproxy/protocol"

// eventLoop is Linux-only (epoll); elsewhere every session uses its
// goroutines.
type eventLoop struct{}

func newEventLoop(*Server) *eventLoop { return nil }

func (*eventLoop) adopt(*session, *protocol.Reader, *protocol.Reader) (loopExit, bool) {
	return loopExit{}, false
}

func (*eventLoop) leave(*session, loopExit) bool { return false }

func (*eventLoop) close() {}

func (*eventLoop) writeClient(*session, []byte) bool { return false }

func (*eventLoop) awaitingCount() int { return 0 }
