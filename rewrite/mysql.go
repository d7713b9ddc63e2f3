package rewrite

import (
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MySQLStatement is a statement translated for MySQL.
type MySQLStatement struct {
	// SQL is the MySQL text. It assumes a session with sql_mode including
	// NO_BACKSLASH_ESCAPES and not ANSI_QUOTES, and time_zone '+00:00':
	// string literals are quoted with single quotes, an embedded quote is
	// doubled and backslashes are literal; identifiers are `...`.
	SQL string
	// Args has one entry per `?` in SQL, in order: the 0-based index of the
	// Postgres parameter ($1 is 0) whose value binds there. A parameter may
	// appear several times, or not at all.
	Args []int
}

// BindArgs returns the MySQL bind values for pgArgs, the values of the
// Postgres statement's $1, $2, ... in order.
func (m *MySQLStatement) BindArgs(pgArgs []any) ([]any, error) {
	out := make([]any, len(m.Args))
	for i, idx := range m.Args {
		if idx < 0 || idx >= len(pgArgs) {
			return nil, fmt.Errorf("rewrite: placeholder %d wants parameter $%d, have %d", i+1, idx+1, len(pgArgs))
		}
		out[i] = pgArgs[idx]
	}
	return out, nil
}

// UnsupportedError reports a Postgres construct that TranslateToMySQL cannot
// translate faithfully. The translator refuses rather than guesses: a mirror
// write that means something else on MySQL is worse than one that is not
// mirrored and is reported.
type UnsupportedError struct {
	// Construct names what was refused, e.g. "RETURNING", "function
	// date_trunc", "cast to interval", "= ANY/ALL(array parameter or
	// expression)". Function, operator and cast names are part of some
	// values, so they are few but not a closed set.
	Construct string
}

func (e *UnsupportedError) Error() string {
	return "rewrite: no MySQL translation for " + e.Construct
}

// TranslateOption adjusts TranslateToMySQL.
type TranslateOption func(*translator)

// WithSchemaMap maps Postgres schemas to MySQL databases in qualified table
// names: "public.users" becomes `app`.`users` with {"public": "app"}, and
// `users` alone with {"public": ""}. Schemas not in the map are kept.
func WithSchemaMap(m map[string]string) TranslateOption {
	return func(t *translator) { t.schemas = m }
}

// TranslateToMySQL translates one Postgres INSERT, UPDATE or DELETE (or a
// plain SELECT) into MySQL. Errors are *UnsupportedError for constructs
// without a faithful MySQL form; other errors mean sql is not a single valid
// Postgres statement.
//
// Covered: INSERT with column lists, multi-row VALUES, DEFAULT, DEFAULT
// VALUES, INSERT ... SELECT, ON CONFLICT DO NOTHING / DO UPDATE [WHERE];
// UPDATE with multi-column SET and UPDATE ... FROM; DELETE with USING; SELECT
// with joins, subqueries, GROUP BY, ORDER BY (keeping Postgres NULL
// ordering), LIMIT/OFFSET, UNION and FOR UPDATE/SHARE. Expressions: the
// comparison, arithmetic and boolean operators, IS [NOT] NULL,
// IS [NOT] TRUE/FALSE/UNKNOWN, IS [NOT] DISTINCT FROM, [NOT] IN, BETWEEN,
// LIKE/ILIKE with ESCAPE, = ANY(ARRAY[...]), CASE, COALESCE, NULLIF, ||,
// casts to the common types, string, number and bit literals (escape,
// Unicode and dollar-quoted strings included), $n parameters and a list of
// functions with equal semantics.
//
// Refused, among others: RETURNING, WITH, SET lists that read a column
// assigned before it (MySQL evaluates left to right), `/` unless an operand
// is visibly non-integer (Postgres divides integers exactly), bitwise
// operators (MySQL's are unsigned 64-bit), GREATEST/LEAST (NULL handling
// differs), date arithmetic, regular expressions, JSON operators, arrays,
// intervals and unknown functions.
func TranslateToMySQL(sql string, opts ...TranslateOption) (*MySQLStatement, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		return nil, fmt.Errorf("rewrite: %w", errNUL)
	}
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("rewrite: parsing statement: %w", err)
	}
	stmts := tree.GetStmts()
	if len(stmts) != 1 {
		return nil, fmt.Errorf("rewrite: TranslateToMySQL wants exactly one statement, got %d", len(stmts))
	}
	t := &translator{}
	for _, o := range opts {
		o(t)
	}
	switch n := stmts[0].GetStmt().GetNode().(type) {
	case *pg.Node_InsertStmt:
		t.insert(n.InsertStmt)
	case *pg.Node_UpdateStmt:
		t.update(n.UpdateStmt)
	case *pg.Node_DeleteStmt:
		t.delete(n.DeleteStmt)
	case *pg.Node_SelectStmt:
		t.selectStmt(n.SelectStmt)
	default:
		return nil, &UnsupportedError{Construct: analyzeStmt(stmts[0].GetStmt()).Command + " statement"}
	}
	if t.err != nil {
		return nil, t.err
	}
	return &MySQLStatement{SQL: t.b.String(), Args: t.args}, nil
}

// translator emits MySQL text for a parse tree. Errors are sticky: the first
// one is kept, emission carries on harmlessly, and the caller checks err at
// the end. That keeps the many small emit functions free of error plumbing.
type translator struct {
	b       strings.Builder
	args    []int
	err     error
	schemas map[string]string

	// qualifiers maps a table qualifier as written (an INSERT target's
	// alias) to the text to emit instead.
	qualifiers map[string]string
	// excluded is set inside ON CONFLICT DO UPDATE, where EXCLUDED.c is the
	// row proposed for insertion: MySQL's VALUES(c).
	excluded bool
	// allowStar is set while emitting a SELECT output column, the only
	// place MySQL takes * or t.*.
	allowStar bool
}

func (t *translator) unsupported(construct string) {
	if t.err == nil {
		t.err = &UnsupportedError{Construct: construct}
	}
}

func (t *translator) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

func (t *translator) w(s ...string) {
	for _, x := range s {
		t.b.WriteString(x)
	}
}

// ident renders an identifier for MySQL. The parser has already folded
// unquoted Postgres identifiers to lower case and kept quoted ones as
// written. Names MySQL cannot hold (empty, ending in a space, longer than 64
// characters, outside the Basic Multilingual Plane) are refused.
func (t *translator) ident(name string) string {
	switch {
	case name == "", strings.HasSuffix(name, " "), utf8.RuneCountInString(name) > 64:
		t.unsupported("identifier MySQL cannot hold")
	default:
		for _, r := range name {
			if r > 0xFFFF || r == utf8.RuneError {
				t.unsupported("identifier MySQL cannot hold")
				break
			}
		}
	}
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// quoteString renders a string literal for a session with
// NO_BACKSLASH_ESCAPES: only the quote needs doubling.
func quoteString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// table emits a table name, applying the schema map.
func (t *translator) table(rv *pg.RangeVar) {
	if rv.GetCatalogname() != "" {
		t.unsupported("catalog-qualified table name")
		return
	}
	if s := rv.GetSchemaname(); s != "" {
		db, ok := t.schemas[s]
		if !ok {
			db = s
		}
		if db != "" {
			t.w(t.ident(db), ".")
		}
	}
	t.w(t.ident(rv.GetRelname()))
}

// tableRef emits a table in a FROM list, with its alias.
func (t *translator) tableRef(rv *pg.RangeVar) {
	t.table(rv)
	t.alias(rv.GetAlias())
}

func (t *translator) alias(a *pg.Alias) {
	if a == nil {
		return
	}
	if len(a.GetColnames()) > 0 {
		t.unsupported("alias with column names")
	}
	t.w(" AS ", t.ident(a.GetAliasname()))
}

// targetName is the qualifier that designates an UPDATE/DELETE target in
// MySQL: its alias if it has one, else its (mapped) name.
func (t *translator) targetName(rv *pg.RangeVar) string {
	if a := rv.GetAlias(); a != nil {
		return t.ident(a.GetAliasname())
	}
	sub := &translator{schemas: t.schemas}
	sub.table(rv)
	t.fail(sub.err)
	return sub.b.String()
}

// ---------------------------------------------------------------- INSERT

func (t *translator) insert(s *pg.InsertStmt) {
	if s.GetWithClause() != nil {
		t.unsupported("WITH")
	}
	if len(s.GetReturningList()) > 0 {
		t.unsupported("RETURNING")
	}
	if s.GetOverride() == pg.OverridingKind_OVERRIDING_USER_VALUE || s.GetOverride() == pg.OverridingKind_OVERRIDING_SYSTEM_VALUE {
		t.unsupported("OVERRIDING")
	}
	rel := s.GetRelation()
	// MySQL's INSERT has no target alias: references through the alias
	// (in ON CONFLICT) are rewritten to the table itself.
	if a := rel.GetAlias(); a != nil {
		t.qualifiers = map[string]string{a.GetAliasname(): t.targetName(&pg.RangeVar{Schemaname: rel.GetSchemaname(), Relname: rel.GetRelname()})}
	}
	t.w("INSERT INTO ")
	t.table(rel)

	var cols []string
	for _, c := range s.GetCols() {
		rt := c.GetResTarget()
		if rt == nil || len(rt.GetIndirection()) > 0 {
			t.unsupported("INSERT column with subscript or field")
			return
		}
		cols = append(cols, rt.GetName())
	}
	if len(cols) > 0 {
		t.w(" (")
		for i, c := range cols {
			if i > 0 {
				t.w(", ")
			}
			t.w(t.ident(c))
		}
		t.w(")")
	}

	src := s.GetSelectStmt().GetSelectStmt()
	switch {
	case s.GetSelectStmt() == nil: // DEFAULT VALUES
		if len(cols) == 0 {
			t.w(" ()")
		}
		t.w(" VALUES ()")
	case src != nil && len(src.GetValuesLists()) > 0 && isPlainValues(src):
		t.w(" VALUES ")
		for i, row := range src.GetValuesLists() {
			if i > 0 {
				t.w(", ")
			}
			t.w("(")
			for j, v := range row.GetList().GetItems() {
				if j > 0 {
					t.w(", ")
				}
				t.value(v)
			}
			t.w(")")
		}
	case src != nil:
		t.w(" ")
		t.selectStmt(src)
	default:
		t.unsupported("INSERT source")
	}

	if oc := s.GetOnConflictClause(); oc != nil {
		t.onConflict(oc, rel, cols)
	}
}

// isPlainValues reports whether a SelectStmt is a bare VALUES list (no ORDER
// BY or LIMIT attached, which MySQL's INSERT ... VALUES cannot carry).
func isPlainValues(s *pg.SelectStmt) bool {
	return len(s.GetSortClause()) == 0 && s.GetLimitCount() == nil && s.GetLimitOffset() == nil && s.GetWithClause() == nil
}

// onConflict emits ON DUPLICATE KEY UPDATE. MySQL has no conflict target:
// it fires on a duplicate in any unique index, which for tables whose only
// unique key is the Postgres conflict target is the same thing.
func (t *translator) onConflict(oc *pg.OnConflictClause, rel *pg.RangeVar, cols []string) {
	switch oc.GetAction() {
	case pg.OnConflictAction_ONCONFLICT_NOTHING:
		// A no-op assignment rather than INSERT IGNORE, which would also
		// swallow errors unrelated to duplicates (bad values, FK failures).
		col := ""
		if infer := oc.GetInfer(); infer != nil {
			for _, e := range infer.GetIndexElems() {
				if name := e.GetIndexElem().GetName(); name != "" {
					col = name
					break
				}
			}
		}
		if col == "" && len(cols) > 0 {
			col = cols[0]
		}
		if col == "" {
			t.unsupported("ON CONFLICT DO NOTHING without a column list or conflict column")
			return
		}
		t.w(" ON DUPLICATE KEY UPDATE ", t.ident(col), " = ", t.ident(col))
	case pg.OnConflictAction_ONCONFLICT_UPDATE:
		sets := t.assignments(oc.GetTargetList())
		if t.err != nil {
			return
		}
		t.checkAssignmentOrder(sets, oc.GetWhereClause(), targetQualifiers(rel))
		t.excluded = true
		t.w(" ON DUPLICATE KEY UPDATE ")
		for i, a := range sets {
			if i > 0 {
				t.w(", ")
			}
			t.w(t.ident(a.col), " = ")
			if where := oc.GetWhereClause(); where != nil {
				// DO UPDATE ... WHERE cond leaves the row alone when cond
				// is not true: assign the column to itself then.
				t.w("IF(")
				t.expr(where)
				t.w(", ")
				t.expr(a.val)
				t.w(", ", t.ident(a.col), ")")
			} else {
				t.value(a.val)
			}
		}
		t.excluded = false
	default:
		t.unsupported("ON CONFLICT action")
	}
}

// ---------------------------------------------------------------- UPDATE

// assignment is one column = value of a SET list.
type assignment struct {
	col string
	val *pg.Node
}

// assignments flattens a SET list, expanding (a, b) = (x, y).
func (t *translator) assignments(list []*pg.Node) []assignment {
	var out []assignment
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil {
			t.unsupported("SET item")
			return nil
		}
		if len(rt.GetIndirection()) > 0 {
			t.unsupported("SET of a subscript or field")
			return nil
		}
		val := rt.GetVal()
		if m := val.GetMultiAssignRef(); m != nil {
			row := m.GetSource().GetRowExpr()
			if row == nil {
				t.unsupported("SET (...) = (SELECT ...)")
				return nil
			}
			i := int(m.GetColno()) - 1
			if i < 0 || i >= len(row.GetArgs()) {
				t.unsupported("SET (...) = ROW(...) with mismatched lengths")
				return nil
			}
			val = row.GetArgs()[i]
		}
		out = append(out, assignment{col: rt.GetName(), val: val})
	}
	return out
}

// targetQualifiers are the names by which a statement can refer to its
// target table's columns.
func targetQualifiers(rv *pg.RangeVar) []string {
	q := []string{rv.GetRelname()}
	if a := rv.GetAlias(); a != nil {
		q = append(q, a.GetAliasname())
	}
	return q
}

// checkAssignmentOrder refuses SET lists that MySQL would evaluate
// differently. Postgres computes every new value from the old row; MySQL
// assigns left to right and later expressions see the new values, so
// "SET a = b, b = a" swaps in one and not the other. A value (or the
// ON CONFLICT WHERE, which MySQL evaluates inside each IF) that reads a
// column assigned before it is refused. EXCLUDED.c reads the proposed row,
// which assignments do not touch.
func (t *translator) checkAssignmentOrder(sets []assignment, where *pg.Node, qualifiers []string) {
	assigned := map[string]bool{}
	for _, a := range sets {
		if readsAny(a.val, assigned, qualifiers) {
			t.unsupported("SET reading a column assigned before it")
			return
		}
		if where != nil && readsAny(where, assigned, qualifiers) {
			t.unsupported("ON CONFLICT WHERE reading an assigned column")
			return
		}
		assigned[a.col] = true
	}
}

// readsAny reports whether expression n references one of cols of the target
// table: unqualified, or qualified by one of qualifiers.
func readsAny(n *pg.Node, cols map[string]bool, qualifiers []string) bool {
	if n == nil || len(cols) == 0 {
		return false
	}
	found := false
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if found {
			return
		}
		if cr, ok := m.Interface().(*pg.ColumnRef); ok {
			f := stringList(cr.GetFields())
			switch {
			case len(f) == 1 && len(cr.GetFields()) == 1:
				found = cols[f[0]]
			case len(f) == 2 && len(cr.GetFields()) == 2:
				for _, q := range qualifiers {
					if f[0] == q && cols[f[1]] {
						found = true
					}
				}
			}
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind {
				return true
			}
			if fd.IsList() {
				for i := 0; i < v.List().Len(); i++ {
					visit(v.List().Get(i).Message())
				}
			} else {
				visit(v.Message())
			}
			return !found
		})
	}
	visit(n.ProtoReflect())
	return found
}

func (t *translator) update(s *pg.UpdateStmt) {
	if s.GetWithClause() != nil {
		t.unsupported("WITH")
	}
	if len(s.GetReturningList()) > 0 {
		t.unsupported("RETURNING")
	}
	if s.GetWhereClause().GetCurrentOfExpr() != nil {
		t.unsupported("WHERE CURRENT OF")
	}
	rel := s.GetRelation()
	sets := t.assignments(s.GetTargetList())
	if t.err != nil {
		return
	}
	t.checkAssignmentOrder(sets, nil, targetQualifiers(rel))

	t.w("UPDATE ")
	t.tableRef(rel)
	multi := len(s.GetFromClause()) > 0
	if multi {
		// UPDATE t SET ... FROM u WHERE cond → UPDATE t JOIN u ON cond SET
		// ...: an inner join on the WHERE is what FROM means.
		t.joinFromList(s.GetFromClause(), s.GetWhereClause())
	}
	t.w(" SET ")
	qual := ""
	if multi {
		// Unqualified SET columns could be ambiguous between the joined
		// tables in MySQL; in Postgres they always mean the target.
		qual = t.targetName(rel) + "."
	}
	for i, a := range sets {
		if i > 0 {
			t.w(", ")
		}
		t.w(qual, t.ident(a.col), " = ")
		t.value(a.val)
	}
	if !multi && s.GetWhereClause() != nil {
		t.w(" WHERE ")
		t.expr(s.GetWhereClause())
	}
}

// joinFromList emits " JOIN a JOIN b ON cond" for a FROM/USING list joined to
// the target, with cond (the WHERE) as the join condition.
func (t *translator) joinFromList(from []*pg.Node, cond *pg.Node) {
	for _, f := range from {
		t.w(" JOIN ")
		t.fromItem(f, true)
	}
	if cond != nil {
		t.w(" ON ")
		t.expr(cond)
	}
}

// ---------------------------------------------------------------- DELETE

func (t *translator) delete(s *pg.DeleteStmt) {
	if s.GetWithClause() != nil {
		t.unsupported("WITH")
	}
	if len(s.GetReturningList()) > 0 {
		t.unsupported("RETURNING")
	}
	if s.GetWhereClause().GetCurrentOfExpr() != nil {
		t.unsupported("WHERE CURRENT OF")
	}
	rel := s.GetRelation()
	if len(s.GetUsingClause()) == 0 && rel.GetAlias() == nil {
		t.w("DELETE FROM ")
		t.table(rel)
		if s.GetWhereClause() != nil {
			t.w(" WHERE ")
			t.expr(s.GetWhereClause())
		}
		return
	}
	// The multi-table form: it is also the portable way to give the target
	// an alias (single-table DELETE takes one only in MySQL ≥ 8.0.16).
	t.w("DELETE ", t.targetName(rel), " FROM ")
	t.tableRef(rel)
	if len(s.GetUsingClause()) > 0 {
		t.joinFromList(s.GetUsingClause(), s.GetWhereClause())
	} else if s.GetWhereClause() != nil {
		t.w(" WHERE ")
		t.expr(s.GetWhereClause())
	}
}

// ---------------------------------------------------------------- SELECT

func (t *translator) selectStmt(s *pg.SelectStmt) {
	if s.GetWithClause() != nil {
		t.unsupported("WITH")
	}
	if s.GetIntoClause() != nil {
		t.unsupported("SELECT INTO")
	}
	switch s.GetOp() {
	case pg.SetOperation_SETOP_NONE, pg.SetOperation_SET_OPERATION_UNDEFINED:
	case pg.SetOperation_SETOP_UNION:
		t.w("(")
		t.selectStmt(s.GetLarg())
		t.w(") UNION ")
		if s.GetAll() {
			t.w("ALL ")
		}
		t.w("(")
		t.selectStmt(s.GetRarg())
		t.w(")")
		if len(s.GetSortClause()) > 0 {
			// MySQL restricts ORDER BY after UNION to plain result column
			// names, which the NULL-ordering keys are not.
			t.unsupported("ORDER BY on UNION")
			return
		}
		t.orderLimit(s, nil)
		return
	default:
		t.unsupported("INTERSECT/EXCEPT")
		return
	}
	if len(s.GetValuesLists()) > 0 {
		t.unsupported("VALUES outside INSERT")
		return
	}

	t.w("SELECT ")
	if d := s.GetDistinctClause(); len(d) > 0 {
		if len(d) == 1 && d[0].GetNode() == nil {
			t.w("DISTINCT ")
		} else {
			t.unsupported("DISTINCT ON")
		}
	}
	targets := s.GetTargetList()
	if len(targets) == 0 {
		t.unsupported("SELECT without columns")
		return
	}
	for i, n := range targets {
		if i > 0 {
			t.w(", ")
		}
		rt := n.GetResTarget()
		if isStar(rt.GetVal()) {
			// * and t.* are only valid here, as whole output columns.
			// PostgreSQL ignores an alias on t.* (it names no single
			// column); MySQL refuses one.
			t.allowStar = true
			t.expr(rt.GetVal())
			t.allowStar = false
			continue
		}
		t.expr(rt.GetVal())
		if rt.GetName() != "" {
			t.w(" AS ", t.ident(rt.GetName()))
		}
	}
	if from := s.GetFromClause(); len(from) > 0 {
		t.w(" FROM ")
		for i, f := range from {
			if i > 0 {
				t.w(", ")
			}
			t.fromItem(f, false)
		}
	} else if s.GetHavingClause() != nil {
		t.unsupported("HAVING without FROM")
		return
	} else if s.GetWhereClause() != nil || len(s.GetGroupClause()) > 0 ||
		len(s.GetSortClause()) > 0 || s.GetLimitCount() != nil || s.GetLimitOffset() != nil || len(s.GetLockingClause()) > 0 {
		// MySQL wants a FROM before the other clauses.
		t.w(" FROM DUAL")
	}
	if w := s.GetWhereClause(); w != nil {
		t.w(" WHERE ")
		t.expr(w)
	}
	if g := s.GetGroupClause(); len(g) > 0 {
		if s.GetGroupDistinct() {
			t.unsupported("GROUP BY DISTINCT")
		}
		t.w(" GROUP BY ")
		for i, e := range g {
			if i > 0 {
				t.w(", ")
			}
			if e.GetGroupingSet() != nil {
				t.unsupported("GROUPING SETS")
			}
			t.expr(e)
		}
	}
	if h := s.GetHavingClause(); h != nil {
		t.w(" HAVING ")
		t.expr(h)
	}
	if len(s.GetWindowClause()) > 0 {
		t.unsupported("WINDOW")
	}
	t.orderLimit(s, targets)
	if len(s.GetLockingClause()) > 1 {
		t.unsupported("several locking clauses")
	}
	for _, l := range s.GetLockingClause() {
		lc := l.GetLockingClause()
		if len(lc.GetLockedRels()) > 0 {
			t.unsupported("FOR UPDATE OF")
		}
		switch lc.GetStrength() {
		case pg.LockClauseStrength_LCS_FORUPDATE, pg.LockClauseStrength_LCS_FORNOKEYUPDATE:
			t.w(" FOR UPDATE")
		case pg.LockClauseStrength_LCS_FORSHARE, pg.LockClauseStrength_LCS_FORKEYSHARE:
			t.w(" FOR SHARE")
		default:
			t.unsupported("locking clause")
		}
		switch lc.GetWaitPolicy() {
		case pg.LockWaitPolicy_LockWaitSkip:
			t.w(" SKIP LOCKED")
		case pg.LockWaitPolicy_LockWaitError:
			t.w(" NOWAIT")
		}
	}
}

// orderLimit emits ORDER BY and LIMIT. Postgres sorts NULLs as larger than
// any value (last ascending, first descending); MySQL as smaller. Each key
// whose NULL placement would differ gets an `x IS NULL` key before it.
func (t *translator) orderLimit(s *pg.SelectStmt, targets []*pg.Node) {
	if sc := s.GetSortClause(); len(sc) > 0 {
		t.w(" ORDER BY ")
		for i, n := range sc {
			if i > 0 {
				t.w(", ")
			}
			sb := n.GetSortBy()
			key := sb.GetNode()
			// ORDER BY 2 means the second output column; wrapping it in
			// IS NULL would turn it into a constant, so use the column's
			// expression.
			if c := key.GetAConst(); c != nil && c.GetIval() != nil {
				idx := int(c.GetIval().GetIval()) - 1
				if idx < 0 || idx >= len(targets) || isStar(targets[idx].GetResTarget().GetVal()) {
					t.unsupported("ORDER BY position")
					return
				}
				key = targets[idx].GetResTarget().GetVal()
			} else if f := stringList(key.GetColumnRef().GetFields()); len(f) == 1 {
				// A bare name means the output column of that name first,
				// as in Postgres; use its expression so the NULL-ordering
				// key does not depend on MySQL resolving aliases.
				for _, tg := range targets {
					if rt := tg.GetResTarget(); rt.GetName() == f[0] && !isStar(rt.GetVal()) {
						key = rt.GetVal()
						break
					}
				}
			}
			desc := false
			switch sb.GetSortbyDir() {
			case pg.SortByDir_SORTBY_DESC:
				desc = true
			case pg.SortByDir_SORTBY_USING:
				t.unsupported("ORDER BY USING")
			}
			nullsFirst := desc
			switch sb.GetSortbyNulls() {
			case pg.SortByNulls_SORTBY_NULLS_FIRST:
				nullsFirst = true
			case pg.SortByNulls_SORTBY_NULLS_LAST:
				nullsFirst = false
			}
			// MySQL puts NULLs first ascending and last descending.
			if nullsFirst == desc {
				t.sub(key)
				t.w(" IS NULL")
				if nullsFirst {
					t.w(" DESC")
				}
				t.w(", ")
			}
			t.expr(key)
			if desc {
				t.w(" DESC")
			}
		}
	}
	if s.GetLimitOption() == pg.LimitOption_LIMIT_OPTION_WITH_TIES {
		t.unsupported("FETCH ... WITH TIES")
		return
	}
	count, offset := s.GetLimitCount(), s.GetLimitOffset()
	if c := count.GetAConst(); c != nil && c.GetIsnull() {
		count = nil // LIMIT ALL
	}
	if count == nil && offset == nil {
		return
	}
	t.w(" LIMIT ")
	if count != nil {
		t.limitValue(count)
	} else {
		t.w("18446744073709551615") // MySQL's documented "no limit"
	}
	if offset != nil {
		t.w(" OFFSET ")
		t.limitValue(offset)
	}
}

// isStar reports whether a target is * or t.*.
func isStar(n *pg.Node) bool {
	f := n.GetColumnRef().GetFields()
	return len(f) > 0 && f[len(f)-1].GetAStar() != nil
}

// limitValue emits a LIMIT/OFFSET operand: MySQL takes only an integer
// literal or a placeholder there.
func (t *translator) limitValue(n *pg.Node) {
	if c := n.GetAConst(); c != nil && c.GetIval() != nil && c.GetIval().GetIval() >= 0 {
		t.w(strconv.Itoa(int(c.GetIval().GetIval())))
		return
	}
	if n.GetParamRef() != nil {
		t.expr(n)
		return
	}
	t.unsupported("LIMIT/OFFSET expression")
}

// fromItem emits one FROM-list entry. nested is set when the item follows a
// JOIN keyword, where a join tree must be parenthesized.
func (t *translator) fromItem(n *pg.Node, nested bool) {
	switch x := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		t.tableRef(x.RangeVar)
	case *pg.Node_RangeSubselect:
		if x.RangeSubselect.GetLateral() {
			t.unsupported("LATERAL")
		}
		if x.RangeSubselect.GetAlias() == nil {
			t.unsupported("subquery in FROM without alias")
			return
		}
		sub := x.RangeSubselect.GetSubquery().GetSelectStmt()
		if sub == nil {
			t.unsupported("FROM item")
			return
		}
		t.w("(")
		t.selectStmt(sub)
		t.w(")")
		t.alias(x.RangeSubselect.GetAlias())
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		if j.GetAlias() != nil || j.GetJoinUsingAlias() != nil {
			t.unsupported("join alias")
		}
		if nested {
			t.w("(")
		}
		t.fromItem(j.GetLarg(), false) // joins associate to the left
		if j.GetIsNatural() {
			t.w(" NATURAL")
		}
		switch j.GetJointype() {
		case pg.JoinType_JOIN_INNER:
			if j.GetQuals() == nil && len(j.GetUsingClause()) == 0 && !j.GetIsNatural() {
				t.w(" CROSS JOIN ")
			} else {
				t.w(" JOIN ")
			}
		case pg.JoinType_JOIN_LEFT:
			t.w(" LEFT JOIN ")
		case pg.JoinType_JOIN_RIGHT:
			t.w(" RIGHT JOIN ")
		default:
			t.unsupported("FULL JOIN")
		}
		t.fromItem(j.GetRarg(), true)
		if u := j.GetUsingClause(); len(u) > 0 {
			t.w(" USING (")
			for i, c := range stringList(u) {
				if i > 0 {
					t.w(", ")
				}
				t.w(t.ident(c))
			}
			t.w(")")
		}
		if q := j.GetQuals(); q != nil {
			t.w(" ON ")
			t.expr(q)
		}
		if nested {
			t.w(")")
		}
	default:
		t.unsupported("FROM item " + nodeName(n))
	}
}

// ---------------------------------------------------------------- expressions

// value emits an INSERT value or SET right-hand side: an expression or the
// keyword DEFAULT, which is valid only there.
func (t *translator) value(n *pg.Node) {
	if n.GetSetToDefault() != nil {
		t.w("DEFAULT")
		return
	}
	t.expr(n)
}

func (t *translator) exprList(list []*pg.Node) {
	for i, n := range list {
		if i > 0 {
			t.w(", ")
		}
		t.expr(n)
	}
}

// sub emits an operand of an operator, parenthesized when it is itself an
// operator expression, so precedence never depends on the two dialects
// agreeing.
func (t *translator) sub(n *pg.Node) {
	switch n.GetNode().(type) {
	case *pg.Node_AExpr, *pg.Node_BoolExpr, *pg.Node_NullTest, *pg.Node_BooleanTest:
		t.w("(")
		t.expr(n)
		t.w(")")
	case *pg.Node_SubLink:
		if n.GetSubLink().GetSubLinkType() != pg.SubLinkType_EXPR_SUBLINK {
			t.w("(")
			t.expr(n)
			t.w(")")
			return
		}
		t.expr(n)
	default:
		t.expr(n)
	}
}

func (t *translator) expr(n *pg.Node) {
	if t.err != nil {
		return
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_AConst:
		t.constant(x.AConst)
	case *pg.Node_ParamRef:
		n := int(x.ParamRef.GetNumber())
		if n < 1 {
			// The grammar takes $0; Postgres rejects it later, and so do we.
			t.fail(fmt.Errorf("rewrite: there is no parameter $%d", n))
			return
		}
		t.w("?")
		t.args = append(t.args, n-1)
	case *pg.Node_ColumnRef:
		t.columnRef(x.ColumnRef)
	case *pg.Node_AExpr:
		t.aExpr(x.AExpr)
	case *pg.Node_BoolExpr:
		t.boolExpr(x.BoolExpr)
	case *pg.Node_NullTest:
		if x.NullTest.GetArgisrow() {
			t.unsupported("row IS NULL")
			return
		}
		t.sub(x.NullTest.GetArg())
		if x.NullTest.GetNulltesttype() == pg.NullTestType_IS_NOT_NULL {
			t.w(" IS NOT NULL")
		} else {
			t.w(" IS NULL")
		}
	case *pg.Node_BooleanTest:
		t.sub(x.BooleanTest.GetArg())
		t.w(map[pg.BoolTestType]string{
			pg.BoolTestType_IS_TRUE:        " IS TRUE",
			pg.BoolTestType_IS_NOT_TRUE:    " IS NOT TRUE",
			pg.BoolTestType_IS_FALSE:       " IS FALSE",
			pg.BoolTestType_IS_NOT_FALSE:   " IS NOT FALSE",
			pg.BoolTestType_IS_UNKNOWN:     " IS UNKNOWN",
			pg.BoolTestType_IS_NOT_UNKNOWN: " IS NOT UNKNOWN",
		}[x.BooleanTest.GetBooltesttype()])
	case *pg.Node_CaseExpr:
		c := x.CaseExpr
		t.w("CASE")
		if c.GetArg() != nil {
			t.w(" ")
			t.expr(c.GetArg())
		}
		for _, w := range c.GetArgs() {
			cw := w.GetCaseWhen()
			t.w(" WHEN ")
			t.expr(cw.GetExpr())
			t.w(" THEN ")
			t.expr(cw.GetResult())
		}
		if d := c.GetDefresult(); d != nil {
			t.w(" ELSE ")
			t.expr(d)
		}
		t.w(" END")
	case *pg.Node_CoalesceExpr:
		t.w("COALESCE(")
		t.exprList(x.CoalesceExpr.GetArgs())
		t.w(")")
	case *pg.Node_MinMaxExpr:
		// MySQL's GREATEST/LEAST return NULL if any argument is NULL;
		// Postgres ignores NULLs.
		t.unsupported("GREATEST/LEAST")
	case *pg.Node_TypeCast:
		t.typeCast(x.TypeCast)
	case *pg.Node_FuncCall:
		t.funcCall(x.FuncCall)
	case *pg.Node_SqlvalueFunction:
		t.sqlValueFunction(x.SqlvalueFunction)
	case *pg.Node_SubLink:
		t.subLink(x.SubLink)
	case *pg.Node_RowExpr:
		if len(x.RowExpr.GetArgs()) == 0 {
			t.unsupported("ROW() without columns") // MySQL has no empty row
			return
		}
		t.w("(")
		t.exprList(x.RowExpr.GetArgs())
		t.w(")")
	case *pg.Node_SetToDefault:
		t.unsupported("DEFAULT inside an expression")
	default:
		t.unsupported(nodeName(n))
	}
}

// nodeName names a node's type for error messages, e.g. "A_ArrayExpr".
func nodeName(n *pg.Node) string {
	var name string
	n.ProtoReflect().Range(func(_ protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name = string(v.Message().Descriptor().Name())
		return false
	})
	if name == "" {
		return "empty expression"
	}
	return name
}

var (
	plainNumber = regexp.MustCompile(`^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$`)
	radixNumber = regexp.MustCompile(`^(-?)0([xXoObB])([0-9a-fA-F]+)$`)
)

func (t *translator) constant(c *pg.A_Const) {
	if c.GetIsnull() {
		t.w("NULL")
		return
	}
	switch v := c.GetVal().(type) {
	case *pg.A_Const_Ival:
		t.w(strconv.FormatInt(int64(v.Ival.GetIval()), 10))
	case *pg.A_Const_Fval:
		num, ok := mysqlNumber(v.Fval.GetFval())
		if !ok {
			t.unsupported("numeric literal " + v.Fval.GetFval())
			return
		}
		t.w(num)
	case *pg.A_Const_Boolval:
		if v.Boolval.GetBoolval() {
			t.w("TRUE")
		} else {
			t.w("FALSE")
		}
	case *pg.A_Const_Sval:
		t.w(quoteString(v.Sval.GetSval()))
	case *pg.A_Const_Bsval:
		// The parser keeps B'0101' as "b0101" and X'1F' as "x1F"; MySQL
		// spells them the same way.
		bs := v.Bsval.GetBsval()
		if bs == "" {
			t.unsupported("bit string")
			return
		}
		digits := bs[1:]
		switch bs[0] {
		case 'b', 'B':
			if strings.Trim(digits, "01") != "" {
				t.fail(fmt.Errorf("rewrite: %q is not a valid binary digit string", digits))
				return
			}
			t.w("b", quoteString(digits))
		case 'x', 'X':
			if !isHex(digits) {
				t.fail(fmt.Errorf("rewrite: %q is not a valid hexadecimal digit string", digits))
				return
			}
			if len(digits)%2 != 0 {
				// MySQL wants whole bytes in X''; Postgres pads bits.
				t.unsupported("hex bit string of odd length")
				return
			}
			t.w("X", quoteString(digits))
		default:
			t.unsupported("bit string")
		}
	default:
		t.unsupported("constant")
	}
}

// mysqlNumber rewrites a Postgres numeric literal (which may use _
// separators or 0x/0o/0b prefixes) as a MySQL exact-value literal. Postgres
// reads 1e3 as an exact numeric where MySQL would read a DOUBLE, so
// exponents are expanded; literals beyond MySQL's DECIMAL limits (65 digits,
// 30 after the point) are refused rather than rounded.
func mysqlNumber(s string) (string, bool) {
	s = strings.ReplaceAll(s, "_", "")
	if m := radixNumber.FindStringSubmatch(s); m != nil {
		base := map[byte]int{'x': 16, 'o': 8, 'b': 2}[strings.ToLower(m[2])[0]]
		n, ok := new(big.Int).SetString(m[3], base)
		if !ok || len(n.String()) > 65 {
			return "", false
		}
		return m[1] + n.String(), true
	}
	if !plainNumber.MatchString(s) {
		return "", false
	}
	mantissa, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > 1000 || e < -1000 {
			return "", false
		}
		mantissa, exp = s[:i], e
	}
	scale := 0
	if i := strings.IndexByte(mantissa, '.'); i >= 0 {
		scale = len(mantissa) - i - 1
	}
	scale = max(scale-exp, 0)
	r, ok := new(big.Rat).SetString(s)
	if !ok || scale > 30 {
		return "", false
	}
	out := r.FloatString(scale)
	digits := strings.TrimLeft(strings.NewReplacer("-", "", ".", "").Replace(out), "0")
	if len(digits) > 65 {
		return "", false
	}
	return out, true
}

func (t *translator) columnRef(c *pg.ColumnRef) {
	fields := c.GetFields()
	if len(fields) > 3 {
		// database.table.column is as far as MySQL goes.
		t.unsupported("column reference with a catalog")
		return
	}
	parts := make([]string, 0, len(fields))
	for i, f := range fields {
		switch {
		case f.GetString_() != nil:
			parts = append(parts, f.GetString_().GetSval())
		case f.GetAStar() != nil && i == len(fields)-1 && t.allowStar:
			parts = append(parts, "*")
		default:
			t.unsupported("column reference")
			return
		}
	}
	if len(parts) == 2 && t.excluded && parts[0] == "excluded" && parts[1] != "*" {
		t.w("VALUES(", t.ident(parts[1]), ")")
		return
	}
	if len(parts) >= 2 {
		if repl, ok := t.qualifiers[parts[0]]; ok && len(parts) == 2 {
			t.w(repl, ".")
			parts = parts[1:]
		}
	}
	for i, p := range parts {
		if i > 0 {
			t.w(".")
		}
		if p == "*" {
			t.w("*")
		} else {
			t.w(t.ident(p))
		}
	}
}

func (t *translator) boolExpr(b *pg.BoolExpr) {
	switch b.GetBoolop() {
	case pg.BoolExprType_AND_EXPR, pg.BoolExprType_OR_EXPR:
		op := " AND "
		if b.GetBoolop() == pg.BoolExprType_OR_EXPR {
			op = " OR "
		}
		for i, a := range b.GetArgs() {
			if i > 0 {
				t.w(op)
			}
			t.sub(a)
		}
	case pg.BoolExprType_NOT_EXPR:
		t.w("NOT ")
		t.sub(b.GetArgs()[0])
	default:
		t.unsupported("boolean expression")
	}
}

// binaryOps are the operators with the same spelling and meaning in both
// dialects (for the operand types a DML statement plausibly uses). The
// bitwise operators are missing on purpose: MySQL computes them on unsigned
// 64-bit integers, so results differ for negative operands.
var binaryOps = map[string]string{
	"=": "=", "<>": "<>", "!=": "<>", "<": "<", ">": ">", "<=": "<=", ">=": ">=",
	"+": "+", "-": "-", "*": "*", "%": "%",
}

// comparisonOps are the binaryOps that compare.
var comparisonOps = map[string]bool{"=": true, "<>": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true}

// isTemporal reports whether an expression is visibly a date or time: a
// clock function, or a cast to a date/time type.
func isTemporal(n *pg.Node) bool {
	switch x := n.GetNode().(type) {
	case *pg.Node_SqlvalueFunction:
		return isTimeValueFunction(x.SqlvalueFunction.GetOp())
	case *pg.Node_FuncCall:
		switch name := stringList(x.FuncCall.GetFuncname()); name[len(name)-1] {
		case "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "date_trunc", "to_timestamp", "make_date", "make_timestamp":
			return true
		}
	case *pg.Node_TypeCast:
		switch typeBaseName(x.TypeCast.GetTypeName()) {
		case "date", "timestamp", "timestamptz", "time", "timetz", "interval":
			return true
		}
	}
	return false
}

func operatorName(names []*pg.Node) string {
	parts := stringList(names)
	if len(parts) == 0 {
		return ""
	}
	if len(parts) == 2 && parts[0] != "pg_catalog" {
		return "" // a user-defined operator in another schema
	}
	return parts[len(parts)-1]
}

func (t *translator) aExpr(e *pg.A_Expr) {
	op := operatorName(e.GetName())
	switch e.GetKind() {
	case pg.A_Expr_Kind_AEXPR_OP:
		t.operator(op, e.GetLexpr(), e.GetRexpr())
	case pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
		arr := e.GetRexpr().GetAArrayExpr()
		isAny := e.GetKind() == pg.A_Expr_Kind_AEXPR_OP_ANY
		switch {
		case arr == nil:
			t.unsupported(op + " ANY/ALL(array parameter or expression)")
		case isAny && op == "=", !isAny && (op == "<>" || op == "!="):
			if len(arr.GetElements()) == 0 {
				// = ANY('{}') is false and <> ALL('{}') true, even for NULL.
				t.w(map[bool]string{true: "FALSE", false: "TRUE"}[isAny])
				return
			}
			t.sub(e.GetLexpr())
			if !isAny {
				t.w(" NOT")
			}
			t.w(" IN (")
			t.exprList(arr.GetElements())
			t.w(")")
		default:
			t.unsupported(op + " ANY/ALL(ARRAY[...])")
		}
	case pg.A_Expr_Kind_AEXPR_DISTINCT:
		t.w("NOT (")
		t.sub(e.GetLexpr())
		t.w(" <=> ")
		t.sub(e.GetRexpr())
		t.w(")")
	case pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		t.sub(e.GetLexpr())
		t.w(" <=> ")
		t.sub(e.GetRexpr())
	case pg.A_Expr_Kind_AEXPR_NULLIF:
		t.w("NULLIF(")
		t.expr(e.GetLexpr())
		t.w(", ")
		t.expr(e.GetRexpr())
		t.w(")")
	case pg.A_Expr_Kind_AEXPR_IN:
		list := e.GetRexpr().GetList()
		if list == nil {
			t.unsupported("IN")
			return
		}
		t.sub(e.GetLexpr())
		if op == "<>" {
			t.w(" NOT")
		}
		t.w(" IN (")
		t.exprList(list.GetItems())
		t.w(")")
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE:
		t.like(e, op)
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN:
		bounds := e.GetRexpr().GetList().GetItems()
		if len(bounds) != 2 {
			t.unsupported("BETWEEN")
			return
		}
		t.sub(e.GetLexpr())
		if e.GetKind() == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN {
			t.w(" NOT")
		}
		t.w(" BETWEEN ")
		t.sub(bounds[0])
		t.w(" AND ")
		t.sub(bounds[1])
	default:
		t.unsupported(strings.TrimPrefix(e.GetKind().String(), "AEXPR_"))
	}
}

func (t *translator) operator(op string, l, r *pg.Node) {
	if l == nil { // prefix operator
		if op != "-" && op != "+" {
			t.unsupported("prefix operator " + op)
			return
		}
		// Always parenthesized: "-" followed by a negative literal would
		// otherwise read "--", a comment opener in MySQL.
		t.w(op, "(")
		t.expr(r)
		t.w(")")
		return
	}
	if (op == "+" || op == "-") && (isTemporal(l) || isTemporal(r)) {
		// date + 1 is the next day in Postgres and the number 20240102 in
		// MySQL; interval arithmetic is spelled differently too.
		t.unsupported("date/time arithmetic")
		return
	}
	switch op {
	case "||":
		// a || b || c → CONCAT(a, b, c). Both return NULL when an operand
		// is NULL.
		t.w("CONCAT(")
		t.concatOperands(l)
		t.w(", ")
		t.concatOperands(r)
		t.w(")")
		return
	case "^":
		t.w("POW(")
		t.expr(l)
		t.w(", ")
		t.expr(r)
		t.w(")")
		return
	case "/":
		// Postgres divides integers exactly (7/2 = 3), MySQL does not
		// (3.5000). Accept only when an operand is visibly non-integer.
		if !isNonInteger(l) && !isNonInteger(r) {
			t.unsupported("division of possibly integer operands")
			return
		}
		t.sub(l)
		t.w(" / ")
		t.sub(r)
		return
	}
	my, ok := binaryOps[op]
	if !ok {
		t.unsupported("operator " + op)
		return
	}
	t.sub(l)
	t.w(" ", my, " ")
	t.sub(r)
}

// concatOperands flattens a chain of || into CONCAT arguments.
func (t *translator) concatOperands(n *pg.Node) {
	if e := n.GetAExpr(); e != nil && e.GetKind() == pg.A_Expr_Kind_AEXPR_OP && operatorName(e.GetName()) == "||" && e.GetLexpr() != nil {
		t.concatOperands(e.GetLexpr())
		t.w(", ")
		t.concatOperands(e.GetRexpr())
		return
	}
	t.expr(n)
}

// isNonInteger reports whether an expression is visibly of a non-integer
// numeric type: a literal with a fraction or exponent, or a cast to
// numeric/float.
func isNonInteger(n *pg.Node) bool {
	if c := n.GetAConst(); c != nil && c.GetFval() != nil {
		f := c.GetFval().GetFval()
		return strings.ContainsAny(f, ".eE") && !strings.HasPrefix(strings.ToLower(strings.TrimPrefix(f, "-")), "0x")
	}
	if tc := n.GetTypeCast(); tc != nil {
		switch typeBaseName(tc.GetTypeName()) {
		case "numeric", "decimal", "float4", "float8", "real":
			return true
		}
	}
	return false
}

// like emits [NOT] LIKE / ILIKE. Postgres's default LIKE escape is the
// backslash; under NO_BACKSLASH_ESCAPES MySQL has none, so the escape is
// always spelled out.
func (t *translator) like(e *pg.A_Expr, op string) {
	var negate, fold bool
	switch op {
	case "~~":
	case "!~~":
		negate = true
	case "~~*":
		fold = true
	case "!~~*":
		negate, fold = true, true
	default:
		t.unsupported("LIKE operator " + op)
		return
	}
	pattern, escape := e.GetRexpr(), (*pg.Node)(nil)
	if fc := pattern.GetFuncCall(); fc != nil {
		if name := stringList(fc.GetFuncname()); len(name) > 0 && name[len(name)-1] == "like_escape" && len(fc.GetArgs()) == 2 {
			pattern, escape = fc.GetArgs()[0], fc.GetArgs()[1]
		}
	}
	if fold {
		// ILIKE → LOWER(a) LIKE LOWER(b): case-insensitive whatever the
		// column's collation.
		t.w("LOWER(")
		t.expr(e.GetLexpr())
		t.w(")")
	} else {
		t.sub(e.GetLexpr())
	}
	if negate {
		t.w(" NOT")
	}
	t.w(" LIKE ")
	if fold {
		t.w("LOWER(")
		t.expr(pattern)
		t.w(")")
	} else {
		t.sub(pattern)
	}
	t.w(" ESCAPE ")
	if escape != nil {
		// MySQL takes only a one-character literal; Postgres also allows
		// '' (no escape) and expressions.
		esc, ok := stringConst(escape)
		if !ok || utf8.RuneCountInString(esc) != 1 {
			t.unsupported("LIKE ... ESCAPE other than one character")
			return
		}
		t.w(quoteString(esc))
	} else {
		t.w(`'\'`)
	}
}

func (t *translator) subLink(s *pg.SubLink) {
	sel := s.GetSubselect().GetSelectStmt()
	if sel == nil {
		t.unsupported("subquery")
		return
	}
	switch s.GetSubLinkType() {
	case pg.SubLinkType_EXISTS_SUBLINK:
		t.w("EXISTS (")
		t.selectStmt(sel)
		t.w(")")
	case pg.SubLinkType_EXPR_SUBLINK:
		t.w("(")
		t.selectStmt(sel)
		t.w(")")
	case pg.SubLinkType_ANY_SUBLINK, pg.SubLinkType_ALL_SUBLINK:
		op := operatorName(s.GetOperName())
		t.sub(s.GetTestexpr())
		switch {
		case s.GetSubLinkType() == pg.SubLinkType_ANY_SUBLINK && (op == "" || op == "="):
			t.w(" IN (") // x IN (SELECT ...) has no operator name
		default:
			my, ok := binaryOps[op]
			if !ok || !comparisonOps[op] {
				t.unsupported("subquery comparison " + op)
				return
			}
			quant := " ANY ("
			if s.GetSubLinkType() == pg.SubLinkType_ALL_SUBLINK {
				quant = " ALL ("
			}
			t.w(" ", my, quant)
		}
		t.selectStmt(sel)
		t.w(")")
	default:
		t.unsupported("subquery of type " + s.GetSubLinkType().String())
	}
}

// ---------------------------------------------------------------- casts

// typeBaseName returns a type's name without the pg_catalog qualifier, or ""
// for array types and types in other schemas.
func typeBaseName(tn *pg.TypeName) string {
	if len(tn.GetArrayBounds()) > 0 || tn.GetSetof() || tn.GetPctType() {
		return ""
	}
	names := stringList(tn.GetNames())
	switch {
	case len(names) == 1:
		return names[0]
	case len(names) == 2 && names[0] == "pg_catalog":
		return names[1]
	}
	return ""
}

// typmods returns a type's integer modifiers, e.g. [10 2] for numeric(10,2).
func (t *translator) typmods(tn *pg.TypeName) []int {
	var out []int
	for _, m := range tn.GetTypmods() {
		c := m.GetAConst()
		if c == nil || c.GetIval() == nil {
			t.unsupported("type modifier")
			return nil
		}
		out = append(out, int(c.GetIval().GetIval()))
	}
	return out
}

func (t *translator) typeCast(tc *pg.TypeCast) {
	arg := tc.GetArg()
	name := typeBaseName(tc.GetTypeName())
	mods := t.typmods(tc.GetTypeName())
	str, isStr := stringConst(arg)
	castTo := func(target string) {
		t.w("CAST(")
		t.expr(arg)
		t.w(" AS ", target, ")")
	}
	switch name {
	case "int2", "int4", "int8", "int", "integer", "smallint", "bigint":
		castTo("SIGNED")
	case "text", "varchar", "bpchar", "char", "name":
		if len(mods) == 1 {
			castTo(fmt.Sprintf("CHAR(%d)", mods[0]))
		} else {
			castTo("CHAR")
		}
	case "numeric", "decimal":
		switch len(mods) {
		case 0:
			// Unbounded numeric; MySQL's bare DECIMAL is DECIMAL(10,0) and
			// would round, so use the widest type instead.
			castTo("DECIMAL(65,30)")
		case 1:
			castTo(fmt.Sprintf("DECIMAL(%d)", mods[0]))
		default:
			castTo(fmt.Sprintf("DECIMAL(%d,%d)", mods[0], mods[1]))
		}
	case "float8":
		castTo("DOUBLE")
	case "float4":
		castTo("FLOAT")
	case "json", "jsonb":
		castTo("JSON")
	case "date":
		castTo("DATE")
	case "timestamp":
		castTo("DATETIME(6)")
	case "time":
		castTo("TIME(6)")
	case "bool", "boolean":
		// MySQL has no boolean type to cast to. A literal becomes TRUE or
		// FALSE, a parameter binds as the boolean it is.
		switch {
		case isStr:
			b, ok := parseBool(str)
			if !ok {
				t.unsupported("boolean literal " + str)
				return
			}
			t.w(map[bool]string{true: "TRUE", false: "FALSE"}[b])
		case arg.GetParamRef() != nil:
			t.expr(arg)
		case arg.GetAConst() != nil && arg.GetAConst().GetIval() != nil:
			t.w(map[bool]string{true: "TRUE", false: "FALSE"}[arg.GetAConst().GetIval().GetIval() != 0])
		case arg.GetAConst() != nil && arg.GetAConst().GetBoolval() != nil:
			t.expr(arg)
		default:
			t.unsupported("cast of an expression to boolean")
		}
	case "timestamptz":
		// Stored as DATETIME(6) in UTC. A parameter is bound as a time
		// value; a literal must carry its offset, since the Postgres
		// session's TimeZone is unknown here.
		switch {
		case arg.GetParamRef() != nil:
			t.expr(arg)
		case isStr:
			ts, ok := parseTimestamptz(str)
			if !ok {
				t.unsupported("timestamptz literal without a UTC offset")
				return
			}
			t.w(quoteString(ts.UTC().Format("2006-01-02 15:04:05.999999")))
		default:
			t.unsupported("cast of an expression to timestamptz")
		}
	case "uuid":
		if isStr {
			u, ok := canonicalUUID(str)
			if !ok {
				t.unsupported("malformed uuid literal")
				return
			}
			t.w(quoteString(u))
			return
		}
		castTo("CHAR(36)")
	case "bytea":
		switch {
		case arg.GetParamRef() != nil:
			t.expr(arg)
		case isStr && strings.HasPrefix(str, `\x`) && len(str)%2 == 0 && isHex(str[2:]):
			t.w("X", quoteString(str[2:]))
		default:
			t.unsupported("bytea literal in escape format")
		}
	case "":
		t.unsupported("cast to an array or qualified type")
	default:
		t.unsupported("cast to " + name)
	}
}

// stringConst returns the value of a string literal.
func stringConst(n *pg.Node) (string, bool) {
	c := n.GetAConst()
	if c == nil || c.GetSval() == nil {
		return "", false
	}
	return c.GetSval().GetSval(), true
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// parseTimestamptz accepts the common ISO spellings of a timestamp with an
// explicit offset ("2024-05-01 10:00:00+02", "...Z", "...+05:30").
func parseTimestamptz(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{
		"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07", "2006-01-02 15:04:05.999999999Z0700",
		"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999Z07", "2006-01-02T15:04:05.999999999Z0700",
		"2006-01-02 15:04Z07:00", "2006-01-02 15:04Z07",
	} {
		if ts, err := time.Parse(layout, s); err == nil {
			return ts, true
		}
	}
	return time.Time{}, false
}

// canonicalUUID accepts the input forms Postgres does (any case, optional
// braces and hyphens between groups of four digits) and returns the
// lower-case 8-4-4-4-12 form Postgres prints, which is what a CHAR(36)
// column should hold.
func canonicalUUID(s string) (string, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "{"), "}")
	s = strings.ToLower(strings.ReplaceAll(s, "-", ""))
	if len(s) != 32 || !isHex(s) {
		return "", false
	}
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:], true
}

// ---------------------------------------------------------------- functions

// mysqlFunc is a MySQL function equivalent to a Postgres one, with the
// argument counts both accept.
type mysqlFunc struct {
	name     string
	min, max int
}

// sameFuncs are functions with the same arguments and meaning in MySQL.
var sameFuncs = map[string]mysqlFunc{
	"lower": {"LOWER", 1, 1}, "upper": {"UPPER", 1, 1}, "abs": {"ABS", 1, 1},
	"ceil": {"CEIL", 1, 1}, "ceiling": {"CEILING", 1, 1}, "floor": {"FLOOR", 1, 1},
	"sign": {"SIGN", 1, 1}, "sqrt": {"SQRT", 1, 1}, "exp": {"EXP", 1, 1}, "ln": {"LN", 1, 1},
	"pi": {"PI", 0, 0}, "mod": {"MOD", 2, 2}, "round": {"ROUND", 1, 2},
	"power": {"POW", 2, 2}, "pow": {"POW", 2, 2},
	"replace": {"REPLACE", 3, 3}, "md5": {"MD5", 1, 1},
	"substr": {"SUBSTRING", 2, 3}, "substring": {"SUBSTRING", 2, 3},
	"concat_ws":   {"CONCAT_WS", 2, 1 << 16},
	"char_length": {"CHAR_LENGTH", 1, 1}, "character_length": {"CHAR_LENGTH", 1, 1},
	"length": {"CHAR_LENGTH", 1, 1}, "octet_length": {"LENGTH", 1, 1},
	"count": {"COUNT", 0, 1}, "sum": {"SUM", 1, 1}, "avg": {"AVG", 1, 1},
	"min": {"MIN", 1, 1}, "max": {"MAX", 1, 1},
}

func (t *translator) funcCall(f *pg.FuncCall) {
	name := stringList(f.GetFuncname())
	if len(name) == 0 || len(name) > 2 || (len(name) == 2 && name[0] != "pg_catalog") {
		t.unsupported("function " + strings.Join(name, "."))
		return
	}
	fn := name[len(name)-1]
	if f.GetAggFilter() != nil || f.GetOver() != nil || len(f.GetAggOrder()) > 0 || f.GetAggWithinGroup() || f.GetFuncVariadic() {
		t.unsupported("FILTER/OVER/ORDER BY/VARIADIC in function call")
		return
	}
	args := f.GetArgs()
	switch fn {
	case "now", "transaction_timestamp", "statement_timestamp", "clock_timestamp", "gen_random_uuid", "random":
		if len(args) > 0 || f.GetAggStar() {
			t.unsupported("function " + fn + " with arguments")
			return
		}
		t.w(map[string]string{
			"now": "NOW(6)", "transaction_timestamp": "NOW(6)", "statement_timestamp": "NOW(6)",
			"clock_timestamp": "SYSDATE(6)", "gen_random_uuid": "UUID()", "random": "RAND()",
		}[fn])
		return
	case "concat":
		if len(args) == 0 {
			t.unsupported("function concat without arguments")
			return
		}
		// concat() treats NULL as '' in Postgres; MySQL's CONCAT would
		// return NULL, CONCAT_WS skips NULLs.
		t.w("CONCAT_WS('', ")
		t.exprList(args)
		t.w(")")
		return
	case "btrim", "ltrim", "rtrim":
		if len(args) != 1 {
			// The two-argument forms strip a set of characters; MySQL's
			// TRIM strips a string.
			t.unsupported("function " + fn + " with characters")
			return
		}
		t.w(map[string]string{"btrim": "TRIM", "ltrim": "LTRIM", "rtrim": "RTRIM"}[fn], "(")
		t.expr(args[0])
		t.w(")")
		return
	case "left", "right":
		// A negative length counts from the other end in Postgres and
		// yields '' in MySQL: accept only a literal non-negative length.
		if len(args) != 2 || args[1].GetAConst().GetIval() == nil || args[1].GetAConst().GetIval().GetIval() < 0 {
			t.unsupported("function " + fn + " without a literal non-negative length")
			return
		}
		t.w(strings.ToUpper(fn), "(")
		t.exprList(args)
		t.w(")")
		return
	case "substr", "substring":
		// substring(s FROM 'pattern') is a regular-expression match in
		// Postgres; only the positional forms carry over.
		if len(args) >= 2 {
			if _, isStr := stringConst(args[1]); isStr {
				t.unsupported("function substring with a pattern")
				return
			}
		}
	case "trunc":
		if len(args) < 1 || len(args) > 2 {
			t.unsupported("function trunc with " + strconv.Itoa(len(args)) + " arguments")
			return
		}
		t.w("TRUNCATE(")
		t.expr(args[0])
		if len(args) > 1 {
			t.w(", ")
			t.expr(args[1])
		} else {
			t.w(", 0")
		}
		t.w(")")
		return
	}
	my, ok := sameFuncs[fn]
	if !ok {
		t.unsupported("function " + fn)
		return
	}
	if n := len(args); n < my.min || n > my.max || (f.GetAggStar() && n > 0) || (fn == "count" && n == 0 && !f.GetAggStar()) {
		t.unsupported("function " + fn + " with " + strconv.Itoa(n) + " arguments")
		return
	}
	t.w(my.name, "(")
	if f.GetAggDistinct() {
		t.w("DISTINCT ")
	}
	if f.GetAggStar() {
		t.w("*")
	}
	t.exprList(args)
	t.w(")")
}

func (t *translator) sqlValueFunction(f *pg.SQLValueFunction) {
	switch f.GetOp() {
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP:
		t.w("NOW(6)")
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N, pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
		t.w(fmt.Sprintf("NOW(%d)", min(max(f.GetTypmod(), 0), 6)))
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE:
		t.w("CURDATE()")
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pg.SQLValueFunctionOp_SVFOP_LOCALTIME:
		t.w("CURTIME(6)")
	default:
		t.unsupported(strings.ToLower(strings.TrimPrefix(f.GetOp().String(), "SVFOP_")))
	}
}

// IsUnsupported reports whether err is (or wraps) an *UnsupportedError.
func IsUnsupported(err error) bool {
	var u *UnsupportedError
	return errors.As(err, &u)
}
