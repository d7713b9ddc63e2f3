package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/protocol"
)

// Authentication request codes (AuthenticationXXX messages).
const (
	authOK           = 0
	authSASL         = 10
	authSASLContinue = 11
	authSASLFinal    = 12
)

// nextMessage returns the next whole message from r, reading as needed.
func nextMessage(r *protocol.Reader) (protocol.Message, error) {
	for {
		_, n, ok, err := r.Header()
		if err != nil {
			return protocol.Message{}, protocol.Fatal(protocol.CodeProtocolViolation, err.Error())
		}
		if ok && !r.Fits(n) {
			r.Grow(n)
		}
		m, ok, err := r.Next()
		if err != nil {
			return protocol.Message{}, protocol.Fatal(protocol.CodeProtocolViolation, err.Error())
		}
		if ok {
			return m, nil
		}
		if err := r.Fill(); err != nil {
			return protocol.Message{}, err
		}
	}
}

// upstreamUnreachable is what a client sees when the old database cannot
// be reached; the details go to the log, not to the client.
func (ss *session) upstreamUnreachable(err error) error {
	ss.log.Warn("cannot reach the old database", "err", err)
	return protocol.Fatal(protocol.CodeConnectionFailure, "proxy cannot connect to the upstream database")
}

// loginPassthrough relays the whole authentication exchange between the
// client and the old database, so the client logs in with its own
// credentials and the proxy never sees a password it could reuse. The
// old database's BackendKeyData is replaced by the proxy's own. It returns
// the reader for the upstream stream, which may already hold data.
func (ss *session) loginPassthrough(ctx context.Context, cr *protocol.Reader) (*protocol.Reader, error) {
	up, err := ss.st.up.dial(ctx)
	if err != nil {
		return nil, ss.upstreamUnreachable(err)
	}
	ss.up = up
	if dl, ok := ctx.Deadline(); ok {
		_ = up.SetDeadline(dl)
	}
	startup, err := ss.startup.Encode(nil)
	if err != nil {
		return nil, protocol.Fatal(protocol.CodeProtocolViolation, err.Error())
	}
	if _, err := up.Write(startup); err != nil {
		return nil, ss.upstreamUnreachable(err)
	}
	ur := protocol.NewReader(up, protocol.DefaultBufferSize, 1<<30)
	version := ss.startup.ProtocolVersion
	for {
		msg, err := nextMessage(ur)
		if err != nil {
			return nil, ss.upstreamUnreachable(err)
		}
		switch msg.Type {
		case protocol.MsgAuthentication:
			if len(msg.Body) < 4 {
				return nil, ss.upstreamUnreachable(errors.New("short authentication message"))
			}
			code := binary.BigEndian.Uint32(msg.Body)
			out := msg.Raw
			if code == authSASL {
				out = stripChannelBinding(msg.Body)
			}
			if err := ss.writeClient(out); err != nil {
				return nil, err
			}
			if code == authOK || code == authSASLFinal {
				continue
			}
			// Every other request expects one answer from the client.
			resp, err := nextMessage(cr)
			if err != nil {
				return nil, err
			}
			if resp.Type != protocol.MsgPassword {
				return nil, protocol.Fatal(protocol.CodeProtocolViolation, fmt.Sprintf("expected password response, got message type %q", resp.Type))
			}
			if _, err := up.Write(resp.Raw); err != nil {
				return nil, ss.upstreamUnreachable(err)
			}
		case protocol.MsgNegotiateVersion:
			var nv pgproto3.NegotiateProtocolVersion
			if err := nv.Decode(msg.Body); err == nil {
				version = nv.NewestMinorProtocol
			}
			if err := ss.writeClient(msg.Raw); err != nil {
				return nil, err
			}
		case protocol.MsgBackendKeyData:
			var kd pgproto3.BackendKeyData
			if err := kd.Decode(msg.Body); err != nil {
				return nil, ss.upstreamUnreachable(err)
			}
			ss.upPID, ss.upKey = kd.ProcessID, kd.SecretKey
			if err := ss.sendOwnKey(version); err != nil {
				return nil, err
			}
		case protocol.MsgErrorResponse:
			// Authentication failed or the database refused the login:
			// the client sees the server's own error, unchanged.
			if err := ss.writeClient(msg.Raw); err != nil {
				return nil, err
			}
			_, code := protocol.ErrorFields(msg.Body)
			ss.srv.metrics.ObserveError(metrics.SourceUpstream, code)
			return nil, errLoginRefused
		case protocol.MsgReadyForQuery:
			if ss.pid == 0 {
				// Servers always send BackendKeyData; without it the
				// client could not cancel, so give it the proxy's anyway.
				if err := ss.sendOwnKey(version); err != nil {
					return nil, err
				}
			}
			if err := ss.writeClient(msg.Raw); err != nil {
				return nil, err
			}
			return ur, nil
		default: // ParameterStatus, NoticeResponse
			if msg.Type == protocol.MsgParameterStatus {
				ss.noteParameterStatus(msg.Body)
			}
			if err := ss.writeClient(msg.Raw); err != nil {
				return nil, err
			}
		}
	}
}

// errLoginRefused ends a session whose login the old database refused; the
// client has already been sent the server's error.
var errLoginRefused = io.EOF

// sendOwnKey registers the session for cancellation and sends the client
// the proxy's BackendKeyData. Protocol 3.2 allows longer secrets, and
// clients that speak it get a 32-byte one.
func (ss *session) sendOwnKey(version uint32) error {
	keyLen := 4
	if version >= pgproto3.ProtocolVersion32 {
		keyLen = 32
	}
	if err := ss.srv.register(ss, keyLen); err != nil {
		return err
	}
	kd, err := (&pgproto3.BackendKeyData{ProcessID: ss.pid, SecretKey: ss.key}).Encode(nil)
	if err != nil {
		return err
	}
	return ss.writeClient(kd)
}

// stripChannelBinding rewrites an AuthenticationSASL message without the
// SCRAM-SHA-256-PLUS mechanism: channel binding ties the proof to the TLS
// connection the server sees, which is the proxy's, not the client's.
func stripChannelBinding(body []byte) []byte {
	var mechs []string
	rest := body[4:]
	for {
		s, r, ok := protocol.CString(rest)
		if !ok || len(s) == 0 {
			break
		}
		if !bytes.HasSuffix(s, []byte("-PLUS")) {
			mechs = append(mechs, string(s))
		}
		rest = r
	}
	out, _ := (&pgproto3.AuthenticationSASL{AuthMechanisms: mechs}).Encode(nil)
	return out
}

// loginWithOwnCredentials authenticates the client against the configured
// SCRAM verifiers, then logs into the old database with the proxy's own
// credentials (auth.upstream_user / upstream_password, or the old URL's),
// and replays the server's greeting to the client.
func (ss *session) loginWithOwnCredentials(ctx context.Context, cr *protocol.Reader) (*protocol.Reader, error) {
	user := ss.startup.Parameters["user"]
	if err := ss.scramServer(cr, user); err != nil {
		return nil, err
	}

	auth := ss.st.cfg.Auth
	cfg := ss.st.up.cfg.Copy()
	cfg.User = user
	if auth.UpstreamUser != "" {
		cfg.User = auth.UpstreamUser
	}
	if auth.UpstreamPassword != "" {
		cfg.Password = auth.UpstreamPassword
	}
	if db := ss.startup.Parameters["database"]; db != "" {
		cfg.Database = db
	} else if cfg.Database == "" {
		cfg.Database = user
	}
	cfg.RuntimeParams = maps.Clone(cfg.RuntimeParams)
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range ss.startup.Parameters {
		if k == "user" || k == "database" || strings.HasPrefix(k, "_pq_.") {
			continue
		}
		cfg.RuntimeParams[k] = v
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return nil, &protocol.Error{Severity: "FATAL", Code: pgErr.Code, Message: pgErr.Message, Detail: pgErr.Detail, Hint: pgErr.Hint}
		}
		return nil, ss.upstreamUnreachable(err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, ss.upstreamUnreachable(err)
	}
	ss.up = hj.Conn
	ss.upPID, ss.upKey = hj.PID, hj.SecretKey

	var buf []byte
	buf, _ = (&pgproto3.AuthenticationOk{}).Encode(buf)
	for k, v := range hj.ParameterStatuses {
		buf, _ = (&pgproto3.ParameterStatus{Name: k, Value: v}).Encode(buf)
		ss.noteParameter(k, v)
	}
	if err := ss.writeClient(buf); err != nil {
		return nil, err
	}
	if err := ss.sendOwnKey(ss.startup.ProtocolVersion); err != nil {
		return nil, err
	}
	rfq, _ := (&pgproto3.ReadyForQuery{TxStatus: hj.TxStatus}).Encode(nil)
	if err := ss.writeClient(rfq); err != nil {
		return nil, err
	}
	return protocol.NewReader(ss.up, protocol.DefaultBufferSize, 1<<30), nil
}

// scramServer runs SCRAM-SHA-256 as the server, checking the client's
// proof against the user's verifier.
func (ss *session) scramServer(cr *protocol.Reader, user string) error {
	authFailed := &protocol.Error{Severity: "FATAL", Code: protocol.CodeInvalidPassword,
		Message: fmt.Sprintf("password authentication failed for user %q", user)}
	v := ss.st.users[user]
	if v == nil {
		// Run the exchange against a random verifier, as Postgres does, so
		// that a client cannot tell unknown users from wrong passwords.
		v = mockVerifier
	}
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) {
		// Postgres clients send an empty SCRAM user name (n=,...): the
		// startup packet's user is the one that counts.
		return scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(v.Salt), Iters: v.Iterations},
			StoredKey:  v.StoredKey,
			ServerKey:  v.ServerKey,
		}, nil
	})
	if err != nil {
		return err
	}
	conv := server.NewConversation()

	req, _ := (&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}).Encode(nil)
	if err := ss.writeClient(req); err != nil {
		return err
	}
	msg, err := nextMessage(cr)
	if err != nil {
		return err
	}
	var initial pgproto3.SASLInitialResponse
	if msg.Type != protocol.MsgPassword || initial.Decode(msg.Body) != nil {
		return protocol.Fatal(protocol.CodeProtocolViolation, "expected SASL initial response")
	}
	if initial.AuthMechanism != "SCRAM-SHA-256" {
		return protocol.Fatal(protocol.CodeProtocolViolation, "client selected an invalid SASL authentication mechanism")
	}
	first, err := conv.Step(string(initial.Data))
	if err != nil {
		return authFailed
	}
	cont, _ := (&pgproto3.AuthenticationSASLContinue{Data: []byte(first)}).Encode(nil)
	if err := ss.writeClient(cont); err != nil {
		return err
	}
	msg, err = nextMessage(cr)
	if err != nil {
		return err
	}
	var resp pgproto3.SASLResponse
	if msg.Type != protocol.MsgPassword || resp.Decode(msg.Body) != nil {
		return protocol.Fatal(protocol.CodeProtocolViolation, "expected SASL response")
	}
	final, err := conv.Step(string(resp.Data))
	if err != nil || !conv.Valid() || ss.st.users[user] == nil {
		return authFailed
	}
	fin, _ := (&pgproto3.AuthenticationSASLFinal{Data: []byte(final)}).Encode(nil)
	return ss.writeClient(fin)
}

// mockVerifier is a verifier no password matches, used for unknown users.
var mockVerifier = func() *config.SCRAMVerifier {
	v := &config.SCRAMVerifier{Iterations: 4096, Salt: make([]byte, 16), StoredKey: make([]byte, 32), ServerKey: make([]byte, 32)}
	for _, b := range [][]byte{v.Salt, v.StoredKey, v.ServerKey} {
		_, _ = rand.Read(b)
	}
	return v
}()
