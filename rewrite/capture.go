package rewrite

import (
	"errors"
	"fmt"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// Names of the columns PlanCapture appends to a write's RETURNING list. The
// proxy finds the first of them in the RowDescription, keeps the columns
// before it for the client, and reads the row image from the rest.
const (
	// CaptureXidColumn holds pg_current_xact_id(), the writing
	// transaction's id: the mirror records it with the transaction's row
	// images before the COMMIT is sent, and after a crash asks the old
	// database (pg_xact_status) whether that transaction committed.
	CaptureXidColumn = "__shadowproxy_xid"
	// CaptureTableColumn holds tableoid: the table (or partition) the row is
	// in, resolved against the catalog rather than the search_path.
	CaptureTableColumn = "__shadowproxy_tableoid"
	// CaptureOldKeyPrefix prefixes the old primary-key values of an UPDATE
	// that changes its row's key: column i of the key is returned as
	// CaptureOldKeyPrefix + "i", after the row image.
	CaptureOldKeyPrefix = "__shadowproxy_oldkey_"
)

// oldRowAlias names the self-join that gives a key-changing UPDATE access to
// the row's key before the update; oldKeyColumn prefixes its columns. The
// join is a subquery whose columns have names of their own, so that the
// client's unqualified column references stay unambiguous.
const (
	oldRowAlias  = "__shadowproxy_old"
	oldKeyColumn = "__shadowproxy_k"
)

// oldKeySubselect returns "(SELECT k0 AS __shadowproxy_k0, ... FROM t) AS
// __shadowproxy_old" for the UPDATE's target table.
func oldKeySubselect(rel *pg.RangeVar, key []string) (*pg.Node, error) {
	var cols []string
	for i, k := range key {
		cols = append(cols, fmt.Sprintf("%s AS %s%d", quoteIdent(k), oldKeyColumn, i))
	}
	table := quoteIdent(rel.Relname)
	if rel.Schemaname != "" {
		table = quoteIdent(rel.Schemaname) + "." + table
	}
	only := ""
	if !rel.Inh {
		only = "ONLY "
	}
	tmpl := fmt.Sprintf("SELECT 1 FROM (SELECT %s FROM %s%s) AS %s", strings.Join(cols, ", "), only, table, oldRowAlias)
	tree, err := pg.Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("rewrite: old-key join: %w", err)
	}
	return tree.Stmts[0].Stmt.GetSelectStmt().FromClause[0], nil
}

// quoteIdent quotes an identifier for Postgres.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// CaptureOp is the kind of write a capture plan rewrites.
type CaptureOp uint8

const (
	CaptureInsert CaptureOp = iota + 1 // rows returned are the new rows
	CaptureUpdate                      // rows returned are the new versions
	CaptureDelete                      // rows returned are the deleted rows
)

func (o CaptureOp) String() string {
	switch o {
	case CaptureInsert:
		return "insert"
	case CaptureUpdate:
		return "update"
	case CaptureDelete:
		return "delete"
	}
	return fmt.Sprintf("captureop(%d)", uint8(o))
}

// Capture is how to run a write on the old database so that it also returns
// the row images the mirror needs. It needs PostgreSQL 13 or later
// (pg_current_xact_id).
type Capture struct {
	// SQL is the statement to send instead of the client's. It is the
	// client's statement with CaptureXidColumn, CaptureTableColumn and every
	// column of the target table appended to its RETURNING list, so that
	// values set by defaults, sequences, volatile functions and BEFORE
	// triggers are captured exactly as stored.
	SQL string
	Op  CaptureOp
	// Table is the target table as written ("name" or "schema.name").
	Table string
	// SetColumns are the columns an UPDATE assigns; the proxy checks them
	// against the table's primary key.
	SetColumns []string
	// ClientReturning is set when the client's statement has its own
	// RETURNING list (whose columns come first in each row).
	ClientReturning bool
	// OldKey lists the primary-key columns returned under
	// CaptureOldKeyPrefix, in key order, when the UPDATE assigns one of them.
	OldKey []string
}

// KeyFunc returns the primary-key columns of a table named as in a
// statement, or ok=false when the table is unknown or has no key.
type KeyFunc func(table string) (key []string, ok bool)

// NotCapturableError says why a write's effects cannot be captured as row
// images. The proxy records it per statement fingerprint as "not mirrored".
type NotCapturableError struct {
	Reason string // short and stable, e.g. "MERGE", "data-modifying WITH"
}

func (e *NotCapturableError) Error() string { return "rewrite: cannot capture row images: " + e.Reason }

// PlanCapture plans the capture of one INSERT, UPDATE or DELETE statement,
// or of PREPARE name [(types)] AS one of them: then SQL is the PREPARE with
// its body rewritten, so that every later EXECUTE name returns the row
// images, and the other fields describe the body. Other writes (MERGE
// before RETURNING existed, COPY, TRUNCATE) and writes hidden in
// data-modifying WITH clauses return a *NotCapturableError.
//
// An UPDATE that assigns a primary-key column (keyOf says which they are;
// nil means none is known) also needs the row's old key, which RETURNING
// cannot see before PostgreSQL 18. The statement is joined to its own table
// on the key, "FROM t AS old WHERE old.k = t.k AND (...)", which updates
// the same rows and returns old.k: the join row is read from the
// statement's snapshot, before the update.
func PlanCapture(sql string, keyOf KeyFunc) (*Capture, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	if len(tree.Stmts) != 1 {
		return nil, errors.New("rewrite: PlanCapture takes exactly one statement")
	}
	stmt := tree.Stmts[0].Stmt
	if p := stmt.GetPrepareStmt(); p != nil {
		stmt = p.Query
	}
	c := &Capture{}
	var rel *pg.RangeVar
	var returning *[]*pg.Node
	var with *pg.WithClause
	switch n := stmt.GetNode().(type) {
	case *pg.Node_InsertStmt:
		s := n.InsertStmt
		c.Op, rel, returning, with = CaptureInsert, s.Relation, &s.ReturningList, s.WithClause
	case *pg.Node_UpdateStmt:
		s := n.UpdateStmt
		c.Op, rel, returning, with = CaptureUpdate, s.Relation, &s.ReturningList, s.WithClause
		for _, t := range s.TargetList {
			if rt := t.GetResTarget(); rt != nil {
				c.SetColumns = append(c.SetColumns, rt.Name)
			}
		}
	case *pg.Node_DeleteStmt:
		s := n.DeleteStmt
		c.Op, rel, returning, with = CaptureDelete, s.Relation, &s.ReturningList, s.WithClause
	case *pg.Node_MergeStmt:
		return nil, &NotCapturableError{Reason: "MERGE"}
	default:
		return nil, &NotCapturableError{Reason: "not an INSERT, UPDATE or DELETE"}
	}
	if with != nil {
		for _, cte := range with.Ctes {
			switch cte.GetCommonTableExpr().GetCtequery().GetNode().(type) {
			case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
				return nil, &NotCapturableError{Reason: "data-modifying WITH"}
			}
		}
	}
	c.Table = rel.Relname
	if rel.Schemaname != "" {
		c.Table = rel.Schemaname + "." + rel.Relname
	}
	ref := rel.Relname
	if rel.Alias != nil && rel.Alias.Aliasname != "" {
		ref = rel.Alias.Aliasname
	}
	c.ClientReturning = len(*returning) > 0
	*returning = append(*returning,
		resTarget(CaptureXidColumn, funcCall("pg_current_xact_id")),
		resTarget(CaptureTableColumn, columnRef(pg.MakeStrNode(ref), pg.MakeStrNode("tableoid"))),
		resTarget("", columnRef(pg.MakeStrNode(ref), pg.MakeAStarNode())),
	)
	if c.Op == CaptureUpdate && keyOf != nil {
		if key, ok := keyOf(c.Table); ok && overlaps(key, c.SetColumns) {
			u := stmt.GetUpdateStmt()
			old, err := oldKeySubselect(rel, key)
			if err != nil {
				return nil, err
			}
			u.FromClause = append(u.FromClause, old)
			var conds []*pg.Node
			for i, k := range key {
				col := fmt.Sprintf("%s%d", oldKeyColumn, i)
				conds = append(conds, pg.MakeAExprNode(pg.A_Expr_Kind_AEXPR_OP, []*pg.Node{pg.MakeStrNode("=")},
					columnRef(pg.MakeStrNode(oldRowAlias), pg.MakeStrNode(col)),
					columnRef(pg.MakeStrNode(ref), pg.MakeStrNode(k)), -1))
				u.ReturningList = append(u.ReturningList,
					resTarget(fmt.Sprintf("%s%d", CaptureOldKeyPrefix, i), columnRef(pg.MakeStrNode(oldRowAlias), pg.MakeStrNode(col))))
			}
			if u.WhereClause != nil {
				conds = append(conds, u.WhereClause)
			}
			u.WhereClause = pg.MakeBoolExprNode(pg.BoolExprType_AND_EXPR, conds, -1)
			if len(conds) == 1 {
				u.WhereClause = conds[0]
			}
			c.OldKey = key
		}
	}
	out, err := pg.Deparse(tree)
	if err != nil {
		return nil, fmt.Errorf("rewrite: deparse: %w", err)
	}
	c.SQL = out
	return c, nil
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

func resTarget(name string, val *pg.Node) *pg.Node {
	return &pg.Node{Node: &pg.Node_ResTarget{ResTarget: &pg.ResTarget{Name: name, Val: val, Location: -1}}}
}

func columnRef(fields ...*pg.Node) *pg.Node {
	return &pg.Node{Node: &pg.Node_ColumnRef{ColumnRef: &pg.ColumnRef{Fields: fields, Location: -1}}}
}

func funcCall(name string) *pg.Node {
	return &pg.Node{Node: &pg.Node_FuncCall{FuncCall: &pg.FuncCall{
		Funcname: []*pg.Node{pg.MakeStrNode(name)}, Location: -1, Funcformat: pg.CoercionForm_COERCE_EXPLICIT_CALL,
	}}}
}

// Capturer caches capture plans by statement text. Plans depend on the
// tables' primary keys: call Reset after a schema change. It is safe for
// concurrent use; plans are shared and must not be modified.
type Capturer struct {
	cache *lru.Cache[string, captureResult]
	keyOf KeyFunc
}

type captureResult struct {
	c   *Capture
	err error
}

// NewCapturer returns a Capturer keeping up to size plans.
func NewCapturer(size int, keyOf KeyFunc) (*Capturer, error) {
	cache, err := lru.New[string, captureResult](size)
	if err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	return &Capturer{cache: cache, keyOf: keyOf}, nil
}

// Reset forgets every cached plan.
func (c *Capturer) Reset() { c.cache.Purge() }

// Plan returns PlanCapture(sql, keyOf), cached.
func (c *Capturer) Plan(sql string) (*Capture, error) {
	if r, ok := c.cache.Get(sql); ok {
		return r.c, r.err
	}
	p, err := PlanCapture(sql, c.keyOf)
	if len(sql) <= maxCachedSQL {
		c.cache.Add(sql, captureResult{p, err})
	}
	return p, err
}

// Truncate describes a TRUNCATE statement.
type Truncate struct {
	Tables          []string // as written ("name" or "schema.name")
	Cascade         bool     // CASCADE: referencing tables are truncated too
	RestartIdentity bool
}

// ParseTruncate parses one TRUNCATE statement.
func ParseTruncate(sql string) (*Truncate, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	if len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetTruncateStmt() == nil {
		return nil, errors.New("rewrite: not a TRUNCATE statement")
	}
	ts := tree.Stmts[0].Stmt.GetTruncateStmt()
	t := &Truncate{Cascade: ts.Behavior == pg.DropBehavior_DROP_CASCADE, RestartIdentity: ts.RestartSeqs}
	for _, r := range ts.Relations {
		rv := r.GetRangeVar()
		if rv == nil {
			continue
		}
		name := rv.Relname
		if rv.Schemaname != "" {
			name = rv.Schemaname + "." + name
		}
		t.Tables = append(t.Tables, name)
	}
	return t, nil
}

// CopyFrom describes a COPY ... FROM statement.
type CopyFrom struct {
	Table   string   // as written
	Columns []string // the column list, empty when the COPY names none
	Stdin   bool     // FROM STDIN: the data comes from the client
}

// ParseCopyFrom parses one COPY ... FROM statement.
func ParseCopyFrom(sql string) (*CopyFrom, error) {
	cs, err := parseCopy(sql)
	if err != nil {
		return nil, err
	}
	c := &CopyFrom{Table: cs.Relation.Relname, Stdin: cs.Filename == "" && !cs.IsProgram}
	if cs.Relation.Schemaname != "" {
		c.Table = cs.Relation.Schemaname + "." + c.Table
	}
	for _, a := range cs.Attlist {
		c.Columns = append(c.Columns, a.GetString_().GetSval())
	}
	return c, nil
}

func parseCopy(sql string) (*pg.CopyStmt, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	if len(tree.Stmts) != 1 {
		return nil, errors.New("rewrite: not one COPY statement")
	}
	cs := tree.Stmts[0].Stmt.GetCopyStmt()
	if cs == nil || !cs.IsFrom || cs.Relation == nil {
		return nil, errors.New("rewrite: not a COPY ... FROM a table")
	}
	return cs, nil
}

// RetargetCopy returns the COPY statement with its table replaced by table
// (a temporary staging table) and its column list made explicit, keeping
// every option, the source and the WHERE clause.
func RetargetCopy(sql, table string, columns []string) (string, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return "", fmt.Errorf("rewrite: %w", err)
	}
	cs := tree.Stmts[0].Stmt.GetCopyStmt()
	if cs == nil || !cs.IsFrom {
		return "", errors.New("rewrite: not a COPY ... FROM")
	}
	cs.Relation = &pg.RangeVar{Schemaname: "pg_temp", Relname: table, Inh: true, Relpersistence: "t", Location: -1}
	cs.Attlist = nil
	for _, c := range columns {
		cs.Attlist = append(cs.Attlist, pg.MakeStrNode(c))
	}
	out, err := pg.Deparse(tree)
	if err != nil {
		return "", fmt.Errorf("rewrite: deparse: %w", err)
	}
	return out, nil
}

// QuoteIdent quotes an identifier for Postgres.
func QuoteIdent(s string) string { return quoteIdent(s) }
