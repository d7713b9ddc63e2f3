package pgtarget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
)

// Options configures a Target. Zero fields take the documented defaults.
type Options struct {
	// Logger receives connection events and warnings. Default slog.Default().
	Logger *slog.Logger
	// Timeout bounds one Apply or ApplyGroup, connecting included; when it
	// expires the attempt fails as a transient error and the mirror retries
	// the batch.
	// Default 1 minute.
	Timeout time.Duration
	// NoReplicaRole leaves session_replication_role alone, so that the new
	// database's triggers and foreign-key checks run for applied changes.
	NoReplicaRole bool
	// StatementCacheSize is the number of prepared statements kept per
	// connection (one per table, operation and column set). Default 256.
	StatementCacheSize int
	// Lazy skips connecting in New: the first Apply connects. Use it when
	// the proxy must start while the new database is down.
	Lazy bool
	// NoSequences leaves the new database's sequences where they are;
	// by default a batch moves the sequences its row images drew from past
	// the values it writes (see advanceSequencesSQL).
	NoSequences bool
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.StatementCacheSize <= 0 {
		o.StatementCacheSize = 256
	}
	return o
}

// Target applies mirrored batches to a PostgreSQL database over one
// connection. It is safe for concurrent use, but applies one batch at a time.
type Target struct {
	cfg  *pgx.ConnConfig
	opts Options
	log  *slog.Logger

	mu      sync.Mutex // serializes Apply and Close; guards the fields below
	conn    *pgx.Conn
	stmts   *lru.Cache[string, *pgconn.StatementDescription] // by stmtKey, per connection
	evicted []string                                         // statements to deallocate after the batch
	nextID  uint64
	tables  map[string]*tableInfo // the new database's view of each table, by Change.Table
	closed  bool

	// seqDone holds, per sequence OID of the new database, the values the
	// sequence is known to be past (see planSequences); seqWarned the
	// sequences that could not be moved, logged once. Both are per
	// connection, as the tables are.
	seqDone   map[uint32]seqRange
	seqWarned map[uint32]bool
	seqFailed bool // the sequences' statement failed on this connection

	replica    atomic.Bool // session_replication_role = replica is in effect
	roleWarned bool
}

var _ mirror.Target = (*Target)(nil)

// New returns a Target for the postgres:// URL (any form pgx.ParseConfig
// takes). Unless opts.Lazy is set it connects at once, so that a wrong URL
// or password shows at start-up.
func New(ctx context.Context, url string, opts Options) (*Target, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgtarget: %w", err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "shadowproxy-mirror"
	}
	o := opts.withDefaults()
	t := &Target{cfg: cfg, opts: o, log: o.Logger, tables: map[string]*tableInfo{}}
	if !o.Lazy {
		t.mu.Lock()
		defer t.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		if err := t.connect(cctx); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// ReplicaRole reports whether applied changes run with
// session_replication_role = replica, which keeps the new database's
// ordinary triggers and foreign-key checks from firing (triggers enabled
// ALWAYS or REPLICA still fire). It is false when Options.NoReplicaRole is
// set, when the role may not set it (it needs superuser, or on PostgreSQL 15
// and later GRANT SET ON PARAMETER session_replication_role), and before the
// first connection of a Lazy target: the proxy reports it at start-up.
func (t *Target) ReplicaRole() bool { return t.replica.Load() }

// Close closes the connection. Apply fails after Close.
func (t *Target) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.dropConn()
	return nil
}

// errClosed is returned by Apply after Close.
var errClosed = errors.New("pgtarget: target closed")

// connect opens the connection and sets the session up. Called with mu held.
func (t *Target) connect(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, t.cfg)
	if err != nil {
		return fmt.Errorf("pgtarget: connect: %w", err)
	}
	replica := false
	if !t.opts.NoReplicaRole {
		_, err := conn.Exec(ctx, "SET session_replication_role = replica")
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			replica = true
		case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
			if !t.roleWarned {
				t.roleWarned = true
				t.log.Warn("pgtarget: not permitted to set session_replication_role = replica; "+
					"triggers and foreign-key checks of the new database will fire for mirrored changes",
					"err", pgErr.Message)
			}
		default:
			conn.Close(context.Background())
			return fmt.Errorf("pgtarget: session setup: %w", err)
		}
	}
	stmts, err := lru.NewWithEvict(t.opts.StatementCacheSize, func(_ string, sd *pgconn.StatementDescription) {
		t.evicted = append(t.evicted, sd.Name)
	})
	if err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("pgtarget: %w", err)
	}
	t.conn, t.stmts, t.evicted = conn, stmts, nil
	t.seqDone, t.seqWarned, t.seqFailed = map[uint32]seqRange{}, map[uint32]bool{}, false
	t.replica.Store(replica)
	t.log.Debug("pgtarget: connected", "host", t.cfg.Host, "database", t.cfg.Database, "replica_role", replica)
	return nil
}

// ensureConn connects unless a connection is open. Called with mu held.
func (t *Target) ensureConn(ctx context.Context) error {
	if t.conn != nil && !t.conn.IsClosed() {
		return nil
	}
	t.conn = nil
	return t.connect(ctx)
}

// dropConn closes the connection after a transient error: its state (an
// interrupted batch, the prepared statements) is unknown, and the next Apply
// starts over on a new one. Called with mu held.
func (t *Target) dropConn() {
	if t.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	t.conn.Close(ctx)
	t.conn, t.stmts, t.evicted = nil, nil, nil
}

// Apply applies the batch as one transaction: the statements are sent in
// one round trip (prepared once per connection) and run in the implicit
// transaction of the extended protocol, which commits at the final Sync or
// rolls back as a whole at the first error.
func (t *Target) Apply(ctx context.Context, b *mirror.Batch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errClosed
	}
	if len(b.Changes) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	if err := t.ensureConn(ctx); err != nil {
		return err
	}
	err := t.apply(ctx, b)
	if t.afterApply(ctx, err) {
		t.dropConn()
	}
	return err
}

// afterApply tidies up after a batch ended with err: it forgets the
// catalog after a rejection that says the schema differs, and deallocates
// evicted statements. It reports whether the connection must be dropped
// (err is transient). Called with mu held.
func (t *Target) afterApply(ctx context.Context, err error) (drop bool) {
	var rej *mirror.RejectError
	switch {
	case err == nil, errors.Is(err, errSequencesFailed):
		// The connection is sound; a batch whose sequences' statement
		// failed goes again without it.
	case errors.As(err, &rej):
		if len(rej.SQLState) >= 2 && rej.SQLState[:2] == "42" {
			// A table or column is missing or different: the new schema
			// may be changing, so read it again for the next batch.
			clear(t.tables)
			clear(t.seqDone)
		}
	default:
		return true
	}
	t.deallocateEvicted(ctx)
	return false
}

// prepared is a batch ready to send: its prepared statements and their
// parameters, the changes' first, then, if seq, the sequences' statement.
type prepared struct {
	sds     []*pgconn.StatementDescription
	params  [][][]byte
	seq     bool
	seqVals map[uint32]seqRange
	// seqRows is what the sequences' statement returned.
	seqRows [][][]byte
}

// prepareBatch plans the statements of b and prepares those the connection
// does not have yet. Called with mu held, a connection open and b's tables
// loaded.
func (t *Target) prepareBatch(ctx context.Context, b *mirror.Batch) (*prepared, error) {
	pb := &prepared{}
	for i := range b.Changes {
		c := &b.Changes[i]
		st, err := t.plan(c)
		if err != nil {
			return nil, &mirror.RejectError{Err: err, ChangeIndex: i}
		}
		sd, err := t.prepare(ctx, st)
		if err != nil {
			return nil, classify(fmt.Errorf("pgtarget: prepare %s of %s: %w", c.Op, c.Table, err), i)
		}
		pb.sds, pb.params = append(pb.sds, sd), append(pb.params, st.params)
	}
	seqStmt, seqVals := t.planSequences(b)
	if seqStmt == nil {
		return pb, nil
	}
	sd, err := t.prepare(ctx, seqStmt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// A server without pg_sequence_last_value (before 10), say.
		t.sequencesFailed(err)
		return pb, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pgtarget: prepare the sequences' statement: %w", err)
	}
	pb.sds, pb.params = append(pb.sds, sd), append(pb.params, seqStmt.params)
	pb.seq, pb.seqVals = true, seqVals
	return pb, nil
}

// apply runs one batch, as a group of one (see applyGroup). Called with mu
// held and a connection open.
func (t *Target) apply(ctx context.Context, b *mirror.Batch) error {
	errs := []error{nil}
	t.applyGroup(ctx, []*mirror.Batch{b}, errs)
	if errors.Is(errs[0], errSequencesFailed) {
		// Sequences are off for the connection now: once more without.
		return t.apply(ctx, b)
	}
	return errs[0]
}

// errSequencesFailed wraps the error of a sequences' statement that failed,
// which it is written not to do, and took its batch with it: sequences
// are then off for the connection (sequencesFailed), which stays usable,
// and the batch is to be applied again without.
var errSequencesFailed = errors.New("pgtarget: the sequences' statement failed")

// batchError turns the error that ended the run of batch b, after done of
// its statements succeeded, into what Apply returns.
func (t *Target) batchError(b *mirror.Batch, pb *prepared, done int, err error) error {
	var pgErr *pgconn.PgError
	if pb.seq && done == len(b.Changes) && errors.As(err, &pgErr) {
		t.sequencesFailed(err)
		return fmt.Errorf("%w: %w", errSequencesFailed, err)
	}
	if done >= len(b.Changes) {
		// Every change ran: the error came with the sequences' statement
		// or the commit.
		return classify(fmt.Errorf("pgtarget: commit: %w", err), -1)
	}
	c := &b.Changes[done]
	return classify(fmt.Errorf("pgtarget: %s %s: %w", c.Op, c.Table, err), done)
}

// prepare returns the prepared statement for st, preparing it on first use.
func (t *Target) prepare(ctx context.Context, st *statement) (*pgconn.StatementDescription, error) {
	key := st.key()
	if sd, ok := t.stmts.Get(key); ok {
		return sd, nil
	}
	t.nextID++
	name := "shadowproxy_" + strconv.FormatUint(t.nextID, 10)
	sd, err := t.conn.PgConn().Prepare(ctx, name, st.sql, st.oids)
	if err != nil {
		return nil, err
	}
	t.stmts.Add(key, sd)
	return sd, nil
}

// deallocateEvicted closes the statements the cache evicted. They are kept
// until after the batch, which may still use them.
func (t *Target) deallocateEvicted(ctx context.Context) {
	for len(t.evicted) > 0 && t.conn != nil {
		name := t.evicted[0]
		if err := t.conn.PgConn().Deallocate(ctx, name); err != nil {
			// Harmless for this batch; a connection that fails here fails
			// the next Apply too and is replaced then.
			t.log.Debug("pgtarget: deallocate", "statement", name, "err", err)
			t.dropConn()
			return
		}
		t.evicted = t.evicted[1:]
	}
}

// tableInfo is what the target needs to know about a table of the new
// database to write row images into it.
type tableInfo struct {
	exists         bool
	primaryKey     []string
	generated      map[string]bool   // stored generated columns: never written
	identityAlways map[string]bool   // GENERATED ALWAYS AS IDENTITY columns
	sequences      map[string]uint32 // columns that own a sequence: its OID
	shapes         []*upsertShape    // see upsertShape
}

// loadTables reads the new database's catalog for the tables of the batch
// it has not seen yet, in one round of queries.
func (t *Target) loadTables(ctx context.Context, b *mirror.Batch) error {
	var missing []string
	for i := range b.Changes {
		c := &b.Changes[i]
		if c.Op == mirror.OpStatement {
			continue
		}
		if _, ok := t.tables[c.Table]; !ok {
			missing = append(missing, c.Table)
			t.tables[c.Table] = nil // placeholder, so names are queried once
		}
	}
	if len(missing) == 0 {
		return nil
	}
	cat, err := schema.LoadTables(ctx, t.conn, missing...)
	if err != nil {
		for _, n := range missing {
			delete(t.tables, n)
		}
		return fmt.Errorf("pgtarget: read the new database's catalog: %w", err)
	}
	for _, n := range missing {
		info := &tableInfo{}
		if tb := cat.Tables[schema.QualifiedName(schema.SplitName(n))]; tb != nil {
			info.exists = true
			info.primaryKey = tb.PrimaryKey
			for _, col := range tb.Columns {
				if col.Generated {
					if info.generated == nil {
						info.generated = map[string]bool{}
					}
					info.generated[col.Name] = true
				}
				if col.SequenceOID != 0 {
					if info.sequences == nil {
						info.sequences = map[string]uint32{}
					}
					info.sequences[col.Name] = col.SequenceOID
				}
				if col.Identity == schema.IdentityAlways {
					if info.identityAlways == nil {
						info.identityAlways = map[string]bool{}
					}
					info.identityAlways[col.Name] = true
				}
			}
		}
		t.tables[n] = info
	}
	return nil
}

// CheckSchema compares the tables of the old database that the mirror
// writes (old, as schema.Load read it) with the new database's, for what
// would make their row images fail or land differently (schema.Compare).
// It connects when the target has no connection yet.
func (t *Target) CheckSchema(ctx context.Context, old *schema.Catalog) ([]schema.Problem, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	if err := t.ensureConn(ctx); err != nil {
		return nil, err
	}
	cat, err := schema.Load(ctx, t.conn)
	if err != nil {
		t.dropConn()
		return nil, fmt.Errorf("pgtarget: read the new database's catalog: %w", err)
	}
	return schema.Compare(old, cat), nil
}
