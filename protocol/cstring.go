package protocol

import "bytes"

// CString splits a NUL-terminated string off the front of b. ok is false
// when b holds no NUL.
func CString(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, b, false
	}
	return b[:i], b[i+1:], true
}

// Regular message types the proxy inspects. Everything else is forwarded
// without being looked at.
const (
	// Frontend.
	MsgQuery        = 'Q'
	MsgParse        = 'P'
	MsgBind         = 'B'
	MsgExecute      = 'E'
	MsgClose        = 'C'
	MsgSync         = 'S'
	MsgFunctionCall = 'F'
	MsgTerminate    = 'X'
	MsgPassword     = 'p'

	// Backend.
	MsgAuthentication   = 'R'
	MsgBackendKeyData   = 'K'
	MsgParameterStatus  = 'S'
	MsgReadyForQuery    = 'Z'
	MsgDataRow          = 'D'
	MsgErrorResponse    = 'E'
	MsgNoticeResponse   = 'N'
	MsgNegotiateVersion = 'v'
)
