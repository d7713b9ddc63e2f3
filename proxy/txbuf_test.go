package proxy

import (
	"slices"
	"strings"
	"testing"

	"github.com/shadowproxy/shadowproxy/mirror"
)

func upsert(table, fp, v string) mirror.Change {
	return mirror.Change{Op: mirror.OpUpsert, Table: table, Fingerprint: fp, Row: []mirror.Value{mirror.Text(v)}}
}

func TestTxBufferBound(t *testing.T) {
	big := strings.Repeat("x", 1000)
	var tx txBuffer
	tx.explicit = true
	tx.add(upsert("public.a", "f1", "small"), 4000)
	tx.savepoint("s1")
	tx.add(upsert("public.a", "f1", big), 4000)
	tx.rollbackTo("s1") // undone before the bound: forgotten
	tx.add(upsert("public.b", "f2", big), 4000)
	if tx.overflow != nil || len(tx.changes) != 2 {
		t.Fatalf("overflowed early: %d changes, overflow %v", len(tx.changes), tx.overflow)
	}
	for range 3 {
		tx.add(upsert("public.c", "f3", big), 4000)
	}
	if tx.overflow == nil || tx.changes != nil {
		t.Fatalf("past the bound the images must go: %d changes kept", len(tx.changes))
	}
	tx.rollbackTo("s1") // cannot undo past the bound; harmless
	tx.add(upsert("public.d", "f4", "x"), 4000)
	b, over := tx.take()
	if b != nil || over == nil {
		t.Fatalf("take = %v, %v; want only the overflow", b, over)
	}
	if !slices.Equal(over.tables, []string{"public.a", "public.b", "public.c", "public.d"}) ||
		!slices.Equal(over.fingerprints, []string{"f1", "f2", "f3", "f4"}) || over.changes != 6 {
		t.Fatalf("overflow = %+v", over)
	}
	if tx.overflow != nil || tx.bytes != 0 {
		t.Fatal("take must reset the buffer")
	}

	// No bound, and a transaction under it.
	for _, max := range []int64{0, 1 << 20} {
		var tx txBuffer
		for range 10 {
			tx.add(upsert("public.a", "f", big), max)
		}
		if b, over := tx.take(); over != nil || b == nil || len(b.Changes) != 10 {
			t.Fatalf("max %d: take = %v, %v", max, b, over)
		}
	}
}
