package schema

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Querier runs a query. *pgx.Conn, *pgxpool.Pool and pgx.Tx satisfy it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Load reads the description of every user table of the database: ordinary
// and partitioned tables outside pg_catalog, information_schema and the
// toast and temporary schemas. Views, materialized views and foreign tables
// are left out (writes to them are not mirrored by key).
//
// Load needs PostgreSQL 12 or later and only reads the system catalogs, so
// any role that can connect may run it.
func Load(ctx context.Context, q Querier) (*Catalog, error) {
	return load(ctx, q, nil)
}

// LoadTables is Load restricted to the named tables (raw or quoted names as
// SplitName takes them; unqualified means "public"). Tables that do not exist
// are absent from the result, which is not an error.
func LoadTables(ctx context.Context, q Querier, names ...string) (*Catalog, error) {
	if len(names) == 0 {
		return &Catalog{Tables: map[string]*Table{}, Types: map[uint32]*Type{}}, nil
	}
	return load(ctx, q, names)
}

// The catalog queries. Each takes the table OIDs found by tablesSQL as $1.
const (
	// tablesSQL: $1 and $2 are parallel arrays of schema and table names
	// restricting the result, or NULL for all tables.
	tablesSQL = `
SELECT c.oid, n.nspname, c.relname, c.relkind = 'p',
       COALESCE((SELECT pn.nspname || '.' || pc.relname
                   FROM pg_inherits i
                   JOIN pg_class pc ON pc.oid = i.inhparent
                   JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                  WHERE c.relispartition AND i.inhrelid = c.oid), '')
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_toast%'
   AND n.nspname NOT LIKE 'pg\_temp\_%'
   AND ($1::text[] IS NULL OR (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[])))
 ORDER BY n.nspname, c.relname`

	columnsSQL = `
SELECT a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod,
       format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attidentity::text, a.attgenerated::text,
       COALESCE(pg_get_expr(d.adbin, d.adrelid), ''), COALESCE(d.adbin::text, ''),
       COALESCE(seq.name, ''), COALESCE(seq.oid, 0)
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN LATERAL (SELECT sn.nspname || '.' || s.relname AS name, s.oid
                       FROM pg_depend dep
                       JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
                       JOIN pg_namespace sn ON sn.oid = s.relnamespace
                      WHERE dep.classid = 'pg_class'::regclass
                        AND dep.refclassid = 'pg_class'::regclass
                        AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum
                        AND dep.deptype IN ('a', 'i')
                      LIMIT 1) seq ON true
 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum`

	// keysSQL returns primary keys ('p'), unique constraints ('u') and the
	// unique indexes that back no constraint ('i'), with their key columns
	// in key order (INCLUDE columns left out).
	keysSQL = `
SELECT con.conrelid, con.conname, con.contype::text,
       ARRAY(SELECT a.attname
               FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
              ORDER BY k.ord)
  FROM pg_constraint con
 WHERE con.contype IN ('p', 'u') AND con.conrelid = ANY($1)
UNION ALL
SELECT i.indrelid, ic.relname, 'i',
       ARRAY(SELECT a.attname
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE k.ord <= i.indnkeyatts
              ORDER BY k.ord)
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indisunique AND NOT i.indisprimary AND i.indisvalid
   AND i.indpred IS NULL AND i.indexprs IS NULL
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u'))
   AND i.indrelid = ANY($1)
 ORDER BY 1, 2`

	triggersSQL = `
SELECT t.tgrelid, t.tgname, t.tgenabled::text, t.tgtype, t.tgconstraint <> 0,
       pn.nspname || '.' || p.proname, l.lanname,
       CASE WHEN l.lanname = 'plpgsql' THEN pg_get_functiondef(p.oid) ELSE '' END
  FROM pg_trigger t
  JOIN pg_proc p ON p.oid = t.tgfoid
  JOIN pg_namespace pn ON pn.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
 WHERE NOT t.tgisinternal AND t.tgrelid = ANY($1)
 ORDER BY t.tgrelid, t.tgname`

	// typesSQL describes types. A type is an array when its element type
	// names it as its array type, which leaves out int2vector, oidvector and
	// the fixed-length types with a typelem (point, name).
	typesSQL = `
SELECT t.oid, format_type(t.oid, NULL), t.typtype::text,
       t.typelem <> 0 AND t.typlen = -1 AND EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typarray = t.oid),
       t.typelem, t.typbasetype, t.typtypmod,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) ELSE '' END,
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
  FROM pg_type t
 WHERE t.oid = ANY($1)`
)

func load(ctx context.Context, q Querier, names []string) (*Catalog, error) {
	cat := &Catalog{Tables: map[string]*Table{}, Types: map[uint32]*Type{}}
	var schemas, tables []string // nil arrays mean "all tables"
	for _, n := range names {
		s, t := SplitName(n)
		schemas, tables = append(schemas, s), append(tables, t)
	}
	byOID := map[uint32]*Table{}
	err := queryEach(ctx, q, tablesSQL, []any{schemas, tables}, func(r pgx.Rows) error {
		t := &Table{}
		if err := r.Scan(&t.OID, &t.Schema, &t.Name, &t.Partitioned, &t.PartitionOf); err != nil {
			return err
		}
		byOID[t.OID] = t
		cat.Tables[t.QualifiedName()] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("schema: list tables: %w", err)
	}
	// The user functions, for Functions (a whole catalog) and for the
	// trigger analysis, which otherwise loads them itself when it needs
	// them.
	var funcs userFuncs
	if names == nil {
		if funcs, err = loadUserFuncs(ctx, q); err != nil {
			return nil, fmt.Errorf("schema: functions: %w", err)
		}
		cat.Functions = writingFunctions(funcs)
	}
	if len(byOID) == 0 {
		return cat, nil
	}
	oids := make([]uint32, 0, len(byOID))
	for oid := range byOID {
		oids = append(oids, oid)
	}
	if err := loadColumns(ctx, q, oids, byOID); err != nil {
		return nil, err
	}
	if err := loadKeys(ctx, q, oids, byOID); err != nil {
		return nil, err
	}
	if err := loadTriggers(ctx, q, oids, byOID, funcs); err != nil {
		return nil, err
	}
	if err := loadTypes(ctx, q, cat); err != nil {
		return nil, err
	}
	return cat, nil
}

// queryEach runs sql and calls fn for every row.
func queryEach(ctx context.Context, q Querier, sql string, args []any, fn func(pgx.Rows) error) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func loadColumns(ctx context.Context, q Querier, oids []uint32, byOID map[uint32]*Table) error {
	// Volatility of defaults needs the functions the expressions call; the
	// expressions are collected first and checked in one round trip.
	var pending []volatileCheck
	err := queryEach(ctx, q, columnsSQL, []any{oids}, func(r pgx.Rows) error {
		var (
			rel                  uint32
			num                  int16
			c                    Column
			identity, generated  string
			expr, tree, sequence string
		)
		if err := r.Scan(&rel, &num, &c.Name, &c.TypeOID, &c.Typmod, &c.TypeName, &c.NotNull,
			&identity, &generated, &expr, &tree, &sequence, &c.SequenceOID); err != nil {
			return err
		}
		c.Num = int(num)
		c.Sequence = sequence
		if identity != "" {
			c.Identity = Identity(identity[0])
			c.DefaultVolatile = true
		}
		switch {
		case generated != "":
			c.Generated, c.GenerationExpr = true, expr
		case expr != "":
			c.Default = expr
			pending = append(pending, volatileCheck{col: &c, tree: tree})
		}
		t := byOID[rel]
		t.Columns = append(t.Columns, &c)
		return nil
	})
	if err != nil {
		return fmt.Errorf("schema: columns: %w", err)
	}
	if err := checkVolatile(ctx, q, pending); err != nil {
		return fmt.Errorf("schema: default volatility: %w", err)
	}
	return nil
}

func loadKeys(ctx context.Context, q Querier, oids []uint32, byOID map[uint32]*Table) error {
	err := queryEach(ctx, q, keysSQL, []any{oids}, func(r pgx.Rows) error {
		var (
			rel        uint32
			name, kind string
			cols       []string
		)
		if err := r.Scan(&rel, &name, &kind, &cols); err != nil {
			return err
		}
		t := byOID[rel]
		if kind == "p" {
			t.PrimaryKey = cols
		} else {
			t.Unique = append(t.Unique, UniqueKey{Name: name, Columns: cols, Constraint: kind == "u"})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("schema: keys: %w", err)
	}
	return nil
}

// tgtype bits, from src/include/catalog/pg_trigger.h.
const (
	tgRow      = 1 << 0
	tgBefore   = 1 << 1
	tgInsert   = 1 << 2
	tgDelete   = 1 << 3
	tgUpdate   = 1 << 4
	tgTruncate = 1 << 5
	tgInstead  = 1 << 6
)

func loadTriggers(ctx context.Context, q Querier, oids []uint32, byOID map[uint32]*Table, funcs userFuncs) error {
	type fnSource struct {
		t   *Table
		i   int
		def string
	}
	var sources []fnSource
	err := queryEach(ctx, q, triggersSQL, []any{oids}, func(r pgx.Rows) error {
		var (
			rel     uint32
			tr      Trigger
			enabled string
			tgtype  int16
			def     string
		)
		if err := r.Scan(&rel, &tr.Name, &enabled, &tgtype, &tr.Constraint, &tr.Function, &tr.Language, &def); err != nil {
			return err
		}
		if enabled != "" {
			tr.Enabled = TriggerEnabled(enabled[0])
		}
		tr.Row = tgtype&tgRow != 0
		switch {
		case tgtype&tgBefore != 0:
			tr.Timing = "BEFORE"
		case tgtype&tgInstead != 0:
			tr.Timing = "INSTEAD OF"
		default:
			tr.Timing = "AFTER"
		}
		for _, ev := range []struct {
			bit  int16
			name string
		}{{tgInsert, "INSERT"}, {tgUpdate, "UPDATE"}, {tgDelete, "DELETE"}, {tgTruncate, "TRUNCATE"}} {
			if tgtype&ev.bit != 0 {
				tr.Events = append(tr.Events, ev.name)
			}
		}
		t := byOID[rel]
		t.Triggers = append(t.Triggers, tr)
		sources = append(sources, fnSource{t: t, i: len(t.Triggers) - 1, def: def})
		return nil
	})
	if err != nil {
		return fmt.Errorf("schema: triggers: %w", err)
	}
	if len(sources) == 0 {
		return nil
	}
	for _, s := range sources {
		tr := &s.t.Triggers[s.i]
		if tr.Language != "plpgsql" {
			if builtinTriggerFuncs[tr.Function] {
				continue
			}
			tr.MayWriteOther = true
			tr.MayWriteOtherReason = fmt.Sprintf("function %s is in language %s, which is not analyzed", tr.Function, tr.Language)
			continue
		}
		if funcs == nil {
			if funcs, err = loadUserFuncs(ctx, q); err != nil {
				return fmt.Errorf("schema: trigger functions: %w", err)
			}
		}
		analyzeTrigger(tr, s.t, s.def, funcs)
	}
	return nil
}

// loadTypes describes every type the columns use, then the element and base
// types those refer to, until nothing new turns up (domains over arrays of
// domains take a few rounds).
func loadTypes(ctx context.Context, q Querier, cat *Catalog) error {
	type links struct{ elem, base uint32 }
	pendingLinks := map[uint32]links{}
	var want []uint32
	for _, t := range cat.Tables {
		for _, c := range t.Columns {
			if !slices.Contains(want, c.TypeOID) {
				want = append(want, c.TypeOID)
			}
		}
	}
	for len(want) > 0 {
		var next []uint32
		err := queryEach(ctx, q, typesSQL, []any{want}, func(r pgx.Rows) error {
			var (
				ty         Type
				typtype    string
				isArray    bool
				elem, base uint32
			)
			if err := r.Scan(&ty.OID, &ty.Name, &typtype, &isArray, &elem, &base, &ty.BaseTypmod, &ty.BaseName, &ty.Labels); err != nil {
				return err
			}
			ty.Kind = typeKind(typtype, isArray)
			if len(ty.Labels) == 0 {
				ty.Labels = nil
			}
			l := links{}
			if ty.Kind == KindArray {
				l.elem = elem
			}
			if ty.Kind == KindDomain {
				l.base = base
			} else {
				ty.BaseTypmod = 0
			}
			cat.Types[ty.OID] = &ty
			pendingLinks[ty.OID] = l
			for _, o := range []uint32{l.elem, l.base} {
				if o != 0 && cat.Types[o] == nil && !slices.Contains(next, o) {
					next = append(next, o)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("schema: types: %w", err)
		}
		want = next
	}
	for oid, l := range pendingLinks {
		t := cat.Types[oid]
		t.Elem, t.Base = cat.Types[l.elem], cat.Types[l.base]
	}
	for _, t := range cat.Tables {
		for _, c := range t.Columns {
			c.Type = cat.Types[c.TypeOID]
		}
	}
	return nil
}

func typeKind(typtype string, isArray bool) TypeKind {
	switch typtype {
	case "e":
		return KindEnum
	case "d":
		return KindDomain
	case "c":
		return KindComposite
	case "r":
		return KindRange
	case "m":
		return KindMultirange
	case "p":
		return KindPseudo
	}
	if isArray {
		return KindArray
	}
	return KindBase
}
