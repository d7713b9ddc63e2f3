package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shadowproxy/shadowproxy/mirror"
)

// Type OIDs whose text form follows the session's DateStyle.
const (
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
)

// dateStyle is a session's DateStyle output format as the server reports
// it in ParameterStatus, e.g. "ISO, MDY", "SQL, DMY", "German, DMY",
// "Postgres, MDY". Row images go to the new database in ISO; a session in
// another style has its captured dates, timestamps and timestamptz values
// turned into ISO by isoDateTime (PostgreSQL prints them unambiguously
// given the style, the field order and the session's TimeZone).
type dateStyle struct {
	format string // "ISO", "SQL", "German" or "Postgres"
	dmy    bool   // day before month (SQL and Postgres formats)
}

func parseDateStyle(s string) dateStyle {
	format, order, _ := strings.Cut(s, ",")
	return dateStyle{format: strings.TrimSpace(format), dmy: strings.TrimSpace(order) == "DMY"}
}

func (d dateStyle) iso() bool { return d.format == "ISO" }

// dateStyleConvertible reports whether isoDateTime can read the style.
func (d dateStyle) convertible() bool {
	switch d.format {
	case "ISO", "SQL", "German", "Postgres":
		return true
	}
	return false
}

// How a session's captured date/time text can be read (session.dates).
const (
	datesISO        = iota // DateStyle ISO: as is
	datesConverted         // another style isoDateTime reads
	datesUnreadable        // a style it does not know: writes are not mirrored
)

var errDateText = errors.New("unrecognized date/time text")

// isoValues turns the captured values of date/time columns into ISO, in
// place. names, when not nil, are the columns of vals by name (a key);
// else vals are cols in order.
func (ss *session) isoValues(cols []mirror.Column, names []string, vals []mirror.Value) error {
	for i := range vals {
		oid := uint32(0)
		if names == nil {
			oid = cols[i].TypeOID
		} else {
			for _, c := range cols {
				if c.Name == names[i] {
					oid = c.TypeOID
				}
			}
		}
		if vals[i].Null || oid != oidDate && oid != oidTimestamp && oid != oidTimestamptz {
			continue
		}
		iso, err := isoDateTime(oid, vals[i].Text, ss.dateStyle, ss.zone)
		if err != nil {
			return fmt.Errorf("%q in DateStyle %s: %w", vals[i].Text, ss.dateStyle.format, err)
		}
		vals[i].Text = iso
	}
	return nil
}

var monthAbbrevs = map[string]time.Month{
	"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
	"Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12,
}

// isoDateTime turns the text of a date, timestamp or timestamptz value
// printed in style into PostgreSQL's ISO form, timestamptz in UTC ("+00").
// loc is the session's TimeZone, which names the offsets behind the zone
// abbreviations timestamptz values are printed with.
func isoDateTime(oid uint32, text string, style dateStyle, loc *time.Location) (string, error) {
	if text == "infinity" || text == "-infinity" {
		return text, nil
	}
	f := strings.Fields(text)
	bc := len(f) > 0 && f[len(f)-1] == "BC"
	if bc {
		f = f[:len(f)-1]
	}
	var y, mo, d int
	var clock, zone string
	var err error
	switch style.format {
	case "SQL", "German":
		if len(f) == 0 {
			return "", errDateText
		}
		sep := "/"
		if style.format == "German" {
			sep = "."
		}
		if y, mo, d, err = numericDate(f[0], sep, style.format == "SQL" && !style.dmy); err != nil {
			return "", err
		}
		rest := f[1:]
		if len(rest) > 0 {
			clock, rest = rest[0], rest[1:]
		}
		if len(rest) > 0 {
			zone, rest = rest[0], rest[1:]
		}
		if len(rest) > 0 {
			return "", errDateText
		}
	case "Postgres":
		if oid == oidDate {
			// "12-17-1997" (MDY) or "17-12-1997" (DMY).
			if len(f) != 1 {
				return "", errDateText
			}
			if y, mo, d, err = numericDate(f[0], "-", !style.dmy); err != nil {
				return "", err
			}
			break
		}
		// "Wed Dec 17 07:37:16 1997 PST" (MDY), "Wed 17 Dec 07:37:16 1997 PST" (DMY).
		if len(f) < 5 || len(f) > 6 {
			return "", errDateText
		}
		mon, day := f[1], f[2]
		if style.dmy {
			mon, day = day, mon
		}
		m, ok := monthAbbrevs[mon]
		if !ok {
			return "", errDateText
		}
		mo = int(m)
		if d, err = atoiDigits(day); err != nil || len(day) != 2 {
			return "", errDateText
		}
		clock = f[3]
		if y, err = atoiDigits(f[4]); err != nil || len(f[4]) < 4 {
			return "", errDateText
		}
		if len(f) == 6 {
			zone = f[5]
		}
	default:
		return "", fmt.Errorf("DateStyle %q: %w", style.format, errDateText)
	}
	if mo < 1 || mo > 12 || d < 1 || d > 31 || y < 1 {
		return "", errDateText
	}
	date := fmt.Sprintf("%04d-%02d-%02d", y, mo, d)
	switch oid {
	case oidDate:
		if clock != "" || zone != "" {
			return "", errDateText
		}
		return withBC(date, bc), nil
	case oidTimestamp:
		if _, ok := parseClock(clock); !ok || zone != "" {
			return "", errDateText
		}
		return withBC(date+" "+clock, bc), nil
	case oidTimestamptz:
		c, ok := parseClock(clock)
		if !ok || zone == "" {
			return "", errDateText
		}
		return utcInstant(y, mo, d, c, zone, bc, loc)
	}
	return "", errDateText
}

// numericDate reads "DD<sep>MM<sep>YYYY", or "MM<sep>DD<sep>YYYY" when
// monthFirst.
func numericDate(s, sep string, monthFirst bool) (y, mo, d int, err error) {
	p := strings.Split(s, sep)
	if len(p) != 3 {
		return 0, 0, 0, errDateText
	}
	if monthFirst {
		p[0], p[1] = p[1], p[0]
	}
	// As PostgreSQL prints them: two-digit day and month, a year of four
	// digits or more.
	if len(p[0]) != 2 || len(p[1]) != 2 || len(p[2]) < 4 {
		return 0, 0, 0, errDateText
	}
	if d, err = atoiDigits(p[0]); err == nil {
		if mo, err = atoiDigits(p[1]); err == nil {
			y, err = atoiDigits(p[2])
		}
	}
	return y, mo, d, err
}

func withBC(s string, bc bool) string {
	if bc {
		return s + " BC"
	}
	return s
}

// utcInstant resolves a local date and clock printed with a zone
// abbreviation (or a numeric offset) in loc, and prints the instant in UTC
// as PostgreSQL's ISO style does.
func utcInstant(y, mo, d int, c clockTime, zone string, bc bool, loc *time.Location) (string, error) {
	year := y
	if bc {
		year = 1 - y // astronomical numbering: 1 BC is year 0
	}
	wall := time.Date(year, time.Month(mo), d, c.h, c.m, c.s, c.ns, time.UTC)
	offset, err := zoneOffset(wall, zone, loc)
	if err != nil {
		return "", err
	}
	t := wall.Add(-time.Duration(offset) * time.Second)
	ty := t.Year()
	tbc := ty <= 0
	if tbc {
		ty = 1 - ty
	}
	out := fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d", ty, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())
	if c.frac != "" {
		out += "." + c.frac
	}
	return withBC(out+"+00", tbc), nil
}

// zoneOffset returns the UTC offset, in seconds, that zone (an
// abbreviation, or a numeric offset such as "+05:30") stands for at the
// local wall time in loc.
func zoneOffset(wall time.Time, zone string, loc *time.Location) (int, error) {
	if zone[0] == '+' || zone[0] == '-' {
		if off, ok := numericOffset(zone); ok {
			return off, nil
		}
	}
	if loc == nil {
		return 0, fmt.Errorf("zone %q with no known session TimeZone", zone)
	}
	// The offsets in force around the wall time (both sides of a
	// daylight-saving change); the abbreviation picks one.
	seen := map[int]bool{}
	for _, h := range []int{-26, 0, 26} {
		_, off := wall.Add(time.Duration(h) * time.Hour).In(loc).Zone()
		if seen[off] {
			continue
		}
		seen[off] = true
		name, at := wall.Add(-time.Duration(off) * time.Second).In(loc).Zone()
		if at == off && name == zone {
			return off, nil
		}
	}
	return 0, fmt.Errorf("zone %q is not an offset of %s at %s", zone, loc, wall.Format("2006-01-02 15:04:05"))
}

// atoiDigits is strconv.Atoi for plain decimal digits only (no sign).
func atoiDigits(s string) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, errDateText
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errDateText
		}
	}
	return strconv.Atoi(s)
}

// clockTime is a time of day as PostgreSQL prints it, HH:MM:SS with an
// optional fraction of up to nine digits (kept as printed in frac).
type clockTime struct {
	h, m, s, ns int
	frac        string
}

func parseClock(str string) (c clockTime, ok bool) {
	hms, frac, hasFrac := strings.Cut(str, ".")
	p := strings.Split(hms, ":")
	if len(p) != 3 || hasFrac && (frac == "" || len(frac) > 9) {
		return c, false
	}
	for i, dst := range []*int{&c.h, &c.m, &c.s} {
		n, err := atoiDigits(p[i])
		if err != nil || len(p[i]) != 2 {
			return c, false
		}
		*dst = n
	}
	if hasFrac {
		ns, err := atoiDigits(frac + strings.Repeat("0", 9-len(frac)))
		if err != nil {
			return c, false
		}
		c.ns, c.frac = ns, frac
	}
	return c, true
}

// numericOffset parses "+05", "-03:30", "+05:30:15".
func numericOffset(s string) (int, bool) {
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	p := strings.Split(s[1:], ":")
	if len(p) > 3 {
		return 0, false
	}
	off := 0
	for i, unit := range []int{3600, 60, 1} {
		if i >= len(p) {
			break
		}
		n, err := atoiDigits(p[i])
		if err != nil || len(p[i]) != 2 {
			return 0, false
		}
		off += n * unit
	}
	return sign * off, true
}
