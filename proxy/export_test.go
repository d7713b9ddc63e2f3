package proxy

import "time"

// ISODateTime exposes isoDateTime to the external tests, which have the
// Postgres server to check it against.
func ISODateTime(oid uint32, text, style string, loc *time.Location) (string, error) {
	return isoDateTime(oid, text, parseDateStyle(style), loc)
}

// LoopAwaiting returns how many sessions the event loop counts as waiting
// for the old database's answer (-1 without a loop).
func LoopAwaiting(s *Server) int {
	if s.loop == nil {
		return -1
	}
	return s.loop.awaitingCount()
}
