package rewrite

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// analyzer collects facts while walking one statement's parse tree. The walk
// is generic (protobuf reflection over every node) so that tables and
// functions are found wherever the grammar puts them, including node types
// this file never names; only the few node types that carry facts are looked
// at explicitly.
type analyzer struct {
	tables []tableRef
	writes []string // targets of INSERT/UPDATE/DELETE/MERGE found anywhere
	funcs  []string
	ctes   []string // names of the common table expressions in scope
	params int

	hasDML      bool // an INSERT/UPDATE/DELETE/MERGE node occurs (writable CTE)
	forUpdate   bool
	returning   bool
	volatile    bool
	sideEffects bool
	serverInfo  bool
}

// analyzeStmt describes one top-level statement; SQL and Fingerprint are
// left for the caller.
func analyzeStmt(n *pg.Node) *Statement {
	a := &analyzer{}
	if n != nil {
		a.walk(n.ProtoReflect())
	}
	st := &Statement{}
	a.describe(st, n)
	st.Tables = a.tableNames()
	st.WriteTables = orderLike(st.Tables, st.WriteTables)
	st.Functions = a.funcs
	st.Params = a.params
	st.ForUpdate = a.forUpdate
	st.HasReturning = a.returning
	st.HasVolatile = a.volatile
	st.HasSideEffects = a.sideEffects
	st.ServerInfo = a.serverInfo
	return st
}

// tableRef is a table name and the byte offset where it first appears, so
// that Tables can list names in the order of the text rather than of the
// parse tree (CREATE TABLE t AS SELECT ... keeps its query before its target).
type tableRef struct {
	name string
	loc  int32
}

// addTable records a table name seen at loc.
func (a *analyzer) addTable(name string, loc int32) {
	for i, t := range a.tables {
		if t.name == name {
			if loc < t.loc {
				a.tables[i].loc = loc
			}
			return
		}
	}
	a.tables = append(a.tables, tableRef{name, loc})
}

// tableNames returns the table names in order of appearance in the text.
func (a *analyzer) tableNames() []string {
	if len(a.tables) == 0 {
		return nil
	}
	sort.SliceStable(a.tables, func(i, j int) bool { return a.tables[i].loc < a.tables[j].loc })
	names := make([]string, len(a.tables))
	for i, t := range a.tables {
		names[i] = t.name
	}
	return names
}

// orderLike returns subset ordered as the names appear in all (names not in
// all keep their order, at the end).
func orderLike(all, subset []string) []string {
	if len(subset) < 2 {
		return subset
	}
	out := make([]string, 0, len(subset))
	for _, n := range all {
		for _, m := range subset {
			if n == m {
				out = append(out, n)
				break
			}
		}
	}
	for _, m := range subset {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// walk visits m and everything below it.
func (a *analyzer) walk(m protoreflect.Message) {
	var with *pg.WithClause
	switch x := m.Interface().(type) {
	case *pg.RangeVar:
		a.addRangeVar(x)
		return // only an alias below
	case *pg.FuncCall:
		a.addFunc(x.GetFuncname())
	case *pg.SQLValueFunction:
		if isTimeValueFunction(x.GetOp()) {
			a.volatile = true
		} else {
			a.serverInfo = true // CURRENT_USER, CURRENT_SCHEMA, ...
		}
	case *pg.TypeCast:
		if isNowLiteral(x) {
			a.volatile = true
		}
	case *pg.ColumnRef:
		// A system column (xmin for optimistic locking, ctid, tableoid)
		// holds the server's own bookkeeping, which differs on another
		// server. User columns cannot take these names; an alias of a
		// subquery can, and is then wrongly taken for one, which only
		// leaves the read uncompared.
		if f := x.GetFields(); len(f) > 0 && systemColumns[f[len(f)-1].GetString_().GetSval()] {
			a.serverInfo = true
		}
	case *pg.ParamRef:
		if n := int(x.GetNumber()); n > a.params {
			a.params = n
		}
	case *pg.LockingClause:
		a.forUpdate = true
	case *pg.SelectStmt:
		with = x.GetWithClause()
	case *pg.InsertStmt:
		a.dml(x.GetRelation(), x.GetReturningList())
		with = x.GetWithClause()
	case *pg.UpdateStmt:
		a.dml(x.GetRelation(), x.GetReturningList())
		with = x.GetWithClause()
	case *pg.DeleteStmt:
		a.dml(x.GetRelation(), x.GetReturningList())
		with = x.GetWithClause()
	case *pg.MergeStmt:
		a.dml(x.GetRelation(), x.GetReturningList())
		with = x.GetWithClause()
	case *pg.CreateFunctionStmt:
		// A SQL-standard body (BEGIN ATOMIC ... END) runs later, when the
		// function is called; its tables and writes are not this
		// statement's.
		return
	case *pg.CompositeTypeStmt:
		// CREATE TYPE t AS (...) names a type with a RangeVar; it is not a
		// table.
		return
	}

	base := len(a.ctes)
	if with != nil {
		a.walkWith(with)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if with != nil && fd.Name() == "with_clause" {
			return true // walked above, with its scoping rules
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				a.walk(l.Get(i).Message())
			}
			return true
		}
		a.walk(v.Message())
		return true
	})
	a.ctes = a.ctes[:base]
}

// walkWith walks the queries of a WITH clause, bringing each CTE name into
// scope the way PostgreSQL does: in a plain WITH a CTE sees only the ones
// before it (so WITH users AS (SELECT * FROM users) reads the real table); in
// WITH RECURSIVE every CTE sees all of them. The names stay in scope for the
// rest of the statement; walk pops them when it leaves the statement.
func (a *analyzer) walkWith(w *pg.WithClause) {
	if w.GetRecursive() {
		for _, n := range w.GetCtes() {
			if cte := n.GetCommonTableExpr(); cte != nil {
				a.ctes = append(a.ctes, cte.GetCtename())
			}
		}
	}
	for _, n := range w.GetCtes() {
		cte := n.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		if q := cte.GetCtequery(); q != nil {
			a.walk(q.ProtoReflect())
		}
		if !w.GetRecursive() {
			a.ctes = append(a.ctes, cte.GetCtename())
		}
	}
}

// dml records the target of a data-modifying statement.
func (a *analyzer) dml(rel *pg.RangeVar, returning []*pg.Node) {
	a.hasDML = true
	if len(returning) > 0 {
		a.returning = true
	}
	if rel != nil {
		// The target of a write is always a table, even when a CTE of the
		// same name is in scope, so it bypasses addRangeVar's CTE check.
		name := rangeVarName(rel)
		a.addTable(name, rel.GetLocation())
		a.writes = appendUnique(a.writes, name)
	}
}

// addRangeVar records a table reference unless it names a CTE in scope.
func (a *analyzer) addRangeVar(rv *pg.RangeVar) {
	if rv.GetSchemaname() == "" && rv.GetCatalogname() == "" {
		for _, c := range a.ctes {
			if c == rv.GetRelname() {
				return
			}
		}
	}
	a.addTable(rangeVarName(rv), rv.GetLocation())
	switch schema := rv.GetSchemaname(); {
	case schema == "pg_catalog", schema == "information_schema",
		schema == "" && strings.HasPrefix(rv.GetRelname(), "pg_"):
		a.serverInfo = true
	}
}

// addFunc records a function call and whether it is volatile or has side
// effects. The lists are matched on the unqualified name so that
// pg_catalog.now() and extension functions in any schema are recognised.
func (a *analyzer) addFunc(name []*pg.Node) {
	parts := stringList(name)
	if len(parts) == 0 {
		return
	}
	a.funcs = appendUnique(a.funcs, strings.Join(parts, "."))
	base := parts[len(parts)-1]
	if volatileFuncs[base] {
		a.volatile = true
	}
	if sideEffectFuncs[base] {
		a.sideEffects = true
	}
	if serverInfoFuncs[base] || strings.HasPrefix(base, "pg_") || strings.HasPrefix(base, "has_") {
		a.serverInfo = true
	}
}

// setValue renders the value list of a SET as the server prints it (SHOW):
// strings as they are, or for a list of names (search_path's `app,
// "$user", public`) quoted as identifiers where they need it; numbers as
// written. unknown is set for a value it cannot render (an interval with
// units, say).
func setValue(args []*pg.Node, names bool) (value string, unknown bool) {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		c := a.GetAConst()
		switch {
		case c == nil:
			return "", true
		case c.GetSval() != nil && names:
			parts = append(parts, quoteIdentIfNeeded(c.GetSval().GetSval()))
		case c.GetSval() != nil:
			parts = append(parts, c.GetSval().GetSval())
		case c.GetIval() != nil:
			parts = append(parts, strconv.FormatInt(int64(c.GetIval().GetIval()), 10))
		case c.GetFval() != nil:
			parts = append(parts, c.GetFval().GetFval())
		case c.GetBoolval() != nil:
			parts = append(parts, strconv.FormatBool(c.GetBoolval().GetBoolval()))
		default:
			return "", true
		}
	}
	return strings.Join(parts, ", "), false
}

// quoteIdentIfNeeded quotes a name unless it is a lower-case identifier
// that needs no quotes (keywords aside, which a search_path rarely holds).
func quoteIdentIfNeeded(s string) string {
	plain := s != ""
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && (r >= '0' && r <= '9' || r == '$')) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return quoteIdent(s)
}

// systemColumns are the system columns every table has.
var systemColumns = map[string]bool{"xmin": true, "xmax": true, "cmin": true, "cmax": true, "ctid": true, "tableoid": true}

// serverInfoFuncs describe the server or the session rather than the data
// (besides every pg_* and has_*_privilege function).
var serverInfoFuncs = map[string]bool{
	"version": true, "current_setting": true, "current_database": true,
	"current_schema": true, "current_schemas": true, "current_query": true,
	"inet_server_addr": true, "inet_server_port": true, "inet_client_addr": true, "inet_client_port": true,
	"txid_current": true, "txid_current_if_assigned": true, "txid_current_snapshot": true,
	// The session's sequence state: another server's session has none.
	"currval": true, "lastval": true,
	"obj_description": true, "col_description": true, "shobj_description": true,
	"format_type": true, "to_regclass": true, "to_regtype": true, "to_regproc": true,
	"to_regprocedure": true, "to_regnamespace": true, "to_regrole": true,
}

// volatileFuncs are functions whose result differs between executions or
// between servers, so a statement using them cannot be replayed elsewhere
// with the same outcome.
var volatileFuncs = map[string]bool{
	"now": true, "clock_timestamp": true, "statement_timestamp": true,
	"transaction_timestamp": true, "timeofday": true,
	"random": true, "random_normal": true, "setseed": true,
	"nextval": true, "currval": true, "lastval": true, "setval": true,
	"gen_random_uuid": true, "uuid_generate_v1": true, "uuid_generate_v1mc": true,
	"uuid_generate_v4": true, "uuidv4": true, "uuidv7": true,
	"txid_current": true, "txid_current_if_assigned": true,
	"pg_current_xact_id": true, "pg_current_xact_id_if_assigned": true,
	"pg_backend_pid": true, "inet_server_addr": true, "inet_server_port": true,
	"pg_postmaster_start_time": true, "version": true,
}

// sideEffectFuncs are functions that change state beyond their own result.
var sideEffectFuncs = map[string]bool{
	"nextval": true, "setval": true, "set_config": true, "pg_notify": true,
	"pg_advisory_lock": true, "pg_advisory_lock_shared": true,
	"pg_advisory_unlock": true, "pg_advisory_unlock_shared": true, "pg_advisory_unlock_all": true,
	"pg_advisory_xact_lock": true, "pg_advisory_xact_lock_shared": true,
	"pg_try_advisory_lock": true, "pg_try_advisory_lock_shared": true,
	"pg_try_advisory_xact_lock": true, "pg_try_advisory_xact_lock_shared": true,
	"pg_cancel_backend": true, "pg_terminate_backend": true, "pg_reload_conf": true,
	"pg_switch_wal": true, "pg_create_restore_point": true, "pg_logical_emit_message": true,
	"lo_create": true, "lo_creat": true, "lo_import": true, "lo_export": true, "lo_unlink": true,
	"lo_from_bytea": true, "lo_put": true, "lowrite": true, "lo_truncate": true, "lo_truncate64": true,
	"dblink_exec": true, "pg_stat_reset": true,
}

// isTimeValueFunction reports whether a SQL value function reads the clock
// (CURRENT_DATE, CURRENT_TIMESTAMP, LOCALTIME, ...), as opposed to
// CURRENT_USER and friends.
func isTimeValueFunction(op pg.SQLValueFunctionOp) bool {
	switch op {
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE,
		pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N,
		pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N,
		pg.SQLValueFunctionOp_SVFOP_LOCALTIME, pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N,
		pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
		return true
	}
	return false
}

// isNowLiteral reports whether a cast turns one of PostgreSQL's special
// date/time input strings ('now', 'today', ...) into a date/time value, which
// reads the clock as surely as now() does.
func isNowLiteral(tc *pg.TypeCast) bool {
	c := tc.GetArg().GetAConst()
	if c == nil || c.GetSval() == nil {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(c.GetSval().GetSval())) {
	case "now", "today", "tomorrow", "yesterday":
	default:
		return false
	}
	names := stringList(tc.GetTypeName().GetNames())
	if len(names) == 0 {
		return false
	}
	switch names[len(names)-1] {
	case "date", "timestamp", "timestamptz", "time", "timetz":
		return true
	}
	return false
}

// describe sets the Kind, TxOp, Command, Name, WriteTables and friends of st
// from the top-level node. The walk has already run.
func (a *analyzer) describe(st *Statement, n *pg.Node) {
	var ddl []string // tables a DDL statement creates, alters or drops
	target := func(rv *pg.RangeVar) {
		if rv != nil {
			name := rangeVarName(rv)
			a.addTable(name, rv.GetLocation())
			ddl = appendUnique(ddl, name)
		}
	}
	setDDL := func(cmd string) { st.Kind, st.Command = DDL, cmd }
	// creates notes whether a relation being created is temporary.
	creates := func(rv *pg.RangeVar, onCommit pg.OnCommitAction) {
		if rv != nil && (rv.GetRelpersistence() == "t" || rv.GetSchemaname() == "pg_temp") {
			st.Temporary = true
			st.TempDropOnCommit = onCommit == pg.OnCommitAction_ONCOMMIT_DROP
		}
	}

	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		st.Command = "SELECT"
		switch {
		case x.SelectStmt.GetIntoClause() != nil:
			setDDL("SELECT INTO")
			target(x.SelectStmt.GetIntoClause().GetRel())
			creates(x.SelectStmt.GetIntoClause().GetRel(), x.SelectStmt.GetIntoClause().GetOnCommit())
			ddl = appendUnique(ddl, a.writes...)
		case a.hasDML:
			st.Kind = Write
		default:
			st.Kind = Read
		}
	case *pg.Node_InsertStmt:
		st.Kind, st.Command = Write, "INSERT"
	case *pg.Node_UpdateStmt:
		st.Kind, st.Command = Write, "UPDATE"
	case *pg.Node_DeleteStmt:
		st.Kind, st.Command = Write, "DELETE"
	case *pg.Node_MergeStmt:
		st.Kind, st.Command = Write, "MERGE"
	case *pg.Node_TruncateStmt:
		st.Kind, st.Command = Write, "TRUNCATE TABLE"
		for _, r := range x.TruncateStmt.GetRelations() {
			if rv := r.GetRangeVar(); rv != nil {
				a.writes = appendUnique(a.writes, rangeVarName(rv))
			}
		}
	case *pg.Node_CopyStmt:
		if x.CopyStmt.GetIsFrom() {
			st.Kind, st.Command = Write, "COPY FROM"
			if rv := x.CopyStmt.GetRelation(); rv != nil {
				a.writes = appendUnique(a.writes, rangeVarName(rv))
			}
		} else {
			st.Kind, st.Command = Read, "COPY TO"
			if a.hasDML { // COPY (INSERT ... RETURNING ...) TO STDOUT
				st.Kind = Write
			}
		}
	case *pg.Node_ExplainStmt:
		a.explain(st, x.ExplainStmt)
		return

	case *pg.Node_TransactionStmt:
		a.transaction(st, x.TransactionStmt)
		return

	case *pg.Node_VariableSetStmt:
		v := x.VariableSetStmt
		st.Kind, st.Command = Session, "SET"
		st.Name = strings.ToLower(v.GetName())
		st.SetLocal = v.GetIsLocal()
		switch v.GetKind() {
		case pg.VariableSetKind_VAR_SET_VALUE:
			st.SetValue, st.SetUnknown = setValue(v.GetArgs(), st.Name == "search_path")
		case pg.VariableSetKind_VAR_SET_CURRENT:
			st.SetUnknown = true
		case pg.VariableSetKind_VAR_RESET:
			st.Command = "RESET"
		case pg.VariableSetKind_VAR_RESET_ALL:
			st.Command, st.Name = "RESET", "all"
		}
	case *pg.Node_VariableShowStmt:
		st.Kind, st.Command = Session, "SHOW"
		st.Name = strings.ToLower(x.VariableShowStmt.GetName())
	case *pg.Node_DiscardStmt:
		st.Kind = Session
		st.Command = "DISCARD " + strings.TrimPrefix(x.DiscardStmt.GetTarget().String(), "DISCARD_")
	case *pg.Node_PrepareStmt:
		st.Kind, st.Command = Session, "PREPARE"
		st.Name = x.PrepareStmt.GetName()
		st.Body = analyzeStmt(x.PrepareStmt.GetQuery())
	case *pg.Node_DeallocateStmt:
		st.Kind, st.Command = Session, "DEALLOCATE"
		if x.DeallocateStmt.GetIsall() {
			st.Command = "DEALLOCATE ALL"
		} else {
			st.Name = x.DeallocateStmt.GetName()
		}
	case *pg.Node_ListenStmt:
		st.Kind, st.Command = Session, "LISTEN"
		st.Name = x.ListenStmt.GetConditionname()
	case *pg.Node_UnlistenStmt:
		st.Kind, st.Command = Session, "UNLISTEN"
		st.Name = x.UnlistenStmt.GetConditionname()
		if st.Name == "" {
			st.Name = "*"
		}
	case *pg.Node_LoadStmt:
		st.Kind, st.Command = Session, "LOAD"
	case *pg.Node_ConstraintsSetStmt:
		st.Kind, st.Command = Session, "SET CONSTRAINTS"
	case *pg.Node_DeclareCursorStmt:
		st.Kind, st.Command = Session, "DECLARE CURSOR"
		st.Name = x.DeclareCursorStmt.GetPortalname()
	case *pg.Node_FetchStmt:
		st.Kind, st.Command = Session, "FETCH"
		if x.FetchStmt.GetIsmove() {
			st.Command = "MOVE"
		}
		st.Name = x.FetchStmt.GetPortalname()
	case *pg.Node_ClosePortalStmt:
		st.Kind, st.Command = Session, "CLOSE CURSOR"
		st.Name = x.ClosePortalStmt.GetPortalname()
		if st.Name == "" {
			st.Command = "CLOSE CURSOR ALL"
		}

	case *pg.Node_ExecuteStmt:
		st.Kind, st.Command = Other, "EXECUTE"
		st.Name = x.ExecuteStmt.GetName()
	case *pg.Node_CallStmt:
		st.Kind, st.Command = Other, "CALL"
	case *pg.Node_DoStmt:
		st.Kind, st.Command = Other, "DO"
	case *pg.Node_NotifyStmt:
		st.Kind, st.Command = Other, "NOTIFY"
		st.Name = x.NotifyStmt.GetConditionname()
	case *pg.Node_VacuumStmt:
		st.Kind, st.Command = Other, "ANALYZE"
		if x.VacuumStmt.GetIsVacuumcmd() {
			st.Command = "VACUUM"
		}
	case *pg.Node_LockStmt:
		st.Kind, st.Command = Other, "LOCK TABLE"
	case *pg.Node_ClusterStmt:
		st.Kind, st.Command = Other, "CLUSTER"
	case *pg.Node_ReindexStmt:
		st.Kind, st.Command = Other, "REINDEX"
	case *pg.Node_CheckPointStmt:
		st.Kind, st.Command = Other, "CHECKPOINT"
	case *pg.Node_AlterSystemStmt:
		st.Kind, st.Command = Other, "ALTER SYSTEM"
	case *pg.Node_RefreshMatViewStmt:
		st.Kind, st.Command = Other, "REFRESH MATERIALIZED VIEW"
		if rv := x.RefreshMatViewStmt.GetRelation(); rv != nil {
			a.writes = appendUnique(a.writes, rangeVarName(rv))
		}

	// DDL whose command or target needs more than the node's type name.
	case *pg.Node_CreateStmt:
		setDDL("CREATE TABLE")
		target(x.CreateStmt.GetRelation())
		creates(x.CreateStmt.GetRelation(), x.CreateStmt.GetOncommit())
	case *pg.Node_CreateForeignTableStmt:
		setDDL("CREATE FOREIGN TABLE")
		target(x.CreateForeignTableStmt.GetBaseStmt().GetRelation())
	case *pg.Node_CreateTableAsStmt:
		c := x.CreateTableAsStmt
		setDDL("CREATE TABLE AS")
		if c.GetObjtype() == pg.ObjectType_OBJECT_MATVIEW {
			st.Command = "CREATE MATERIALIZED VIEW"
		}
		target(c.GetInto().GetRel())
		creates(c.GetInto().GetRel(), c.GetInto().GetOnCommit())
		ddl = appendUnique(ddl, a.writes...)
	case *pg.Node_AlterTableStmt:
		setDDL("ALTER " + objectTypeName(x.AlterTableStmt.GetObjtype()))
		target(x.AlterTableStmt.GetRelation())
	case *pg.Node_IndexStmt:
		setDDL("CREATE INDEX")
		target(x.IndexStmt.GetRelation())
	case *pg.Node_ViewStmt:
		setDDL("CREATE VIEW")
		target(x.ViewStmt.GetView())
		creates(x.ViewStmt.GetView(), pg.OnCommitAction_ONCOMMIT_NOOP)
	case *pg.Node_CreateSeqStmt:
		setDDL("CREATE SEQUENCE")
		target(x.CreateSeqStmt.GetSequence())
		creates(x.CreateSeqStmt.GetSequence(), pg.OnCommitAction_ONCOMMIT_NOOP)
	case *pg.Node_AlterSeqStmt:
		setDDL("ALTER SEQUENCE")
		target(x.AlterSeqStmt.GetSequence())
	case *pg.Node_CreateTrigStmt:
		setDDL("CREATE TRIGGER")
		target(x.CreateTrigStmt.GetRelation())
	case *pg.Node_RuleStmt:
		setDDL("CREATE RULE")
		target(x.RuleStmt.GetRelation())
	case *pg.Node_CreatePolicyStmt:
		setDDL("CREATE POLICY")
		target(x.CreatePolicyStmt.GetTable())
	case *pg.Node_AlterPolicyStmt:
		setDDL("ALTER POLICY")
		target(x.AlterPolicyStmt.GetTable())
	case *pg.Node_DropStmt:
		d := x.DropStmt
		setDDL("DROP " + objectTypeName(d.GetRemoveType()))
		if isRelationType(d.GetRemoveType()) {
			for _, o := range d.GetObjects() {
				if name := strings.Join(stringList(o.GetList().GetItems()), "."); name != "" {
					a.addTable(name, math.MaxInt32)
					ddl = appendUnique(ddl, name)
				}
			}
		}
	case *pg.Node_RenameStmt:
		r := x.RenameStmt
		ot := r.GetRenameType()
		switch ot {
		case pg.ObjectType_OBJECT_COLUMN, pg.ObjectType_OBJECT_TABCONSTRAINT, pg.ObjectType_OBJECT_ATTRIBUTE:
			// Renaming a part of a relation: name the relation's kind
			// (ALTER TABLE t RENAME COLUMN ...).
			ot = r.GetRelationType()
		}
		setDDL("ALTER " + objectTypeName(ot))
		target(r.GetRelation())
	case *pg.Node_AlterObjectSchemaStmt:
		setDDL("ALTER " + objectTypeName(x.AlterObjectSchemaStmt.GetObjectType()))
		target(x.AlterObjectSchemaStmt.GetRelation())
	case *pg.Node_AlterOwnerStmt:
		setDDL("ALTER " + objectTypeName(x.AlterOwnerStmt.GetObjectType()))
		target(x.AlterOwnerStmt.GetRelation())
	case *pg.Node_AlterObjectDependsStmt:
		setDDL("ALTER " + objectTypeName(x.AlterObjectDependsStmt.GetObjectType()))
		target(x.AlterObjectDependsStmt.GetRelation())
	case *pg.Node_CommentStmt:
		c := x.CommentStmt
		setDDL("COMMENT")
		parts := stringList(c.GetObject().GetList().GetItems())
		switch {
		case c.GetObjtype() == pg.ObjectType_OBJECT_COLUMN && len(parts) > 1:
			parts = parts[:len(parts)-1]
		case !isRelationType(c.GetObjtype()):
			parts = nil
		}
		if name := strings.Join(parts, "."); name != "" {
			a.addTable(name, math.MaxInt32)
			ddl = appendUnique(ddl, name)
		}
	case *pg.Node_GrantStmt:
		setDDL("REVOKE")
		if x.GrantStmt.GetIsGrant() {
			st.Command = "GRANT"
		}
	case *pg.Node_GrantRoleStmt:
		setDDL("REVOKE ROLE")
		if x.GrantRoleStmt.GetIsGrant() {
			st.Command = "GRANT ROLE"
		}
	case *pg.Node_DefineStmt:
		setDDL("CREATE " + objectTypeName(x.DefineStmt.GetKind()))
	case *pg.Node_CreateFunctionStmt:
		setDDL("CREATE FUNCTION")
		if x.CreateFunctionStmt.GetIsProcedure() {
			st.Command = "CREATE PROCEDURE"
		}
	case *pg.Node_AlterFunctionStmt:
		setDDL("ALTER " + objectTypeName(x.AlterFunctionStmt.GetObjtype()))
	case *pg.Node_CompositeTypeStmt, *pg.Node_CreateEnumStmt, *pg.Node_CreateRangeStmt:
		setDDL("CREATE TYPE")
	case *pg.Node_AlterEnumStmt:
		setDDL("ALTER TYPE")
	case *pg.Node_CreatePlangStmt:
		setDDL("CREATE LANGUAGE")
	case *pg.Node_CreateFdwStmt:
		setDDL("CREATE FOREIGN DATA WRAPPER")
	case *pg.Node_AlterFdwStmt:
		setDDL("ALTER FOREIGN DATA WRAPPER")
	case *pg.Node_CreateForeignServerStmt:
		setDDL("CREATE SERVER")
	case *pg.Node_AlterForeignServerStmt:
		setDDL("ALTER SERVER")
	case *pg.Node_CreateAmStmt:
		setDDL("CREATE ACCESS METHOD")
	case *pg.Node_CreateOpClassStmt:
		setDDL("CREATE OPERATOR CLASS")
	case *pg.Node_CreateOpFamilyStmt:
		setDDL("CREATE OPERATOR FAMILY")
	case *pg.Node_AlterOpFamilyStmt:
		setDDL("ALTER OPERATOR FAMILY")
	case *pg.Node_CreatedbStmt:
		setDDL("CREATE DATABASE")
	case *pg.Node_DropdbStmt:
		setDDL("DROP DATABASE")
	case *pg.Node_AlterDatabaseStmt, *pg.Node_AlterDatabaseSetStmt, *pg.Node_AlterDatabaseRefreshCollStmt:
		setDDL("ALTER DATABASE")
	case *pg.Node_AlterRoleSetStmt:
		setDDL("ALTER ROLE")
	case *pg.Node_CreateStatsStmt:
		setDDL("CREATE STATISTICS")
	case *pg.Node_AlterStatsStmt:
		setDDL("ALTER STATISTICS")
	case *pg.Node_SecLabelStmt:
		setDDL("SECURITY LABEL")
	case *pg.Node_AlterTsdictionaryStmt:
		setDDL("ALTER TEXT SEARCH DICTIONARY")
	case *pg.Node_AlterTsconfigurationStmt:
		setDDL("ALTER TEXT SEARCH CONFIGURATION")
	case *pg.Node_AlterTableMoveAllStmt:
		setDDL("ALTER TABLE")
	case *pg.Node_AlterTableSpaceOptionsStmt:
		setDDL("ALTER TABLESPACE")
	case *pg.Node_AlterExtensionContentsStmt:
		setDDL("ALTER EXTENSION")
	case *pg.Node_AlterEventTrigStmt:
		setDDL("ALTER EVENT TRIGGER")
	case *pg.Node_CreateEventTrigStmt:
		setDDL("CREATE EVENT TRIGGER")
	default:
		// The rest are named after what they do (CreateSchemaStmt,
		// DropRoleStmt, AlterDomainStmt, ReassignOwnedStmt, ...): derive
		// the command from the node type and treat the catalog-changing
		// verbs as DDL.
		st.Command, st.Kind = commandFromNodeName(n)
	}

	switch st.Kind {
	case Write, Other:
		st.WriteTables = a.writes
	case DDL:
		st.WriteTables = ddl
	case Read:
		// A COPY TO or SELECT has no targets; a writable CTE made it a
		// Write above.
	}
}

// explain classifies EXPLAIN by the statement it explains: without ANALYZE
// nothing is executed, so it is a Read whatever the statement; with ANALYZE
// the statement runs and EXPLAIN has its kind.
func (a *analyzer) explain(st *Statement, e *pg.ExplainStmt) {
	// The walk has already collected the explained statement's tables,
	// functions and flags; only its kind and targets are needed here.
	inner := analyzeStmt(e.GetQuery())
	st.Command = "EXPLAIN"
	st.Name = inner.Name
	// The answer is a plan: another server's (another engine's) differs
	// whatever the data.
	a.serverInfo = true
	if explainAnalyzes(e.GetOptions()) {
		st.Kind = inner.Kind
		st.WriteTables = inner.WriteTables
		return
	}
	st.Kind = Read
	a.forUpdate, a.returning, a.sideEffects = false, false, false
}

// explainAnalyzes reports whether EXPLAIN's options turn ANALYZE on: either
// the bare keyword (EXPLAIN ANALYZE, EXPLAIN (ANALYZE)) or an argument that
// PostgreSQL's boolean parser accepts as true.
func explainAnalyzes(opts []*pg.Node) bool {
	on := false
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.GetDefname() != "analyze" {
			continue
		}
		on = defElemBool(d, true)
	}
	return on
}

// defElemBool reads a DefElem's argument as a boolean, returning ifAbsent
// when the option was given without one.
func defElemBool(d *pg.DefElem, ifAbsent bool) bool {
	arg := d.GetArg()
	if arg == nil {
		return ifAbsent
	}
	switch v := arg.GetNode().(type) {
	case *pg.Node_Boolean:
		return v.Boolean.GetBoolval()
	case *pg.Node_Integer:
		return v.Integer.GetIval() != 0
	case *pg.Node_String_:
		b, ok := parseBool(v.String_.GetSval())
		return ok && b
	case *pg.Node_AConst:
		switch c := v.AConst.GetVal().(type) {
		case *pg.A_Const_Ival:
			return c.Ival.GetIval() != 0
		case *pg.A_Const_Boolval:
			return c.Boolval.GetBoolval()
		case *pg.A_Const_Sval:
			b, ok := parseBool(c.Sval.GetSval())
			return ok && b
		}
	}
	return false
}

// parseBool implements PostgreSQL's boolean input: true/false, yes/no, on/off,
// 1/0 and unique prefixes of the words, case-insensitively.
func parseBool(s string) (value, ok bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return false, false
	}
	switch s {
	case "1":
		return true, true
	case "0":
		return false, true
	case "o", "of": // ambiguous between on and off
		return false, false
	}
	for _, w := range []string{"true", "yes", "on"} {
		if strings.HasPrefix(w, s) {
			return true, true
		}
	}
	for _, w := range []string{"false", "no", "off"} {
		if strings.HasPrefix(w, s) {
			return false, true
		}
	}
	return false, false
}

// transaction describes BEGIN, COMMIT, SAVEPOINT and the rest.
func (a *analyzer) transaction(st *Statement, t *pg.TransactionStmt) {
	st.Kind = Tx
	st.TxChain = t.GetChain()
	switch t.GetKind() {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN, pg.TransactionStmtKind_TRANS_STMT_START:
		st.TxOp, st.Command = Begin, "BEGIN"
		if t.GetKind() == pg.TransactionStmtKind_TRANS_STMT_START {
			st.Command = "START TRANSACTION"
		}
		for _, o := range t.GetOptions() {
			if d := o.GetDefElem(); d != nil && d.GetDefname() == "transaction_read_only" {
				st.TxReadOnly = defElemBool(d, true)
			}
		}
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT:
		st.TxOp, st.Command = Commit, "COMMIT"
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		st.TxOp, st.Command = Rollback, "ROLLBACK"
	case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		st.TxOp, st.Command, st.Name = Savepoint, "SAVEPOINT", t.GetSavepointName()
	case pg.TransactionStmtKind_TRANS_STMT_RELEASE:
		st.TxOp, st.Command, st.Name = Release, "RELEASE", t.GetSavepointName()
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		st.TxOp, st.Command, st.Name = RollbackTo, "ROLLBACK TO", t.GetSavepointName()
	case pg.TransactionStmtKind_TRANS_STMT_PREPARE:
		st.TxOp, st.Command, st.Name = Prepare, "PREPARE TRANSACTION", t.GetGid()
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		st.TxOp, st.Command, st.Name = CommitPrepared, "COMMIT PREPARED", t.GetGid()
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		st.TxOp, st.Command, st.Name = RollbackPrepared, "ROLLBACK PREPARED", t.GetGid()
	default:
		// Not produced by the grammar; keep the statement forwardable.
		st.Kind, st.Command = Other, "TRANSACTION"
	}
}

// commandFromNodeName derives a command from a statement node's type name,
// e.g. CreateSchemaStmt → "CREATE SCHEMA", and its kind from the verb.
func commandFromNodeName(n *pg.Node) (string, Kind) {
	if n == nil || n.GetNode() == nil {
		return "UNKNOWN", Other
	}
	// The oneof wrapper (Node_X) has a single field holding the *X message.
	var inner protoreflect.Message
	n.ProtoReflect().Range(func(_ protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		inner = v.Message()
		return false
	})
	if inner == nil {
		return "UNKNOWN", Other
	}
	name := strings.TrimSuffix(string(inner.Descriptor().Name()), "Stmt")
	var words []string
	start := 0
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) {
			words = append(words, strings.ToUpper(name[start:i]))
			start = i
		}
	}
	words = append(words, strings.ToUpper(name[start:]))
	cmd := strings.Join(words, " ")
	switch words[0] {
	case "CREATE", "ALTER", "DROP", "REASSIGN", "IMPORT":
		return cmd, DDL
	}
	return cmd, Other
}

// objectTypeName spells an ObjectType the way SQL does, e.g.
// OBJECT_MATVIEW → "MATERIALIZED VIEW".
func objectTypeName(t pg.ObjectType) string {
	switch t {
	case pg.ObjectType_OBJECT_MATVIEW:
		return "MATERIALIZED VIEW"
	case pg.ObjectType_OBJECT_FDW:
		return "FOREIGN DATA WRAPPER"
	case pg.ObjectType_OBJECT_FOREIGN_SERVER:
		return "SERVER"
	case pg.ObjectType_OBJECT_STATISTIC_EXT:
		return "STATISTICS"
	case pg.ObjectType_OBJECT_TSCONFIGURATION:
		return "TEXT SEARCH CONFIGURATION"
	case pg.ObjectType_OBJECT_TSDICTIONARY:
		return "TEXT SEARCH DICTIONARY"
	case pg.ObjectType_OBJECT_TSPARSER:
		return "TEXT SEARCH PARSER"
	case pg.ObjectType_OBJECT_TSTEMPLATE:
		return "TEXT SEARCH TEMPLATE"
	case pg.ObjectType_OBJECT_OPCLASS:
		return "OPERATOR CLASS"
	case pg.ObjectType_OBJECT_OPFAMILY:
		return "OPERATOR FAMILY"
	case pg.ObjectType_OBJECT_LARGEOBJECT:
		return "LARGE OBJECT"
	case pg.ObjectType_OBJECT_DOMCONSTRAINT:
		return "DOMAIN"
	case pg.ObjectType_OBJECT_TABCONSTRAINT:
		return "TABLE"
	case pg.ObjectType_OBJECT_TYPE_UNDEFINED:
		return "OBJECT"
	}
	return strings.ReplaceAll(strings.TrimPrefix(t.String(), "OBJECT_"), "_", " ")
}

// isRelationType reports whether objects of type t live in pg_class and are
// named like tables (schema.name).
func isRelationType(t pg.ObjectType) bool {
	switch t {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_SEQUENCE:
		return true
	}
	return false
}

// rangeVarName renders a table reference as "schema.name" (or
// "catalog.schema.name"), using the names as the parser folded them.
func rangeVarName(rv *pg.RangeVar) string {
	name := rv.GetRelname()
	if s := rv.GetSchemaname(); s != "" {
		name = s + "." + name
	}
	if c := rv.GetCatalogname(); c != "" {
		name = c + "." + name
	}
	return name
}

// stringList returns the values of the String nodes in a name list such as
// FuncCall.funcname, skipping anything else (e.g. the A_Star of "t.*").
func stringList(nodes []*pg.Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if s := n.GetString_(); s != nil {
			out = append(out, s.GetSval())
		}
	}
	return out
}

// appendUnique appends the values not already in list. Lists are short (a
// handful of tables), so a linear scan beats a map.
func appendUnique(list []string, values ...string) []string {
outer:
	for _, v := range values {
		for _, have := range list {
			if have == v {
				continue outer
			}
		}
		list = append(list, v)
	}
	return list
}
