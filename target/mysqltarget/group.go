package mysqltarget

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/shadowproxy/shadowproxy/mirror"
)

var _ mirror.GroupTarget = (*Target)(nil)

// ApplyGroup applies the batches in order, each in its own transaction, in
// as few round trips as fit. Apply takes three (START TRANSACTION, the
// statements, COMMIT), which caps the mirror at a few hundred transactions
// a second when the new database is a millisecond away. Here one
// multi-statement query holds, for each of several batches, START
// TRANSACTION, its statements, COMMIT and then a note in a session variable
// of how many have committed; a query holds whole batches, at most
// MaxStatementBytes of SQL (a larger batch is applied alone with Apply).
//
// The server runs such a query's statements in order and stops at the
// first that fails, so no batch behind a failed one runs: the batches
// before it committed (the session variable says how many), the failed one
// is rolled back, and those behind it are returned as mirror.ErrNotApplied.
// When the failure is a refusal of the data, the batch is applied again
// alone with Apply, whose result (a *mirror.RejectError naming the change,
// or success if it applies this time) is the batch's. When the connection
// fails, every batch of the query gets that transient error: whether they
// committed is unknown.
//
// A batch with a statement of the client's own (mirrored from a table
// without a key), and every batch when the URL turns multi-statement
// queries or client-side parameters off, is applied alone with Apply.
// Options.Timeout bounds the whole call.
func (t *Target) ApplyGroup(ctx context.Context, bs []*mirror.Batch) []error {
	errs := make([]error, len(bs))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		fillErrors(errs, 0, errClosed)
		return errs
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	for i := 0; i < len(bs); {
		n := t.applyRun(ctx, bs[i:], errs[i:])
		i += n
		if errs[i-1] != nil {
			fillErrors(errs, i, mirror.ErrNotApplied)
			break
		}
	}
	return errs
}

// fillErrors sets err for the batches from i on.
func fillErrors(errs []error, i int, err error) {
	for ; i < len(errs); i++ {
		errs[i] = err
	}
}

// applyRun applies the longest run of batches at the head of bs that one
// query can hold (at least one batch), setting their errors, and returns
// how many batches it covered. Only the last one covered can have failed,
// or all of them when the connection failed.
func (t *Target) applyRun(ctx context.Context, bs []*mirror.Batch, errs []error) int {
	if !t.packs() {
		errs[0] = t.apply(ctx, bs[0])
		return 1
	}
	var runs [][]statement // of the batches in the query, by index
	size := 0
	for _, b := range bs {
		stmts, err := t.statements(b)
		n := 0
		for _, st := range stmts {
			n += len(st.sql) + st.size
		}
		// Alone: a batch that failed to build (its error is Apply's), has
		// a statement of the client's, or is larger than a query may be
		// (Apply sends its statements one by one).
		alone := err != nil || !allGenerated(stmts) || n > t.opts.MaxStatementBytes
		switch {
		case alone && len(runs) == 0:
			if err == nil {
				err = t.apply(ctx, b)
			}
			errs[0] = err
			return 1
		case !alone && size+n <= t.opts.MaxStatementBytes:
			runs = append(runs, stmts)
			size += n
			continue
		}
		break
	}
	t.groupQueries++
	token := strconv.FormatUint(t.groupQueries, 10)
	var q strings.Builder
	var args []any
	q.WriteString("SET @shadowproxy_committed = '" + token + ":0'")
	for j, stmts := range runs {
		q.WriteString(";\nSTART TRANSACTION")
		for _, st := range stmts {
			q.WriteString(";\n")
			q.WriteString(st.sql)
			args = append(args, st.args...)
		}
		fmt.Fprintf(&q, ";\nCOMMIT;\nSET @shadowproxy_committed = '%s:%d'", token, j+1)
	}
	committed, err := t.runQuery(ctx, q.String(), args, token)
	switch {
	case committed < 0:
		fillErrors(errs[:len(runs)], 0, err)
		return len(runs)
	case err == nil || committed == len(runs):
		return len(runs)
	}
	if _, ok := classify(err); ok {
		// Refused: the batch alone says which change, and its verdict.
		errs[committed] = t.apply(ctx, bs[committed])
	} else {
		errs[committed] = err
	}
	return committed + 1
}

// allGenerated reports whether every statement is one the target wrote
// (whose placeholders are all parameters), which a multi-statement query
// with client-side parameters can hold.
func allGenerated(stmts []statement) bool {
	for _, st := range stmts {
		if !st.generated {
			return false
		}
	}
	return true
}

// runQuery runs a group's multi-statement query on a connection of its
// own and returns how many of its batches committed and the error that
// stopped it, if any; committed is -1 when the connection failed and it
// cannot tell. After a failure it rolls back the transaction the failed
// batch left open, and reads the count the query noted under token.
func (t *Target) runQuery(ctx context.Context, query string, args []any, token string) (committed int, err error) {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return -1, fmt.Errorf("mysqltarget: %w", err)
	}
	defer conn.Close()
	broken := func(err error) (int, error) {
		// Whatever state the connection is in, it is not used again.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return -1, err
	}
	_, qerr := conn.ExecContext(ctx, query, args...)
	if qerr == nil {
		return 0, nil
	}
	qerr = fmt.Errorf("mysqltarget: group: %w", qerr)
	if myErr, ok := errors.AsType[*mysql.MySQLError](qerr); !ok || myErr == nil {
		return broken(qerr)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		return broken(errors.Join(qerr, fmt.Errorf("mysqltarget: rollback: %w", err)))
	}
	var note string
	if err := conn.QueryRowContext(ctx, "SELECT @shadowproxy_committed").Scan(&note); err != nil {
		return broken(errors.Join(qerr, fmt.Errorf("mysqltarget: reading the group's progress: %w", err)))
	}
	got, n, ok := strings.Cut(note, ":")
	committed, cerr := strconv.Atoi(n)
	if !ok || got != token || cerr != nil || committed < 0 {
		// The query failed before its first note: nothing committed.
		return 0, qerr
	}
	return committed, qerr
}
