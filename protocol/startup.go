package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Request codes that stand where a StartupMessage carries its protocol
// version.
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
)

// MaxStartupPacket is the largest startup packet accepted, as in the
// Postgres server (MAX_STARTUP_PACKET_LENGTH).
const MaxStartupPacket = 10000

// TLSRecordHandshake is the first byte of a TLS ClientHello. A client using
// sslnegotiation=direct (libpq 17+) starts with one instead of an
// SSLRequest.
const TLSRecordHandshake = 0x16

// DirectTLS is returned by ReadStartup when the client opened with a TLS
// ClientHello. Nothing was consumed: the caller starts a TLS server on the
// same buffered stream.
type DirectTLS struct{}

// Frontend identifies this as a frontend message.
func (*DirectTLS) Frontend() {}

// Encode returns nothing: DirectTLS is a marker, never sent.
func (*DirectTLS) Encode(dst []byte) ([]byte, error) { return dst, nil }

// Decode does nothing: DirectTLS is a marker, never received.
func (*DirectTLS) Decode([]byte) error { return nil }

// ReadStartup reads one startup-phase packet from br and decodes it into a
// *pgproto3.StartupMessage (protocol 3.0 or 3.2), *pgproto3.SSLRequest,
// *pgproto3.GSSEncRequest, *pgproto3.CancelRequest, or *DirectTLS.
//
// It reads exactly one packet, so anything the client sent after it (for
// example a TLS ClientHello after SSLRequest) stays in br.
func ReadStartup(br *bufio.Reader) (pgproto3.FrontendMessage, error) {
	first, err := br.Peek(1)
	if err != nil {
		return nil, err
	}
	if first[0] == TLSRecordHandshake {
		return &DirectTLS{}, nil
	}
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < 8 || n > MaxStartupPacket {
		return nil, fmt.Errorf("invalid startup packet length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, fmt.Errorf("reading startup packet: %w", err)
	}
	return DecodeStartup(body)
}

// DecodeStartup decodes the body of a startup packet (everything after its
// length word).
func DecodeStartup(body []byte) (pgproto3.FrontendMessage, error) {
	if len(body) < 4 {
		return nil, errors.New("startup packet too short")
	}
	code := binary.BigEndian.Uint32(body)
	var msg interface {
		pgproto3.FrontendMessage
		Decode([]byte) error
	}
	switch code {
	case sslRequestCode, gssEncRequestCode:
		if len(body) != 4 {
			return nil, &Error{Severity: "FATAL", Code: CodeProtocolViolation, Message: "invalid length of encryption request packet"}
		}
	}
	switch code {
	case sslRequestCode:
		msg = &pgproto3.SSLRequest{}
	case gssEncRequestCode:
		msg = &pgproto3.GSSEncRequest{}
	case cancelRequestCode:
		msg = &pgproto3.CancelRequest{}
	case pgproto3.ProtocolVersion30, pgproto3.ProtocolVersion32:
		msg = &pgproto3.StartupMessage{}
	default:
		return nil, &Error{Severity: "FATAL", Code: CodeProtocolViolation,
			Message: fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.2", code>>16, code&0xffff)}
	}
	if err := msg.Decode(body); err != nil {
		return nil, &Error{Severity: "FATAL", Code: CodeProtocolViolation, Message: "invalid startup packet layout: " + err.Error()}
	}
	return msg, nil
}
