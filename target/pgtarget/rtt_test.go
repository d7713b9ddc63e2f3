package pgtarget

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/internal/delayproxy"
	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/target/internal/targettest"
)

// BenchmarkMirrorRTT measures how many transactions per second the mirror
// applies to a new database behind an artificial round-trip time (the
// delayproxy shim holds every answer for rtt), one transaction per round
// trip (max_group 1) against grouped (64, the default before, and 256,
// the default). Each iteration enqueues txs one-row transactions and waits
// until they are applied.
func BenchmarkMirrorRTT(b *testing.B) {
	e := setup(b, pg, Options{}, "")
	tmpl := e.capture(b, "public.items", "")[0]
	const txs = 512
	for _, rtt := range []time.Duration{2 * time.Millisecond, 5 * time.Millisecond} {
		u, err := url.Parse(e.newURL)
		if err != nil {
			b.Fatal(err)
		}
		dp, err := delayproxy.New("127.0.0.1:0", u.Host, rtt)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { dp.Close() })
		u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(dp.Addr().Port))
		for _, group := range []int{1, 64, 256} {
			b.Run(fmt.Sprintf("rtt=%v/max_group=%d", rtt, group), func(b *testing.B) {
				ctx := context.Background()
				tgt, err := New(ctx, u.String(), Options{})
				if err != nil {
					b.Fatal(err)
				}
				m, err := mirror.New(tgt, mirror.Options{
					Dir: b.TempDir(), MaxGroup: group, Fsync: mirror.FsyncNever,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				})
				if err != nil {
					tgt.Close()
					b.Fatal(err)
				}
				defer m.Close(ctx)
				var seq uint64
				b.ResetTimer()
				for b.Loop() {
					for i := range txs {
						c := targettest.Set(tmpl, "n", mirror.Text(strconv.Itoa(i)))
						seq = m.Enqueue(&mirror.Batch{Changes: []mirror.Change{c}})
					}
					if err := m.WaitApplied(ctx, seq); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*txs)/b.Elapsed().Seconds(), "tx/s")
				if st := m.Stats(); st.DeadLettered != 0 || st.Failed != 0 {
					b.Fatalf("stats: %+v", st)
				}
			})
		}
	}
}
