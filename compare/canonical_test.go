package compare

import (
	"math"
	"strings"
	"testing"
)

func TestCanonicalDecimal(t *testing.T) {
	cases := []struct{ in, want string }{
		{"1.50", "1.5"}, {"001.500", "1.5"}, {"-0", "0"}, {"-0.000", "0"}, {"+7", "7"}, {".5", "0.5"}, {"5.", "5"},
		{"100", "100"}, {"1e3", "1000"}, {"1.5E-3", "0.0015"}, {"-12.340e1", "-123.4"}, {"0e10", "0"},
		{"nan", "NaN"}, {"Infinity", "Infinity"}, {"-infinity", "-Infinity"},
		{"1e2000", "1e2000"}, {"-12.5e-3000", "-1.25e-2999"},
	}
	for _, c := range cases {
		got, ok := canonicalDecimal(c.in)
		if !ok || got != c.want {
			t.Errorf("canonicalDecimal(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "-", ".", "1.2.3", "1e", "1e+", "0x10", "1,5", "１"} {
		if got, ok := canonicalDecimal(bad); ok {
			t.Errorf("canonicalDecimal(%q) = %q, want rejection", bad, got)
		}
	}
}

func TestAppendRoundedFloat(t *testing.T) {
	cases := []struct {
		f      float64
		digits int
		want   string
	}{
		{0.1 + 0.2, 12, "3e-01"}, {0.3, 12, "3e-01"}, {math.Copysign(0, -1), 12, "0"}, {125, 12, "1.25e+02"},
		{1.0 / 3, 6, "3.33333e-01"}, {float64(float32(0.1)), 6, "1e-01"}, {math.NaN(), 12, "NaN"}, {math.Inf(-1), 12, "-Infinity"},
	}
	for _, c := range cases {
		if got := string(appendRoundedFloat(nil, c.f, c.digits)); got != c.want {
			t.Errorf("appendRoundedFloat(%v, %d) = %q, want %q", c.f, c.digits, got, c.want)
		}
	}
}

func TestCanonicalJSON(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{` [ 1.0 , 2.50, -0, 1e2 ] `, `[1,2.5,0,100]`},
		{`{"s":"<&>\u00e9\n\"","n":null,"t":true}`, `{"n":null,"s":"<&>é\u000a\"","t":true}`},
		{`{"nested":{"z":[{"y":1,"x":0}]}}`, `{"nested":{"z":[{"x":0,"y":1}]}}`},
		{`"just a string"`, `"just a string"`},
	}
	for _, c := range cases {
		got, err := canonicalJSON([]byte(c.in))
		if err != nil || got != c.want {
			t.Errorf("canonicalJSON(%s) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{``, `{`, `{"a":1} {"b":2}`, `[1,]`, `nul`} {
		if got, err := canonicalJSON([]byte(bad)); err == nil {
			t.Errorf("canonicalJSON(%q) = %q, want error", bad, got)
		}
	}
}

func TestCanonicalUUID(t *testing.T) {
	const want = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
	for _, in := range []string{want, strings.ToUpper(want), "{" + want + "}", strings.ReplaceAll(want, "-", "")} {
		if got, ok := canonicalUUID(in); !ok || got != want {
			t.Errorf("canonicalUUID(%q) = %q, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "a0eebc99", want + "0", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"} {
		if _, ok := canonicalUUID(bad); ok {
			t.Errorf("canonicalUUID(%q) accepted", bad)
		}
	}
}

func TestCivilDays(t *testing.T) {
	for _, d := range []int64{-800000, -719528, -1, 0, 1, 19782, 2932896} {
		y, m, dd := civilFromDays(d)
		if back := daysFromCivil(y, m, dd); back != d {
			t.Errorf("%d → %d-%d-%d → %d", d, y, m, dd, back)
		}
	}
	if d := daysFromCivil(2000, 3, 1); d != 11017 {
		t.Errorf("2000-03-01 = day %d", d)
	}
}

func TestParsePGInterval(t *testing.T) {
	cases := []struct {
		in               string
		months, days, us int64
		ok               bool
	}{
		{"00:00:00", 0, 0, 0, true},
		{"1 day", 0, 1, 0, true},
		{"-1 days +02:00:00", 0, -1, 2 * 3600e6, true},
		{"1 year 2 mons 3 days 04:05:06.5", 14, 3, 4*3600e6 + 5*60e6 + 6.5e6, true},
		{"-00:00:01.5", 0, 0, -1.5e6, true},
		{"P1Y2M", 0, 0, 0, false},
		{"@ 1 day", 0, 0, 0, false},
	}
	for _, c := range cases {
		m, d, us, ok := parsePGInterval(c.in)
		if ok != c.ok || (ok && (m != c.months || d != c.days || us != c.us)) {
			t.Errorf("parsePGInterval(%q) = %d %d %d %v", c.in, m, d, us, ok)
		}
	}
	// An unparsed style is kept as text, not rejected.
	v, err := DecodePGText(1186, []byte("P1Y2M"))
	if err != nil || v.Family != FamilyInterval || v.Str != "P1Y2M" {
		t.Errorf("iso interval = %#v, %v", v, err)
	}
}

func TestValueString(t *testing.T) {
	cases := []struct {
		v    Value
		want string
	}{
		{Null, "NULL"}, {BoolValue(true), "true"}, {TextValue("a "), `"a "`}, {BytesValue([]byte{1, 0xab}), `\x01ab`},
		{Value{Family: FamilyDate, Int: -1}, "1969-12-31"}, {Value{Family: FamilyTime, Int: 3723000001}, "01:02:03.000001"},
		{ts("1969-12-31 23:59:59.5"), "1969-12-31 23:59:59.5"}, {tstz("2024-01-01 00:00:00+01"), "2023-12-31 23:00:00Z"},
		{Value{Family: FamilyTimestamp, Int: math.MaxInt64}, "infinity"}, {dec("-1.50"), "-1.5"},
	}
	for _, c := range cases {
		if got := c.v.String(); got != c.want {
			t.Errorf("%#v.String() = %q, want %q", c.v, got, c.want)
		}
	}
}
