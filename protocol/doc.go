// Package protocol is the Postgres frontend/backend wire protocol as the
// proxy needs it: a zero-copy frame reader for the hot path, startup-packet
// decoding (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest and
// direct TLS), and builders for the few messages the proxy writes itself,
// chiefly ErrorResponse with a SQLSTATE.
//
// The proxy forwards messages it does not need to understand as raw bytes
// and decodes only the types it inspects, using pgx's pgproto3 for the
// decoding. See https://www.postgresql.org/docs/current/protocol.html for the
// protocol and https://www.postgresql.org/docs/current/protocol-message-formats.html
// for each message.
package protocol
