package schema

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// builtinTriggerFuncs are trigger functions shipped with PostgreSQL that
// only modify the row being written.
var builtinTriggerFuncs = map[string]bool{
	"pg_catalog.tsvector_update_trigger":            true,
	"pg_catalog.tsvector_update_trigger_column":     true,
	"pg_catalog.suppress_redundant_updates_trigger": true,
}

// userFuncs indexes the functions and procedures outside pg_catalog and
// information_schema by name, with whether each is VOLATILE (the default for
// user functions, and the only volatility that allows writing).
type userFuncs map[string][]userFunc

type userFunc struct {
	schema   string
	volatile bool
	// extension is set for a function an extension installed
	// (uuid_generate_v4, PostGIS): trusted not to write the user's tables.
	extension bool
	language  string
	src       string // prosrc: the body of a SQL or PL/pgSQL function
	def       string // pg_get_functiondef, for volatile SQL and PL/pgSQL functions
}

func loadUserFuncs(ctx context.Context, q Querier) (userFuncs, error) {
	const sql = `
SELECT n.nspname, p.proname, p.provolatile = 'v', l.lanname,
       EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'),
       CASE WHEN p.provolatile = 'v' AND l.lanname IN ('sql', 'plpgsql') THEN p.prosrc ELSE '' END,
       CASE WHEN p.provolatile = 'v' AND l.lanname IN ('sql', 'plpgsql') AND p.prokind IN ('f', 'p')
            THEN pg_get_functiondef(p.oid) ELSE '' END
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')`
	funcs := userFuncs{}
	err := queryEach(ctx, q, sql, nil, func(r pgx.Rows) error {
		var (
			f    userFunc
			name string
		)
		if err := r.Scan(&f.schema, &name, &f.volatile, &f.language, &f.extension, &f.src, &f.def); err != nil {
			return err
		}
		funcs[name] = append(funcs[name], f)
		return nil
	})
	return funcs, err
}

// volatile reports whether a call of schema.name (schema may be empty) may
// reach a volatile user function (extensions' aside). Without a schema, any
// function of that name counts, whatever the search path: the answer must
// not be "no" when it could be "yes".
func (u userFuncs) volatile(schema, name string) bool {
	for _, f := range u[name] {
		if f.volatile && !f.extension && (schema == "" || f.schema == schema) {
			return true
		}
	}
	return false
}

// analyzeTrigger fills Writes and MayWriteOther for a PL/pgSQL trigger from
// the function's definition (pg_get_functiondef). It parses the function
// with PostgreSQL's own PL/pgSQL parser (pg_query), then every SQL
// statement and expression in it with the SQL parser, and looks for writes
// (INSERT, UPDATE, DELETE, MERGE, also inside CTEs), dynamic SQL (EXECUTE)
// and calls of volatile user functions, which may write anything.
func analyzeTrigger(tr *Trigger, t *Table, def string, funcs userFuncs) {
	a := triggerAnalysis{table: t, funcs: funcs}
	a.run(def)
	slices.Sort(a.writes)
	tr.Writes = slices.Compact(a.writes)
	if a.reason != "" {
		tr.MayWriteOther, tr.MayWriteOtherReason = true, a.reason
	}
}

type triggerAnalysis struct {
	table  *Table
	funcs  userFuncs
	writes []string
	reason string // first reason the function may write other tables
}

func (a *triggerAnalysis) flag(format string, args ...any) {
	if a.reason == "" {
		a.reason = fmt.Sprintf(format, args...)
	}
}

func (a *triggerAnalysis) run(def string) {
	js, err := pg_query.ParsePlPgSqlToJSON(def)
	if err != nil {
		a.flag("cannot parse the function: %v", err)
		return
	}
	var tree any
	if err := json.Unmarshal([]byte(js), &tree); err != nil {
		a.flag("cannot read the parse tree: %v", err)
		return
	}
	walkJSON(tree, func(key string, v any) {
		switch {
		case key == "PLpgSQL_stmt_dynexecute" || key == "PLpgSQL_stmt_dynfors" || key == "dynquery":
			a.flag("it runs dynamic SQL (EXECUTE)")
		case key == "PLpgSQL_expr":
			if m, ok := v.(map[string]any); ok {
				q, _ := m["query"].(string)
				mode, _ := m["parseMode"].(float64)
				a.sql(plpgsqlExprSQL(q, int(mode)))
			}
		}
	})
}

// plpgsqlExprSQL turns a PL/pgSQL expression into a statement the SQL parser
// takes, following its parse mode (PostgreSQL's RawParseMode): 0 a whole
// statement, 2 an expression, 3 to 5 an assignment "target := expression".
// It returns "" for what holds no SQL (type names).
func plpgsqlExprSQL(q string, mode int) string {
	switch mode {
	case 0:
		return q
	case 2:
		return "SELECT " + q
	case 3, 4, 5:
		if _, rhs, ok := strings.Cut(q, ":="); ok {
			return "SELECT " + rhs
		}
		if _, rhs, ok := strings.Cut(q, "="); ok {
			return "SELECT " + rhs
		}
		return "SELECT " + q
	}
	return ""
}

func (a *triggerAnalysis) sql(sql string) {
	if sql == "" {
		return
	}
	js, err := pg_query.ParseToJSON(sql)
	if err != nil {
		a.flag("cannot parse %q: %v", sql, err)
		return
	}
	var tree any
	if err := json.Unmarshal([]byte(js), &tree); err != nil {
		a.flag("cannot read the parse tree of %q: %v", sql, err)
		return
	}
	walkJSON(tree, func(key string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		switch key {
		case "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt":
			rel, _ := m["relation"].(map[string]any)
			schema, _ := rel["schemaname"].(string)
			name, _ := rel["relname"].(string)
			a.write(schema, name)
		case "FuncCall":
			a.call(m)
		case "CallStmt":
			if fc, ok := m["funccall"].(map[string]any); ok {
				a.call(fc)
			}
		}
	})
}

func (a *triggerAnalysis) write(schema, name string) {
	if name == "" {
		return
	}
	qualified := name
	if schema != "" {
		qualified = QualifiedName(schema, name)
	}
	a.writes = append(a.writes, qualified)
	own := a.table != nil && name == a.table.Name && (schema == "" || schema == a.table.Schema)
	if !own {
		a.flag("it writes %s", qualified)
	}
}

func (a *triggerAnalysis) call(fc map[string]any) {
	var parts []string
	names, _ := fc["funcname"].([]any)
	for _, n := range names {
		nm, _ := n.(map[string]any)
		s, _ := nm["String"].(map[string]any)
		if sval, ok := s["sval"].(string); ok {
			parts = append(parts, sval)
		}
	}
	var schema, name string
	switch len(parts) {
	case 0:
		return
	case 1:
		name = parts[0]
	default:
		schema, name = parts[len(parts)-2], parts[len(parts)-1]
	}
	if a.funcs.volatile(schema, name) {
		fn := name
		if schema != "" {
			fn = QualifiedName(schema, name)
		}
		a.flag("it calls the volatile function %s", fn)
	}
}

// walkJSON calls fn for every key of every object in a decoded JSON tree,
// depth first, keys in sorted order so that the first reason found is the
// same on every run.
func walkJSON(v any, fn func(key string, v any)) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			fn(k, x[k])
			walkJSON(x[k], fn)
		}
	case []any:
		for _, c := range x {
			walkJSON(c, fn)
		}
	}
}
