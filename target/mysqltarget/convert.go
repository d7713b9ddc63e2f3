package mysqltarget

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
)

// ErrNotRepresentable is wrapped by conversion errors: the PostgreSQL value
// has no MySQL counterpart (NaN, infinity, dates outside years 1 to 9999) or
// is not valid text for its type.
var ErrNotRepresentable = errors.New("value not representable in MySQL")

// Layouts of the converted date and time values, the forms MySQL reads.
const (
	dateLayout     = "2006-01-02"
	datetimeLayout = "2006-01-02 15:04:05.999999"
)

// OIDs pgtype has no constant for.
const (
	moneyOID = 790
	xid8OID  = 5069
)

// Converter turns PostgreSQL text-format values into MySQL driver values:
// nil, int64, uint64, float64, string or []byte. It is safe for concurrent
// use.
//
// The PostgreSQL type decides the conversion (see the package
// documentation for the table). User-defined types are resolved with the
// old database's catalog when one is given: domains to their base type,
// arrays of enums or domains to their element type. Without a catalog, an
// unknown OID is converted as text, or as an array of text when its type
// name ends in "[]" or starts with "_".
type Converter struct {
	cat *schema.Catalog
	mu  sync.Mutex  // guards m: a pgtype.Map caches scan plans
	m   *pgtype.Map // parses text forms: dates, times, booleans, arrays
}

// NewConverter returns a Converter that resolves user-defined types with
// cat, which may be nil.
func NewConverter(cat *schema.Catalog) *Converter {
	return &Converter{cat: cat, m: pgtype.NewMap()}
}

// Convert converts v, a value of the column col, for MySQL. When
// col.TypeOID is 0 the value is passed as a string.
func (c *Converter) Convert(col mirror.Column, v mirror.Value) (any, error) {
	if v.Null {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.resolve(col.TypeOID, col.TypeName)
	var (
		out any
		err error
	)
	if t.array {
		out, err = c.array(t.elem, v.Text)
	} else {
		out, err = c.scalar(t.oid, v.Text)
	}
	if err != nil {
		return nil, fmt.Errorf("column %s: %w", col.Name, err)
	}
	return out, nil
}

// resolved is a type after domains are followed.
type resolved struct {
	oid   uint32 // the base type; for arrays unused
	array bool
	elem  uint32 // the array's element base type; 0 when unknown (text)
}

func (c *Converter) resolve(oid uint32, typeName string) resolved {
	if t := c.cat.Type(oid); t != nil {
		t = t.Resolve()
		if t.Kind == schema.KindArray {
			r := resolved{array: true}
			if e := t.Elem.Resolve(); e != nil {
				r.elem = e.OID
			}
			return r
		}
		return resolved{oid: t.OID}
	}
	if pt, ok := c.m.TypeForOID(oid); ok {
		if ac, ok := pt.Codec.(*pgtype.ArrayCodec); ok {
			return resolved{array: true, elem: ac.ElementType.OID}
		}
		return resolved{oid: oid}
	}
	if strings.HasSuffix(typeName, "[]") || strings.HasPrefix(typeName, "_") {
		return resolved{array: true}
	}
	return resolved{oid: oid}
}

func notRepresentable(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotRepresentable}, args...)...)
}

// decimalRe matches the text numeric prints for finite values.
var decimalRe = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// scalar converts a non-array value of the (base) type oid.
func (c *Converter) scalar(oid uint32, s string) (any, error) {
	switch oid {
	case pgtype.BoolOID:
		var b bool
		if err := c.m.Scan(oid, pgtype.TextFormatCode, []byte(s), &b); err != nil {
			return nil, notRepresentable("boolean %q", s)
		}
		if b {
			return int64(1), nil
		}
		return int64(0), nil
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, notRepresentable("integer %q", s)
		}
		return n, nil
	case pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID, xid8OID:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, notRepresentable("unsigned integer %q", s)
		}
		return n, nil
	case pgtype.Float4OID, pgtype.Float8OID:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, notRepresentable("floating-point %q (MySQL has no NaN or infinity)", s)
		}
		return f, nil
	case pgtype.NumericOID:
		// The decimal text goes as is: MySQL reads a string into DECIMAL
		// exactly, where a float64 would round.
		if !decimalRe.MatchString(s) {
			return nil, notRepresentable("numeric %q (MySQL DECIMAL has no NaN or infinity)", s)
		}
		return s, nil
	case pgtype.ByteaOID:
		return decodeBytea(s)
	case pgtype.UUIDOID:
		return strings.ToLower(s), nil
	case pgtype.DateOID:
		var d pgtype.Date
		if err := c.m.Scan(oid, pgtype.TextFormatCode, []byte(s), &d); err != nil {
			return nil, notRepresentable("date %q", s)
		}
		if d.InfinityModifier != pgtype.Finite {
			return nil, notRepresentable("date %q (MySQL has no infinity)", s)
		}
		return formatTime(d.Time, dateLayout, s)
	case pgtype.TimestampOID:
		var ts pgtype.Timestamp
		if err := c.m.Scan(oid, pgtype.TextFormatCode, []byte(s), &ts); err != nil {
			return nil, notRepresentable("timestamp %q", s)
		}
		if ts.InfinityModifier != pgtype.Finite {
			return nil, notRepresentable("timestamp %q (MySQL has no infinity)", s)
		}
		return formatTime(ts.Time, datetimeLayout, s)
	case pgtype.TimestamptzOID:
		// The text carries the old session's offset; DATETIME holds UTC.
		var ts pgtype.Timestamptz
		if err := c.m.Scan(oid, pgtype.TextFormatCode, []byte(s), &ts); err != nil {
			return nil, notRepresentable("timestamptz %q", s)
		}
		if ts.InfinityModifier != pgtype.Finite {
			return nil, notRepresentable("timestamptz %q (MySQL has no infinity)", s)
		}
		return formatTime(ts.Time.UTC(), datetimeLayout, s)
	case pgtype.TimetzOID:
		return timetzToUTC(s)
	case pgtype.BitOID:
		// BIT(n) takes the bits as a number; longer strings stay text.
		if len(s) <= 64 {
			n, err := strconv.ParseUint(s, 2, 64)
			if err != nil && s != "" {
				return nil, notRepresentable("bit string %q", s)
			}
			return n, nil
		}
		return s, nil
	}
	// text, varchar, bpchar, name, citext, json, jsonb, time, interval,
	// enums, inet, cidr, macaddr, varbit, money, xml, ranges, geometric and
	// any other type: its text form.
	return s, nil
}

// formatTime formats a date or timestamp for MySQL, whose DATE and
// DATETIME hold years 1 to 9999 (BC dates and later years are refused).
func formatTime(t time.Time, layout, orig string) (any, error) {
	if y := t.Year(); y < 1 || y > 9999 {
		return nil, notRepresentable("%q is outside the years 1 to 9999", orig)
	}
	return t.Format(layout), nil
}

// timetzToUTC converts a time of day with an offset ("10:00:00+02",
// "23:30:00-05:30") to the UTC time of day, wrapping around midnight: MySQL
// has no time-with-zone type, and TIME columns hold UTC like DATETIME.
func timetzToUTC(s string) (any, error) {
	i := strings.LastIndexAny(s, "+-")
	if i <= 0 {
		return nil, notRepresentable("timetz %q", s)
	}
	clock, off := s[:i], s[i:]
	t, err := time.Parse("15:04:05.999999", clock)
	if err != nil {
		return nil, notRepresentable("timetz %q", s)
	}
	sign := 1
	if off[0] == '-' {
		sign = -1
	}
	var offSec int
	for j, part := range strings.Split(off[1:], ":") {
		n, err := strconv.Atoi(part)
		if err != nil || j > 2 {
			return nil, notRepresentable("timetz %q", s)
		}
		offSec += n * []int{3600, 60, 1}[j]
	}
	const day = 24 * 60 * 60
	secs := t.Hour()*3600 + t.Minute()*60 + t.Second() - sign*offSec
	secs = ((secs % day) + day) % day
	utc := time.Date(2000, 1, 1, 0, 0, 0, t.Nanosecond(), time.UTC).Add(time.Duration(secs) * time.Second)
	return utc.Format("15:04:05.999999"), nil
}

// decodeBytea decodes bytea text in the hex format (\x0a1b…, the default
// since PostgreSQL 9.0) or the escape format (bytea_output = escape: octal
// \nnn escapes, \\ for a backslash, other bytes as they are).
func decodeBytea(s string) (any, error) {
	if strings.HasPrefix(s, `\x`) {
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return nil, notRepresentable("bytea %q", s)
		}
		return b, nil
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
		case i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]):
			out = append(out, (s[i+1]-'0')<<6|(s[i+2]-'0')<<3|(s[i+3]-'0'))
			i += 3
		default:
			return nil, notRepresentable("bytea %q", s)
		}
	}
	return out, nil
}

func isOctal(b byte) bool { return b >= '0' && b <= '7' }

// array converts PostgreSQL array text ({1,2,NULL}, {{1,2},{3,4}},
// {"a b","c\"d"}) to the text of a JSON array, nested like the array's
// dimensions, with each element converted by its type (see jsonElem).
// Explicit lower bounds ([0:1]={…}) are dropped: JSON arrays start at 0.
func (c *Converter) array(elem uint32, s string) (any, error) {
	if elem == pgtype.BoxOID {
		// Box arrays use ';' between elements; nobody stores them in
		// JSON. Pass the text.
		return s, nil
	}
	// pgtype's array parser handles quoting, escapes, NULL and dimensions
	// for any element type; the elements come out as their text.
	var arr pgtype.Array[pgtype.Text]
	if err := c.m.Scan(pgtype.TextArrayOID, pgtype.TextFormatCode, []byte(s), &arr); err != nil {
		return nil, notRepresentable("array %q: %v", s, err)
	}
	elems := make([]any, len(arr.Elements))
	for i, e := range arr.Elements {
		if !e.Valid {
			continue // JSON null
		}
		v, err := c.jsonElem(elem, e.String)
		if err != nil {
			return nil, fmt.Errorf("array %q: %w", s, err)
		}
		elems[i] = v
	}
	nested, _ := nest(elems, arr.Dims)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(nested); err != nil {
		return nil, notRepresentable("array %q: %v", s, err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// nest builds nested slices from flat elements and dimensions; it returns
// the nested value and the elements it did not use.
func nest(elems []any, dims []pgtype.ArrayDimension) (any, []any) {
	if len(dims) == 0 {
		return []any{}, elems
	}
	n := int(dims[0].Length)
	out := make([]any, n)
	for i := range n {
		if len(dims) == 1 {
			out[i], elems = elems[0], elems[1:]
			continue
		}
		out[i], elems = nest(elems, dims[1:])
	}
	return out, elems
}

// jsonElem converts one array element for JSON: numbers and booleans as
// JSON numbers and booleans, json and jsonb elements as embedded JSON,
// dates and times converted like scalars (timestamptz to UTC), bytea in its
// PostgreSQL hex text, everything else as a string.
func (c *Converter) jsonElem(elem uint32, s string) (any, error) {
	switch elem {
	case pgtype.BoolOID:
		v, err := c.scalar(elem, s)
		if err != nil {
			return nil, err
		}
		return v == int64(1), nil
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID, pgtype.NumericOID,
		pgtype.Float4OID, pgtype.Float8OID:
		if _, err := c.scalar(elem, s); err != nil {
			return nil, err
		}
		return json.Number(s), nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		if !json.Valid([]byte(s)) {
			return nil, notRepresentable("json %q", s)
		}
		return json.RawMessage(s), nil
	case pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.TimetzOID:
		return c.scalar(elem, s)
	}
	return s, nil
}
