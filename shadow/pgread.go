package shadow

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shadowproxy/shadowproxy/compare"
)

// pgReader runs reads on a Postgres database exactly as the client sent
// them: the same text, parameter types, parameter bytes and formats, and
// result formats, through a small pool of raw pgconn connections.
type pgReader struct {
	cfg *pgconn.Config
	// slots bounds the connections open or being opened; idle holds
	// healthy connections not in use.
	slots chan struct{}
	idle  chan *pgconn.PgConn

	mu     sync.Mutex
	closed bool
}

// newPGReader parses rawURL and prepares a pool of up to size connections.
// Connections are opened on first use: a database that is down at start
// must not stop the proxy.
func newPGReader(rawURL string, size int, timeout time.Duration) (*pgReader, error) {
	cfg, err := pgconn.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse postgres URL: %w", err)
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range map[string]string{
		// A shadow read must never change the database, whatever the
		// functions it calls do.
		"default_transaction_read_only": "on",
		// The server stops the query too, not only the proxy.
		"statement_timeout": strconv.FormatInt(timeout.Milliseconds(), 10),
		// Text results in the forms compare's decoders read.
		"DateStyle":        "ISO, MDY",
		"IntervalStyle":    "postgres",
		"TimeZone":         "UTC",
		"bytea_output":     "hex",
		"application_name": "shadowproxy-shadow",
	} {
		if _, set := cfg.RuntimeParams[k]; !set || k == "default_transaction_read_only" {
			cfg.RuntimeParams[k] = v
		}
	}
	// On timeout, ask the server to cancel the query (so a slow query does
	// not keep running there) and close the connection shortly after if
	// the server does not answer at all.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 500 * time.Millisecond}
	}
	return &pgReader{cfg: cfg, slots: make(chan struct{}, size), idle: make(chan *pgconn.PgConn, size)}, nil
}

// acquire returns an idle connection or opens one, waiting for a slot.
func (p *pgReader) acquire(ctx context.Context) (*pgconn.PgConn, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c := p.takeIdle(); c != nil {
		return c, nil
	}
	c, err := pgconn.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

// takeIdle returns an idle connection that is still open, or nil.
func (p *pgReader) takeIdle() *pgconn.PgConn {
	for {
		select {
		case c := <-p.idle:
			if !c.IsClosed() {
				return c
			}
		default:
			return nil
		}
	}
}

// release returns c to the pool when it is healthy and idle, else closes
// it.
func (p *pgReader) release(c *pgconn.PgConn) {
	defer func() { <-p.slots }()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if !closed && !c.IsClosed() && !c.IsBusy() && c.TxStatus() == 'I' {
		select {
		case p.idle <- c:
			return
		default:
		}
	}
	closeConn(c)
}

func closeConn(c *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

func (p *pgReader) close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case c := <-p.idle:
			closeConn(c)
		default:
			return nil
		}
	}
}

func (p *pgReader) read(ctx context.Context, w *worker, r *Request, _ []compare.Family, digestOnly bool) (*compare.Result, int64, error) {
	started := time.Now()
	timeout := w.s.opts.Timeout
	conn, err := p.acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return timeoutResult(timeout, started), 0, nil
		}
		return nil, 0, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	defer p.release(conn)

	rr := conn.ExecParams(ctx, r.sql(), r.Params, portableOIDs(r.ParamOIDs, len(r.Params)), r.ParamFormats, r.ResultFormats)
	var col *collector
	var decErr error
	if fds := rr.FieldDescriptions(); fds != nil {
		dec := compare.NewPGRowDecoder(w.types, pgFields(fds))
		col = newCollector(w.s, dec.Columns(), digestOnly)
		for rr.NextRow() {
			vals := rr.Values()
			row, err := dec.DecodeRow(vals)
			if err != nil {
				decErr = err
				break
			}
			var raw int64
			for _, v := range vals {
				raw += int64(len(v)) + 4
			}
			col.add(row, raw)
		}
	}
	_, err = rr.Close()
	if decErr != nil {
		if col != nil {
			col.release()
		}
		return nil, 0, fmt.Errorf("%w: %w", errDecode, decErr)
	}
	if err != nil {
		if col != nil {
			col.release()
		}
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr):
			res := &compare.Result{Err: &compare.Error{Code: pgErr.Code, Message: pgErr.Message}, Elapsed: time.Since(started)}
			// 57014 is also what our own cancel request produces.
			res.Err.Timeout = ctx.Err() != nil
			return res, 0, nil
		case ctx.Err() != nil || pgconn.Timeout(err):
			return timeoutResult(timeout, started), 0, nil
		default:
			return nil, 0, fmt.Errorf("%w: %w", errUnreachable, err)
		}
	}
	if col == nil {
		// A statement without a result set: nothing but its success.
		return &compare.Result{Elapsed: time.Since(started)}, 0, nil
	}
	res := col.result()
	res.Elapsed = time.Since(started)
	return res, col.size, nil
}

// firstUserOID is Postgres' FirstNormalObjectId: OIDs from here on are
// assigned per database (enums, domains, composite types), so the old
// database's OID of a user-defined type means nothing on the new one.
const firstUserOID = 16384

// portableOIDs returns the parameter types to send to another database:
// user-defined types become 0 (unknown), which the server infers from the
// statement as it did on the old database.
func portableOIDs(oids []uint32, n int) []uint32 {
	if len(oids) > n {
		oids = oids[:n]
	}
	for i, oid := range oids {
		if oid >= firstUserOID {
			out := append([]uint32(nil), oids...)
			for j := i; j < len(out); j++ {
				if out[j] >= firstUserOID {
					out[j] = 0
				}
			}
			return out
		}
	}
	return oids
}

// pgFields converts pgconn's field descriptions to the protocol's.
func pgFields(fds []pgconn.FieldDescription) []pgproto3.FieldDescription {
	out := make([]pgproto3.FieldDescription, len(fds))
	for i, f := range fds {
		out[i] = pgproto3.FieldDescription{
			Name: []byte(f.Name), TableOID: f.TableOID, TableAttributeNumber: f.TableAttributeNumber,
			DataTypeOID: f.DataTypeOID, DataTypeSize: f.DataTypeSize, TypeModifier: f.TypeModifier, Format: f.Format,
		}
	}
	return out
}
