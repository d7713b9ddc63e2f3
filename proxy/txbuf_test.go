package proxy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/shadowproxy/shadowproxy/mirror"
)

func upsert(table, fp, v string) mirror.Change {
	return mirror.Change{Op: mirror.OpUpsert, Table: table, Fingerprint: fp, Row: []mirror.Value{mirror.Text(v)}}
}

// fakeChunks is a journal for txBuffer.spill: it records the chunks and
// hands out positions from 100 on, failing when told to.
type fakeChunks struct {
	batches []*mirror.Batch
	fail    bool
}

func (f *fakeChunks) journal(b *mirror.Batch) (uint64, error) {
	f.batches = append(f.batches, b)
	seq := uint64(99 + len(f.batches))
	if f.fail {
		return seq, errors.New("spool full")
	}
	return seq, nil
}

// values returns the first value of every change of the chunks, in order.
func (f *fakeChunks) values() []string {
	var vs []string
	for _, b := range f.batches {
		for _, c := range b.Changes {
			vs = append(vs, c.Row[0].Text)
		}
	}
	return vs
}

// sized returns a change of about 1100 bytes (changeSize) named v.
func sized(table, v string) mirror.Change {
	return upsert(table, "f-"+table, v+strings.Repeat("x", 1000))
}

func name(c mirror.Change) string { return strings.TrimRight(c.Row[0].Text, "x") }

func TestTxBufferBound(t *testing.T) {
	big := strings.Repeat("x", 1000)
	// Under the bound, and without one: one batch at the end, no chunks.
	for _, max := range []int64{0, 1 << 20} {
		var tx txBuffer
		tx.xid = 7
		for range 10 {
			if tx.add(upsert("public.a", "f", big), max) {
				t.Fatalf("max %d: a spill is due under the bound", max)
			}
		}
		if b, chunks, over := tx.take(); over != nil || chunks != nil || b == nil || len(b.Changes) != 10 || b.Xid != 7 {
			t.Fatalf("max %d: take = %v, %v, %v", max, b, chunks, over)
		}
	}

	// Past the bound a spill is due; the first writes everything in chunks
	// of at most chunkBytes, later ones a chunk's worth at a time.
	var tx txBuffer
	var j fakeChunks
	tx.explicit, tx.xid = true, 42
	tx.add(sized("public.a", "a0"), 5000)
	tx.savepoint("s1")
	tx.add(sized("public.a", "a1"), 5000)
	tx.rollbackTo("s1") // undone before any spill: forgotten
	for i := range 3 {
		if tx.add(sized("public.b", "b"+string(rune('0'+i))), 5000) {
			t.Fatalf("due at %d bytes", tx.bytes)
		}
	}
	if !tx.add(sized("public.b", "b3"), 5000) || !tx.due {
		t.Fatalf("no spill due at %d bytes", tx.bytes)
	}
	if chunks, err := tx.spill(2500, j.journal); chunks != nil || err != nil {
		t.Fatalf("spill = %v, %v", chunks, err)
	}
	if len(j.batches) != 3 || len(j.batches[0].Changes) != 2 || len(j.batches[2].Changes) != 1 {
		t.Fatalf("chunks %v, want 2+2+1 changes", j.values())
	}
	for _, b := range j.batches {
		if b.Xid != 42 {
			t.Fatalf("chunk tagged %d, want the transaction's xid", b.Xid)
		}
	}
	if tx.due || tx.bytes != 0 || len(tx.changes) != 0 || tx.base != 5 || !slices.Equal(tx.chunks, []uint64{100, 101, 102}) {
		t.Fatalf("after the spill: due %v, %d bytes, %d changes, base %d, chunks %v", tx.due, tx.bytes, len(tx.changes), tx.base, tx.chunks)
	}
	// From now on a chunk's worth (min(max, maxChunkBytes)) is due.
	tx.add(sized("public.c", "c0"), 5000)
	tx.savepoint("s2")
	tx.add(sized("public.c", "c1"), 5000)
	tx.add(sized("public.c", "c2"), 5000)
	// A ROLLBACK TO within the buffer is honoured, positions and all.
	if chunks := tx.rollbackTo("s2"); chunks != nil || len(tx.changes) != 1 || name(tx.changes[0]) != "c0" {
		t.Fatalf("rollback to s2: %v, %d changes", chunks, len(tx.changes))
	}
	// A failed statement drops only what it left in memory; what it put in
	// chunks goes with the transaction (or a ROLLBACK TO before it).
	tx.statementDone()
	tx.add(sized("public.d", "d0"), 5000)
	tx.add(sized("public.d", "d1"), 5000)
	tx.add(sized("public.d", "d2"), 5000)
	tx.add(sized("public.d", "d3"), 5000)
	if !tx.due {
		t.Fatal("no spill due past the bound after a first chunk")
	}
	if _, err := tx.spill(2500, j.journal); err != nil {
		t.Fatal(err)
	}
	tx.add(sized("public.d", "d4"), 5000)
	tx.statementFailed()
	if len(tx.changes) != 0 || tx.overflow != nil || len(tx.chunks) != 6 {
		t.Fatalf("after a failed statement: %d changes, overflow %v, chunks %v", len(tx.changes), tx.overflow, tx.chunks)
	}
	if !slices.Equal(j.values()[5:], []string{"c0" + big, "d0" + big, "d1" + big, "d2" + big, "d3" + big}) {
		t.Fatalf("chunk contents %v", j.values())
	}

	// A ROLLBACK TO that reaches into the chunks cannot be honoured: the
	// transaction falls back to its overflow, and hands its chunks over to
	// be aborted.
	chunks := tx.rollbackTo("s2")
	if !slices.Equal(chunks, []uint64{100, 101, 102, 103, 104, 105}) || tx.chunks != nil || tx.overflow == nil {
		t.Fatalf("rollback to s2 into the chunks: %v, overflow %v", chunks, tx.overflow)
	}
	tx.rollbackTo("s1") // cannot undo past the fallback; harmless
	tx.add(upsert("public.e", "f-public.e", "x"), 5000)
	b, chunks, over := tx.take()
	if b != nil || chunks != nil || over == nil {
		t.Fatalf("take = %v, %v, %v; want only the overflow", b, chunks, over)
	}
	if !slices.Equal(over.tables, []string{"public.a", "public.b", "public.c", "public.d", "public.e"}) ||
		!slices.Equal(over.fingerprints, []string{"f-public.a", "f-public.b", "f-public.c", "f-public.d", "f-public.e"}) || over.changes != 11 {
		t.Fatalf("overflow = %+v", over)
	}
	if tx.overflow != nil || tx.bytes != 0 || tx.base != 0 {
		t.Fatal("take must reset the buffer")
	}
}

// TestTxBufferChunksEnd: however a transaction with chunks ends, its
// chunks are handed to the caller, to resolve.
func TestTxBufferChunksEnd(t *testing.T) {
	spilled := func(j *fakeChunks) *txBuffer {
		tx := &txBuffer{xid: 9, explicit: true}
		for i := range 4 {
			tx.add(sized("public.a", string(rune('a'+i))), 2000)
		}
		if _, err := tx.spill(2000, j.journal); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	var j fakeChunks
	tx := spilled(&j)
	tx.add(sized("public.a", "rest"), 2000)
	b, chunks, over := tx.take()
	if b == nil || len(b.Changes) != 1 || name(b.Changes[0]) != "rest" || len(chunks) != 4 || over != nil {
		t.Fatalf("take = %v, %v, %v", b, chunks, over)
	}
	if chunks := spilled(&j).discard(); len(chunks) != 4 {
		t.Fatalf("discard = %v", chunks)
	}
	tx = spilled(&j)
	tx.forgetChunks()
	if b, chunks, over := tx.take(); b != nil || chunks != nil || over != nil {
		t.Fatalf("take after forgetChunks = %v, %v, %v", b, chunks, over)
	}

	// A journal that fails, or an xid of 0, makes the transaction fall
	// back; the chunks so far, and the failed one, are to be aborted.
	tx = spilled(&j)
	tx.add(sized("public.b", "x"), 2000)
	tx.add(sized("public.b", "y"), 2000)
	j.fail = true
	chunks, err := tx.spill(2000, j.journal)
	if err == nil || len(chunks) != 5 || tx.overflow == nil || tx.overflow.changes != 6 {
		t.Fatalf("failed spill = %v, %v, overflow %+v", chunks, err, tx.overflow)
	}
	tx = &txBuffer{}
	tx.add(sized("public.a", "a"), 10)
	if chunks, err := tx.spill(10, j.journal); err == nil || chunks != nil || tx.overflow == nil {
		t.Fatalf("spill without an xid = %v, %v, overflow %v", chunks, err, tx.overflow)
	}
}
