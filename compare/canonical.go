package compare

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// canonicalDecimal returns the canonical spelling of a decimal number so that
// equal values spell the same: no leading zeros, no trailing fractional
// zeros, no "+", "-0" → "0", exponents folded in ("1.5e2" → "150").
// "NaN", "Infinity" and "-Infinity" (PG numeric) are accepted in any case.
// Exponents beyond ±maxPlainExp keep a scientific form ("1e5000") so that a
// hostile input cannot make us build a huge string.
func canonicalDecimal(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", false
	}
	switch strings.ToLower(s) {
	case "nan":
		return "NaN", true
	case "infinity", "+infinity", "inf", "+inf":
		return "Infinity", true
	case "-infinity", "-inf":
		return "-Infinity", true
	}
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	// Split mantissa and exponent.
	mant, exp := s, int64(0)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.ParseInt(s[i+1:], 10, 32)
		if err != nil {
			return "", false
		}
		exp = e
	}
	intPart, frac := mant, ""
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	if intPart == "" && frac == "" {
		return "", false
	}
	for _, part := range [2]string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return "", false
			}
		}
	}
	// digits × 10^(exp - len(frac)), with digits stripped of zeros at both
	// ends (trailing zeros move into the exponent).
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= int64(len(frac))
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	digits = trimmed
	if digits == "" {
		return "0", true
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	// point is the position of the decimal point within digits.
	point := int64(len(digits)) + exp
	switch {
	case exp > maxPlainExp || point < -maxPlainExp:
		b.WriteString(digits[:1])
		if len(digits) > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		b.WriteString(strconv.FormatInt(point-1, 10))
	case exp >= 0:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", int(exp)))
	case point > 0:
		b.WriteString(digits[:point])
		b.WriteByte('.')
		b.WriteString(digits[point:])
	default:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", int(-point)))
		b.WriteString(digits)
	}
	return b.String(), true
}

const maxPlainExp = 1000

// appendRoundedFloat appends f rounded to n significant digits in a
// canonical scientific form ("1.25e+02"), so that floats computed slightly
// differently by two engines hash alike. -0 becomes 0.
func appendRoundedFloat(buf []byte, f float64, n int) []byte {
	switch {
	case math.IsNaN(f):
		return append(buf, "NaN"...)
	case math.IsInf(f, 1):
		return append(buf, "Infinity"...)
	case math.IsInf(f, -1):
		return append(buf, "-Infinity"...)
	case f == 0:
		return append(buf, '0')
	}
	start := len(buf)
	buf = strconv.AppendFloat(buf, f, 'e', n-1, 64)
	// Strip trailing zeros of the mantissa: "1.2500e+02" → "1.25e+02".
	e := bytes.IndexByte(buf[start:], 'e') + start
	m := e
	for m > start && buf[m-1] == '0' {
		m--
	}
	if m > start && buf[m-1] == '.' {
		m--
	}
	if m != e {
		buf = append(buf[:m], buf[e:]...)
	}
	return buf
}

// canonicalJSON parses doc and re-serializes it with object keys sorted,
// no insignificant white space, and numbers as canonical decimals, so that
// PG jsonb, PG json and MySQL JSON spell equal documents alike.
func canonicalJSON(doc []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("invalid json: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", errors.New("invalid json: trailing data")
	}
	var b strings.Builder
	if err := writeCanonicalJSON(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeCanonicalJSON(b *strings.Builder, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case json.Number:
		c, ok := canonicalDecimal(string(v))
		if !ok {
			return fmt.Errorf("invalid json number %q", truncate(string(v), 40))
		}
		b.WriteString(c)
	case string:
		writeJSONString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCanonicalJSON(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, k)
			b.WriteByte(':')
			if err := writeCanonicalJSON(b, v[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("unexpected json value %T", v)
	}
	return nil
}

// writeJSONString writes s as a JSON string, escaping only what JSON
// requires (unlike encoding/json, which also escapes <, > and &).
func writeJSONString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\ufffd`)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
}

// canonicalUUID lower-cases a UUID and puts the hyphens where PG prints
// them; it accepts braces and missing hyphens, as PG input does.
func canonicalUUID(s string) (string, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "{"), "}")
	var hexd [32]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-':
			continue
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", false
		}
		if n == 32 {
			return "", false
		}
		hexd[n] = c
		n++
	}
	if n != 32 {
		return "", false
	}
	h := string(hexd[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], true
}

// uuidFromBytes formats 16 raw bytes (MySQL BINARY(16)) as a canonical UUID.
func uuidFromBytes(b []byte) string {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexdigits[c>>4], hexdigits[c&0xF])
	}
	return string(out)
}
