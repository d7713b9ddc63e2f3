package compare

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// pgFamily maps a PG type OID to its Family. Types this package does not
// model (enums, domains, geometric types, ranges, ...) are FamilyOther and
// compare by their text; array types known to m are FamilyArray.
func pgFamily(m *pgtype.Map, oid uint32) Family {
	switch oid {
	case pgtype.BoolOID:
		return FamilyBool
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID:
		return FamilyInt
	case pgtype.NumericOID:
		return FamilyDecimal
	case pgtype.Float4OID, pgtype.Float8OID:
		return FamilyFloat
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.QCharOID:
		return FamilyText
	case pgtype.UnknownOID:
		// An untyped literal (SELECT 'x'); its values are text, and a
		// column of them is as loose as MySQL's VARCHAR for the same.
		return FamilyText
	case pgtype.ByteaOID:
		return FamilyBytes
	case pgtype.DateOID:
		return FamilyDate
	case pgtype.TimeOID, pgtype.TimetzOID:
		return FamilyTime
	case pgtype.TimestampOID:
		return FamilyTimestamp
	case pgtype.TimestamptzOID:
		return FamilyTimestampTZ
	case pgtype.JSONOID, pgtype.JSONBOID:
		return FamilyJSON
	case pgtype.UUIDOID:
		return FamilyUUID
	case pgtype.IntervalOID:
		return FamilyInterval
	}
	if m != nil {
		if t, ok := m.TypeForOID(oid); ok {
			if _, isArray := t.Codec.(*pgtype.ArrayCodec); isArray {
				return FamilyArray
			}
		}
	}
	return FamilyOther
}

// PGColumn describes a RowDescription field. m names the type (nil: the
// name is "oid <n>"); typmod gives the fractional precision of time types.
func PGColumn(m *pgtype.Map, name string, oid uint32, typmod int32) Column {
	c := Column{Name: name, Family: pgFamily(m, oid), TypeName: "oid " + strconv.FormatUint(uint64(oid), 10)}
	if m != nil {
		if t, ok := m.TypeForOID(oid); ok {
			c.TypeName = t.Name
		}
	}
	switch oid {
	case pgtype.TimeOID, pgtype.TimetzOID, pgtype.TimestampOID, pgtype.TimestamptzOID:
		// The typmod of a time type is its precision; -1 means the full 6.
		c.Precision = 6
		if typmod >= 0 && typmod < 6 {
			c.Precision = int(typmod)
		}
	case pgtype.Float4OID:
		c.Precision = 6
	case pgtype.BPCharOID:
		c.PadSpace = true
	}
	return c
}

// DecodePGText decodes one text-format DataRow value of type oid; nil data
// is NULL. Dates and times must be in DateStyle ISO (PG's default), the
// interval in IntervalStyle postgres (otherwise it is kept as text).
func DecodePGText(oid uint32, data []byte) (Value, error) {
	return decodePGText(pgFamily(nil, oid), oid, data)
}

func decodePGText(fam Family, oid uint32, data []byte) (Value, error) {
	if data == nil {
		return Null, nil
	}
	s := string(data)
	switch fam {
	case FamilyBool:
		switch s {
		case "t", "true":
			return BoolValue(true), nil
		case "f", "false":
			return BoolValue(false), nil
		}
		return Value{}, fmt.Errorf("invalid bool %q", truncate(s, 40))
	case FamilyInt:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("invalid integer %q", truncate(s, 40))
		}
		return IntValue(i), nil
	case FamilyDecimal:
		return DecimalValue(s)
	case FamilyFloat:
		f, err := parsePGFloat(s)
		if err != nil {
			return Value{}, err
		}
		return FloatValue(f), nil
	case FamilyText:
		return TextValue(s), nil
	case FamilyBytes:
		b, err := decodeByteaText(s)
		if err != nil {
			return Value{}, err
		}
		return Value{Family: FamilyBytes, Str: b}, nil
	case FamilyDate:
		d, err := parsePGDate(s)
		return Value{Family: FamilyDate, Int: d}, err
	case FamilyTime:
		t, err := parsePGTime(s, oid == pgtype.TimetzOID)
		return Value{Family: FamilyTime, Int: t}, err
	case FamilyTimestamp, FamilyTimestampTZ:
		t, err := parsePGTimestamp(s, fam == FamilyTimestampTZ)
		return Value{Family: fam, Int: t}, err
	case FamilyJSON:
		return JSONValue(data)
	case FamilyUUID:
		return UUIDValue(s)
	case FamilyInterval:
		if mo, d, us, ok := parsePGInterval(s); ok {
			return Value{Family: FamilyInterval, Str: formatInterval(mo, d, us)}, nil
		}
		return Value{Family: FamilyInterval, Str: s}, nil
	default:
		return Value{Family: fam, Str: s}, nil
	}
}

// parsePGFloat accepts what float4out/float8out print, and nothing more
// exotic (strconv would also take hex floats and "inf").
func parsePGFloat(s string) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	bad := fmt.Errorf("invalid float %q", truncate(s, 40))
	if s == "" || strings.ContainsAny(s, "xXpP_iInN") {
		return 0, bad
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, bad
	}
	return f, nil
}

// decodeByteaText decodes bytea output in either bytea_output format: hex
// ("\x4142") or escape ("AB\\\001").
func decodeByteaText(s string) (string, error) {
	if strings.HasPrefix(s, `\x`) {
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return "", fmt.Errorf("invalid bytea hex: %w", err)
		}
		return string(b), nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			out = append(out, '\\')
			i++
		case i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3':
			out = append(out, (s[i+1]-'0')<<6|(s[i+2]-'0')<<3|(s[i+3]-'0'))
			i += 3
		default:
			return "", fmt.Errorf("invalid bytea escape at byte %d", i)
		}
	}
	return string(out), nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// DecodePGBinary decodes one binary-format DataRow value of type oid with
// m's codecs; nil data is NULL. Types m does not know are kept as their raw
// bytes (FamilyOther), which for enums and text-like extension types is
// their text.
func DecodePGBinary(m *pgtype.Map, oid uint32, data []byte) (Value, error) {
	return decodePGBinary(m, pgFamily(m, oid), oid, data)
}

func decodePGBinary(m *pgtype.Map, fam Family, oid uint32, data []byte) (v Value, err error) {
	if data == nil {
		return Null, nil
	}
	const bin = pgtype.BinaryFormatCode
	scan := func(dst any) error {
		if err := m.Scan(oid, bin, data, dst); err != nil {
			return fmt.Errorf("decode binary oid %d: %w", oid, err)
		}
		return nil
	}
	switch fam {
	case FamilyBool:
		var b bool
		err = scan(&b)
		return BoolValue(b), err
	case FamilyInt:
		// Integers are big-endian two's complement; oid, xid and cid are
		// unsigned 4-byte values, which pgtype will not scan into int64.
		switch {
		case len(data) == 2 && oid == pgtype.Int2OID:
			return IntValue(int64(int16(binary.BigEndian.Uint16(data)))), nil
		case len(data) == 4 && oid == pgtype.Int4OID:
			return IntValue(int64(int32(binary.BigEndian.Uint32(data)))), nil
		case len(data) == 8 && oid == pgtype.Int8OID:
			return IntValue(int64(binary.BigEndian.Uint64(data))), nil
		case len(data) == 4:
			return IntValue(int64(binary.BigEndian.Uint32(data))), nil
		}
		return Value{}, fmt.Errorf("decode binary oid %d: %d bytes for an integer", oid, len(data))
	case FamilyDecimal:
		var n pgtype.Numeric
		if err = scan(&n); err != nil {
			return Value{}, err
		}
		return numericValue(n)
	case FamilyFloat:
		var f float64
		err = scan(&f)
		return FloatValue(f), err
	case FamilyText:
		var s string
		err = scan(&s)
		return TextValue(s), err
	case FamilyBytes:
		var b []byte
		err = scan(&b)
		return BytesValue(b), err
	case FamilyDate:
		var d pgtype.Date
		if err = scan(&d); err != nil {
			return Value{}, err
		}
		switch d.InfinityModifier {
		case pgtype.Infinity:
			return Value{Family: FamilyDate, Int: math.MaxInt64}, nil
		case pgtype.NegativeInfinity:
			return Value{Family: FamilyDate, Int: math.MinInt64}, nil
		}
		return DateValue(d.Time), nil
	case FamilyTime:
		if oid == pgtype.TimetzOID {
			// pgtype has no timetz codec: 8 bytes of microseconds, then
			// 4 bytes of zone offset in seconds west of UTC.
			if len(data) != 12 {
				return Value{}, fmt.Errorf("decode binary timetz: %d bytes", len(data))
			}
			us := int64(binary.BigEndian.Uint64(data))
			west := int64(int32(binary.BigEndian.Uint32(data[8:])))
			return Value{Family: FamilyTime, Int: ((us+west*1e6)%usPerDay + usPerDay) % usPerDay}, nil
		}
		var t pgtype.Time
		err = scan(&t)
		return Value{Family: FamilyTime, Int: t.Microseconds}, err
	case FamilyTimestamp:
		var t pgtype.Timestamp
		if err = scan(&t); err != nil {
			return Value{}, err
		}
		if inf, ok := infinityMicros(t.InfinityModifier); ok {
			return Value{Family: FamilyTimestamp, Int: inf}, nil
		}
		return TimestampValue(t.Time), nil
	case FamilyTimestampTZ:
		var t pgtype.Timestamptz
		if err = scan(&t); err != nil {
			return Value{}, err
		}
		if inf, ok := infinityMicros(t.InfinityModifier); ok {
			return Value{Family: FamilyTimestampTZ, Int: inf}, nil
		}
		return TimestampTZValue(t.Time), nil
	case FamilyJSON:
		var b []byte
		if err = scan(&b); err != nil {
			return Value{}, err
		}
		return JSONValue(b)
	case FamilyUUID:
		var u pgtype.UUID
		err = scan(&u)
		return Value{Family: FamilyUUID, Str: uuidFromBytes(u.Bytes[:])}, err
	case FamilyInterval:
		var iv pgtype.Interval
		err = scan(&iv)
		return Value{Family: FamilyInterval, Str: formatInterval(int64(iv.Months), int64(iv.Days), iv.Microseconds)}, err
	default:
		return Value{Family: fam, Str: binaryAsText(m, oid, data)}, nil
	}
}

func infinityMicros(im pgtype.InfinityModifier) (int64, bool) {
	switch im {
	case pgtype.Infinity:
		return math.MaxInt64, true
	case pgtype.NegativeInfinity:
		return math.MinInt64, true
	}
	return 0, false
}

// numericValue converts a pgtype.Numeric (digits × 10^Exp) to a Value.
func numericValue(n pgtype.Numeric) (Value, error) {
	switch {
	case n.NaN:
		return Value{Family: FamilyDecimal, Str: "NaN"}, nil
	case n.InfinityModifier == pgtype.Infinity:
		return Value{Family: FamilyDecimal, Str: "Infinity"}, nil
	case n.InfinityModifier == pgtype.NegativeInfinity:
		return Value{Family: FamilyDecimal, Str: "-Infinity"}, nil
	case n.Int == nil:
		return Value{Family: FamilyDecimal, Str: "0"}, nil
	}
	return DecimalValue(n.Int.String() + "e" + strconv.FormatInt(int64(n.Exp), 10))
}

// binaryAsText renders a binary value of a type this package does not model
// as PG would print it, by decoding it with m and re-encoding it as text;
// without a codec the raw bytes stand (enum labels are their own text).
func binaryAsText(m *pgtype.Map, oid uint32, data []byte) string {
	t, ok := m.TypeForOID(oid)
	if !ok {
		return string(data)
	}
	v, err := t.Codec.DecodeValue(m, oid, pgtype.BinaryFormatCode, data)
	if err != nil {
		return string(data)
	}
	text, err := m.Encode(oid, pgtype.TextFormatCode, v, nil)
	if err != nil {
		return string(data)
	}
	return string(text)
}

// PGRowDecoder decodes the DataRows of one result, one Value per field,
// text or binary per the field's format code.
type PGRowDecoder struct {
	m       *pgtype.Map
	cols    []Column
	oids    []uint32
	formats []int16
}

// NewPGRowDecoder prepares a decoder for a RowDescription. The format code
// of each field must be the one the rows use: a RowDescription answering
// Describe(portal) or a simple query has it, one answering
// Describe(statement) always says text — use SetFormats with the Bind's
// result formats then.
func NewPGRowDecoder(m *pgtype.Map, fields []pgproto3.FieldDescription) *PGRowDecoder {
	d := &PGRowDecoder{m: m, cols: make([]Column, len(fields)), oids: make([]uint32, len(fields)), formats: make([]int16, len(fields))}
	for i, f := range fields {
		d.cols[i] = PGColumn(m, string(f.Name), f.DataTypeOID, f.TypeModifier)
		d.oids[i] = f.DataTypeOID
		d.formats[i] = f.Format
	}
	return d
}

// SetFormats applies Bind's result-format codes: none means all text, one
// applies to every column, otherwise one per column (as in the protocol).
func (d *PGRowDecoder) SetFormats(formats []int16) error {
	switch len(formats) {
	case 0, 1:
		var f int16
		if len(formats) == 1 {
			f = formats[0]
		}
		for i := range d.formats {
			d.formats[i] = f
		}
	case len(d.formats):
		copy(d.formats, formats)
	default:
		return fmt.Errorf("result formats: %d codes for %d columns", len(formats), len(d.formats))
	}
	return nil
}

// Columns returns the Columns of the result (shared; do not modify).
func (d *PGRowDecoder) Columns() []Column { return d.cols }

// DecodeRow decodes one DataRow's values (nil = NULL). The bytes are copied.
func (d *PGRowDecoder) DecodeRow(values [][]byte) ([]Value, error) {
	if len(values) != len(d.cols) {
		return nil, fmt.Errorf("decode row: %d values for %d columns", len(values), len(d.cols))
	}
	row := make([]Value, len(values))
	for i, data := range values {
		var err error
		if d.formats[i] == pgtype.BinaryFormatCode {
			row[i], err = decodePGBinary(d.m, d.cols[i].Family, d.oids[i], data)
		} else {
			row[i], err = decodePGText(d.cols[i].Family, d.oids[i], data)
		}
		if err != nil {
			return nil, fmt.Errorf("decode column %q: %w", d.cols[i].Name, err)
		}
	}
	return row, nil
}
