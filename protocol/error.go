package protocol

import (
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes the proxy itself reports. See
// https://www.postgresql.org/docs/current/errcodes-appendix.html.
const (
	CodeProtocolViolation      = "08P01"
	CodeConnectionFailure      = "08006"
	CodeCannotConnectNow       = "57P03"
	CodeAdminShutdown          = "57P01"
	CodeIdleSessionTimeout     = "57P05"
	CodeTooManyConnections     = "53300"
	CodeInvalidPassword        = "28P01"
	CodeInvalidAuthSpec        = "28000"
	CodeFeatureNotSupported    = "0A000"
	CodeInternalError          = "XX000"
	CodeQueryCanceled          = "57014"
	CodeConnectionDoesNotExist = "08003"
)

// Error is a Postgres-style error the proxy reports to a client as an
// ErrorResponse. It satisfies error so it can travel up a call chain and be
// rendered at the edge.
type Error struct {
	Severity string // "ERROR" or "FATAL"
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
}

func (e *Error) Error() string { return e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")" }

// Fatal returns a FATAL error with the given SQLSTATE.
func Fatal(code, msg string) *Error { return &Error{Severity: "FATAL", Code: code, Message: msg} }

// AsError returns err as an *Error, wrapping anything else as a FATAL
// internal error so that a client is always told something.
func AsError(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Severity: "FATAL", Code: CodeInternalError, Message: err.Error()}
}

// AppendErrorResponse appends e encoded as an ErrorResponse message.
func AppendErrorResponse(dst []byte, e *Error) []byte {
	msg := pgproto3.ErrorResponse{
		Severity:            e.Severity,
		SeverityUnlocalized: e.Severity,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
	}
	out, err := msg.Encode(dst)
	if err != nil {
		// Encode fails only for messages over 1 GiB; ours are short.
		panic("protocol: encoding ErrorResponse: " + err.Error())
	}
	return out
}

// ErrorFields extracts severity and SQLSTATE from an ErrorResponse or
// NoticeResponse body without decoding the rest. Missing fields are "".
func ErrorFields(body []byte) (severity, code string) {
	for len(body) > 1 {
		t := body[0]
		body = body[1:]
		end := 0
		for end < len(body) && body[end] != 0 {
			end++
		}
		v := body[:end]
		if end < len(body) {
			end++
		}
		body = body[end:]
		switch t {
		case 'V':
			severity = string(v)
		case 'S':
			if severity == "" {
				severity = string(v)
			}
		case 'C':
			code = string(v)
		}
		if severity != "" && code != "" {
			return severity, code
		}
	}
	return severity, code
}
