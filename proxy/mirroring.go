package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// Catalog is what the proxy needs to know about the old database's tables
// to turn captured rows into row images. schema.Catalog implements it.
type Catalog interface {
	// TableByOID resolves a table or partition OID (a row's tableoid) to the
	// schema-qualified name of the table the mirror writes (a partition's
	// root) and its primary-key columns (empty: no primary key).
	TableByOID(oid uint32) (name string, key []string, ok bool)
	// KeyOf returns the primary key of a table named as in a statement.
	KeyOf(table string) (key []string, ok bool)
	// CopyColumns returns the columns a COPY without a column list fills
	// (all but generated ones), in order, and those that are GENERATED
	// ALWAYS identity columns.
	CopyColumns(table string) (cols, identityAlways []string, ok bool)
	// Reload re-reads the catalog, after DDL.
	Reload(ctx context.Context) error
	// Persistence looks up one relation on the old database by OID: its
	// relpersistence ('p', 'u' or 't'), or 0 when there is none.
	Persistence(ctx context.Context, oid uint32) (byte, error)
	// TriggerWrites says whether the triggers of a table (named as in a
	// Change) write tables with SQL of their own, which no RETURNING
	// captures: reason is empty when they do not; tables lists those
	// written that the catalog knows (the table itself included).
	TriggerWrites(table string) (tables []string, reason string)
	// FunctionMayWrite says why a call of the named user-defined function
	// (as a statement names it) may write tables, or "" when it cannot.
	FunctionMayWrite(name string) string
}

// Journal is the mirror's intake. *mirror.Mirror implements it.
//
// A transaction's row images are written to the journal before its COMMIT
// is sent to the old database, tagged with its xid, and resolved once the
// COMMIT's outcome is known; after a crash the mirror asks the old database
// about the transactions left unresolved. Writing before the COMMIT is also
// what orders the journal: a transaction that waited for another's row lock
// can only reach its own COMMIT after the other's was sent. A transaction
// that outgrows mirror.max_tx_bytes is written in several batches, the
// first ones (chunks) while it is still open (see txBuffer).
type Journal interface {
	// EnqueueDurable returns once the batch is on disk (written, if not yet
	// fsynced), with its position in the journal.
	EnqueueDurable(b *mirror.Batch) (uint64, error)
	// Resolve records whether the transaction at seq committed.
	Resolve(seq uint64, committed bool)
	// SyncsEachWrite reports whether EnqueueDurable also waits for an
	// fsync (fsync = always). The event loop journals a COMMIT's images
	// itself only when it does not: an fsync would hold up every session
	// the loop serves.
	SyncsEachWrite() bool
	// Unmirrored records a committed transaction whose changes were not
	// kept (see txBuffer): dead-lettered without rows, tables dirty.
	Unmirrored(reason string, tables, fingerprints []string, numChanges int)
}

// Mirroring is the dual-write machinery that sessions share: capture
// planning, commit ordering, and what could not be mirrored.
type Mirroring struct {
	catalog  Catalog
	capturer *rewrite.Capturer
	journal  Journal
	log      *slog.Logger
	// translate converts a statement for a MySQL target; nil for Postgres.
	translate func(sql string) (string, []int, error)

	// maxTxBytes bounds the row images a session holds for one open
	// transaction (mirror.max_tx_bytes); see txBuffer.
	maxTxBytes atomic.Int64

	// journaled is the last journal position handed out: a read that
	// starts now is compared once the new database has applied it.
	journaled atomic.Uint64

	mu       sync.Mutex
	prepared map[string]uint64 // PREPARE TRANSACTION gid → journal position
	// chunked maps the journal position that stands for a transaction
	// journaled in several batches (its last one) to the positions of the
	// others (its chunks, see txBuffer), until the COMMIT's outcome is
	// known. nChunked is its size, read without mu so that resolving an
	// ordinary transaction costs no lock.
	chunked     map[uint64][]uint64
	nChunked    atomic.Int64
	notMirrored map[string]*NotMirrored // by fingerprint
	drift       map[string]*SchemaDrift // DDL seen, by fingerprint
	// pkless holds the tables without a primary key that were written
	// (string → struct{}): read lock-free for every row of such a table.
	pkless sync.Map
	// triggerNoted holds the tables whose trigger writes were reported
	// (string → struct{}); see noteTriggerWrites.
	triggerNoted sync.Map

	// Table OIDs whose rows are not mirrored (see resolveTable).
	unresolvable *lru.Cache[uint32, unresolvable]
	resolveMu    sync.Mutex
}

// NotMirrored is a class of statement whose effects the proxy could not
// capture, reported in /status.
type NotMirrored struct {
	Fingerprint string    `json:"fingerprint"`
	Query       string    `json:"query"`
	Reason      string    `json:"reason"`
	Count       int64     `json:"count"`
	LastSeen    time.Time `json:"last_seen"`
}

// SchemaDrift is DDL run on the old database during dual-write. It is not
// mirrored: the new schema is the migration's to manage.
type SchemaDrift struct {
	Fingerprint string    `json:"fingerprint"`
	Command     string    `json:"command"`
	Query       string    `json:"query"`
	Tables      []string  `json:"tables,omitempty"`
	Count       int64     `json:"count"`
	LastSeen    time.Time `json:"last_seen"`
}

// MirroringOptions builds a Mirroring.
type MirroringOptions struct {
	Catalog Catalog
	Mirror  Journal
	// MySQL is set when the new database is MySQL/MariaDB: statements
	// mirrored as SQL (tables without a primary key) are translated.
	MySQL     bool
	CacheSize int
	// MaxTxBytes bounds the row images held for one open transaction; 0
	// means no bound. SetMaxTxBytes changes it later.
	MaxTxBytes int64
	Logger     *slog.Logger
}

// NewMirroring returns the dual-write machinery feeding opts.Mirror.
func NewMirroring(opts MirroringOptions) (*Mirroring, error) {
	if opts.Catalog == nil || opts.Mirror == nil {
		return nil, fmt.Errorf("proxy: mirroring needs a catalog and a mirror")
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 10000
	}
	capt, err := rewrite.NewCapturer(opts.CacheSize, opts.Catalog.KeyOf)
	if err != nil {
		return nil, err
	}
	m := &Mirroring{
		catalog:     opts.Catalog,
		capturer:    capt,
		log:         opts.Logger,
		journal:     opts.Mirror,
		prepared:    map[string]uint64{},
		chunked:     map[uint64][]uint64{},
		notMirrored: map[string]*NotMirrored{},
		drift:       map[string]*SchemaDrift{},
	}
	m.maxTxBytes.Store(opts.MaxTxBytes)
	m.unresolvable, _ = lru.New[uint32, unresolvable](maxUnresolvable)
	if m.log == nil {
		m.log = slog.Default()
	}
	if opts.MySQL {
		m.translate = func(sql string) (string, []int, error) {
			st, err := rewrite.TranslateToMySQL(sql)
			if err != nil {
				return "", nil, err
			}
			return st.SQL, st.Args, nil
		}
	}
	return m, nil
}

// recordNotMirrored counts a statement whose effects cannot be mirrored.
func (m *Mirroring) recordNotMirrored(st *rewrite.Statement, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := st.Fingerprint + "\x00" + reason
	nm := m.notMirrored[key]
	if nm == nil {
		if len(m.notMirrored) >= 1000 {
			return // bounded; the metric still counts
		}
		nm = &NotMirrored{Fingerprint: st.Fingerprint, Query: truncate(st.SQL, 500), Reason: reason}
		m.notMirrored[key] = nm
		m.log.Warn("statement not mirrored", "fingerprint", st.Fingerprint, "reason", reason, "query", truncate(st.SQL, 200))
	}
	nm.Count++
	nm.LastSeen = time.Now().UTC()
}

// recordDrift records DDL seen during dual-write.
func (m *Mirroring) recordDrift(st *rewrite.Statement) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.drift[st.Fingerprint]
	if d == nil {
		if len(m.drift) >= 1000 {
			return
		}
		d = &SchemaDrift{Fingerprint: st.Fingerprint, Command: st.Command, Query: truncate(st.SQL, 500), Tables: st.WriteTables}
		m.drift[st.Fingerprint] = d
		m.log.Warn("schema change on the old database during dual-write is not mirrored", "command", st.Command, "query", truncate(st.SQL, 200))
	}
	d.Count++
	d.LastSeen = time.Now().UTC()
}

func (m *Mirroring) markPKLess(table string) {
	if _, ok := m.pkless.Load(table); !ok {
		m.pkless.Store(table, struct{}{})
	}
}

// MirroringStatus is the proxy's part of /status "mirror".
type MirroringStatus struct {
	NotMirrored  []*NotMirrored `json:"not_mirrored"`
	SchemaDrift  []*SchemaDrift `json:"schema_drift"`
	MultisetOnly []string       `json:"verified_by_multiset_only"`
	PreparedTx   int            `json:"prepared_transactions"`
}

// Status returns a snapshot for /status.
func (m *Mirroring) Status() MirroringStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := MirroringStatus{NotMirrored: []*NotMirrored{}, SchemaDrift: []*SchemaDrift{}, MultisetOnly: []string{},
		PreparedTx: len(m.prepared)}
	for _, nm := range m.notMirrored {
		c := *nm
		st.NotMirrored = append(st.NotMirrored, &c)
	}
	for _, d := range m.drift {
		c := *d
		st.SchemaDrift = append(st.SchemaDrift, &c)
	}
	m.pkless.Range(func(t, _ any) bool {
		st.MultisetOnly = append(st.MultisetOnly, t.(string))
		return true
	})
	sort.Slice(st.NotMirrored, func(i, j int) bool { return st.NotMirrored[i].Count > st.NotMirrored[j].Count })
	sort.Slice(st.SchemaDrift, func(i, j int) bool { return st.SchemaDrift[i].LastSeen.After(st.SchemaDrift[j].LastSeen) })
	sort.Strings(st.MultisetOnly)
	return st
}

// unresolvable is a table OID whose rows are not mirrored, and why, until
// it is looked up again.
type unresolvable struct {
	reason string
	until  time.Time
}

// reasonTemporary is why rows of a temporary table are not mirrored.
const reasonTemporary = "write to a temporary table"

const (
	// maxUnresolvable bounds the OIDs remembered: an application that
	// creates a temporary table per request makes a new one each time.
	maxUnresolvable = 4096
	// A temporary table stays temporary. A table missing from the catalog
	// may show up there once the transaction that created it commits.
	temporaryTTL = 10 * time.Minute
	missingTTL   = 10 * time.Second
)

// knowsOID reports whether resolveTable answers for oid at once, without
// asking the old database.
func (m *Mirroring) knowsOID(oid uint32) bool {
	if _, _, ok := m.catalog.TableByOID(oid); ok {
		return true
	}
	u, ok := m.unresolvable.Peek(oid)
	return ok && time.Now().Before(u.until)
}

// resolveTable maps a captured row's tableoid to its table, or says why
// its rows are not mirrored. An OID the catalog does not know is looked up
// on the old database, once per OID for a while: a temporary table's rows
// are not mirrored (it exists in one session only); a permanent table made
// since the catalog was read makes the catalog reload. It may wait for the
// old database, and so never runs on the event loop (see rowMayWait).
func (m *Mirroring) resolveTable(oid uint32) (table string, key []string, reason string) {
	if name, key, ok := m.catalog.TableByOID(oid); ok {
		return name, key, ""
	}
	if u, ok := m.unresolvable.Get(oid); ok && time.Now().Before(u.until) {
		return "", nil, u.reason
	}
	// Sessions that meet the same new table at once ask once.
	m.resolveMu.Lock()
	defer m.resolveMu.Unlock()
	if name, key, ok := m.catalog.TableByOID(oid); ok {
		return name, key, ""
	}
	if u, ok := m.unresolvable.Get(oid); ok && time.Now().Before(u.until) {
		return "", nil, u.reason
	}
	remember := func(reason string, ttl time.Duration) (string, []string, string) {
		m.unresolvable.Add(oid, unresolvable{reason: reason, until: time.Now().Add(ttl)})
		return "", nil, reason
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := m.catalog.Persistence(ctx, oid)
	switch {
	case err != nil:
		m.log.Warn("cannot look up the table of captured rows", "oid", oid, "err", err)
		return remember("cannot look up the table of captured rows on the old database", missingTTL)
	case p == 't':
		return remember(reasonTemporary, temporaryTTL)
	case p == 0:
		return remember("rows of a table other sessions cannot see (created by the same transaction, or dropped since)", missingTTL)
	}
	if err := m.catalog.Reload(ctx); err != nil {
		m.log.Warn("reloading the old database's catalog failed", "err", err)
		return remember("cannot reload the old database's catalog", missingTTL)
	}
	m.capturer.Reset()
	if name, key, ok := m.catalog.TableByOID(oid); ok {
		return name, key, ""
	}
	return remember("rows of a table missing from the catalog", missingTTL)
}

// schemaChanged is called after DDL: plans and keys may be stale.
func (m *Mirroring) schemaChanged() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.catalog.Reload(ctx); err != nil {
		m.log.Warn("reloading the old database's catalog after DDL failed", "err", err)
	}
	m.capturer.Reset()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Counts returns the totals behind the dual-write metrics.
func (m *Mirroring) Counts() (notMirrored int64, classes int, drift int64) {
	m.mu.Lock()
	for _, nm := range m.notMirrored {
		notMirrored += nm.Count
	}
	classes = len(m.notMirrored)
	for _, d := range m.drift {
		drift += d.Count
	}
	m.mu.Unlock()
	return notMirrored, classes, drift
}

// position returns the journal position every transaction committed so far
// has reached.
func (m *Mirroring) position() uint64 {
	if m == nil {
		return 0
	}
	return m.journaled.Load()
}

// SetMaxTxBytes changes the bound on the row images held for one open
// transaction (0: none), e.g. on a configuration reload.
func (m *Mirroring) SetMaxTxBytes(n int64) { m.maxTxBytes.Store(n) }

// uncaptured reports, for a transaction about to commit, what of it the
// mirror will not have: b and o are what txBuffer.take returned. A
// transaction that outgrew maxTxBytes and fell back from its chunks (o) is
// dead-lettered, and so, once per table, is what the triggers of the
// tables it wrote write themselves (those of its chunks' tables were noted
// by journalChunk).
func (m *Mirroring) uncaptured(b *mirror.Batch, o *txOverflow) {
	m.noteTriggerWrites(b, o)
	if o == nil {
		return
	}
	m.log.Error("a transaction's row images outgrew mirror.max_tx_bytes and could not be journaled in chunks; they are not mirrored and its tables are marked dirty",
		"tables", o.tables, "changes", o.changes, "max_tx_bytes", m.maxTxBytes.Load())
	m.journal.Unmirrored(mirror.ReasonTooLarge, o.tables, o.fingerprints, o.changes)
}

// noteTriggerWrites reports a committing transaction's writes to tables
// whose triggers write tables with SQL of their own (Catalog.TriggerWrites):
// what those triggers write happens inside the old database and is in no
// row image, so the tables are marked dirty for repair, with a dead letter
// that names the triggers. Once per table and process: later transactions
// would only repeat it. Like an overflow, it is noted before the COMMIT's
// outcome is known, erring on the side of repairing.
func (m *Mirroring) noteTriggerWrites(b *mirror.Batch, o *txOverflow) {
	note := func(table string) {
		tables, reason := m.catalog.TriggerWrites(table)
		if reason == "" {
			return
		}
		if _, done := m.triggerNoted.LoadOrStore(table, struct{}{}); done {
			return
		}
		m.log.Warn("a transaction wrote a table whose triggers write tables themselves; those writes are not mirrored and the tables are marked dirty",
			"table", table, "dirty", tables, "reason", reason)
		m.journal.Unmirrored(reason, tables, nil, 0)
	}
	if b != nil {
		prev := ""
		for i := range b.Changes {
			if t := b.Changes[i].Table; t != prev {
				prev = t
				note(t)
			}
		}
	}
	if o != nil {
		for _, t := range o.tables {
			note(t)
		}
	}
}

// journalTx writes a transaction's last batch b (nil when it has nothing
// left) to the journal before its COMMIT goes out, and returns the journal
// position that stands for the whole transaction: resolving it (resolve)
// resolves the chunks journaled before (see txBuffer) too. Without chunks
// that is b's position; without b, or when the journal refuses it, the
// last chunk's. A batch the journal refuses is dead-lettered by it; the
// transaction still commits on the old database, which stays
// authoritative.
func (m *Mirroring) journalTx(b *mirror.Batch, chunks []uint64) (uint64, bool) {
	var seq uint64
	ok := false
	if b != nil {
		var err error
		seq, err = m.journal.EnqueueDurable(b)
		m.noteJournaled(seq)
		if err != nil {
			m.log.Error("mirror journal refused a transaction; it is dead-lettered and its tables are marked dirty", "err", err)
		} else {
			ok = true
		}
	}
	if len(chunks) == 0 {
		if !ok {
			return 0, false
		}
		return seq, true
	}
	if !ok {
		seq, chunks = chunks[len(chunks)-1], chunks[:len(chunks)-1]
		m.noteJournaled(seq)
	}
	if len(chunks) > 0 {
		m.mu.Lock()
		m.chunked[seq] = chunks
		m.mu.Unlock()
		m.nChunked.Add(1)
	}
	return seq, true
}

// noteJournaled moves the position that reads starting now wait for (see
// journaled) to seq, for a transaction about to commit. Chunks do not move
// it: until their transaction commits there is nothing in them to see.
func (m *Mirroring) noteJournaled(seq uint64) {
	for {
		cur := m.journaled.Load()
		if seq <= cur || m.journaled.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// journalChunk writes a chunk of an open transaction to the journal (see
// txBuffer). What its tables' triggers write is noted now, as for a
// transaction about to commit.
func (m *Mirroring) journalChunk(b *mirror.Batch) (uint64, error) {
	m.noteTriggerWrites(b, nil)
	seq, err := m.journal.EnqueueDurable(b)
	if err != nil {
		return seq, fmt.Errorf("journal refused a chunk: %w", err)
	}
	return seq, nil
}

// resolve tells the journal how the transaction at seq (as journalTx
// returned it) ended, and so how its chunks did.
func (m *Mirroring) resolve(seq uint64, committed bool) {
	if m.nChunked.Load() > 0 {
		m.resolveAll(m.takeChunks(seq), committed)
	}
	m.journal.Resolve(seq, committed)
}

// resolveAll resolves the journal positions seqs, e.g. the chunks of a
// transaction that ended without committing.
func (m *Mirroring) resolveAll(seqs []uint64, committed bool) {
	for _, seq := range seqs {
		m.journal.Resolve(seq, committed)
	}
}

// takeChunks returns and forgets the chunks of the transaction at seq.
func (m *Mirroring) takeChunks(seq uint64) []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	chunks, ok := m.chunked[seq]
	if ok {
		delete(m.chunked, seq)
		m.nChunked.Add(-1)
	}
	return chunks
}

// notePrepared records that the transaction journaled at seq was
// prepared as gid (PREPARE TRANSACTION succeeded).
func (m *Mirroring) notePrepared(gid string, seq uint64) {
	m.mu.Lock()
	m.prepared[gid] = seq
	m.mu.Unlock()
}

// resolvePrepared resolves the transaction prepared as gid (PREPARE
// TRANSACTION) once COMMIT PREPARED or ROLLBACK PREPARED of it succeeded.
func (m *Mirroring) resolvePrepared(gid string, committed bool) {
	m.mu.Lock()
	seq, ok := m.prepared[gid]
	delete(m.prepared, gid)
	m.mu.Unlock()
	if ok {
		m.resolve(seq, committed)
	}
}
