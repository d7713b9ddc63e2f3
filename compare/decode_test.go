package compare

import (
	"database/sql"
	"encoding/binary"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

func mustDays(y, m, d int64) int64 { return daysFromCivil(y, m, d) }

// TestDecodePG decodes each value from its text form and from the binary
// form pgtype encodes, and expects the same Value from both.
func TestDecodePG(t *testing.T) {
	m := pgtype.NewMap()
	utc := time.UTC
	cases := []struct {
		name   string
		oid    uint32
		text   string
		binary any // Go value pgtype encodes to binary; nil = text only
		want   Value
	}{
		{"bool true", pgtype.BoolOID, "t", true, BoolValue(true)},
		{"bool false", pgtype.BoolOID, "f", false, BoolValue(false)},
		{"int2", pgtype.Int2OID, "-12", int16(-12), IntValue(-12)},
		{"int4", pgtype.Int4OID, "2147483647", int32(math.MaxInt32), IntValue(math.MaxInt32)},
		{"int8", pgtype.Int8OID, "-9223372036854775808", int64(math.MinInt64), IntValue(math.MinInt64)},
		{"oid", pgtype.OIDOID, "4000000000", uint32(4000000000), IntValue(4000000000)},
		{"numeric scale", pgtype.NumericOID, "1.50", pgtype.Numeric{Int: big.NewInt(150), Exp: -2, Valid: true}, dec("1.5")},
		{"numeric big", pgtype.NumericOID, "-12345678901234567890.000100", pgtype.Numeric{Int: mustBig("-12345678901234567890000100"), Exp: -6, Valid: true}, dec("-12345678901234567890.0001")},
		{"numeric zero", pgtype.NumericOID, "0.00", pgtype.Numeric{Int: big.NewInt(0), Exp: -2, Valid: true}, dec("0")},
		{"numeric NaN", pgtype.NumericOID, "NaN", pgtype.Numeric{NaN: true, Valid: true}, Value{Family: FamilyDecimal, Str: "NaN"}},
		{"numeric infinity", pgtype.NumericOID, "-Infinity", pgtype.Numeric{InfinityModifier: pgtype.NegativeInfinity, Valid: true}, Value{Family: FamilyDecimal, Str: "-Infinity"}},
		{"float8", pgtype.Float8OID, "0.1", 0.1, FloatValue(0.1)},
		{"float8 inf", pgtype.Float8OID, "-Infinity", math.Inf(-1), FloatValue(math.Inf(-1))},
		{"text", pgtype.TextOID, "héllo ", "héllo ", TextValue("héllo ")},
		{"varchar", pgtype.VarcharOID, "x", "x", TextValue("x")},
		{"bpchar", pgtype.BPCharOID, "ab  ", "ab  ", TextValue("ab  ")},
		{"bytea hex", pgtype.ByteaOID, `\x00ff41`, []byte{0, 0xff, 'A'}, BytesValue([]byte{0, 0xff, 'A'})},
		{"date", pgtype.DateOID, "2024-02-29", pgtype.Date{Time: time.Date(2024, 2, 29, 0, 0, 0, 0, utc), Valid: true}, Value{Family: FamilyDate, Int: mustDays(2024, 2, 29)}},
		{"date BC", pgtype.DateOID, "0044-03-15 BC", pgtype.Date{Time: time.Date(-43, 3, 15, 0, 0, 0, 0, utc), Valid: true}, Value{Family: FamilyDate, Int: mustDays(-43, 3, 15)}},
		{"date infinity", pgtype.DateOID, "infinity", pgtype.Date{InfinityModifier: pgtype.Infinity, Valid: true}, Value{Family: FamilyDate, Int: math.MaxInt64}},
		{"time", pgtype.TimeOID, "13:04:05.25", pgtype.Time{Microseconds: 13*3600e6 + 4*60e6 + 5.25e6, Valid: true}, Value{Family: FamilyTime, Int: 13*3600e6 + 4*60e6 + 5.25e6}},
		{"timestamp", pgtype.TimestampOID, "2024-01-02 03:04:05.123456", pgtype.Timestamp{Time: time.Date(2024, 1, 2, 3, 4, 5, 123456000, utc), Valid: true},
			TimestampValue(time.Date(2024, 1, 2, 3, 4, 5, 123456000, utc))},
		{"timestamp -infinity", pgtype.TimestampOID, "-infinity", pgtype.Timestamp{InfinityModifier: pgtype.NegativeInfinity, Valid: true}, Value{Family: FamilyTimestamp, Int: math.MinInt64}},
		{"timestamptz offset", pgtype.TimestamptzOID, "2024-01-02 05:34:05+02:30", pgtype.Timestamptz{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, utc), Valid: true},
			TimestampTZValue(time.Date(2024, 1, 2, 3, 4, 5, 0, utc))},
		{"timestamptz BC", pgtype.TimestamptzOID, "0001-01-01 00:00:00+00 BC", pgtype.Timestamptz{Time: time.Date(0, 1, 1, 0, 0, 0, 0, utc), Valid: true},
			TimestampTZValue(time.Date(0, 1, 1, 0, 0, 0, 0, utc))},
		{"jsonb", pgtype.JSONBOID, `{"b": [1, 2.0], "a": "x"}`, map[string]any{"a": "x", "b": []any{1, 2}}, jsonv(`{"a":"x","b":[1,2]}`)},
		{"json", pgtype.JSONOID, `[true, null]`, []any{true, nil}, jsonv(`[true,null]`)},
		{"uuid", pgtype.UUIDOID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
			pgtype.UUID{Bytes: [16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}, Valid: true},
			Value{Family: FamilyUUID, Str: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}},
		{"interval", pgtype.IntervalOID, "1 year 2 mons -3 days +04:05:06.5", pgtype.Interval{Months: 14, Days: -3, Microseconds: 4*3600e6 + 5*60e6 + 6.5e6, Valid: true},
			Value{Family: FamilyInterval, Str: "14m-3d14706500000us"}},
		{"int array", pgtype.Int4ArrayOID, "{1,2,NULL}", []any{int32(1), int32(2), nil}, Value{Family: FamilyArray, Str: "{1,2,NULL}"}},
		{"inet as text", pgtype.InetOID, "10.0.0.1/32", nil, Value{Family: FamilyOther, Str: "10.0.0.1/32"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodePGText(tc.oid, []byte(tc.text))
			if tc.oid == pgtype.Int4ArrayOID {
				got, err = decodePGText(pgFamily(m, tc.oid), tc.oid, []byte(tc.text))
			}
			if err != nil {
				t.Fatalf("text: %v", err)
			}
			if !sameValue(got, tc.want) {
				t.Errorf("text = %#v, want %#v", got, tc.want)
			}
			if tc.binary == nil {
				return
			}
			bin, err := m.Encode(tc.oid, pgtype.BinaryFormatCode, tc.binary, nil)
			if err != nil {
				t.Fatalf("encode binary: %v", err)
			}
			got, err = DecodePGBinary(m, tc.oid, bin)
			if err != nil {
				t.Fatalf("binary: %v", err)
			}
			if !sameValue(got, tc.want) {
				t.Errorf("binary = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func mustBig(s string) *big.Int {
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return b
}

func sameValue(a, b Value) bool {
	if a.Family == FamilyFloat && b.Family == FamilyFloat {
		return a.Float == b.Float || (math.IsNaN(a.Float) && math.IsNaN(b.Float))
	}
	return a == b
}

func TestDecodePGNullAndErrors(t *testing.T) {
	m := pgtype.NewMap()
	if v, err := DecodePGText(pgtype.Int4OID, nil); err != nil || !v.IsNull() {
		t.Errorf("text NULL = %v, %v", v, err)
	}
	if v, err := DecodePGBinary(m, pgtype.Int4OID, nil); err != nil || !v.IsNull() {
		t.Errorf("binary NULL = %v, %v", v, err)
	}
	bad := []struct {
		oid  uint32
		text string
	}{
		{pgtype.BoolOID, "yes"},
		{pgtype.Int4OID, "1.5"},
		{pgtype.NumericOID, "1.2.3"},
		{pgtype.Float8OID, "0x1p3"},
		{pgtype.DateOID, "2024-13-01"},
		{pgtype.TimestampOID, "2024-01-01"},
		{pgtype.TimestamptzOID, "2024-01-01 00:00:00"},
		{pgtype.JSONBOID, `{"a":`},
		{pgtype.UUIDOID, "not-a-uuid"},
		{pgtype.ByteaOID, `\xzz`},
	}
	for _, b := range bad {
		if v, err := DecodePGText(b.oid, []byte(b.text)); err == nil {
			t.Errorf("DecodePGText(%d, %q) = %v, want error", b.oid, b.text, v)
		}
	}
	if _, err := DecodePGBinary(m, pgtype.Int4OID, []byte{1, 2}); err == nil {
		t.Error("short binary int4 decoded")
	}
}

func TestDecodePGTimetzAndByteaEscape(t *testing.T) {
	v, err := DecodePGText(pgtype.TimetzOID, []byte("01:30:00+02"))
	if err != nil || v.Int != 23*3600e6+30*60e6 {
		t.Errorf("timetz = %v, %v", v, err)
	}
	// Binary timetz: 03:00 at UTC+2 (offset is seconds west, so -7200).
	bin := binary.BigEndian.AppendUint64(nil, 3*3600e6)
	bin = binary.BigEndian.AppendUint32(bin, uint32(0xffffffff-7200+1))
	v, err = DecodePGBinary(pgtype.NewMap(), pgtype.TimetzOID, bin)
	if err != nil || v.Int != 1*3600e6 {
		t.Errorf("binary timetz = %v (%d), %v", v, v.Int, err)
	}
	v, err = DecodePGText(pgtype.ByteaOID, []byte(`a\\b\001`))
	if err != nil || v.Str != "a\\b\x01" {
		t.Errorf("escape bytea = %q, %v", v.Str, err)
	}
}

func TestPGRowDecoder(t *testing.T) {
	m := pgtype.NewMap()
	fields := []pgproto3.FieldDescription{
		{Name: []byte("id"), DataTypeOID: pgtype.Int8OID, TypeModifier: -1},
		{Name: []byte("at"), DataTypeOID: pgtype.TimestampOID, TypeModifier: 3},
		{Name: []byte("code"), DataTypeOID: pgtype.BPCharOID, TypeModifier: 8},
		{Name: []byte("x"), DataTypeOID: pgtype.Float4OID, TypeModifier: -1},
	}
	d := NewPGRowDecoder(m, fields)
	cols := d.Columns()
	if cols[0].TypeName != "int8" || cols[1].Precision != 3 || !cols[2].PadSpace || cols[3].Precision != 6 {
		t.Errorf("columns = %+v", cols)
	}
	if err := d.SetFormats([]int16{pgtype.BinaryFormatCode, pgtype.TextFormatCode, pgtype.TextFormatCode, pgtype.BinaryFormatCode}); err != nil {
		t.Fatal(err)
	}
	id, _ := m.Encode(pgtype.Int8OID, pgtype.BinaryFormatCode, int64(7), nil)
	x, _ := m.Encode(pgtype.Float4OID, pgtype.BinaryFormatCode, float32(0.1), nil)
	r, err := d.DecodeRow([][]byte{id, []byte("2024-01-01 00:00:00.123"), nil, x})
	if err != nil {
		t.Fatal(err)
	}
	if r[0] != IntValue(7) || r[1] != ts("2024-01-01 00:00:00.123") || !r[2].IsNull() || r[3].Float != float64(float32(0.1)) {
		t.Errorf("row = %v", r)
	}
	if _, err := d.DecodeRow([][]byte{id}); err == nil {
		t.Error("short row decoded")
	}
	if err := d.SetFormats([]int16{0, 1}); err == nil {
		t.Error("bad format count accepted")
	}
}

func TestDecodeMySQL(t *testing.T) {
	cases := []struct {
		name, typ string
		raw       []byte
		hint      Family
		want      Value
	}{
		{"null", "INT", nil, FamilyNull, Null},
		{"int", "INT", []byte("-42"), FamilyNull, IntValue(-42)},
		{"unsigned bigint above int64", "UNSIGNED BIGINT", []byte("18446744073709551615"), FamilyNull, dec("18446744073709551615")},
		{"tinyint as int", "TINYINT", []byte("1"), FamilyNull, IntValue(1)},
		{"tinyint(1) as bool by hint", "TINYINT", []byte("1"), FamilyBool, BoolValue(true)},
		{"tinyint(1) false", "TINYINT", []byte("0"), FamilyBool, BoolValue(false)},
		{"bit(1) bool", "BIT", []byte{1}, FamilyBool, BoolValue(true)},
		{"bit(16)", "BIT", []byte{1, 2}, FamilyNull, IntValue(258)},
		{"year", "YEAR", []byte("2024"), FamilyNull, IntValue(2024)},
		{"decimal", "DECIMAL", []byte("001.500"), FamilyNull, dec("1.5")},
		{"double", "DOUBLE", []byte("0.30000000000000004"), FamilyNull, FloatValue(0.30000000000000004)},
		{"float", "FLOAT", []byte("0.1"), FamilyNull, FloatValue(0.1)},
		{"varchar", "VARCHAR", []byte("abc "), FamilyNull, TextValue("abc ")},
		{"text", "TEXT", []byte("x"), FamilyNull, TextValue("x")},
		{"enum", "ENUM", []byte("red"), FamilyNull, TextValue("red")},
		{"blob", "BLOB", []byte{0, 1}, FamilyNull, BytesValue([]byte{0, 1})},
		{"binary(16) uuid", "BINARY", []byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}, FamilyUUID,
			Value{Family: FamilyUUID, Str: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}},
		{"char(36) uuid", "CHAR", []byte("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), FamilyUUID, Value{Family: FamilyUUID, Str: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}},
		{"date", "DATE", []byte("2024-02-29"), FamilyNull, Value{Family: FamilyDate, Int: mustDays(2024, 2, 29)}},
		{"datetime", "DATETIME", []byte("2024-01-02 03:04:05.123"), FamilyNull, ts("2024-01-02 03:04:05.123")},
		{"timestamp", "TIMESTAMP", []byte("2024-01-02 03:04:05"), FamilyNull, tstz("2024-01-02 03:04:05+00")},
		{"zero date", "DATETIME", []byte("0000-00-00 00:00:00"), FamilyNull, Value{Family: FamilyOther, Str: "0000-00-00 00:00:00"}},
		{"time negative", "TIME", []byte("-838:59:59.000000"), FamilyNull, Value{Family: FamilyTime, Int: -(838*3600e6 + 59*60e6 + 59e6)}},
		{"json", "JSON", []byte(`{"b": 1, "a": [1.50]}`), FamilyNull, jsonv(`{"a":[1.5],"b":1}`)},
		{"NULL type", "NULL", []byte{}, FamilyNull, Null},
		{"geometry", "GEOMETRY", []byte{1, 2}, FamilyNull, Value{Family: FamilyOther, Str: "\x01\x02"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeMySQL(tc.typ, tc.raw, tc.hint)
			if err != nil {
				t.Fatal(err)
			}
			if !sameValue(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
	for _, bad := range []struct{ typ, raw string }{{"INT", "x"}, {"DECIMAL", "1..2"}, {"DATETIME", "2024-01-02 25:00"}, {"JSON", "{"}, {"DOUBLE", "abc"}} {
		if v, err := DecodeMySQL(bad.typ, []byte(bad.raw), FamilyNull); err == nil {
			t.Errorf("DecodeMySQL(%s, %q) = %v, want error", bad.typ, bad.raw, v)
		}
	}
}

func TestMySQLRowDecoder(t *testing.T) {
	cols := []Column{MySQLColumn("active", "TINYINT", 0, FamilyBool), MySQLColumn("at", "DATETIME", 3, FamilyNull),
		MySQLColumn("code", "CHAR", 0, FamilyNull), MySQLColumn("x", "FLOAT", 31, FamilyNull)}
	if cols[0].Family != FamilyBool || cols[1].Precision != 3 || !cols[2].PadSpace || cols[3].Precision != 6 {
		t.Fatalf("columns = %+v", cols)
	}
	d := NewMySQLRowDecoderColumns(cols)
	raw := []sql.RawBytes{sql.RawBytes("1"), sql.RawBytes("2024-01-01 00:00:00.500"), nil, sql.RawBytes("1.5")}
	r, err := d.DecodeRow(raw)
	if err != nil {
		t.Fatal(err)
	}
	raw[1][0] = 'X' // database/sql reuses RawBytes: the row must not alias it
	if r[0] != BoolValue(true) || r[1] != ts("2024-01-01 00:00:00.5") || !r[2].IsNull() || r[3] != FloatValue(1.5) {
		t.Errorf("row = %v", r)
	}
	if _, err := d.DecodeRow(raw[:1]); err == nil {
		t.Error("short row decoded")
	}
}

// TestDecodedResultsCompare runs the whole path: the same data decoded
// from PG wire values and from MySQL driver values compares equal.
func TestDecodedResultsCompare(t *testing.T) {
	m := pgtype.NewMap()
	pg := NewPGRowDecoder(m, []pgproto3.FieldDescription{
		{Name: []byte("id"), DataTypeOID: pgtype.Int4OID, TypeModifier: -1},
		{Name: []byte("ok"), DataTypeOID: pgtype.BoolOID, TypeModifier: -1},
		{Name: []byte("price"), DataTypeOID: pgtype.NumericOID, TypeModifier: -1},
		{Name: []byte("at"), DataTypeOID: pgtype.TimestamptzOID, TypeModifier: -1},
		{Name: []byte("doc"), DataTypeOID: pgtype.JSONBOID, TypeModifier: -1},
		{Name: []byte("u"), DataTypeOID: pgtype.UUIDOID, TypeModifier: -1},
		{Name: []byte("data"), DataTypeOID: pgtype.ByteaOID, TypeModifier: -1},
	})
	var hints []Family
	for _, c := range pg.Columns() {
		hints = append(hints, c.Family)
	}
	my := NewMySQLRowDecoderColumns([]Column{
		MySQLColumn("id", "INT", 0, hints[0]), MySQLColumn("ok", "TINYINT", 0, hints[1]), MySQLColumn("price", "DECIMAL", 2, hints[2]),
		MySQLColumn("at", "TIMESTAMP", 0, hints[3]), MySQLColumn("doc", "JSON", 0, hints[4]), MySQLColumn("u", "BINARY", 0, hints[5]),
		MySQLColumn("data", "BLOB", 0, hints[6]),
	})
	old := &Result{Columns: pg.Columns()}
	for _, text := range [][]string{
		{"1", "t", "10.50", "2024-05-01 12:00:00.4+02", `{"k": [1, 2]}`, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `\x0001`},
		{"2", "f", "0", "2024-05-01 12:00:00+00", `{}`, "00000000-0000-0000-0000-000000000000", `\x`},
	} {
		vals := make([][]byte, len(text))
		for i, s := range text {
			vals[i] = []byte(s)
		}
		r, err := pg.DecodeRow(vals)
		if err != nil {
			t.Fatal(err)
		}
		old.Rows = append(old.Rows, r)
	}
	nw := &Result{Columns: my.Columns()}
	uuid1 := []byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}
	for _, raw := range [][]sql.RawBytes{
		{sql.RawBytes("2"), sql.RawBytes("0"), sql.RawBytes("0.00"), sql.RawBytes("2024-05-01 12:00:00"), sql.RawBytes(`{}`), make(sql.RawBytes, 16), sql.RawBytes{}},
		{sql.RawBytes("1"), sql.RawBytes("1"), sql.RawBytes("10.50"), sql.RawBytes("2024-05-01 10:00:00"), sql.RawBytes(`{"k":[1,2]}`), uuid1, sql.RawBytes{0, 1}},
	} {
		r, err := my.DecodeRow(raw)
		if err != nil {
			t.Fatal(err)
		}
		nw.Rows = append(nw.Rows, r)
	}
	if o := Compare(old, nw, Shape{}, Options{}); !o.Match {
		t.Fatalf("diffs: %+v", o.Diffs)
	}
}
