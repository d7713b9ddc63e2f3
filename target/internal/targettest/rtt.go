package targettest

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
)

// MirrorRTT is the body of the targets' BenchmarkMirrorRTT: how many
// transactions per second the mirror applies to the new database at
// rawURL behind an artificial round-trip time (internal/delayproxy holds
// every answer for rtt), for each rtt and each mirror.Options.MaxGroup in
// groups. newTarget opens a target on a URL. Each iteration enqueues 512
// one-row transactions, tmpl with its column n set to 0, 1, …, and waits
// until they are applied.
func MirrorRTT(b *testing.B, rawURL string, newTarget func(ctx context.Context, url string) (mirror.Target, error),
	tmpl mirror.Change, rtts []time.Duration, groups []int) {
	const txs = 512
	for _, rtt := range rtts {
		u, err := url.Parse(rawURL)
		if err != nil {
			b.Fatal(err)
		}
		dp, err := delayproxy.New("127.0.0.1:0", u.Host, rtt)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { dp.Close() })
		u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(dp.Addr().Port))
		for _, group := range groups {
			b.Run(fmt.Sprintf("rtt=%v/max_group=%d", rtt, group), func(b *testing.B) {
				ctx := context.Background()
				tgt, err := newTarget(ctx, u.String())
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
						c := Set(tmpl, "n", mirror.Text(strconv.Itoa(i)))
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
