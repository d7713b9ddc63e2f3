package compare

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Family is the engine-neutral type family of a column or a value. Two
// columns compare value by value only when their families are compatible
// (see compatible); the family of a Value says which of its fields is set.
type Family uint8

// Families. FamilyNull is both the family of a SQL NULL value and of a
// column whose type is unknown (e.g. PG "unknown" for SELECT NULL, MySQL's
// NULL type): such a column is compatible with every other.
const (
	FamilyNull Family = iota
	FamilyBool
	FamilyInt
	FamilyDecimal
	FamilyFloat
	FamilyText
	FamilyBytes
	FamilyDate
	FamilyTime
	FamilyTimestamp
	FamilyTimestampTZ
	FamilyJSON
	FamilyUUID
	FamilyInterval
	FamilyArray
	FamilyOther
)

var familyNames = [...]string{
	FamilyNull:        "null",
	FamilyBool:        "bool",
	FamilyInt:         "int",
	FamilyDecimal:     "decimal",
	FamilyFloat:       "float",
	FamilyText:        "text",
	FamilyBytes:       "bytes",
	FamilyDate:        "date",
	FamilyTime:        "time",
	FamilyTimestamp:   "timestamp",
	FamilyTimestampTZ: "timestamptz",
	FamilyJSON:        "json",
	FamilyUUID:        "uuid",
	FamilyInterval:    "interval",
	FamilyArray:       "array",
	FamilyOther:       "other",
}

func (f Family) String() string {
	if int(f) < len(familyNames) {
		return familyNames[f]
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// Column describes one output column of a result.
type Column struct {
	Name   string
	Family Family
	// TypeName is the source type as the engine names it ("int4",
	// "TINYINT"), for reports and for the bool/TINYINT pairing.
	TypeName string
	// Precision is, for time families, the declared fractional-second digits
	// (1..6) and, for FamilyFloat, the significant decimal digits the type
	// holds (6 for float4 / MySQL FLOAT). 0 means unknown: time precision is
	// then inferred from the values (a DATETIME(0) column never carries
	// fractions, so inference loses nothing) and floats use
	// Options.FloatDigits.
	Precision int
	// PadSpace marks blank-padded character types (PG char(n), MySQL CHAR)
	// whose trailing spaces carry no meaning; when either side of a pair has
	// it, trailing spaces are ignored on both.
	PadSpace bool
}

// Value is one decoded, engine-neutral cell. Which field holds the datum
// depends on Family:
//
//	FamilyNull                      SQL NULL (the zero Value)
//	FamilyBool                      Int: 0 or 1
//	FamilyInt                       Int
//	FamilyDecimal                   Str: canonical decimal (see canonicalDecimal)
//	FamilyFloat                     Float
//	FamilyText, FamilyBytes         Str (bytes held as a string, unmodified)
//	FamilyDate                      Int: days since 1970-01-01
//	FamilyTime                      Int: microseconds since midnight
//	FamilyTimestamp[TZ]             Int: microseconds since the Unix epoch (UTC)
//	FamilyJSON                      Str: canonical JSON (keys sorted, numbers canonical)
//	FamilyUUID                      Str: lower-case, hyphenated
//	FamilyInterval                  Str: canonical "<months>m<days>d<micros>us", or the raw text
//	FamilyArray, FamilyOther        Str: the text representation
//
// Dates and timestamps use math.MinInt64 / math.MaxInt64 for -infinity and
// infinity. Values are normalized when decoded, so that most comparisons are
// plain equality of fields; what depends on the other side (precision,
// float digits, collation) is applied at compare time.
type Value struct {
	Family Family
	Int    int64
	Float  float64
	Str    string
}

// Null is the SQL NULL value.
var Null = Value{}

// IsNull reports whether v is SQL NULL.
func (v Value) IsNull() bool { return v.Family == FamilyNull }

// BoolValue returns a boolean Value.
func BoolValue(b bool) Value {
	if b {
		return Value{Family: FamilyBool, Int: 1}
	}
	return Value{Family: FamilyBool}
}

// IntValue returns an integer Value.
func IntValue(i int64) Value { return Value{Family: FamilyInt, Int: i} }

// FloatValue returns a floating-point Value.
func FloatValue(f float64) Value { return Value{Family: FamilyFloat, Float: f} }

// TextValue returns a text Value.
func TextValue(s string) Value { return Value{Family: FamilyText, Str: s} }

// BytesValue returns a binary Value; b is copied.
func BytesValue(b []byte) Value { return Value{Family: FamilyBytes, Str: string(b)} }

// DecimalValue parses a decimal number ("1.50", "-0", "1e3") into a Value.
func DecimalValue(s string) (Value, error) {
	c, ok := canonicalDecimal(s)
	if !ok {
		return Value{}, fmt.Errorf("invalid decimal %q", truncate(s, 40))
	}
	return Value{Family: FamilyDecimal, Str: c}, nil
}

// JSONValue parses a JSON document into its canonical form.
func JSONValue(doc []byte) (Value, error) {
	c, err := canonicalJSON(doc)
	if err != nil {
		return Value{}, err
	}
	return Value{Family: FamilyJSON, Str: c}, nil
}

// UUIDValue parses a UUID in any case, with or without hyphens or braces.
func UUIDValue(s string) (Value, error) {
	c, ok := canonicalUUID(s)
	if !ok {
		return Value{}, fmt.Errorf("invalid uuid %q", truncate(s, 40))
	}
	return Value{Family: FamilyUUID, Str: c}, nil
}

// DateValue returns the date of t's calendar day (t's own location).
func DateValue(t time.Time) Value {
	y, m, d := t.Date()
	return Value{Family: FamilyDate, Int: daysFromCivil(int64(y), int64(m), int64(d))}
}

// TimestampValue returns a zone-less timestamp: t's wall clock, read as UTC.
func TimestampValue(t time.Time) Value {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	us := daysFromCivil(int64(y), int64(mo), int64(d))*usPerDay + int64(h)*3600e6 + int64(mi)*60e6 + int64(s)*1e6 + int64(t.Nanosecond()/1000)
	return Value{Family: FamilyTimestamp, Int: us}
}

// TimestampTZValue returns the instant t.
func TimestampTZValue(t time.Time) Value {
	return Value{Family: FamilyTimestampTZ, Int: t.Unix()*1e6 + int64(t.Nanosecond()/1000)}
}

const usPerDay = 86400 * 1e6

// String renders v for reports: text is quoted so that trailing spaces and
// case are visible, bytes are \x-hex, times are ISO.
func (v Value) String() string {
	switch v.Family {
	case FamilyNull:
		return "NULL"
	case FamilyBool:
		if v.Int != 0 {
			return "true"
		}
		return "false"
	case FamilyInt:
		return strconv.FormatInt(v.Int, 10)
	case FamilyFloat:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case FamilyText:
		return strconv.Quote(v.Str)
	case FamilyBytes:
		return `\x` + hex.EncodeToString([]byte(v.Str))
	case FamilyDate:
		return formatDate(v.Int)
	case FamilyTime:
		return formatClock(v.Int)
	case FamilyTimestamp:
		return formatTimestamp(v.Int, "")
	case FamilyTimestampTZ:
		return formatTimestamp(v.Int, "Z")
	default:
		return v.Str
	}
}

func formatDate(days int64) string {
	switch days {
	case math.MaxInt64:
		return "infinity"
	case math.MinInt64:
		return "-infinity"
	}
	y, m, d := civilFromDays(days)
	return fmt.Sprintf("%04d-%02d-%02d", y, m, d)
}

func formatClock(us int64) string {
	sign := ""
	if us < 0 {
		sign, us = "-", -us
	}
	s := fmt.Sprintf("%s%02d:%02d:%02d", sign, us/3600e6, us/60e6%60, us/1e6%60)
	if f := us % 1e6; f != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%06d", f), "0")
	}
	return s
}

func formatTimestamp(us int64, zone string) string {
	switch us {
	case math.MaxInt64:
		return "infinity"
	case math.MinInt64:
		return "-infinity"
	}
	days := floorDiv(us, usPerDay)
	return formatDate(days) + " " + formatClock(us-days*usPerDay) + zone
}

// Error is a failed query: its SQLSTATE and message. Timeout marks a shadow
// query the proxy gave up on (or SQLSTATE 57014, query_canceled).
type Error struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Timeout bool   `json:"timeout,omitempty"`
}

// Class is the SQLSTATE class: its first two characters.
func (e *Error) Class() string {
	if len(e.Code) < 2 {
		return e.Code
	}
	return e.Code[:2]
}

func (e *Error) timedOut() bool { return e.Timeout || e.Code == "57014" }

func (e *Error) String() string {
	if e.Timeout && e.Code == "" {
		return "timeout"
	}
	return e.Code + ": " + e.Message
}

// Result is one side's answer to a query, copied off the wire.
type Result struct {
	Columns []Column
	Rows    [][]Value
	// Err is set when the query failed; Rows and Columns are then ignored.
	Err *Error
	// Truncated says the proxy stopped keeping rows at its memory cap: Rows
	// holds a prefix only and the comparison uses Digest, which covers every
	// row (see Digester).
	Truncated bool
	Digest    Digest
	Elapsed   time.Duration
}

// daysFromCivil converts a proleptic Gregorian date (astronomical year
// numbering: 1 BC is year 0) to days since 1970-01-01. It is exact for any
// int64 year that does not overflow (H. Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// truncate shortens s to at most n bytes (on a rune boundary), marking the
// cut with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
