package proxy

import (
	"testing"

	"github.com/shadowproxy/shadowproxy/mirror"
)

func TestSequencerOrdersByLSNAcrossObservationRaces(t *testing.T) {
	var got []string
	s := newSequencer(func(b *mirror.Batch) { got = append(got, b.Changes[0].Table) })
	batch := func(name string) *mirror.Batch { return &mirror.Batch{Changes: []mirror.Change{{Table: name}}} }

	// A and B are in flight; B conflicts with A and committed after it
	// (larger LSN) but is observed first.
	a := s.begin()
	b := s.begin()
	s.end(b, []committedTx{{batch("B"), 200}})
	if len(got) != 0 {
		t.Fatalf("B released while A, which may precede it, is in flight: %v", got)
	}
	s.end(a, []committedTx{{batch("A"), 100}})
	if len(got) != 2 || got[0] != "A" || got[1] != "B" {
		t.Fatalf("release order %v, want [A B]", got)
	}

	// A request that began after C was observed does not hold C back.
	got = nil
	c := s.begin()
	s.end(c, []committedTx{{batch("C"), 300}})
	late := s.begin()
	if len(got) != 1 {
		t.Fatalf("C not released: %v", got)
	}
	// Requests that commit nothing just close their tickets.
	s.end(late, nil)
	if s.waiting() != 0 || len(s.open) != 0 {
		t.Fatalf("state left: %d waiting, %d open", s.waiting(), len(s.open))
	}
}

func TestSequencerSmallerLSNHoldsBackLaterBatch(t *testing.T) {
	var got []uint64
	s := newSequencer(func(b *mirror.Batch) { got = append(got, b.Seq) })
	x := s.begin()
	y := s.begin()
	z := s.begin()
	// y observed first, with the largest LSN; then z (smaller LSN) while x
	// is still open; then x.
	s.end(y, []committedTx{{&mirror.Batch{Seq: 3}, 30}})
	s.end(z, []committedTx{{&mirror.Batch{Seq: 2}, 20}})
	if len(got) != 0 {
		t.Fatalf("released %v while x is open", got)
	}
	s.end(x, []committedTx{{&mirror.Batch{Seq: 1}, 10}})
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("order %v, want [1 2 3]", got)
	}
}
