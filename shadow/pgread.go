package shadow

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

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
	// slots bounds the connections open or being opened.
	slots chan struct{}

	mu sync.Mutex
	// idle holds healthy connections not in use, the most recently used
	// last: it is taken first, so that with batches one backend on the
	// database usually serves them all, its caches warm, while the others
	// stay idle.
	idle   []*pgConn
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
	return &pgReader{cfg: cfg, slots: make(chan struct{}, size), idle: make([]*pgConn, 0, size)}, nil
}

// acquire returns an idle connection or opens one, waiting for a slot.
func (p *pgReader) acquire(ctx context.Context) (*pgConn, error) {
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
	return newPGConn(c), nil
}

// takeIdle returns the most recently used idle connection that is still
// open, or nil.
func (p *pgReader) takeIdle() *pgConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		if !c.IsClosed() {
			return c
		}
	}
	return nil
}

// release returns c to the pool when it is healthy and idle, else closes
// it.
func (p *pgReader) release(c *pgConn) {
	defer func() { <-p.slots }()
	if !c.IsClosed() && !c.IsBusy() && c.TxStatus() == 'I' {
		p.mu.Lock()
		keep := !p.closed && len(p.idle) < cap(p.idle)
		if keep {
			p.idle = append(p.idle, c)
		}
		p.mu.Unlock()
		if keep {
			return
		}
	}
	closeConn(c.PgConn)
}

func closeConn(c *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

func (p *pgReader) close() error {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		closeConn(c.PgConn)
	}
	return nil
}

func (p *pgReader) read(ctx context.Context, w *worker, r *Request, _ []compare.Family, digestOnly bool) (*compare.Result, int64, error) {
	started := time.Now()
	conn, err := p.acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return timeoutResult(w.s.opts.Timeout, started), 0, nil
		}
		return nil, 0, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	defer p.release(conn)
	return p.readOn(ctx, conn, w, r, digestOnly, false)
}

// readOn runs the read on conn; retried is set on the second attempt.
func (p *pgReader) readOn(ctx context.Context, conn *pgConn, w *worker, r *Request, digestOnly, retried bool) (*compare.Result, int64, error) {
	started := time.Now()
	timeout := w.s.opts.Timeout
	oids := portableOIDs(r.ParamOIDs, len(r.Params))
	if err := conn.setSearchPath(ctx, r.SearchPath); err != nil {
		return pgFailure(ctx, err, timeout, started)
	}
	name, err := conn.statement(ctx, r.sql(), oids)
	if err != nil {
		return pgFailure(ctx, err, timeout, started)
	}
	res, held, err := collectRows(w, conn.ExecPrepared(ctx, name, r.Params, r.ParamFormats, r.ResultFormats), digestOnly)
	switch {
	case err == nil:
		res.Elapsed = time.Since(started)
		return res, held, nil
	case errors.Is(err, errDecode):
		return nil, 0, err
	case replanned(err):
		// DDL on the new database changed what the prepared statement
		// returns: prepare it afresh and read again, once.
		conn.forget(r.sql(), oids)
		if !retried {
			return p.readOn(ctx, conn, w, r, digestOnly, true)
		}
	}
	return pgFailure(ctx, err, timeout, started)
}

var _ batchReader = (*pgReader)(nil)

// readBatch implements batchReader: the reads go out in one pipeline on
// one connection. A timed batch has a Sync after each read: each runs in
// its own implicit transaction, and the server flushes each answer, so
// that a read's latency is the time from the previous read's end (or from
// sending the batch) to its own end: how long the server took with it,
// with the round trip counted once. An untimed batch has one Sync at the
// end, and the server flushes once: its reads run in one implicit
// transaction (each with its own snapshot under READ COMMITTED, all of
// them started after the mirror caught up), their Elapsed is left zero,
// and a read's error makes the server skip the reads after it, which are
// then run again.
func (p *pgReader) readBatch(ctx context.Context, w *worker, reqs []*Request, out []readResult, timed bool) {
	started := time.Now()
	conn, err := p.acquire(ctx)
	if err != nil {
		for i := range out {
			if ctx.Err() != nil {
				out[i].res = timeoutResult(w.s.opts.Timeout, started)
			} else {
				out[i].err = fmt.Errorf("%w: %w", errUnreachable, err)
			}
		}
		return
	}
	defer p.release(conn)
	// Reads of sessions with different search_paths go in turn, each group
	// after setting its path; usually there is one group.
	var paths []string
	groups := map[string][]int{}
	for i, r := range reqs {
		if _, ok := groups[r.SearchPath]; !ok {
			paths = append(paths, r.SearchPath)
		}
		groups[r.SearchPath] = append(groups[r.SearchPath], i)
	}
	for k, path := range paths {
		if !p.readGroup(ctx, conn, w, reqs, groups[path], out, timed) {
			// The connection failed: the groups not run yet fail with it.
			for _, rest := range paths[k+1:] {
				for _, i := range groups[rest] {
					out[i].err = fmt.Errorf("%w: connection lost", errUnreachable)
				}
			}
			return
		}
	}
}

// readGroup runs the reads idx of reqs, which share a search_path, as
// readBatch describes. It returns false when the connection failed.
func (p *pgReader) readGroup(ctx context.Context, conn *pgConn, w *worker, reqs []*Request, idx []int, out []readResult, timed bool) bool {
	started := time.Now()
	timeout := w.s.opts.Timeout
	fail := func(idx []int, err error) {
		for _, i := range idx {
			out[i].res, out[i].held, out[i].err = pgFailure(ctx, err, timeout, started)
			if !timed {
				untime(out[i].res)
			}
		}
	}
	if err := conn.setSearchPath(ctx, reqs[idx[0]].SearchPath); err != nil {
		fail(idx, err)
		return !conn.IsClosed()
	}
	// Statements new to the connection are prepared first, one by one: one
	// the new database refuses is that read's answer.
	names := make([]string, len(reqs))
	var run []int
	for k, i := range idx {
		r := reqs[i]
		name, err := conn.statement(ctx, r.sql(), portableOIDs(r.ParamOIDs, len(r.Params)))
		if err != nil {
			fail([]int{i}, err)
			if conn.IsClosed() {
				fail(run, err)
				fail(idx[k+1:], err)
				return false
			}
			continue
		}
		names[i] = name
		run = append(run, i)
	}
	if len(run) == 0 {
		return true
	}
	pl := conn.StartPipeline(ctx)
	for _, i := range run {
		r := reqs[i]
		pl.SendQueryPrepared(names[i], r.Params, r.ParamFormats, r.ResultFormats)
		if timed {
			pl.SendPipelineSync()
		}
	}
	if !timed {
		pl.SendPipelineSync()
	}
	last := time.Now()
	if err := pl.Flush(); err != nil {
		_ = pl.Close()
		fail(run, err)
		return false
	}
	var retry, skipped []int
	for k, i := range run {
		var res *compare.Result
		var held int64
		var err error
		synced := timed || k == len(run)-1
		if synced {
			res, held, err = pipelineResult(w, pl, reqs[i].Truncated)
		} else {
			res, held, err = nextResult(w, pl, reqs[i].Truncated)
		}
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			out[i] = readResult{res: res, held: held}
		case errors.Is(err, errDecode):
			out[i].err = err
		case replanned(err):
			retry = append(retry, i)
		case errors.As(err, &pgErr):
			out[i].res, out[i].held, out[i].err = pgFailure(ctx, err, timeout, last)
		default:
			// The connection failed: this read and those after it.
			_ = pl.Close()
			fail(run[k:], err)
			return false
		}
		now := time.Now()
		if r := out[i].res; r != nil && timed {
			r.Elapsed = now.Sub(last)
		} else {
			untime(r)
		}
		last = now
		if !synced && errors.As(err, &pgErr) {
			// The server skipped the reads after this one, to the Sync.
			if err := awaitSync(pl); err != nil {
				_ = pl.Close()
				fail(run[k+1:], err)
				return false
			}
			skipped = run[k+1:]
			break
		}
	}
	if err := pl.Close(); err != nil && conn.IsClosed() {
		fail(retry, err)
		fail(skipped, err)
		return false
	}
	for _, i := range retry {
		// As readOn: the prepared statement went stale; once more afresh.
		conn.forget(reqs[i].sql(), portableOIDs(reqs[i].ParamOIDs, len(reqs[i].Params)))
		out[i].res, out[i].held, out[i].err = p.readOn(ctx, conn, w, reqs[i], reqs[i].Truncated, true)
	}
	if len(skipped) > 0 {
		return p.readGroup(ctx, conn, w, reqs, skipped, out, false)
	}
	return !conn.IsClosed()
}

// untime leaves the Elapsed of an untimed batch's read unset (see
// readBatch), unless it timed out: a timeout says how long it took.
func untime(r *compare.Result) {
	if r != nil && (r.Err == nil || !r.Err.Timeout) {
		r.Elapsed = 0
	}
}

// nextResult reads the next read's result of a pipeline whose Sync comes
// later: the result, or the error that ended it — a *pgconn.PgError of the
// query (the server then skips to the Sync: see awaitSync), errDecode, or
// the connection's.
func nextResult(w *worker, pl *pgconn.Pipeline, digestOnly bool) (*compare.Result, int64, error) {
	got, err := pl.GetResults()
	if err != nil {
		return nil, 0, err
	}
	rr, ok := got.(*pgconn.ResultReader)
	if !ok {
		return nil, 0, fmt.Errorf("shadow: pipeline: %T where a result was due", got)
	}
	return collectRows(w, rr, digestOnly)
}

// awaitSync reads a pipeline up to its Sync after an error made the server
// skip what came before it.
func awaitSync(pl *pgconn.Pipeline) error {
	got, err := pl.GetResults()
	if err != nil {
		return err
	}
	if _, ok := got.(*pgconn.PipelineSync); !ok {
		return fmt.Errorf("shadow: pipeline: %T where a Sync was due", got)
	}
	return nil
}

// pipelineResult reads the next read's result of a pipeline and the Sync
// after it: the result, or the error that ended it — a *pgconn.PgError of
// the query, errDecode, or the connection's.
func pipelineResult(w *worker, pl *pgconn.Pipeline, digestOnly bool) (res *compare.Result, held int64, err error) {
	res, held, err = nextResult(w, pl, digestOnly)
	var pgErr *pgconn.PgError
	if err != nil && !errors.As(err, &pgErr) && !errors.Is(err, errDecode) {
		return nil, 0, err
	}
	for {
		got, serr := pl.GetResults()
		if _, ok := got.(*pgconn.PipelineSync); ok {
			return res, held, err
		}
		switch {
		case errors.As(serr, &pgErr):
			// An error between the result and its Sync: the read's.
			if err == nil {
				w.s.Release(held)
				res, held, err = nil, 0, serr
			}
		case serr != nil:
			w.s.Release(held)
			return nil, 0, serr
		default:
			w.s.Release(held)
			return nil, 0, fmt.Errorf("shadow: pipeline: %T where a Sync was due", got)
		}
	}
}

// collectRows reads a result to its end: its rows decoded and collected,
// or the error that ended it (wrapping errDecode when a row could not be
// decoded). Elapsed is left to the caller.
func collectRows(w *worker, rr *pgconn.ResultReader, digestOnly bool) (*compare.Result, int64, error) {
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
	_, err := rr.Close()
	if decErr != nil || err != nil {
		if col != nil {
			col.release()
		}
		if decErr != nil {
			return nil, 0, fmt.Errorf("%w: %w", errDecode, decErr)
		}
		return nil, 0, err
	}
	if col == nil {
		// A statement without a result set: nothing but its success.
		return &compare.Result{}, 0, nil
	}
	return col.result(), col.size, nil
}

// pgFailure turns an error of a shadow read into its result: the new
// database's error to compare, a time-out, or errUnreachable.
func pgFailure(ctx context.Context, err error, timeout time.Duration, started time.Time) (*compare.Result, int64, error) {
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

// replanned reports the error of a prepared statement whose result shape
// changed under it ("cached plan must not change result type").
func replanned(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "0A000" && strings.Contains(pgErr.Message, "cached plan")
}

// preparedPerConn bounds the statements a shadow connection keeps
// prepared.
const preparedPerConn = 128

// pgConn is a pooled shadow connection and the statements prepared on it.
// Reads run as named prepared statements, so that the new database parses
// and plans a query class once per connection rather than on every shadow
// read, as the old database does for clients that prepare. Used by one
// worker at a time.
type pgConn struct {
	*pgconn.PgConn
	stmts   *lru.Cache[string, string] // statement text and parameter types → name
	evicted []string                   // names to deallocate before the next prepare
	next    uint64
	// searchPath is the search_path set on the connection for the reads of
	// a client session that set its own ("": the connection's default).
	searchPath string
}

// setSearchPath gives the connection the search_path of the session whose
// read runs next ("": the connection's default), so that the read's
// unqualified names mean what they meant on the old database. Prepared
// statements need not be prepared again: the server plans them anew when
// the search_path changed.
func (c *pgConn) setSearchPath(ctx context.Context, path string) error {
	if path == c.searchPath {
		return nil
	}
	var err error
	if path == "" {
		err = c.Exec(ctx, "RESET search_path").Close()
	} else {
		_, err = c.ExecParams(ctx, "SELECT pg_catalog.set_config('search_path', $1, false)", [][]byte{[]byte(path)}, nil, nil, nil).Close()
	}
	if err != nil {
		return fmt.Errorf("set the session's search_path: %w", err)
	}
	c.searchPath = path
	return nil
}

func newPGConn(c *pgconn.PgConn) *pgConn {
	pc := &pgConn{PgConn: c}
	pc.stmts, _ = lru.NewWithEvict(preparedPerConn, func(_, name string) { pc.evicted = append(pc.evicted, name) })
	return pc
}

func stmtKey(sql string, oids []uint32) string {
	var b strings.Builder
	b.Grow(len(sql) + 1 + 4*len(oids))
	b.WriteString(sql)
	b.WriteByte(0)
	for _, o := range oids {
		b.WriteString(strconv.FormatUint(uint64(o), 36))
		b.WriteByte(',')
	}
	return b.String()
}

// statement returns the name of sql prepared with oids on the connection,
// preparing it first if needed. A statement that fails to prepare is not
// kept: its error is the new database's answer to compare.
func (c *pgConn) statement(ctx context.Context, sql string, oids []uint32) (string, error) {
	key := stmtKey(sql, oids)
	if name, ok := c.stmts.Get(key); ok {
		return name, nil
	}
	for len(c.evicted) > 0 {
		if err := c.Deallocate(ctx, c.evicted[0]); err != nil {
			return "", err
		}
		c.evicted = c.evicted[1:]
	}
	c.next++
	name := "shadowproxy_" + strconv.FormatUint(c.next, 10)
	if _, err := c.Prepare(ctx, name, sql, oids); err != nil {
		return "", err
	}
	c.stmts.Add(key, name)
	return name, nil
}

// forget drops a prepared statement whose plan went stale; it is
// deallocated before the next prepare.
func (c *pgConn) forget(sql string, oids []uint32) {
	c.stmts.Remove(stmtKey(sql, oids))
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
