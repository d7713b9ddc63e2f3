package proxy

import "time"

// ISODateTime exposes isoDateTime to the external tests, which have the
// Postgres server to check it against.
func ISODateTime(oid uint32, text, style string, loc *time.Location) (string, error) {
	return isoDateTime(oid, text, parseDateStyle(style), loc)
}
