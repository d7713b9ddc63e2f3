package proxy

import (
	"sync"
	"time"
)

// request is one exchange the client has sent and the old database has
// not finished answering: a simple Query, or an extended-protocol batch
// ended by Sync (or a FunctionCall). Each ends with one ReadyForQuery.
type request struct {
	sent     time.Time
	extended bool // ended by Sync rather than a simple Query
	// copyIn is set when the request started an extended-protocol COPY
	// FROM STDIN: the server ignores the Sync that followed the Execute,
	// and the client's next Sync, after CopyDone, ends it instead.
	copyIn bool
}

// pendingQueue pairs requests, pushed by the client goroutine as they are
// forwarded, with ReadyForQuery messages seen by the upstream goroutine.
// It reuses its backing array, so steady traffic does not allocate.
type pendingQueue struct {
	mu   sync.Mutex
	q    []request
	head int
}

func (p *pendingQueue) push(r request) {
	p.mu.Lock()
	p.q = append(p.q, r)
	p.mu.Unlock()
}

// pop removes the request a ReadyForQuery completes and returns it with
// the number still outstanding.
func (p *pendingQueue) pop() (r request, left int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head == len(p.q) {
		return request{}, 0, false
	}
	r = p.q[p.head]
	p.head++
	if r.copyIn && p.head < len(p.q) {
		p.head++ // the Sync the server ignored
	}
	if p.head == len(p.q) {
		p.q, p.head = p.q[:0], 0
	}
	return r, len(p.q) - p.head, true
}

// markCopyIn records that the oldest request started a COPY FROM STDIN.
func (p *pendingQueue) markCopyIn() {
	p.mu.Lock()
	if p.head < len(p.q) && p.q[p.head].extended {
		p.q[p.head].copyIn = true
	}
	p.mu.Unlock()
}

func (p *pendingQueue) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.q) - p.head
}
