package mysqltarget

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/shadowproxy/shadowproxy/schema"
)

// mysqlTable is what CheckSchema reads of a table of the new database.
type mysqlTable struct {
	columns map[string]mysqlColumn // by lower-case name: MySQL column names ignore case
	keys    [][]string             // PRIMARY first when there is one, then the unique indexes; lower-case
	primary bool
}

type mysqlColumn struct {
	name      string
	typ       string // COLUMN_TYPE, e.g. "decimal(12,4)", "bigint(20) unsigned"
	required  bool   // NOT NULL, no default, not AUTO_INCREMENT or generated
	collation string // COLLATION_NAME; "" for other than character columns
}

// CheckSchema compares the tables of the old database that the mirror
// writes (old, as schema.Load read it) with the new database's tables they
// map to (see QuoteTable), for what would make their row images fail or
// land differently: missing tables and columns, NOT NULL columns without a
// default that the old tables lack, tables without a primary or unique key
// on the old primary key, where ON DUPLICATE KEY UPDATE would insert a
// second row instead of replacing the first, and columns whose type holds
// less than the one CreateTableSQL would make (a narrower integer, fewer
// decimal places or fractional seconds, a shorter VARCHAR, TIMESTAMP's
// range, a missing ENUM label). Types of another family that still take
// the values (an integer in a DECIMAL or a VARCHAR) are not problems.
func (t *Target) CheckSchema(ctx context.Context, old *schema.Catalog) ([]schema.Problem, error) {
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	tables := old.MirroredTables()
	dbs := map[string]bool{}
	for _, o := range tables {
		db, _ := t.mysqlName(o)
		dbs[db] = true
	}
	have, err := t.readTables(ctx, dbs)
	if err != nil {
		return nil, err
	}
	var out []schema.Problem
	for _, o := range tables {
		db, name := t.mysqlName(o)
		n, ok := have[db+"."+name]
		if !ok {
			// lower_case_table_names = 1 stores names in lower case.
			n, ok = have[strings.ToLower(db+"."+name)]
		}
		if !ok {
			out = append(out, schema.Problem{Table: o.QualifiedName(), Kind: schema.MissingTable,
				Detail: fmt.Sprintf("no table %s.%s on the new database", quoteIdent(db), quoteIdent(name))})
			continue
		}
		out = append(out, compareMySQLTable(o, n)...)
	}
	return out, nil
}

// mysqlName is the database and table a table of the old database maps to.
func (t *Target) mysqlName(o *schema.Table) (db, table string) {
	if o.Schema == "public" {
		return t.cfg.DBName, o.Name
	}
	return o.Schema, o.Name
}

func compareMySQLTable(o *schema.Table, n *mysqlTable) []schema.Problem {
	var out []schema.Problem
	add := func(col string, kind schema.ProblemKind, format string, args ...any) {
		out = append(out, schema.Problem{Table: o.QualifiedName(), Column: col, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
	keys := keyColumns(o)
	for _, oc := range o.Columns {
		nc, ok := n.columns[strings.ToLower(oc.Name)]
		if !ok {
			add(oc.Name, schema.MissingColumn, "the new table has no column %s (%s on the old database)", oc.Name, oc.TypeName)
			continue
		}
		if why := typeProblem(oc, keys[oc.Name], nc.typ); why != "" {
			add(oc.Name, schema.TypeDiffers, "%s on the new database for %s: %s", nc.typ, oc.TypeName, why)
		}
		if keys[oc.Name] && insensitive(nc.collation) && !strings.HasSuffix(oc.TypeName, "citext") {
			add(oc.Name, schema.TypeDiffers, "collation %s on the new database compares %s case- or accent-insensitively, "+
				"where the old database tells 'abc' from 'ABC': two such keys cannot both be rows here "+
				"(the mirror refuses the second); use a binary collation", nc.collation, oc.TypeName)
		}
	}
	var extra []string
	for lower, nc := range n.columns {
		if nc.required && !slices.ContainsFunc(o.Columns, func(c *schema.Column) bool { return strings.ToLower(c.Name) == lower }) {
			extra = append(extra, nc.name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		add(name, schema.RequiredColumn, "the new table's column %s is NOT NULL without a default, and the old table has no such column", name)
	}
	if len(o.PrimaryKey) > 0 && !n.primary {
		want := make([]string, len(o.PrimaryKey))
		for i, k := range o.PrimaryKey {
			want[i] = strings.ToLower(k)
		}
		if !slices.ContainsFunc(n.keys, func(k []string) bool { return sameColumns(k, want) }) {
			add("", schema.NoKey, "the new table has no primary key, nor a unique key on (%s), the old table's primary key: ON DUPLICATE KEY UPDATE would insert rows twice",
				strings.Join(o.PrimaryKey, ", "))
		}
	}
	return out
}

// typeProblem says how a column of type got may refuse or change the values
// of the old column oc, or "" when it holds them (or either type is one
// CheckSchema does not know).
func typeProblem(oc *schema.Column, key bool, got string) string {
	wantSQL, _, err := mysqlType(oc, key)
	if err != nil {
		return ""
	}
	want, ok := parseMySQLType(wantSQL)
	have, ok2 := parseMySQLType(got)
	if !ok || !ok2 {
		return ""
	}
	return narrower(want, have)
}

// insensitive reports whether a MySQL collation ignores case or accents
// (utf8mb4_general_ci, utf8mb4_0900_ai_ci, …).
func insensitive(collation string) bool {
	return strings.Contains(collation, "_ci") || strings.Contains(collation, "_ai_")
}

func sameColumns(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(x string) bool { return !slices.Contains(b, x) })
}

// readTables reads the columns and unique keys of every table in the given
// databases, keyed by "db.table".
func (t *Target) readTables(ctx context.Context, dbs map[string]bool) (map[string]*mysqlTable, error) {
	var names []any
	for db := range dbs {
		names = append(names, db)
	}
	if len(names) == 0 {
		return nil, nil
	}
	in := strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", ")
	out := map[string]*mysqlTable{}
	table := func(db, name string) *mysqlTable {
		k := db + "." + name
		if out[k] == nil {
			out[k] = &mysqlTable{columns: map[string]mysqlColumn{}}
		}
		return out[k]
	}
	rows, err := t.db.QueryContext(ctx, `SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE,
       IS_NULLABLE = 'NO' AND COLUMN_DEFAULT IS NULL AND EXTRA NOT LIKE '%auto_increment%' AND EXTRA NOT LIKE '%GENERATED%',
       coalesce(COLLATION_NAME, '')
  FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN (`+in+`)`, names...)
	if err != nil {
		return nil, fmt.Errorf("mysqltarget: read the new database's columns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var db, name string
		var c mysqlColumn
		if err := rows.Scan(&db, &name, &c.name, &c.typ, &c.required, &c.collation); err != nil {
			return nil, fmt.Errorf("mysqltarget: read the new database's columns: %w", err)
		}
		table(db, name).columns[strings.ToLower(c.name)] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysqltarget: read the new database's columns: %w", err)
	}
	keys, err := t.db.QueryContext(ctx, `SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, COLUMN_NAME
  FROM information_schema.STATISTICS WHERE NON_UNIQUE = 0 AND TABLE_SCHEMA IN (`+in+`)
 ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`, names...)
	if err != nil {
		return nil, fmt.Errorf("mysqltarget: read the new database's keys: %w", err)
	}
	defer keys.Close()
	last := ""
	for keys.Next() {
		var db, name, index, col string
		if err := keys.Scan(&db, &name, &index, &col); err != nil {
			return nil, fmt.Errorf("mysqltarget: read the new database's keys: %w", err)
		}
		tb := table(db, name)
		if k := db + "." + name + "." + index; k != last {
			last = k
			tb.keys = append(tb.keys, nil)
			tb.primary = tb.primary || index == "PRIMARY"
		}
		tb.keys[len(tb.keys)-1] = append(tb.keys[len(tb.keys)-1], strings.ToLower(col))
	}
	if err := keys.Err(); err != nil {
		return nil, fmt.Errorf("mysqltarget: read the new database's keys: %w", err)
	}
	return out, nil
}
