package mirror

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// benchBatch is a transaction of three 8-column row images, about 700
// bytes encoded.
func benchBatch() *Batch {
	cols := make([]Column, 8)
	for i := range cols {
		cols[i] = Column{Name: "column_" + strconv.Itoa(i), TypeOID: 25, TypeName: "text"}
	}
	b := &Batch{}
	for i := range 3 {
		row := make([]Value, len(cols))
		for j := range row {
			row[j] = Text(fmt.Sprintf("value %d/%d with some text", i, j))
		}
		b.Changes = append(b.Changes, Change{Op: OpUpsert, Table: "public.orders", Columns: cols, Row: row, KeyCols: []string{"column_0"}, Fingerprint: "0123456789abcdef"})
	}
	return b
}

// BenchmarkEnqueueSpool measures Enqueue with the target down, so every
// batch goes through the spool, with fsync=interval (the default group
// commit). waits/op counts Enqueue calls that had to wait for the spool
// writer (the hand-off was full).
func BenchmarkEnqueueSpool(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		b.Run(fmt.Sprintf("parallel=%v", parallel), func(b *testing.B) {
			o := Options{
				Dir:           b.TempDir(),
				QueueLen:      -1,
				Fsync:         FsyncInterval,
				FsyncInterval: 10 * time.Millisecond,
				RetryMin:      time.Second,
				Logger:        testLogger(b),
			}
			m := newMirror(b, &fakeTarget{down: true}, o)
			tmpl := benchBatch()
			enc, _ := EncodeBatch(nil, tmpl)
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			b.ResetTimer()
			if parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						c := *tmpl
						m.Enqueue(&c)
					}
				})
			} else {
				for b.Loop() {
					c := *tmpl
					m.Enqueue(&c)
				}
			}
			b.StopTimer()
			st := m.Stats()
			b.ReportMetric(float64(st.HandoffWaits)/float64(b.N), "waits/op")
			if st.Dropped != 0 {
				b.Fatalf("dropped %d batches", st.Dropped)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := m.Close(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// nopTarget applies instantly.
type nopTarget struct{}

func (nopTarget) Apply(context.Context, *Batch) error { return nil }
func (nopTarget) Close() error                        { return nil }

// BenchmarkEnqueueMemory is the fast path: a target that keeps up.
func BenchmarkEnqueueMemory(b *testing.B) {
	o := Options{Dir: b.TempDir(), Fsync: FsyncInterval, Logger: testLogger(b)}
	m := newMirror(b, nopTarget{}, o)
	tmpl := benchBatch()
	b.ReportAllocs()
	for b.Loop() {
		c := *tmpl
		m.Enqueue(&c)
	}
	b.StopTimer()
	closeMirror(b, m)
}
