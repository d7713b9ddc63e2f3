package proxy

import (
	"regexp"
	"testing"
	"time"
)

// isoOut is the shape of isoDateTime's output.
var isoOut = regexp.MustCompile(`^(-?infinity|\d{4,}-\d\d-\d\d( \d\d:\d\d:\d\d(\.\d{1,9})?(\+00)?)?( BC)?)$`)

// FuzzISODateTime feeds arbitrary text in every style: isoDateTime must
// not panic, and what it accepts it must print in ISO.
func FuzzISODateTime(f *testing.F) {
	for _, s := range []string{
		"17.12.1997", "12/17/1997 07:37:16.25", "Wed Dec 17 07:37:16 1997 CET", "Wed 17 Dec 07:37:16.5 1997 +05:30",
		"17/12/1997 07:37:16 IST", "0044-03-15 BC", "15.03.0044 12:00:00 LMT BC", "infinity", "", "+", "1/2/3 4:5:6 -",
	} {
		for style := range uint8(5) {
			f.Add(s, style, uint8(style%3))
		}
	}
	styles := []string{"SQL, DMY", "SQL, MDY", "German, DMY", "Postgres, DMY", "Postgres, MDY"}
	oids := []uint32{oidDate, oidTimestamp, oidTimestamptz}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string, style, oid uint8) {
		out, err := isoDateTime(oids[int(oid)%len(oids)], text, parseDateStyle(styles[int(style)%len(styles)]), berlin)
		if err == nil && !isoOut.MatchString(out) {
			t.Fatalf("%q → %q, not ISO", text, out)
		}
	})
}
