package compare

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Text parsers for dates and times as PG (DateStyle ISO, the default) and
// MySQL print them. They are hand-written rather than time.Parse because
// PG years run past 9999 and before year 1 (" BC"), PG prints 24:00:00, and
// MySQL TIME is a signed duration of up to 838 hours.

// parseDays parses "YYYY-MM-DD" at the start of s and returns the rest.
func parseDays(s string) (y, m, d int64, rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i < 1 || i > 7 || len(s) < i+6 || s[i] != '-' || s[i+3] != '-' {
		return 0, 0, 0, "", false
	}
	y, _ = strconv.ParseInt(s[:i], 10, 64)
	m, ok1 := twoDigits(s[i+1:])
	d, ok2 := twoDigits(s[i+4:])
	if !ok1 || !ok2 || m < 1 || m > 12 || d < 1 || d > 31 {
		return 0, 0, 0, "", false
	}
	return y, m, d, s[i+6:], true
}

func twoDigits(s string) (int64, bool) {
	if len(s) < 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, false
	}
	return int64(s[0]-'0')*10 + int64(s[1]-'0'), true
}

// parseClock parses "H+:MM:SS[.f{1,6}]" at the start of s into microseconds.
// Hours may exceed 23 (PG 24:00:00, MySQL TIME durations).
func parseClock(s string) (us int64, rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i < 1 || i > 9 || len(s) < i+6 || s[i] != ':' || s[i+3] != ':' {
		return 0, "", false
	}
	h, _ := strconv.ParseInt(s[:i], 10, 64)
	mi, ok1 := twoDigits(s[i+1:])
	sec, ok2 := twoDigits(s[i+4:])
	if !ok1 || !ok2 || mi > 59 || sec > 60 {
		return 0, "", false
	}
	us = h*3600e6 + mi*60e6 + sec*1e6
	rest = s[i+6:]
	if len(rest) > 0 && rest[0] == '.' {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		digits := rest[1:j]
		if len(digits) == 0 || len(digits) > 6 {
			return 0, "", false
		}
		f, _ := strconv.ParseInt(digits+strings.Repeat("0", 6-len(digits)), 10, 64)
		us += f
		rest = rest[j:]
	}
	return us, rest, true
}

// parseZone parses a "+HH[:MM[:SS]]" / "-HH..." / "Z" offset at the start of
// s, returning seconds east of UTC.
func parseZone(s string) (secs int64, rest string, ok bool) {
	if strings.HasPrefix(s, "Z") {
		return 0, s[1:], true
	}
	if len(s) < 3 || (s[0] != '+' && s[0] != '-') {
		return 0, "", false
	}
	sign := int64(1)
	if s[0] == '-' {
		sign = -1
	}
	h, ok := twoDigits(s[1:])
	if !ok {
		return 0, "", false
	}
	secs, rest = h*3600, s[3:]
	for _, mul := range [2]int64{60, 1} {
		if len(rest) >= 3 && rest[0] == ':' {
			v, ok := twoDigits(rest[1:])
			if !ok {
				return 0, "", false
			}
			secs += v * mul
			rest = rest[3:]
		}
	}
	return sign * secs, rest, true
}

// astronomicalYear applies a trailing " BC" (PG prints 1 BC as "0001 BC").
func astronomicalYear(y int64, rest string) (int64, string, bool) {
	if strings.HasPrefix(rest, " BC") {
		if y < 1 {
			return 0, "", false
		}
		return 1 - y, rest[3:], true
	}
	return y, rest, true
}

// parsePGDate parses PG date output.
func parsePGDate(s string) (int64, error) {
	switch s {
	case "infinity":
		return math.MaxInt64, nil
	case "-infinity":
		return math.MinInt64, nil
	}
	y, m, d, rest, ok := parseDays(s)
	if ok {
		y, rest, ok = astronomicalYear(y, rest)
	}
	if !ok || rest != "" {
		return 0, fmt.Errorf("invalid date %q", truncate(s, 40))
	}
	return daysFromCivil(y, m, d), nil
}

// parsePGTimestamp parses PG timestamp / timestamptz output into
// microseconds since the epoch; with zone, the instant in UTC.
func parsePGTimestamp(s string, zone bool) (int64, error) {
	switch s {
	case "infinity":
		return math.MaxInt64, nil
	case "-infinity":
		return math.MinInt64, nil
	}
	bad := fmt.Errorf("invalid timestamp %q", truncate(s, 40))
	y, m, d, rest, ok := parseDays(s)
	if !ok || len(rest) < 1 || (rest[0] != ' ' && rest[0] != 'T') {
		return 0, bad
	}
	clock, rest, ok := parseClock(rest[1:])
	if !ok {
		return 0, bad
	}
	var off int64
	if zone {
		if off, rest, ok = parseZone(rest); !ok {
			return 0, bad
		}
	}
	// PG timestamps end in 294276 AD; the bound keeps the microsecond
	// arithmetic below from overflowing on hostile input.
	if y, rest, ok = astronomicalYear(y, rest); !ok || rest != "" || y > 294277 || y < -294277 {
		return 0, bad
	}
	return daysFromCivil(y, m, d)*usPerDay + clock - off*1e6, nil
}

// parsePGTime parses PG time / timetz output; timetz is moved to UTC and
// wrapped into one day, so that equal instants-of-day compare equal.
func parsePGTime(s string, zone bool) (int64, error) {
	bad := fmt.Errorf("invalid time %q", truncate(s, 40))
	us, rest, ok := parseClock(s)
	if !ok || us > usPerDay {
		return 0, bad
	}
	if zone {
		var off int64
		if off, rest, ok = parseZone(rest); !ok {
			return 0, bad
		}
		us = ((us-off*1e6)%usPerDay + usPerDay) % usPerDay
	}
	if rest != "" {
		return 0, bad
	}
	return us, nil
}

// parseMySQLTime parses MySQL TIME ("-838:59:59.000000"), a signed duration.
func parseMySQLTime(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	us, rest, ok := parseClock(strings.TrimPrefix(s, "-"))
	if !ok || rest != "" {
		return 0, fmt.Errorf("invalid time %q", truncate(s, 40))
	}
	if neg {
		us = -us
	}
	return us, nil
}

// parseMySQLDateTime parses MySQL DATE, DATETIME and TIMESTAMP text. The
// zero date ("0000-00-00 ...") is not a date; callers keep it as text.
func parseMySQLDateTime(s string, withClock bool) (int64, error) {
	bad := fmt.Errorf("invalid datetime %q", truncate(s, 40))
	y, m, d, rest, ok := parseDays(s)
	if !ok {
		return 0, bad
	}
	days := daysFromCivil(y, m, d)
	if !withClock {
		if rest != "" {
			return 0, bad
		}
		return days, nil
	}
	if rest == "" {
		return days * usPerDay, nil
	}
	if rest[0] != ' ' && rest[0] != 'T' {
		return 0, bad
	}
	clock, rest, ok := parseClock(rest[1:])
	if !ok || rest != "" {
		return 0, bad
	}
	return days*usPerDay + clock, nil
}

// parsePGInterval parses the default IntervalStyle ("postgres") output,
// e.g. "1 year 2 mons -3 days +04:05:06.5", into months, days and
// microseconds. Other styles are reported as not parsed.
func parsePGInterval(s string) (months, days, us int64, ok bool) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return 0, 0, 0, false
	}
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if strings.Contains(f, ":") {
			neg := strings.HasPrefix(f, "-")
			c, rest, ok := parseClock(strings.TrimLeft(f, "+-"))
			if !ok || rest != "" {
				return 0, 0, 0, false
			}
			if neg {
				c = -c
			}
			us += c
			continue
		}
		n, err := strconv.ParseInt(f, 10, 32)
		if err != nil || i+1 >= len(fields) {
			return 0, 0, 0, false
		}
		i++
		switch strings.TrimSuffix(fields[i], "s") {
		case "year":
			months += n * 12
		case "mon":
			months += n
		case "day":
			days += n
		default:
			return 0, 0, 0, false
		}
	}
	return months, days, us, true
}

func formatInterval(months, days, us int64) string {
	return fmt.Sprintf("%dm%dd%dus", months, days, us)
}
