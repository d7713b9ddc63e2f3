package rewrite

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// Kind is what a statement does, as far as routing is concerned.
type Kind uint8

// The zero Kind is deliberately invalid so that an uninitialised Statement is
// never mistaken for a Read.
const (
	// Read only reads table data: SELECT, VALUES, TABLE, COPY ... TO, EXPLAIN
	// without ANALYZE. A read may still lock rows (Statement.ForUpdate) or
	// call functions with side effects (Statement.HasSideEffects).
	Read Kind = iota + 1
	// Write changes table data: INSERT, UPDATE, DELETE, MERGE, TRUNCATE,
	// COPY ... FROM, a SELECT whose WITH clause holds a data-modifying
	// statement, EXPLAIN ANALYZE of any of those.
	Write
	// DDL changes the schema or other catalog objects: CREATE/ALTER/DROP,
	// COMMENT, GRANT/REVOKE, SELECT INTO and CREATE TABLE AS (which also
	// write the new table: see Statement.WriteTables).
	DDL
	// Tx controls the transaction: see Statement.TxOp.
	Tx
	// Session changes or reads the state of the session rather than of the
	// database: SET, RESET, SHOW, DISCARD, PREPARE, DEALLOCATE, LISTEN,
	// UNLISTEN, LOAD, SET CONSTRAINTS and the cursor statements DECLARE,
	// FETCH, MOVE and CLOSE. They must run on the connection that owns the
	// state.
	Session
	// Other has effects the proxy cannot see from the text: CALL, DO,
	// EXECUTE (the prepared statement decides), NOTIFY, VACUUM, ANALYZE,
	// LOCK, CLUSTER, REINDEX, CHECKPOINT, REFRESH MATERIALIZED VIEW, ALTER
	// SYSTEM.
	Other
	// Unparsed is a query string pg_query rejected. The proxy should forward
	// it to the primary, whose error message is the one the client expects.
	Unparsed
)

var kindNames = [...]string{
	Read:     "read",
	Write:    "write",
	DDL:      "ddl",
	Tx:       "tx",
	Session:  "session",
	Other:    "other",
	Unparsed: "unparsed",
}

// String returns the lower-case name of the kind, e.g. "write"; it is meant
// for logs and metric labels.
func (k Kind) String() string {
	if k < Read || k > Unparsed {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// TxOp says which transaction-control statement a Tx statement is.
type TxOp uint8

// The zero TxOp, NotTx, is the value of every statement whose Kind is not Tx.
const (
	NotTx TxOp = iota
	// Begin is BEGIN or START TRANSACTION (Command tells them apart).
	Begin
	// Commit is COMMIT or END. With Statement.TxChain a new transaction
	// starts at once.
	Commit
	// Rollback is ROLLBACK or ABORT, possibly AND CHAIN.
	Rollback
	// Savepoint is SAVEPOINT name; Statement.Name holds the name.
	Savepoint
	// Release is RELEASE [SAVEPOINT] name.
	Release
	// RollbackTo is ROLLBACK TO [SAVEPOINT] name.
	RollbackTo
	// Prepare is PREPARE TRANSACTION 'gid' (two-phase commit, not the
	// PREPARE of a statement); Statement.Name holds the gid.
	Prepare
	// CommitPrepared is COMMIT PREPARED 'gid'.
	CommitPrepared
	// RollbackPrepared is ROLLBACK PREPARED 'gid'.
	RollbackPrepared
)

var txOpNames = [...]string{
	NotTx:            "none",
	Begin:            "begin",
	Commit:           "commit",
	Rollback:         "rollback",
	Savepoint:        "savepoint",
	Release:          "release",
	RollbackTo:       "rollback_to",
	Prepare:          "prepare",
	CommitPrepared:   "commit_prepared",
	RollbackPrepared: "rollback_prepared",
}

// String returns the lower-case name of the operation, e.g. "rollback_to".
func (o TxOp) String() string {
	if int(o) >= len(txOpNames) {
		return fmt.Sprintf("txop(%d)", uint8(o))
	}
	return txOpNames[o]
}

// Statement describes one SQL statement. Values returned by a Classifier are
// shared between callers through the cache and must be treated as immutable:
// do not modify a Statement or its slices.
//
// A Statement keeps no parse tree: a cached entry costs a few hundred bytes
// plus the query text, which it shares with the cache key.
type Statement struct {
	Kind Kind
	// TxOp is set when Kind is Tx.
	TxOp TxOp
	// Command is the statement's command in the spirit of PostgreSQL's
	// command tags, e.g. "SELECT", "INSERT", "COPY FROM", "CREATE TABLE",
	// "DROP INDEX", "ROLLBACK TO". It is empty for Unparsed. Meant for logs
	// and metric labels: the set of values is small and fixed.
	Command string
	// SQL is this statement's own text within the query string, trimmed of
	// surrounding white space and of the terminating semicolon. Leading
	// comments are kept. For Unparsed it is the whole (trimmed) query.
	SQL string
	// Fingerprint is pg_query's fingerprint of SQL (16 hex digits): equal
	// for statements that differ only in constants, parameter numbers,
	// white space or comments. Empty for Unparsed.
	Fingerprint string

	// Tables lists each table (or view, or sequence) the statement names,
	// once, in order of first appearance: "name" or "schema.name" exactly
	// as written, with unquoted identifiers folded to lower case by the
	// PostgreSQL rules and quoted ones kept as they are. Names that refer
	// to a common table expression (WITH x AS ...) are not tables and are
	// left out. Unqualified names are not resolved against search_path.
	Tables []string
	// WriteTables is the subset of Tables the statement changes: the
	// targets of INSERT/UPDATE/DELETE/MERGE (including those inside WITH),
	// of TRUNCATE and of COPY FROM; for DDL, the table, view, sequence or
	// index's table being created, altered, renamed or dropped.
	WriteTables []string
	// Functions lists the functions the statement calls, as written
	// ("lower", "pg_catalog.now", "myschema.f"), once each. CALL's procedure
	// is included. Function bodies (DO, CREATE FUNCTION ... AS $$...$$) are
	// opaque and not looked into.
	Functions []string

	// Name is the name the statement acts on, where it has one: the
	// savepoint (SAVEPOINT, RELEASE, ROLLBACK TO), the two-phase gid
	// (PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED), the prepared
	// statement (PREPARE, EXECUTE, DEALLOCATE; empty for DEALLOCATE ALL),
	// the cursor (DECLARE, FETCH, MOVE, CLOSE; empty for CLOSE ALL), the
	// channel (LISTEN, UNLISTEN, NOTIFY; "*" for UNLISTEN *) or the
	// variable (SET, RESET, SHOW; lower case; "all" for RESET ALL / SHOW ALL,
	// "transaction" / "session characteristics" for SET
	// TRANSACTION forms).
	Name string
	// Body is, for PREPARE name AS query, the classification of the query,
	// so that a later EXECUTE name can be routed by what it runs. Its SQL and
	// Fingerprint are empty. Nil for every other statement.
	Body *Statement
	// Params is the highest $n parameter number the statement references
	// (0 when it has none).
	Params int

	// ForUpdate is set when the statement takes row locks with SELECT ...
	// FOR UPDATE / FOR NO KEY UPDATE / FOR SHARE / FOR KEY SHARE, anywhere
	// in it. Such a read must run on the primary inside its transaction.
	ForUpdate bool
	// HasReturning is set when an INSERT/UPDATE/DELETE/MERGE in the
	// statement has a RETURNING list, i.e. a write returns rows.
	HasReturning bool
	// HasVolatile is set when the statement's result depends on when or
	// where it runs: it calls now(), clock_timestamp(), random(),
	// nextval(), gen_random_uuid(), ..., uses CURRENT_TIMESTAMP and
	// friends, or casts 'now'/'today' to a date/time type. Such statements
	// cannot be replayed on another server and expected to produce the same
	// rows, nor their results compared.
	HasVolatile bool
	// ServerInfo is set when the statement asks about the server or the
	// session rather than the data: it reads the system catalogs
	// (pg_catalog, information_schema, or an unqualified pg_* relation) or
	// calls version(), current_setting(), current_user, a pg_* function
	// and the like, or it is an EXPLAIN, whose answer is the server's plan.
	// Its answer depends on the server it runs on (OIDs, settings,
	// versions, plans, another engine altogether), so it is not compared
	// with another server's.
	ServerInfo bool
	// HasSideEffects is set when the statement calls a function known to
	// change state beyond its own result: nextval/setval, advisory locks,
	// set_config, pg_notify, large-object writes, ... A SELECT with this
	// flag is still a Read but must not be shadowed or retried.
	HasSideEffects bool

	// Temporary is set for DDL that creates a temporary relation (CREATE
	// TEMP TABLE / VIEW / SEQUENCE, CREATE TEMP TABLE AS, SELECT INTO TEMP,
	// or a name in schema pg_temp): it changes one session, not the
	// database's schema. TempDropOnCommit is set when the table goes at the
	// end of the transaction (ON COMMIT DROP).
	Temporary        bool
	TempDropOnCommit bool

	// TxChain is set for COMMIT AND CHAIN / ROLLBACK AND CHAIN: a new
	// transaction begins immediately.
	TxChain bool
	// TxReadOnly is set for BEGIN / START TRANSACTION ... READ ONLY.
	TxReadOnly bool
	// SetLocal is set for SET LOCAL, whose effect ends with the current
	// transaction.
	SetLocal bool
	// SetValue is the value SET gives the parameter Name, as the server
	// prints it (e.g. search_path's `app, "$user", public`); empty for SET
	// ... TO DEFAULT (and RESET, whose Command says so). SetUnknown is set
	// when the value cannot be told: SET ... FROM CURRENT, or a value
	// setValue cannot render.
	SetValue   string
	SetUnknown bool

	// ParseError is pg_query's message when Kind is Unparsed.
	ParseError string
}

// IsWrite reports whether the statement may change table data, i.e. it is
// a Write or DDL that writes rows (SELECT INTO / CREATE TABLE AS).
func (s *Statement) IsWrite() bool {
	return s.Kind == Write || (s.Kind == DDL && isDataDDL(s.Command))
}

// isDataDDL reports whether a DDL command also writes rows into the table it
// creates.
func isDataDDL(command string) bool {
	switch command {
	case "SELECT INTO", "CREATE TABLE AS", "CREATE MATERIALIZED VIEW":
		return true
	}
	return false
}

// maxCachedSQL is the longest query text the Classifier caches. Longer texts
// are nearly always generated with inline constants (bulk INSERTs, long IN
// lists) and so unique; caching them would hold megabytes for no hits.
const maxCachedSQL = 32 << 10

// Classifier classifies query strings and caches the results per text. It is
// safe for concurrent use.
type Classifier struct {
	cache  *lru.Cache[string, []*Statement] // nil when caching is off
	hits   atomic.Uint64
	misses atomic.Uint64
}

// NewClassifier returns a Classifier that caches the classification of up to
// cacheSize distinct query texts (least recently used are evicted first).
// A cacheSize of 0 disables the cache; a negative one is an error.
func NewClassifier(cacheSize int) (*Classifier, error) {
	if cacheSize < 0 {
		return nil, fmt.Errorf("rewrite: cache size %d is negative", cacheSize)
	}
	c := &Classifier{}
	if cacheSize > 0 {
		cache, err := lru.New[string, []*Statement](cacheSize)
		if err != nil {
			return nil, fmt.Errorf("rewrite: creating classification cache: %w", err)
		}
		c.cache = cache
	}
	return c, nil
}

// CacheStats counts the Classifier's cache lookups. Texts too long to cache
// count as misses.
type CacheStats struct {
	Hits, Misses uint64
	// Len is the number of query texts cached now.
	Len int
}

// Stats returns the cache counters since the Classifier was created.
func (c *Classifier) Stats() CacheStats {
	s := CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load()}
	if c.cache != nil {
		s.Len = c.cache.Len()
	}
	return s
}

// Classify returns one Statement per statement in sql, in order. A query that
// is empty or holds only comments and semicolons yields no statements. A
// query pg_query cannot parse yields a single Statement of Kind Unparsed; that
// is not an error. The error result is reserved for failures of pg_query
// itself on text it has parsed, which indicate a bug rather than bad input.
//
// The returned slice and Statements are shared with other callers and must
// not be modified.
func (c *Classifier) Classify(sql string) ([]*Statement, error) {
	cacheable := c.cache != nil && len(sql) <= maxCachedSQL
	if cacheable {
		if stmts, ok := c.cache.Get(sql); ok {
			c.hits.Add(1)
			return stmts, nil
		}
	}
	c.misses.Add(1)
	stmts, err := classify(sql)
	if err != nil {
		return nil, err
	}
	if cacheable {
		c.cache.Add(sql, stmts)
	}
	return stmts, nil
}

// ClassifyOne classifies a query string expected to hold exactly one
// statement, as in the extended protocol's Parse message. It returns nil for
// an empty query and an error when sql holds more than one statement.
func (c *Classifier) ClassifyOne(sql string) (*Statement, error) {
	stmts, err := c.Classify(sql)
	if err != nil {
		return nil, err
	}
	switch len(stmts) {
	case 0:
		return nil, nil
	case 1:
		return stmts[0], nil
	default:
		return nil, fmt.Errorf("rewrite: expected one statement, got %d", len(stmts))
	}
}

// errNUL is reported for query text containing a NUL byte. The wire protocol
// cannot carry one inside a query and the C parser would silently stop at it,
// so such text is never analysed.
var errNUL = errors.New("query text contains a NUL byte")

// classify does the uncached work of Classify.
func classify(sql string) ([]*Statement, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		return []*Statement{unparsed(sql, errNUL)}, nil
	}
	tree, err := pg.Parse(sql)
	if err != nil {
		// Syntax errors, but also the parser's stack-depth limit and the
		// protobuf decoder's nesting limit: in every case the server is the
		// one to tell the client.
		return []*Statement{unparsed(sql, err)}, nil
	}
	raws := tree.GetStmts()
	if len(raws) == 0 {
		return nil, nil
	}
	stmts := make([]*Statement, 0, len(raws))
	for _, raw := range raws {
		text := stmtText(sql, raw)
		st := analyzeStmt(raw.GetStmt())
		st.SQL = text
		fp, err := fingerprint(sql, text, len(raws) == 1)
		if err != nil {
			return nil, fmt.Errorf("rewrite: fingerprinting %.60q: %w", text, err)
		}
		st.Fingerprint = fp
		stmts = append(stmts, st)
	}
	return stmts, nil
}

// fingerprint returns pg_query's fingerprint of one statement. For a
// single-statement query the whole text is fingerprinted (same result, no
// need to slice).
func fingerprint(whole, text string, only bool) (string, error) {
	if only {
		text = whole
	}
	return pg.Fingerprint(text)
}

// stmtText cuts a RawStmt's text out of the query. pg_query reports byte
// offsets; a length of 0 means "to the end of the input".
func stmtText(sql string, raw *pg.RawStmt) string {
	start := int(raw.GetStmtLocation())
	if start < 0 || start > len(sql) {
		start = 0
	}
	end := len(sql)
	if n := int(raw.GetStmtLen()); n > 0 && start+n <= len(sql) {
		end = start + n
	}
	text := strings.TrimSpace(sql[start:end])
	return strings.TrimSpace(strings.TrimSuffix(text, ";"))
}

// unparsed describes a query pg_query rejected.
func unparsed(sql string, err error) *Statement {
	return &Statement{Kind: Unparsed, SQL: strings.TrimSpace(sql), ParseError: err.Error()}
}
