package pgtarget

import (
	"context"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/target/internal/targettest"
)

// BenchmarkMirrorRTT measures how many transactions per second the mirror
// applies to a new database behind an artificial round-trip time, one
// transaction per round trip (max_group 1) against grouped (64, the
// default before, and 256, the default): see targettest.MirrorRTT.
func BenchmarkMirrorRTT(b *testing.B) {
	e := setup(b, pg, Options{}, "")
	newTarget := func(ctx context.Context, url string) (mirror.Target, error) { return New(ctx, url, Options{}) }
	targettest.MirrorRTT(b, e.newURL, newTarget, e.capture(b, "public.items", "")[0],
		[]time.Duration{2 * time.Millisecond, 5 * time.Millisecond}, []int{1, 64, 256})
}
