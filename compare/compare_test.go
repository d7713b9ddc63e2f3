package compare

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func col(name string, f Family, typeName string) Column {
	return Column{Name: name, Family: f, TypeName: typeName}
}

func rows(rs ...[]Value) [][]Value { return rs }

func row(vs ...Value) []Value { return vs }

func dec(s string) Value {
	v, err := DecimalValue(s)
	if err != nil {
		panic(err)
	}
	return v
}

func jsonv(s string) Value {
	v, err := JSONValue([]byte(s))
	if err != nil {
		panic(err)
	}
	return v
}

func ts(s string) Value {
	us, err := parsePGTimestamp(s, false)
	if err != nil {
		panic(err)
	}
	return Value{Family: FamilyTimestamp, Int: us}
}

func tstz(s string) Value {
	us, err := parsePGTimestamp(s, true)
	if err != nil {
		panic(err)
	}
	return Value{Family: FamilyTimestampTZ, Int: us}
}

func ints(vs ...int64) [][]Value {
	out := make([][]Value, len(vs))
	for i, v := range vs {
		out[i] = row(IntValue(v))
	}
	return out
}

var (
	idCol   = col("id", FamilyInt, "int4")
	nameCol = col("name", FamilyText, "text")
)

func orderBy(cols ...int) Shape {
	s := Shape{}
	for _, c := range cols {
		s.OrderBy = append(s.OrderBy, OrderKey{Column: c})
	}
	return s
}

func diffTypes(o *Outcome) []DiffType {
	var ts []DiffType
	for t := range o.Counts {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

type compareCase struct {
	name     string
	old, new *Result
	shape    Shape
	opts     Options
	want     []DiffType // exactly these types (sorted); nil = match
	partial  string
	check    func(t *testing.T, o *Outcome)
}

func runCompareCases(t *testing.T, cases []compareCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := Compare(tc.old, tc.new, tc.shape, tc.opts)
			want := slices.Clone(tc.want)
			sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
			if got := diffTypes(o); !slices.Equal(got, want) {
				t.Fatalf("diff types = %v, want %v; diffs: %+v", got, want, o.Diffs)
			}
			if o.Match != (len(want) == 0) {
				t.Errorf("Match = %v with diffs %v", o.Match, o.Diffs)
			}
			if o.Partial != tc.partial {
				t.Errorf("Partial = %q, want %q", o.Partial, tc.partial)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}

// TestRepresentationOnly: differences of representation between the
// engines must not be reported.
func TestRepresentationOnly(t *testing.T) {
	boolCol := col("active", FamilyBool, "bool")
	tinyCol := col("active", FamilyInt, "TINYINT")
	numCol := col("price", FamilyDecimal, "numeric")
	myDec := col("price", FamilyDecimal, "DECIMAL")
	f8 := col("x", FamilyFloat, "float8")
	myFloat := Column{Name: "x", Family: FamilyFloat, TypeName: "FLOAT", Precision: 6}
	ts6 := Column{Name: "at", Family: FamilyTimestamp, TypeName: "timestamp", Precision: 6}
	dt3 := Column{Name: "at", Family: FamilyTimestamp, TypeName: "DATETIME", Precision: 3}
	dt0 := Column{Name: "at", Family: FamilyTimestamp, TypeName: "DATETIME"}
	tz := Column{Name: "at", Family: FamilyTimestampTZ, TypeName: "timestamptz", Precision: 6}
	myTS := Column{Name: "at", Family: FamilyTimestampTZ, TypeName: "TIMESTAMP"}
	jb := col("doc", FamilyJSON, "jsonb")
	myJSON := col("doc", FamilyJSON, "JSON")
	uuidCol := col("u", FamilyUUID, "uuid")
	char36 := col("u", FamilyText, "CHAR")
	bpchar := Column{Name: "code", Family: FamilyText, TypeName: "bpchar", PadSpace: true}
	myChar := Column{Name: "code", Family: FamilyText, TypeName: "CHAR", PadSpace: true}
	bytea := col("data", FamilyBytes, "bytea")
	blob := col("data", FamilyBytes, "BLOB")

	cases := []compareCase{
		{name: "bool vs tinyint(1)",
			old: &Result{Columns: []Column{idCol, boolCol}, Rows: rows(row(IntValue(1), BoolValue(true)), row(IntValue(2), BoolValue(false)), row(IntValue(3), Null))},
			new: &Result{Columns: []Column{idCol, tinyCol}, Rows: rows(row(IntValue(1), IntValue(1)), row(IntValue(2), IntValue(0)), row(IntValue(3), Null))}},
		{name: "decimal scale 1.50 = 1.5",
			old: &Result{Columns: []Column{numCol}, Rows: rows(row(dec("1.50")), row(dec("-0.0")), row(dec("100")))},
			new: &Result{Columns: []Column{myDec}, Rows: rows(row(dec("1.5")), row(dec("0")), row(dec("100.000")))}},
		{name: "int vs decimal by value",
			old: &Result{Columns: []Column{idCol}, Rows: ints(2, 3)},
			new: &Result{Columns: []Column{myDec}, Rows: rows(row(dec("2.00")), row(dec("3")))}},
		{name: "avg with extra decimals vs float",
			old: &Result{Columns: []Column{f8}, Rows: rows(row(FloatValue(1.0 / 3)))},
			new: &Result{Columns: []Column{myDec}, Rows: rows(row(dec("0.3333333333333333")))}},
		{name: "float -0 = 0 and digits",
			old: &Result{Columns: []Column{f8}, Rows: rows(row(FloatValue(math.Copysign(0, -1))), row(FloatValue(0.1+0.2)))},
			new: &Result{Columns: []Column{f8}, Rows: rows(row(FloatValue(0)), row(FloatValue(0.3)))}},
		{name: "float across the rounding boundary: tolerance pass",
			old: &Result{Columns: []Column{idCol, f8}, Rows: rows(row(IntValue(1), FloatValue(1.234567890125000001)), row(IntValue(2), FloatValue(7)))},
			new: &Result{Columns: []Column{idCol, f8}, Rows: rows(row(IntValue(2), FloatValue(7)), row(IntValue(1), FloatValue(1.2345678901249998)))}},
		{name: "mysql single-precision FLOAT",
			old: &Result{Columns: []Column{f8}, Rows: rows(row(FloatValue(0.1)), row(FloatValue(123456.7)))},
			new: &Result{Columns: []Column{myFloat}, Rows: rows(row(FloatValue(float64(float32(0.1)))), row(FloatValue(float64(float32(123456.7)))))}},
		{name: "timestamp precision rounded to the common digits",
			old: &Result{Columns: []Column{ts6}, Rows: rows(row(ts("2024-03-01 10:00:00.123456")), row(ts("2024-03-01 10:00:00.9996")))},
			new: &Result{Columns: []Column{dt3}, Rows: rows(row(ts("2024-03-01 10:00:00.123")), row(ts("2024-03-01 10:00:01")))}},
		{name: "datetime(0) precision inferred from values",
			old: &Result{Columns: []Column{ts6}, Rows: rows(row(ts("2024-03-01 10:00:00.5")), row(ts("2024-03-01 10:00:07")))},
			new: &Result{Columns: []Column{dt0}, Rows: rows(row(ts("2024-03-01 10:00:01")), row(ts("2024-03-01 10:00:07")))}},
		{name: "timestamptz zone vs mysql TIMESTAMP in UTC",
			old: &Result{Columns: []Column{tz}, Rows: rows(row(tstz("2024-03-01 12:00:00+02")))},
			new: &Result{Columns: []Column{myTS}, Rows: rows(row(tstz("2024-03-01 10:00:00+00")))}},
		{name: "timestamptz vs datetime as instants",
			old: &Result{Columns: []Column{tz}, Rows: rows(row(tstz("2024-03-01 12:00:00-01:30")))},
			new: &Result{Columns: []Column{dt0}, Rows: rows(row(ts("2024-03-01 13:30:00")))}},
		{name: "json key order and number spelling",
			old: &Result{Columns: []Column{jb}, Rows: rows(row(jsonv(`{"a": 1, "b": [1, 2.50], "c": {"y": null, "x": true}}`)))},
			new: &Result{Columns: []Column{myJSON}, Rows: rows(row(jsonv(`{"c":{"x":true,"y":null},"b":[1.0,2.5],"a":1e0}`)))}},
		{name: "json vs text holding json",
			old: &Result{Columns: []Column{jb}, Rows: rows(row(jsonv(`{"a":1,"b":2}`)))},
			new: &Result{Columns: []Column{col("doc", FamilyText, "LONGTEXT")}, Rows: rows(row(TextValue(`{"b": 2, "a": 1}`)))}},
		{name: "uuid case",
			old: &Result{Columns: []Column{uuidCol}, Rows: rows(row(Value{Family: FamilyUUID, Str: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}))},
			new: &Result{Columns: []Column{char36}, Rows: rows(row(TextValue("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")))}},
		{name: "char padding",
			old: &Result{Columns: []Column{bpchar}, Rows: rows(row(TextValue("ab   ")))},
			new: &Result{Columns: []Column{myChar}, Rows: rows(row(TextValue("ab")))}},
		{name: "bytea vs blob raw bytes",
			old: &Result{Columns: []Column{bytea}, Rows: rows(row(BytesValue([]byte{0, 1, 0xff})))},
			new: &Result{Columns: []Column{blob}, Rows: rows(row(BytesValue([]byte{0, 1, 0xff})))}},
		{name: "NULL equals NULL",
			old: &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), Null))},
			new: &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), Null))}},
		{name: "row order without ORDER BY",
			old: &Result{Columns: []Column{idCol}, Rows: ints(1, 2, 3, 3)},
			new: &Result{Columns: []Column{idCol}, Rows: ints(3, 1, 3, 2)}},
		{name: "ties under ORDER BY are a multiset",
			old:   &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("a")), row(IntValue(1), TextValue("b")), row(IntValue(2), TextValue("c")))},
			new:   &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("b")), row(IntValue(1), TextValue("a")), row(IntValue(2), TextValue("c")))},
			shape: orderBy(0)},
		{name: "ORDER BY LIMIT: last tie group is an arbitrary pick",
			old:   &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("a")), row(IntValue(2), TextValue("b")), row(IntValue(2), TextValue("c")))},
			new:   &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("a")), row(IntValue(2), TextValue("d")), row(IntValue(2), TextValue("b")))},
			shape: Shape{OrderBy: []OrderKey{{Column: 0}}, HasLimit: true}},
		{name: "LIMIT without ORDER BY: row count only",
			old:     &Result{Columns: []Column{idCol}, Rows: ints(1, 2)},
			new:     &Result{Columns: []Column{idCol}, Rows: ints(7, 9)},
			shape:   Shape{HasLimit: true},
			partial: RuleLimitWithoutOrder},
		{name: "ORDER BY an expression: multiset only",
			old:     &Result{Columns: []Column{idCol}, Rows: ints(1, 2)},
			new:     &Result{Columns: []Column{idCol}, Rows: ints(2, 1)},
			shape:   Shape{OrderBy: []OrderKey{{Column: -1}}},
			partial: RuleOrderUnchecked},
		{name: "both fail in the same SQLSTATE class",
			old: &Result{Err: &Error{Code: "23505", Message: "duplicate key"}},
			new: &Result{Err: &Error{Code: "23000", Message: "Duplicate entry"}}},
		{name: "truncated with equal digests",
			old: &Result{Columns: []Column{idCol}, Truncated: true, Digest: digestOf([]Column{idCol}, ints(1, 2, 3))},
			new: &Result{Columns: []Column{idCol}, Rows: ints(3, 2, 1)}, partial: RuleDigest},
		{name: "unknown-typed NULL column",
			old: &Result{Columns: []Column{col("x", FamilyText, "unknown")}, Rows: rows(row(Null))},
			new: &Result{Columns: []Column{col("x", FamilyNull, "NULL")}, Rows: rows(row(Null))}},
	}
	runCompareCases(t, cases)
}

func digestOf(cols []Column, rs [][]Value) Digest {
	g := NewDigester(cols, Options{})
	for _, r := range rs {
		g.Add(r)
	}
	return g.Digest()
}

// TestDifferences: each DiffType for the right reason.
func TestDifferences(t *testing.T) {
	f8 := col("x", FamilyFloat, "float8")
	dateCol := col("d", FamilyDate, "date")
	nullsLast := rows(row(IntValue(1)), row(IntValue(2)), row(Null))
	nullsFirst := rows(row(Null), row(IntValue(1)), row(IntValue(2)))
	cases := []compareCase{
		{name: "row count",
			old:  &Result{Columns: []Column{idCol}, Rows: ints(1, 2, 3)},
			new:  &Result{Columns: []Column{idCol}, Rows: ints(1, 2)},
			want: []DiffType{DiffRowCount},
			check: func(t *testing.T, o *Outcome) {
				if o.Counts[DiffRowCount] != 2 { // the count and the missing row
					t.Errorf("row_count diffs = %d, want 2: %+v", o.Counts[DiffRowCount], o.Diffs)
				}
				if o.Diffs[1].Old != "(3)" || o.Diffs[1].New != "(missing)" {
					t.Errorf("missing row example = %+v", o.Diffs[1])
				}
			}},
		{name: "value names column and row",
			old:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("a")), row(IntValue(2), TextValue("b")))},
			new:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(2), TextValue("x")), row(IntValue(1), TextValue("a")))},
			want: []DiffType{DiffValue},
			check: func(t *testing.T, o *Outcome) {
				d := o.Diffs[0]
				if d.Column != "name" || d.RowKey != "id=2" || d.Old != `"b"` || d.New != `"x"` {
					t.Errorf("diff = %+v", d)
				}
				if o.Columns["name"] != 1 {
					t.Errorf("columns = %v", o.Columns)
				}
			}},
		{name: "changed key column pairs leftovers by position",
			old:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("a")))},
			new:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(9), TextValue("a")))},
			want: []DiffType{DiffValue},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Column != "id" {
					t.Errorf("diff = %+v", o.Diffs[0])
				}
			}},
		{name: "NULL is not empty string",
			old:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), Null))},
			new:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("")))},
			want: []DiffType{DiffValue},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Rule != RuleNullEmpty {
					t.Errorf("rule = %q", o.Diffs[0].Rule)
				}
			}},
		{name: "decimal value differs",
			old:  &Result{Columns: []Column{col("p", FamilyDecimal, "numeric")}, Rows: rows(row(dec("1.50")))},
			new:  &Result{Columns: []Column{col("p", FamilyDecimal, "DECIMAL")}, Rows: rows(row(dec("1.51")))},
			want: []DiffType{DiffValue}},
		{name: "division scale is labelled",
			old:  &Result{Columns: []Column{col("q", FamilyDecimal, "numeric")}, Rows: rows(row(dec("3.3333333333333333")), row(dec("-0.6666666666666667")), row(dec("9.99996")))},
			new:  &Result{Columns: []Column{col("q", FamilyDecimal, "DECIMAL")}, Rows: rows(row(dec("3.3333")), row(dec("-0.6667")), row(dec("10")))},
			want: []DiffType{DiffValue},
			check: func(t *testing.T, o *Outcome) {
				for _, d := range o.Diffs {
					if d.Rule != RuleDecimalScale {
						t.Errorf("diff %+v lacks the scale rule", d)
					}
				}
			}},
		{name: "decimal scale rule does not excuse a real difference",
			old:  &Result{Columns: []Column{col("q", FamilyDecimal, "numeric")}, Rows: rows(row(dec("3.3363")))},
			new:  &Result{Columns: []Column{col("q", FamilyDecimal, "DECIMAL")}, Rows: rows(row(dec("3.33")))},
			want: []DiffType{DiffValue},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Rule != "" {
					t.Errorf("rule = %q", o.Diffs[0].Rule)
				}
			}},
		{name: "bool vs tinyint with a different value",
			old:  &Result{Columns: []Column{col("b", FamilyBool, "bool")}, Rows: rows(row(BoolValue(true)))},
			new:  &Result{Columns: []Column{col("b", FamilyInt, "TINYINT")}, Rows: rows(row(IntValue(0)))},
			want: []DiffType{DiffValue}},
		{name: "order",
			old:   &Result{Columns: []Column{idCol}, Rows: ints(1, 2, 3)},
			new:   &Result{Columns: []Column{idCol}, Rows: ints(1, 3, 2)},
			shape: orderBy(0),
			want:  []DiffType{DiffOrder},
			check: func(t *testing.T, o *Outcome) {
				if d := o.Diffs[0]; d.RowKey != "row 2" || d.Old != "2" || d.New != "3" || d.Column != "id" {
					t.Errorf("diff = %+v", d)
				}
			}},
		{name: "text order names collation",
			old:   &Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue("B")), row(TextValue("a")))},
			new:   &Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue("a")), row(TextValue("B")))},
			shape: orderBy(0),
			want:  []DiffType{DiffOrder},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Rule != RuleTextOrder {
					t.Errorf("rule = %q", o.Diffs[0].Rule)
				}
			}},
		{name: "null ordering",
			old:   &Result{Columns: []Column{idCol}, Rows: nullsLast},
			new:   &Result{Columns: []Column{idCol}, Rows: nullsFirst},
			shape: orderBy(0),
			want:  []DiffType{DiffNullOrder}},
		{name: "null ordering in the second key",
			old: &Result{Columns: []Column{idCol, nameCol}, Rows: rows(
				row(IntValue(1), TextValue("x")), row(IntValue(1), Null), row(IntValue(2), TextValue("y")), row(IntValue(2), Null), row(Null, Null))},
			new: &Result{Columns: []Column{idCol, nameCol}, Rows: rows(
				row(Null, Null), row(IntValue(1), Null), row(IntValue(1), TextValue("x")), row(IntValue(2), Null), row(IntValue(2), TextValue("y")))},
			shape: orderBy(0, 1),
			want:  []DiffType{DiffNullOrder}},
		{name: "order that NULL placement does not explain",
			old:   &Result{Columns: []Column{idCol}, Rows: rows(row(IntValue(1)), row(IntValue(2)), row(Null))},
			new:   &Result{Columns: []Column{idCol}, Rows: rows(row(Null), row(IntValue(2)), row(IntValue(1)))},
			shape: orderBy(0),
			want:  []DiffType{DiffOrder}},
		{name: "null ordering changes the rows LIMIT keeps",
			old:   &Result{Columns: []Column{idCol}, Rows: ints(1, 2)},
			new:   &Result{Columns: []Column{idCol}, Rows: rows(row(Null), row(Null))},
			shape: Shape{OrderBy: []OrderKey{{Column: 0}}, HasLimit: true},
			want:  []DiffType{DiffNullOrder},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Rule != RuleNullLimit {
					t.Errorf("rule = %q", o.Diffs[0].Rule)
				}
			}},
		{name: "ORDER BY LIMIT: rows before the last tie group must match",
			old:   &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("a")), row(IntValue(2), TextValue("b")))},
			new:   &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("z")), row(IntValue(2), TextValue("b")))},
			shape: Shape{OrderBy: []OrderKey{{Column: 0}}, HasLimit: true},
			want:  []DiffType{DiffValue}},
		{name: "ORDER BY LIMIT with total order compares the last row too",
			old:   &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("a")), row(IntValue(2), TextValue("b")))},
			new:   &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("a")), row(IntValue(2), TextValue("c")))},
			shape: Shape{OrderBy: []OrderKey{{Column: 0}}, HasLimit: true, TotalOrder: true},
			want:  []DiffType{DiffValue}},
		{name: "LIMIT without order, different counts",
			old:     &Result{Columns: []Column{idCol}, Rows: ints(1, 2)},
			new:     &Result{Columns: []Column{idCol}, Rows: ints(1)},
			shape:   Shape{HasLimit: true},
			partial: RuleLimitWithoutOrder,
			want:    []DiffType{DiffRowCount}},
		{name: "column count",
			old:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("a")))},
			new:  &Result{Columns: []Column{idCol}, Rows: ints(1)},
			want: []DiffType{DiffColumnShape}},
		{name: "column family",
			old:  &Result{Columns: []Column{idCol, dateCol}, Rows: rows(row(IntValue(1), Value{Family: FamilyDate, Int: 19000}))},
			new:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("2022-01-08")))},
			want: []DiffType{DiffColumnShape},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Column != "d" {
					t.Errorf("diff = %+v", o.Diffs[0])
				}
			}},
		{name: "bool vs a real integer column",
			old:  &Result{Columns: []Column{col("b", FamilyBool, "bool")}, Rows: rows(row(BoolValue(true)))},
			new:  &Result{Columns: []Column{col("b", FamilyInt, "INT")}, Rows: rows(row(IntValue(1)))},
			want: []DiffType{DiffColumnShape}},
		{name: "collation: case",
			old:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("Alice")))},
			new:  &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(1), TextValue("alice")))},
			want: []DiffType{DiffCollation},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Rule != RuleCase || o.Diffs[0].Column != "name" {
					t.Errorf("diff = %+v", o.Diffs[0])
				}
			}},
		{name: "collation: trailing spaces",
			old:  &Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue("ab  ")))},
			new:  &Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue("ab")))},
			want: []DiffType{DiffCollation},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Rule != RulePadSpace {
					t.Errorf("rule = %q", o.Diffs[0].Rule)
				}
			}},
		{name: "collation: accents",
			old:  &Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue("café")))},
			new:  &Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue("Cafe")))},
			want: []DiffType{DiffCollation},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Rule != RuleAccent {
					t.Errorf("rule = %q", o.Diffs[0].Rule)
				}
			}},
		{name: "float beyond tolerance",
			old:  &Result{Columns: []Column{idCol, f8}, Rows: rows(row(IntValue(1), FloatValue(1.0)))},
			new:  &Result{Columns: []Column{idCol, f8}, Rows: rows(row(IntValue(1), FloatValue(1.001)))},
			want: []DiffType{DiffFloat},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Column != "x" || o.Diffs[0].RowKey != "id=1" {
					t.Errorf("diff = %+v", o.Diffs[0])
				}
			}},
		{name: "error on new only",
			old:  &Result{Columns: []Column{idCol}, Rows: ints(1)},
			new:  &Result{Err: &Error{Code: "42601", Message: "syntax error"}},
			want: []DiffType{DiffError},
			check: func(t *testing.T, o *Outcome) {
				if o.Diffs[0].Old != "ok" || o.Diffs[0].New != "42601: syntax error" || o.NewError == nil {
					t.Errorf("outcome = %+v", o)
				}
			}},
		{name: "error on old only",
			old:  &Result{Err: &Error{Code: "22012", Message: "division by zero"}},
			new:  &Result{Columns: []Column{idCol}, Rows: ints(1)},
			want: []DiffType{DiffError}},
		{name: "errors of different classes",
			old:  &Result{Err: &Error{Code: "23505"}},
			new:  &Result{Err: &Error{Code: "42000"}},
			want: []DiffType{DiffError}},
		{name: "timeout",
			old:  &Result{Columns: []Column{idCol}, Rows: ints(1)},
			new:  &Result{Err: &Error{Timeout: true}},
			want: []DiffType{DiffTimeout}},
		{name: "query_canceled counts as timeout",
			old:  &Result{Columns: []Column{idCol}, Rows: ints(1)},
			new:  &Result{Err: &Error{Code: "57014", Message: "canceling statement"}},
			want: []DiffType{DiffTimeout}},
		{name: "truncated with different digests",
			old:     &Result{Columns: []Column{idCol}, Truncated: true, Digest: digestOf([]Column{idCol}, ints(1, 2, 3))},
			new:     &Result{Columns: []Column{idCol}, Rows: ints(1, 2, 4)},
			partial: RuleDigest,
			want:    []DiffType{DiffValue}},
		{name: "truncated with different row counts",
			old:     &Result{Columns: []Column{idCol}, Truncated: true, Digest: digestOf([]Column{idCol}, ints(1, 2, 3))},
			new:     &Result{Columns: []Column{idCol}, Truncated: true, Digest: digestOf([]Column{idCol}, ints(1, 2))},
			partial: RuleDigest,
			want:    []DiffType{DiffRowCount}},
	}
	runCompareCases(t, cases)
}

func TestExamplesCapped(t *testing.T) {
	var o, n [][]Value
	for i := range 50 {
		o = append(o, row(IntValue(int64(i)), TextValue("x")))
		n = append(n, row(IntValue(int64(i)), TextValue("y")))
	}
	out := Compare(&Result{Columns: []Column{idCol, nameCol}, Rows: o}, &Result{Columns: []Column{idCol, nameCol}, Rows: n}, Shape{}, Options{MaxExamples: 3, ExampleLen: 10})
	if out.Counts[DiffValue] != 50 || len(out.Diffs) != 3 || out.Columns["name"] != 50 {
		t.Fatalf("counts %v, %d examples, columns %v", out.Counts, len(out.Diffs), out.Columns)
	}
	long := strings.Repeat("é", 100)
	out = Compare(&Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue(long)))}, &Result{Columns: []Column{nameCol}, Rows: rows(row(TextValue("b")))}, Shape{}, Options{ExampleLen: 11})
	if got := out.Diffs[0].Old; len(got) > 11+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("truncated example = %q", got)
	}
}

// TestCompareDoesNotModifyInputs guards the proxy's buffers.
func TestCompareDoesNotModifyInputs(t *testing.T) {
	old := &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(IntValue(2), Null), row(IntValue(1), TextValue("a")))}
	nw := &Result{Columns: []Column{idCol, nameCol}, Rows: rows(row(Null, TextValue("a")), row(IntValue(1), TextValue("b")))}
	before := fmt.Sprint(old.Rows, nw.Rows)
	Compare(old, nw, orderBy(0, 1), Options{})
	if after := fmt.Sprint(old.Rows, nw.Rows); after != before {
		t.Fatalf("inputs changed: %s → %s", before, after)
	}
}

func TestTimePrecisionTruncate(t *testing.T) {
	ts6 := Column{Name: "at", Family: FamilyTimestamp, Precision: 6}
	dt2 := Column{Name: "at", Family: FamilyTimestamp, Precision: 2}
	old := &Result{Columns: []Column{ts6}, Rows: rows(row(ts("2024-01-01 00:00:00.129")))}
	rounded := &Result{Columns: []Column{dt2}, Rows: rows(row(ts("2024-01-01 00:00:00.13")))}
	truncated := &Result{Columns: []Column{dt2}, Rows: rows(row(ts("2024-01-01 00:00:00.12")))}
	if o := Compare(old, rounded, Shape{}, Options{}); !o.Match {
		t.Errorf("rounding: %+v", o.Diffs)
	}
	if o := Compare(old, truncated, Shape{}, Options{}); o.Match {
		t.Error("rounding mode accepted a truncated value")
	}
	if o := Compare(old, truncated, Shape{}, Options{TruncateFractional: true}); !o.Match {
		t.Errorf("truncating: %+v", o.Diffs)
	}
}

// benchResults builds a 10k-row old result and a shuffled new one with the
// representation differences of a PG → MySQL migration.
func benchResults(n int) (*Result, *Result) {
	oldCols := []Column{idCol, nameCol, col("price", FamilyDecimal, "numeric"), col("active", FamilyBool, "bool"),
		{Name: "at", Family: FamilyTimestampTZ, TypeName: "timestamptz", Precision: 6}, col("score", FamilyFloat, "float8")}
	newCols := []Column{col("id", FamilyInt, "BIGINT"), col("name", FamilyText, "VARCHAR"), col("price", FamilyDecimal, "DECIMAL"),
		col("active", FamilyInt, "TINYINT"), {Name: "at", Family: FamilyTimestampTZ, TypeName: "TIMESTAMP", Precision: 6}, col("score", FamilyFloat, "DOUBLE")}
	old := &Result{Columns: oldCols}
	nw := &Result{Columns: newCols}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		price := fmt.Sprintf("%d.%d0", i, i%10)
		at := base.Add(time.Duration(i) * time.Second)
		old.Rows = append(old.Rows, row(IntValue(int64(i)), TextValue(fmt.Sprintf("name %d", i)), dec(price),
			BoolValue(i%2 == 0), TimestampTZValue(at), FloatValue(float64(i)/3)))
		nw.Rows = append(nw.Rows, row(IntValue(int64(i)), TextValue(fmt.Sprintf("name %d", i)), dec(strings.TrimSuffix(price, "0")),
			IntValue(int64(1-i%2)), TimestampTZValue(at), FloatValue(float64(i)/3)))
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(nw.Rows), func(i, j int) { nw.Rows[i], nw.Rows[j] = nw.Rows[j], nw.Rows[i] })
	return old, nw
}

func TestBenchResultsMatch(t *testing.T) {
	old, nw := benchResults(1000)
	if o := Compare(old, nw, Shape{}, Options{}); !o.Match {
		t.Fatalf("diffs: %+v", o.Diffs)
	}
	nw.Rows[500][1] = TextValue("changed")
	if o := Compare(old, nw, Shape{}, Options{}); o.Match || o.Counts[DiffValue] != 1 {
		t.Fatalf("counts: %v", o.Counts)
	}
}

func BenchmarkCompare10k(b *testing.B) {
	old, nw := benchResults(10000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if o := Compare(old, nw, Shape{}, Options{}); !o.Match {
			b.Fatal("mismatch")
		}
	}
}

func BenchmarkCompare10kOrdered(b *testing.B) {
	old, nw := benchResults(10000)
	nw.Rows = slices.Clone(old.Rows) // same order, old's representation
	nw.Columns = old.Columns
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if o := Compare(old, nw, orderBy(0), Options{}); !o.Match {
			b.Fatal("mismatch")
		}
	}
}

// TestFloatPassPicksTheCloseRow: rows equal but for floats share one loose
// bucket; the tolerance pass must pair each with the row within tolerance,
// not merely the first candidate.
func TestFloatPassPicksTheCloseRow(t *testing.T) {
	f8 := []Column{col("x", FamilyFloat, "float8")}
	old := &Result{Columns: f8, Rows: rows(row(FloatValue(1.234567890125000001)), row(FloatValue(5.678901234565000001)))}
	nw := &Result{Columns: f8, Rows: rows(row(FloatValue(5.6789012345649998)), row(FloatValue(1.2345678901249998)))}
	if o := Compare(old, nw, Shape{}, Options{}); !o.Match {
		t.Fatalf("diffs: %+v", o.Diffs)
	}
}

// TestFloatPassIsBounded: thousands of float rows that all differ land in
// one loose bucket; the pass must stay linear (bounded candidates) and
// report each as a float difference.
func TestFloatPassIsBounded(t *testing.T) {
	f8 := []Column{col("x", FamilyFloat, "float8")}
	old, nw := &Result{Columns: f8}, &Result{Columns: f8}
	const n = 20000
	for i := range n {
		old.Rows = append(old.Rows, row(FloatValue(float64(i))))
		nw.Rows = append(nw.Rows, row(FloatValue(-float64(i)-0.5)))
	}
	start := time.Now()
	o := Compare(old, nw, Shape{}, Options{MaxCandidates: 8})
	if o.Counts[DiffFloat] != n {
		t.Fatalf("counts %v", o.Counts)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("float pass took %v", d)
	}
}
