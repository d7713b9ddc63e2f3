package shadow

import (
	"testing"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

func classify(t *testing.T, sql string) *rewrite.Statement {
	t.Helper()
	cl, err := rewrite.NewClassifier(0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cl.ClassifyOne(sql)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestWantsRules(t *testing.T) {
	users := classify(t, "SELECT * FROM users WHERE id = $1")
	join := classify(t, "SELECT * FROM public.users u JOIN sales.orders o ON o.user_id = u.id")
	audit := classify(t, "SELECT * FROM audit_2024")
	constant := classify(t, "SELECT 1")
	write := classify(t, "UPDATE users SET name = 'x'")
	unparsed := classify(t, "SELEC oops")

	tests := []struct {
		name string
		opts Options
		st   *rewrite.Statement
		want bool
	}{
		{"a read", Options{}, users, true},
		{"a write is never shadowed", Options{}, write, false},
		{"an unparsed statement is never shadowed", Options{}, unparsed, false},
		{"nil", Options{}, nil, false},
		{"sample rate 0", Options{SampleRate: -1}, users, false},
		{"included table", Options{IncludeTables: []string{"users"}}, users, true},
		{"included with public. spelled out", Options{IncludeTables: []string{"public.users"}}, users, true},
		{"not included", Options{IncludeTables: []string{"orders"}}, users, false},
		{"a join needs all its tables included", Options{IncludeTables: []string{"users"}}, join, false},
		{"a join with all tables included", Options{IncludeTables: []string{"users", "sales.orders"}}, join, true},
		{"schema pattern", Options{IncludeTables: []string{"users", "sales.*"}}, join, true},
		{"excluded table", Options{ExcludeTables: []string{"users"}}, join, false},
		{"excluded by pattern", Options{ExcludeTables: []string{"audit_*"}}, audit, false},
		{"pattern does not match", Options{ExcludeTables: []string{"audit_*"}}, users, true},
		{"exclusion wins over inclusion", Options{IncludeTables: []string{"users"}, ExcludeTables: []string{"public.users"}}, users, false},
		{"no tables pass an include list", Options{IncludeTables: []string{"users"}}, constant, true},
		{"included fingerprint", Options{IncludeFingerprints: []string{users.Fingerprint}}, users, true},
		{"other fingerprint", Options{IncludeFingerprints: []string{users.Fingerprint}}, join, false},
		{"excluded fingerprint", Options{ExcludeFingerprints: []string{" " + users.Fingerprint + " "}}, users, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.NewURL = "postgres://app@127.0.0.1:1/db"
			rate := o.SampleRate
			o.SampleRate = 1
			s := newShadower(t, o)
			if rate < 0 {
				s.SetSampleRate(0)
			}
			if got := s.Wants(tt.st); got != tt.want {
				t.Errorf("Wants = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWantsSamples(t *testing.T) {
	st := classify(t, "SELECT * FROM users WHERE id = $1")
	s := newShadower(t, Options{NewURL: "postgres://app@127.0.0.1:1/db", SampleRate: 0.25})
	const n = 20000
	got := 0
	for range n {
		if s.Wants(st) {
			got++
		}
	}
	// Binomial(20000, 0.25): the standard deviation is about 61.
	if got < n/4-400 || got > n/4+400 {
		t.Errorf("sampled %d of %d at rate 0.25", got, n)
	}
	s.SetSampleRate(0)
	for range 1000 {
		if s.Wants(st) {
			t.Fatal("sampled at rate 0")
		}
	}
	s.SetSampleRate(1)
	for range 1000 {
		if !s.Wants(st) {
			t.Fatal("skipped at rate 1")
		}
	}
}

func TestWantsDoesNotAllocate(t *testing.T) {
	st := classify(t, "SELECT * FROM public.users u JOIN sales.orders o ON o.user_id = u.id")
	s := newShadower(t, Options{NewURL: "mysql://app@127.0.0.1:1/db", MySQL: true, SampleRate: 0.5,
		IncludeTables: []string{"users", "sales.*"}, ExcludeTables: []string{"audit_*", "secrets"},
		ExcludeFingerprints: []string{"0123456789abcdef"}})
	if n := testing.AllocsPerRun(1000, func() { s.Wants(st) }); n != 0 {
		t.Errorf("Wants allocates %v times per call", n)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{},
		{NewURL: "postgres://x@127.0.0.1/db", SampleRate: 1.5},
		{NewURL: "postgres://x@127.0.0.1/db", SampleRate: -0.1},
		{NewURL: "postgres://x@127.0.0.1/db", NoiseSample: 2},
		{NewURL: "postgres://x@127.0.0.1/db", IncludeTables: []string{"bad["}},
		{NewURL: "mysql://x@127.0.0.1/db"},
		{NewURL: "postgres://x@127.0.0.1/db", MySQL: true},
		{NewURL: "postgres://x@127.0.0.1/db", OldURL: "nonsense://"},
	} {
		if s, err := New(t.Context(), o); err == nil {
			s.Close(t.Context())
			t.Errorf("New accepted %+v", o)
		}
	}
}

func TestReserveRelease(t *testing.T) {
	s := newShadower(t, Options{NewURL: "postgres://app@127.0.0.1:1/db", MemoryCap: 1000, PerComparisonCap: 5000})
	if s.PerComparisonCap() != 1000 {
		t.Errorf("per-comparison cap %d, want it capped at the memory cap", s.PerComparisonCap())
	}
	if !s.Reserve(600) || !s.Reserve(400) {
		t.Fatal("reservations within the cap refused")
	}
	if s.Reserve(1) {
		t.Fatal("reservation beyond the cap accepted")
	}
	s.Release(400)
	if !s.Reserve(300) {
		t.Fatal("reservation after a release refused")
	}
	s.Release(900)
	if got := s.mem.Load(); got != 0 {
		t.Errorf("%d bytes reserved after releasing all", got)
	}
}
