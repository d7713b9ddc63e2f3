package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// upstream describes how to reach the old database: the hosts and TLS
// settings pgconn derived from its URL (sslmode, sslrootcert,
// sslnegotiation, fallbacks for sslmode=prefer and multiple hosts).
type upstream struct {
	cfg *pgconn.Config
}

func newUpstream(rawURL string) (*upstream, error) {
	cfg, err := pgconn.ParseConfig(rawURL)
	if err != nil {
		// pgconn's message may quote the URL; do not repeat it.
		return nil, errors.New("old: cannot parse the database URL")
	}
	return &upstream{cfg: cfg}, nil
}

// dial opens a connection to the old database and negotiates TLS as its
// URL asks, trying each fallback in turn as libpq does. It does not send a
// startup message.
func (u *upstream) dial(ctx context.Context) (net.Conn, error) {
	if u.cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, u.cfg.ConnectTimeout)
		defer cancel()
	}
	targets := append([]*pgconn.FallbackConfig{{Host: u.cfg.Host, Port: u.cfg.Port, TLSConfig: u.cfg.TLSConfig}}, u.cfg.Fallbacks...)
	var errs []error
	for _, t := range targets {
		conn, err := u.dialOne(ctx, t)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("connecting to the old database: %w", errors.Join(errs...))
}

func (u *upstream) dialOne(ctx context.Context, t *pgconn.FallbackConfig) (net.Conn, error) {
	network, addr := "tcp", net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
	if len(t.Host) > 0 && t.Host[0] == '/' {
		network, addr = "unix", fmt.Sprintf("%s/.s.PGSQL.%d", t.Host, t.Port)
	}
	conn, err := u.cfg.DialFunc(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if t.TLSConfig == nil {
		return conn, nil
	}
	// Abandon the handshake when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if u.cfg.SSLNegotiation != "direct" {
		req, _ := (&pgproto3.SSLRequest{}).Encode(nil)
		if _, err := conn.Write(req); err != nil {
			conn.Close()
			return nil, err
		}
		var resp [1]byte
		if _, err := io.ReadFull(conn, resp[:]); err != nil {
			conn.Close()
			return nil, err
		}
		if resp[0] != 'S' {
			conn.Close()
			return nil, fmt.Errorf("%s: server refused TLS", addr)
		}
	}
	tc := tls.Client(conn, t.TLSConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: TLS handshake: %w", addr, err)
	}
	return tc, nil
}

// cancel asks the old database to cancel whatever the backend identified
// by pid and key is running. Like libpq it opens a new connection, sends a
// CancelRequest and waits for the server to close it.
func (u *upstream) cancel(ctx context.Context, pid uint32, key []byte) error {
	conn, err := u.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: key}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("sending cancel request: %w", err)
	}
	// The server answers by closing the connection once it has acted.
	_, _ = conn.Read(make([]byte, 1))
	return nil
}
