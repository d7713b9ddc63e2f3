package compare

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Rows are compared through a canonical byte encoding of their values: two
// values that mean the same encode to the same bytes, so a row hashes to the
// same 64-bit key on both sides and multisets are maps of counts. How a
// value encodes depends on its column *pair* (colPlan): a float paired with
// a decimal compares as rounded floats, a timestamp at the precision both
// sides hold, text paired with JSON as parsed JSON, and so on.

// encMode says how a column pair encodes.
type encMode uint8

const (
	// encNative, the zero value, encodes each value by its own family.
	//lint:ignore U1000 the zero value names the default mode
	encNative encMode = iota
	// encFloat encodes every number as a float rounded to digits.
	encFloat
	// encRender encodes the rendered text: the families are incompatible
	// (already reported as column_shape) and text is all they share.
	encRender
)

// colPlan is the normalization of one column pair.
type colPlan struct {
	mode     encMode
	digits   int     // significant digits of floats (encFloat)
	relTol   float64 // relative tolerance of the second float pass
	timePrec int     // fractional-second digits both sides hold (0..6)
	trunc    bool    // reduce time precision by truncating (MySQL TIME_TRUNCATE_FRACTIONAL)
	trim     bool    // ignore trailing spaces (blank-padded CHAR on a side)
	jsonText bool    // one side is JSON: parse text as JSON
	textual  bool    // string-like pair: collation may explain differences
	uuid     bool    // one side is a uuid: UUID-shaped text ignores case
	timeLike bool    // time family pair: precision applies
}

// numericFamily reports families compared by numeric value.
func numericFamily(f Family) bool {
	return f == FamilyInt || f == FamilyDecimal || f == FamilyFloat
}

// stringFamily reports families compared as strings.
func stringFamily(f Family) bool {
	switch f {
	case FamilyText, FamilyBytes, FamilyUUID, FamilyJSON, FamilyInterval, FamilyArray, FamilyOther:
		return true
	}
	return false
}

func timeFamily(f Family) bool {
	return f == FamilyTime || f == FamilyTimestamp || f == FamilyTimestampTZ
}

// tinyIntLike reports a column type that MySQL uses for booleans.
func tinyIntLike(c Column) bool {
	t := strings.ToUpper(c.TypeName)
	return strings.HasPrefix(t, "TINYINT") || strings.HasPrefix(t, "BIT") || strings.HasPrefix(t, "UNSIGNED TINYINT")
}

// planPair decides how old column o and new column n compare, and whether
// their families are compatible at all.
func planPair(o, n Column, opts *Options) (colPlan, bool) {
	p := colPlan{digits: opts.FloatDigits, relTol: opts.FloatTolerance, timePrec: 6, trunc: opts.TruncateFractional}
	p.trim = o.PadSpace || n.PadSpace
	fo, fn := o.Family, n.Family
	// An unknown/NULL-typed column takes the other side's family.
	if fo == FamilyNull {
		fo = fn
	}
	if fn == FamilyNull {
		fn = fo
	}
	if fo == FamilyFloat || fn == FamilyFloat {
		p.mode = encFloat
		for _, c := range [2]Column{o, n} {
			if c.Family == FamilyFloat && c.Precision > 0 && c.Precision < p.digits {
				// Single precision holds ~7 digits: compare at what it
				// can hold and allow for its rounding.
				p.digits = c.Precision
				p.relTol = math.Max(p.relTol, math.Pow(10, float64(1-c.Precision)))
			}
		}
	}
	switch {
	case fo == fn:
	case numericFamily(fo) && numericFamily(fn):
	case fo == FamilyBool && fn == FamilyInt && tinyIntLike(n),
		fn == FamilyBool && fo == FamilyInt && tinyIntLike(o):
	case stringFamily(fo) && stringFamily(fn):
	case (fo == FamilyTimestamp || fo == FamilyTimestampTZ) && (fn == FamilyTimestamp || fn == FamilyTimestampTZ):
	default:
		p.mode = encRender
		return p, false
	}
	p.textual = stringFamily(fo) && fo != FamilyBytes && fn != FamilyBytes
	p.jsonText = (fo == FamilyJSON) != (fn == FamilyJSON)
	p.uuid = fo == FamilyUUID || fn == FamilyUUID
	p.timeLike = timeFamily(fo)
	return p, true
}

// singlePlan is the side-independent normalization used by digests, which
// are computed before the other side's columns are known.
func singlePlan(c Column, opts *Options) colPlan {
	p, _ := planPair(c, c, opts)
	p.timePrec = opts.DigestTimePrecision
	return p
}

// appendValue appends the canonical encoding of v under p. With loose set,
// float values are left out (the tolerance pass compares them) and text is
// folded the way a case-, accent- and pad-insensitive collation would.
func (p *colPlan) appendValue(buf []byte, v Value, loose bool) []byte {
	if v.Family == FamilyNull {
		return append(buf, 0)
	}
	if p.mode == encRender {
		return appendString(buf, 'r', rawText(v))
	}
	if p.mode == encFloat {
		if f, ok := toFloat(v); ok {
			if loose {
				return append(buf, 'f')
			}
			buf = append(buf, 'f')
			buf = appendRoundedFloat(buf, f, p.digits)
			return append(buf, ';')
		}
	}
	switch v.Family {
	case FamilyBool, FamilyInt:
		buf = append(buf, 'n')
		buf = strconv.AppendInt(buf, v.Int, 10)
		return append(buf, ';')
	case FamilyDecimal:
		buf = append(buf, 'n')
		buf = append(buf, v.Str...)
		return append(buf, ';')
	case FamilyFloat:
		// Only reached outside encFloat, which planPair never does.
		buf = append(buf, 'f')
		buf = appendRoundedFloat(buf, v.Float, p.digits)
		return append(buf, ';')
	case FamilyDate:
		return appendInt(buf, 'd', v.Int)
	case FamilyTime:
		return appendInt(buf, 't', p.reduce(v.Int))
	case FamilyTimestamp, FamilyTimestampTZ:
		return appendInt(buf, 'T', p.reduce(v.Int))
	case FamilyJSON:
		return appendString(buf, 'j', v.Str)
	case FamilyBytes:
		return appendString(buf, 's', v.Str)
	}
	s := v.Str
	if p.jsonText && v.Family != FamilyJSON {
		if c, err := canonicalJSON([]byte(s)); err == nil {
			return appendString(buf, 'j', c)
		}
	}
	if v.Family == FamilyText && p.textual {
		if p.trim {
			s = strings.TrimRight(s, " ")
		}
		// A UUID kept as text (MySQL CHAR(36)) compares case-insensitively
		// with a uuid column; canonicalUUID only accepts UUID-shaped text.
		if c, ok := canonicalUUID(s); ok && p.uuid {
			s = c
		}
	}
	if loose && p.textual {
		s = foldText(s)
	}
	return appendString(buf, 's', s)
}

// reduce brings a time value to the common fractional precision, rounding
// half up as both PG and MySQL do, or truncating when MySQL is set to.
// Infinities stay.
func (p *colPlan) reduce(us int64) int64 {
	if p.timePrec >= 6 || us == math.MaxInt64 || us == math.MinInt64 {
		return us
	}
	unit := pow10[6-p.timePrec]
	if p.trunc {
		return floorDiv(us, unit) * unit
	}
	return floorDiv(us+unit/2, unit) * unit
}

var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000}

// fracDigits is the number of fractional-second digits us needs.
func fracDigits(us int64) int {
	f := us % 1e6
	if f < 0 {
		f += 1e6
	}
	if f == 0 {
		return 0
	}
	d := 6
	for f%10 == 0 {
		f /= 10
		d--
	}
	return d
}

func appendInt(buf []byte, tag byte, i int64) []byte {
	buf = append(buf, tag)
	return binary.BigEndian.AppendUint64(buf, uint64(i))
}

func appendString(buf []byte, tag byte, s string) []byte {
	buf = append(buf, tag)
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// rawText is a value's text without report quoting.
func rawText(v Value) string {
	switch v.Family {
	case FamilyText, FamilyBytes:
		return v.Str
	}
	return v.String()
}

// toFloat converts a numeric value; ok is false for non-numbers.
func toFloat(v Value) (float64, bool) {
	switch v.Family {
	case FamilyInt, FamilyBool:
		return float64(v.Int), true
	case FamilyFloat:
		return v.Float, true
	case FamilyDecimal:
		f, err := strconv.ParseFloat(v.Str, 64)
		if err != nil {
			switch v.Str {
			case "NaN":
				return math.NaN(), true
			case "Infinity":
				return math.Inf(1), true
			case "-Infinity":
				return math.Inf(-1), true
			}
			// Out of float range: still a number, just huge.
			return f, true
		}
		return f, true
	}
	return 0, false
}

// floatClose reports a and b equal within a relative tolerance.
func floatClose(a, b, relTol float64) bool {
	if a == b || (math.IsNaN(a) && math.IsNaN(b)) {
		return true
	}
	if math.IsInf(a, 0) || math.IsInf(b, 0) || math.IsNaN(a) || math.IsNaN(b) {
		return false
	}
	return math.Abs(a-b) <= relTol*math.Max(math.Abs(a), math.Abs(b))
}

// foldText approximates what case-, accent- and pad-insensitive collations
// (MySQL's *_ci / *_ai_ci, PAD SPACE) consider equal.
func foldText(s string) string {
	s = strings.ToLower(strings.TrimRight(s, " "))
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
			if out, _, err := transform.String(t, s); err == nil {
				return out
			}
			break
		}
	}
	return s
}

// fnv64a hashes b (FNV-1a): stable across processes, so digests can be
// stored and compared later, unlike hash/maphash.
func fnv64a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// mix64 is the splitmix64 finalizer; a digest sums both h and mix64(h) so
// that rows cancelling in one sum are unlikely to cancel in the other.
func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Digest is an order-independent summary of a result's normalized rows,
// kept by the proxy when a result exceeds its memory cap.
type Digest struct {
	Rows int64  `json:"rows"`
	Sum  uint64 `json:"sum"`
	Mix  uint64 `json:"mix"`
}

// Digester accumulates a Digest row by row, in any order. Both sides must
// use the same Options. Because it cannot see the other side, it normalizes
// per column alone: times at Options.DigestTimePrecision, floats at their
// own digits, text exactly (no collation folding) — so a digest comparison
// is stricter than a row comparison for float-vs-decimal columns and for
// text whose pad-space treatment differs between the sides.
type Digester struct {
	plans []colPlan
	buf   []byte
	d     Digest
}

// NewDigester returns a Digester for rows of cols.
func NewDigester(cols []Column, opts Options) *Digester {
	opts = opts.withDefaults()
	g := &Digester{plans: make([]colPlan, len(cols))}
	for i, c := range cols {
		g.plans[i] = singlePlan(c, &opts)
	}
	return g
}

// Add folds one row into the digest.
func (g *Digester) Add(row []Value) {
	g.buf = encodeRow(g.buf[:0], row, g.plans, false)
	h := fnv64a(g.buf)
	g.d.Rows++
	g.d.Sum += h
	g.d.Mix += mix64(h)
}

// Digest returns the digest of the rows added so far.
func (g *Digester) Digest() Digest { return g.d }

// encodeRow appends the canonical encoding of row under plans; missing
// trailing values encode as NULL.
func encodeRow(buf []byte, row []Value, plans []colPlan, loose bool) []byte {
	for i := range plans {
		var v Value
		if i < len(row) {
			v = row[i]
		}
		buf = plans[i].appendValue(buf, v, loose)
	}
	return buf
}
