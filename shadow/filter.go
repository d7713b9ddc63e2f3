package shadow

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path"
	"strings"
	"sync/atomic"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

// filter decides on the hot path whether a read is shadowed. It is
// immutable after newFilter except for the sample threshold, and its checks
// allocate nothing: map lookups with string keys and path.Match over
// strings.
type filter struct {
	// threshold is the sample rate scaled to the uint64 range: a read is
	// sampled when a random uint64 falls below it. math.MaxUint64 means
	// every read (a rate of 1 cannot be scaled exactly).
	threshold atomic.Uint64

	includeTables, excludeTables tableSet
	includeFP, excludeFP         map[string]struct{}
}

// tableSet matches table names exactly (modulo "public.") or by pattern.
type tableSet struct {
	exact    map[string]struct{}
	patterns []string
}

func newTableSet(names []string) (tableSet, error) {
	ts := tableSet{exact: make(map[string]struct{})}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		n = unqualifyPublic(n)
		if strings.ContainsAny(n, "*?[") {
			if _, err := path.Match(n, ""); err != nil {
				return ts, fmt.Errorf("shadow: table pattern %q: %w", n, err)
			}
			ts.patterns = append(ts.patterns, n)
			continue
		}
		ts.exact[n] = struct{}{}
	}
	return ts, nil
}

func (ts *tableSet) empty() bool { return len(ts.exact) == 0 && len(ts.patterns) == 0 }

func (ts *tableSet) has(table string) bool {
	table = unqualifyPublic(table)
	if _, ok := ts.exact[table]; ok {
		return true
	}
	for _, p := range ts.patterns {
		if ok, _ := path.Match(p, table); ok {
			return true
		}
	}
	return false
}

// unqualifyPublic drops the "public." of a table name: unqualified names
// resolve there on a default search_path, so both spellings are one table.
func unqualifyPublic(name string) string { return strings.TrimPrefix(name, "public.") }

func fingerprintSet(fps []string) map[string]struct{} {
	m := make(map[string]struct{}, len(fps))
	for _, fp := range fps {
		if fp = strings.TrimSpace(fp); fp != "" {
			m[fp] = struct{}{}
		}
	}
	return m
}

func newFilter(o *Options) (*filter, error) {
	f := &filter{includeFP: fingerprintSet(o.IncludeFingerprints), excludeFP: fingerprintSet(o.ExcludeFingerprints)}
	var err error
	if f.includeTables, err = newTableSet(o.IncludeTables); err != nil {
		return nil, err
	}
	if f.excludeTables, err = newTableSet(o.ExcludeTables); err != nil {
		return nil, err
	}
	f.setRate(o.SampleRate)
	return f, nil
}

// setRate sets the sample rate (clamped to 0..1).
func (f *filter) setRate(rate float64) {
	switch {
	case !(rate > 0): // also NaN
		f.threshold.Store(0)
	case rate >= 1:
		f.threshold.Store(math.MaxUint64)
	default:
		f.threshold.Store(uint64(rate * (1 << 64)))
	}
}

// wants applies the include and exclude rules, then samples.
func (f *filter) wants(st *rewrite.Statement) bool {
	if st == nil || st.Kind != rewrite.Read || st.Fingerprint == "" {
		return false
	}
	th := f.threshold.Load()
	if th == 0 {
		return false
	}
	if len(f.includeFP) > 0 {
		if _, ok := f.includeFP[st.Fingerprint]; !ok {
			return false
		}
	}
	if _, ok := f.excludeFP[st.Fingerprint]; ok {
		return false
	}
	incl := !f.includeTables.empty()
	for _, t := range st.Tables {
		if incl && !f.includeTables.has(t) {
			return false
		}
		if f.excludeTables.has(t) {
			return false
		}
	}
	// rand's top-level functions draw from the runtime's per-thread
	// generator: no lock, no allocation.
	return th == math.MaxUint64 || rand.Uint64() < th
}
