package mysqltarget

import (
	"context"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/target/internal/targettest"
)

// BenchmarkMirrorRTT measures how many transactions per second the mirror
// applies to a MySQL/MariaDB new database behind an artificial round-trip
// time, one batch per call (max_group 1, three round trips each) against
// grouped (256, the default: one multi-statement query): see
// targettest.MirrorRTT.
func BenchmarkMirrorRTT(b *testing.B) {
	e := setup(b, maria, Options{}, "")
	newTarget := func(ctx context.Context, url string) (mirror.Target, error) {
		return New(ctx, url, Options{Catalog: e.cat})
	}
	targettest.MirrorRTT(b, e.url, newTarget, e.capture(b, "public.items", "")[0],
		[]time.Duration{2 * time.Millisecond}, []int{1, 256})
}
