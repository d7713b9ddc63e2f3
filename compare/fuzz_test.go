package compare

import (
	"math"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// fuzzOIDs are the types whose text decoders are hand-written.
var fuzzOIDs = []uint32{
	pgtype.BoolOID, pgtype.Int8OID, pgtype.NumericOID, pgtype.Float8OID, pgtype.TextOID, pgtype.ByteaOID,
	pgtype.DateOID, pgtype.TimeOID, pgtype.TimetzOID, pgtype.TimestampOID, pgtype.TimestamptzOID,
	pgtype.JSONBOID, pgtype.UUIDOID, pgtype.IntervalOID,
}

// FuzzDecodePGText feeds arbitrary text to the PG text decoders: they must
// not panic, and what they accept must be canonical (decoding is a fixed
// point) and encodable for comparison.
func FuzzDecodePGText(f *testing.F) {
	seeds := []struct {
		oid  int
		text string
	}{
		{0, "t"}, {1, "-9223372036854775808"}, {2, "-001.500e3"}, {2, "NaN"}, {3, "-Infinity"}, {3, "1e-320"},
		{4, "héllo"}, {5, `\x00ff`}, {5, `a\\b\001`}, {6, "0044-03-15 BC"}, {6, "infinity"}, {7, "24:00:00"},
		{8, "13:04:05.5-03:30"}, {9, "2024-01-02 03:04:05.123456"}, {10, "0001-01-01 00:00:00+00 BC"},
		{11, `{"b": [1, 2.50e1], "a": "\u00e9"}`}, {12, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"},
		{13, "-1 years -2 mons +3 days -04:05:06.789"}, {13, "P1Y2M"},
	}
	for _, s := range seeds {
		f.Add(uint8(s.oid), []byte(s.text))
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		oid := fuzzOIDs[int(which)%len(fuzzOIDs)]
		v, err := DecodePGText(oid, data)
		if err != nil {
			return
		}
		switch v.Family {
		case FamilyDecimal:
			if c, ok := canonicalDecimal(v.Str); !ok || c != v.Str {
				t.Fatalf("decimal %q not canonical (%q)", v.Str, c)
			}
		case FamilyJSON:
			if c, err := canonicalJSON([]byte(v.Str)); err != nil || c != v.Str {
				t.Fatalf("json %q not canonical (%q, %v)", v.Str, c, err)
			}
		case FamilyUUID:
			if c, ok := canonicalUUID(v.Str); !ok || c != v.Str {
				t.Fatalf("uuid %q not canonical", v.Str)
			}
		case FamilyDate:
			// Dates this package prints in PG's own form must parse back.
			if v.Int != math.MaxInt64 && v.Int != math.MinInt64 {
				if y, _, _ := civilFromDays(v.Int); y >= 1 && y <= 9999 {
					if back, err := parsePGDate(formatDate(v.Int)); err != nil || back != v.Int {
						t.Fatalf("date %d → %q → %d, %v", v.Int, formatDate(v.Int), back, err)
					}
				}
			}
		case FamilyTimestamp:
			if v.Int != math.MaxInt64 && v.Int != math.MinInt64 {
				if y, _, _ := civilFromDays(floorDiv(v.Int, usPerDay)); y >= 1 && y <= 9999 {
					s := formatTimestamp(v.Int, "")
					if back, err := parsePGTimestamp(s, false); err != nil || back != v.Int {
						t.Fatalf("timestamp %d → %q → %d, %v", v.Int, s, back, err)
					}
				}
			}
		}
		// Every accepted value encodes under every plan without panicking,
		// and equal values encode equally.
		for _, p := range []colPlan{{}, {mode: encFloat, digits: 12}, {mode: encRender}, {textual: true, trim: true, jsonText: true, uuid: true, timePrec: 3}} {
			a := p.appendValue(nil, v, false)
			b := p.appendValue(nil, v, false)
			if string(a) != string(b) {
				t.Fatalf("unstable encoding of %v", v)
			}
			p.appendValue(nil, v, true)
		}
		_ = v.String()
	})
}
