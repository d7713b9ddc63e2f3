package proxy

import (
	"container/heap"
	"sync"

	"github.com/shadowproxy/shadowproxy/mirror"
)

// sequencer hands committed transactions to the mirror in the order they
// committed on the old database, as far as that order matters: for every two
// transactions that wrote the same row.
//
// Sessions observe their commits independently, so two conflicting
// transactions can be observed in the wrong order (the second's
// CommandComplete can overtake the first's on the proxy's goroutines). Each
// row image therefore carries pg_current_wal_insert_lsn(), evaluated while
// the row is locked: a transaction that writes a row after another one's
// commit sees a larger LSN than every row of that other transaction. Batches
// are released in LSN order once no request that could still produce an
// earlier conflicting commit is outstanding:
//
//   - every request that may commit (a COMMIT, an autocommit write, any
//     Sync or Query of a capturing session) takes a ticket before it is
//     forwarded, so before the old database can commit it;
//   - when a batch is observed its "horizon" is the next ticket number: a
//     transaction it conflicts with committed before its rows were written,
//     so holds a ticket below the horizon;
//   - the batch with the smallest LSN is released when every ticket below
//     its horizon has ended; a later-observed batch with a smaller LSN
//     holds back those behind it.
//
// Releasing hands the batch to emit, which must not block (Mirror.Enqueue
// spills to disk instead).
type sequencer struct {
	emit func(*mirror.Batch)

	mu      sync.Mutex
	next    uint64          // next ticket number
	open    map[uint64]bool // tickets not yet ended
	minOpen uint64          // smallest open ticket, or next when none
	order   uint64          // batches observed so far
	ready   batchHeap
}

type pendingBatch struct {
	b       *mirror.Batch
	lsn     uint64
	horizon uint64
	order   uint64 // observation order, to break LSN ties deterministically
}

type batchHeap []*pendingBatch

func (h batchHeap) Len() int { return len(h) }
func (h batchHeap) Less(i, j int) bool {
	if h[i].lsn != h[j].lsn {
		return h[i].lsn < h[j].lsn
	}
	return h[i].order < h[j].order
}
func (h batchHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *batchHeap) Push(x any)   { *h = append(*h, x.(*pendingBatch)) }
func (h *batchHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

func newSequencer(emit func(*mirror.Batch)) *sequencer {
	return &sequencer{emit: emit, open: map[uint64]bool{}}
}

// begin takes a ticket for a request about to be forwarded.
func (s *sequencer) begin() uint64 {
	s.mu.Lock()
	t := s.next
	s.next++
	s.open[t] = true
	if len(s.open) == 1 {
		s.minOpen = t
	}
	s.mu.Unlock()
	return t
}

// end closes a ticket, with the transactions the request committed (each
// with the largest LSN among its rows).
func (s *sequencer) end(ticket uint64, committed []committedTx) {
	s.mu.Lock()
	for _, c := range committed {
		s.order++
		heap.Push(&s.ready, &pendingBatch{b: c.b, lsn: c.lsn, horizon: s.next, order: s.order})
	}
	delete(s.open, ticket)
	if ticket == s.minOpen {
		s.minOpen = s.next
		for t := range s.open {
			s.minOpen = min(s.minOpen, t)
		}
	}
	var out []*mirror.Batch
	for s.ready.Len() > 0 && s.ready[0].horizon <= s.minOpen {
		out = append(out, heap.Pop(&s.ready).(*pendingBatch).b)
	}
	// Emit under the lock so that batches reach the mirror in release order
	// even when two sessions release at once.
	for _, b := range out {
		s.emit(b)
	}
	s.mu.Unlock()
}

// waiting returns how many observed batches wait for earlier requests.
func (s *sequencer) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready.Len()
}
