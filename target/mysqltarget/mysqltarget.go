package mysqltarget

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
)

// Options configures a Target. Zero fields take the documented defaults.
type Options struct {
	// Logger receives warnings. Default slog.Default().
	Logger *slog.Logger
	// Timeout bounds one Apply; when it expires the attempt fails as a
	// transient error and the mirror retries the batch. Default 1 minute.
	Timeout time.Duration
	// Catalog is the OLD database's catalog (schema.Load), used to resolve
	// user-defined types (domains, arrays of enums and domains) and the
	// types of key columns a delete does not describe. Optional: without it
	// such values are converted as text.
	Catalog *schema.Catalog
	// MaxRowsPerStatement bounds the changes grouped into one multi-row
	// statement. Default 500; 1 disables grouping.
	MaxRowsPerStatement int
	// MaxStatementBytes bounds the value bytes grouped into one statement,
	// well under the server's max_allowed_packet. Default 1 MiB.
	MaxStatementBytes int
	// MaxOpenConns bounds the connection pool. Default 2: batches are
	// applied one at a time.
	MaxOpenConns int
	// Lazy skips the connection check in New.
	Lazy bool
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.MaxRowsPerStatement <= 0 {
		o.MaxRowsPerStatement = 500
	}
	if o.MaxStatementBytes <= 0 {
		o.MaxStatementBytes = 1 << 20
	}
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = 2
	}
	return o
}

// Target applies mirrored batches to a MySQL or MariaDB database. It is
// safe for concurrent use, but applies one batch at a time.
type Target struct {
	db   *sql.DB
	cfg  *mysql.Config
	opts Options
	conv *Converter

	mu     sync.Mutex // serializes Apply, ApplyGroup and Close
	closed bool
	// groupQueries counts ApplyGroup's queries, which name their progress
	// notes with it.
	groupQueries uint64
}

var _ mirror.Target = (*Target)(nil)

// errClosed is returned by Apply after Close.
var errClosed = errors.New("mysqltarget: target closed")

// New returns a Target for the mysql:// URL (see ParseURL). The URL must
// name a database: it holds the tables of PostgreSQL's schema "public".
// Unless opts.Lazy is set, New checks that the server answers.
func New(ctx context.Context, rawURL string, opts Options) (*Target, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if cfg.DBName == "" {
		return nil, errors.New("mysqltarget: the URL names no database (it holds the tables of schema public)")
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysqltarget: %w", err)
	}
	o := opts.withDefaults()
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(o.MaxOpenConns)
	db.SetMaxIdleConns(o.MaxOpenConns)
	// Servers close idle connections after wait_timeout; recycle earlier.
	db.SetConnMaxIdleTime(5 * time.Minute)
	t := &Target{db: db, cfg: cfg, opts: o, conv: NewConverter(o.Catalog)}
	if !o.Lazy {
		pctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		if err := db.PingContext(pctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("mysqltarget: connect to %s: %w", cfg.Addr, err)
		}
	}
	return t, nil
}

// DB returns the connection pool, with the session set up as for applying
// (sql_mode, UTC time zone), e.g. for verification queries.
func (t *Target) DB() *sql.DB { return t.db }

// Converter returns the converter the target uses for values.
func (t *Target) Converter() *Converter { return t.conv }

// Close closes the connection pool.
func (t *Target) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	return t.db.Close()
}

// Apply applies the batch as one transaction. Changes are grouped into
// multi-row statements (see builder); when the server refuses a statement
// that covers several changes, the batch is run again change by change in
// a transaction that is rolled back, to find the change to blame.
func (t *Target) Apply(ctx context.Context, b *mirror.Batch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	return t.apply(ctx, b)
}

// apply is Apply, called with mu held.
func (t *Target) apply(ctx context.Context, b *mirror.Batch) error {
	if len(b.Changes) == 0 {
		return nil
	}
	stmts, err := t.statements(b)
	if err != nil {
		return err
	}
	failed, err := t.run(ctx, stmts, true)
	if err == nil {
		return nil
	}
	rej, ok := classify(err)
	if !ok {
		return err
	}
	if failed >= 0 {
		st := stmts[failed]
		rej.ChangeIndex = st.first
		if st.last > st.first {
			rej.ChangeIndex = t.pinpoint(ctx, b.Changes)
		}
	}
	if i := rej.ChangeIndex; i >= 0 && i < len(b.Changes) && keyCollision(rej.Err, &b.Changes[i]) {
		// What the guard stands for: a duplicate key (MySQL's 1062).
		rej.SQLState = "23000"
		rej.Err = fmt.Errorf("%w (the row's value of a unique key other than the primary key is another row's: "+
			"ON DUPLICATE KEY UPDATE would have overwritten that row)", rej.Err)
	}
	return rej
}

// keyCollision reports whether err is the refusal keyGuard provokes for
// upsert c: its overflowing expression, quoted in the message of error
// 1690 (out of range).
func keyCollision(err error, c *mirror.Change) bool {
	myErr, ok := errors.AsType[*mysql.MySQLError](err)
	return ok && myErr.Number == 1690 && c.Op == mirror.OpUpsert &&
		strings.Contains(strings.ToUpper(myErr.Message), collisionExpr)
}

// statements returns the statements that apply b: its changes in
// multi-row statements, packed into multi-statement queries when the
// connection allows.
func (t *Target) statements(b *mirror.Batch) ([]statement, error) {
	stmts, err := t.build(b.Changes, limits{rows: t.opts.MaxRowsPerStatement, bytes: t.opts.MaxStatementBytes})
	if err != nil {
		return nil, err
	}
	if t.packs() && t.opts.MaxRowsPerStatement > 1 {
		stmts = pack(stmts, t.opts.MaxStatementBytes)
	}
	return stmts, nil
}

// packs reports whether several statements may go in one query: the
// server takes multi-statement queries, and the driver puts the values in
// the text itself, so that the placeholders of all of them are filled.
func (t *Target) packs() bool { return t.cfg.MultiStatements && t.cfg.InterpolateParams }

func (t *Target) build(changes []mirror.Change, lim limits) ([]statement, error) {
	bld := &builder{conv: t.conv, lim: lim}
	return bld.build(changes)
}

// run executes the statements in one transaction, committing it when
// commit is set and rolling it back otherwise. It returns the index of the
// statement that failed, or -1 when the failure is not a statement's
// (begin, commit).
func (t *Target) run(ctx context.Context, stmts []statement, commit bool) (int, error) {
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return -1, fmt.Errorf("mysqltarget: begin: %w", err)
	}
	for i, st := range stmts {
		if _, err := tx.ExecContext(ctx, st.sql, st.args...); err != nil {
			_ = tx.Rollback()
			return i, fmt.Errorf("mysqltarget: %s: %w", abbreviate(st.sql), err)
		}
	}
	if !commit {
		return -1, tx.Rollback()
	}
	if err := tx.Commit(); err != nil {
		// Whether a failed COMMIT took effect is unknown; retrying is safe
		// since upserts and deletes by key are idempotent.
		return -1, fmt.Errorf("mysqltarget: commit: %w", err)
	}
	return -1, nil
}

// pinpoint runs the changes one statement each, in a transaction it rolls
// back, and returns the index of the first change the server refuses, or
// -1 if none is refused this time.
func (t *Target) pinpoint(ctx context.Context, changes []mirror.Change) int {
	stmts, err := t.build(changes, limits{rows: 1, bytes: 1})
	if err != nil {
		return -1
	}
	failed, err := t.run(ctx, stmts, false)
	if _, ok := classify(err); !ok || failed < 0 {
		return -1
	}
	return stmts[failed].first
}

// abbreviate shortens SQL for error messages: a multi-row statement holds
// hundreds of placeholders.
func abbreviate(sql string) string {
	const max = 120
	if len(sql) <= max {
		return sql
	}
	return sql[:max] + "…"
}
