package pgtarget

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
)

// firstNormalOID is PostgreSQL's FirstNormalObjectId: OIDs below it are
// assigned by initdb, so a built-in type has the same OID on every server.
// User types (enums, domains, their arrays) have server-specific OIDs.
const firstNormalOID = 16384

// statement is one change turned into SQL with text-format parameters.
type statement struct {
	sql string
	// oids are the parameter types given to Prepare; nil (or 0 entries)
	// lets the server infer each type from where the parameter is used.
	oids   []uint32
	params [][]byte
}

// key identifies the prepared statement that can run st.
func (st *statement) key() string {
	if len(st.oids) == 0 {
		return st.sql
	}
	var b strings.Builder
	b.WriteString(st.sql)
	for _, o := range st.oids {
		b.WriteByte(0)
		b.WriteString(strconv.FormatUint(uint64(o), 10))
	}
	return b.String()
}

// plan turns a change into a statement. Row values are sent in text format
// with unspecified types: the server reads each with the input function of
// the column it goes to, exactly as the old database printed it, so the
// target needs no per-type code and user types (whose OIDs differ between
// servers) work as well as built-in ones.
func (t *Target) plan(c *mirror.Change) (*statement, error) {
	switch c.Op {
	case mirror.OpUpsert:
		return t.planUpsert(c)
	case mirror.OpDelete:
		return t.planDelete(c)
	case mirror.OpStatement:
		return planStatement(c)
	}
	return nil, fmt.Errorf("pgtarget: change of %s has invalid op %v", c.Table, c.Op)
}

func (t *Target) info(table string) *tableInfo {
	if info := t.tables[table]; info != nil {
		return info
	}
	return &tableInfo{}
}

func (t *Target) planUpsert(c *mirror.Change) (*statement, error) {
	if len(c.Columns) == 0 || len(c.Row) != len(c.Columns) {
		return nil, fmt.Errorf("pgtarget: upsert of %s has %d columns and %d values", c.Table, len(c.Columns), len(c.Row))
	}
	info := t.info(c.Table)
	// The conflict target must be a unique index of the new table: its
	// primary key, or else the key the change names.
	keys := info.primaryKey
	if len(keys) == 0 {
		keys = c.KeyCols
	}
	sh := info.upsertShape(c, keys)
	if sh.sent == 0 {
		return nil, errors.New("pgtarget: upsert of " + c.Table + " writes only generated columns")
	}
	st := &statement{sql: sh.sql, params: make([][]byte, 0, sh.sent)}
	for i, v := range c.Row {
		if sh.send[i] {
			st.params = append(st.params, param(v))
		}
	}
	return st, nil
}

// upsertShape is the SQL of the upserts of one table with one column list
// and conflict target. It is built once and kept with the table: the row
// images of a table nearly always have the same columns, and building the
// SQL for every row cost more than the rest of planning it.
type upsertShape struct {
	columns []string // the change's column names, in order
	keys    []string // the conflict target
	sql     string
	send    []bool // per column: written (the new table's generated columns are not)
	sent    int    // columns written
}

// maxUpsertShapes bounds the shapes kept per table; more column lists than
// this only come with schema changes.
const maxUpsertShapes = 8

// upsertShape returns the shape for c's columns and keys, building it on
// first use.
func (info *tableInfo) upsertShape(c *mirror.Change, keys []string) *upsertShape {
	for _, sh := range info.shapes {
		if slices.Equal(sh.keys, keys) && slices.EqualFunc(sh.columns, c.Columns, func(n string, col mirror.Column) bool { return n == col.Name }) {
			return sh
		}
	}
	sh := buildUpsertShape(info, c, keys)
	if len(info.shapes) == maxUpsertShapes {
		info.shapes = info.shapes[1:]
	}
	info.shapes = append(info.shapes, sh)
	return sh
}

func buildUpsertShape(info *tableInfo, c *mirror.Change, keys []string) *upsertShape {
	sh := &upsertShape{keys: slices.Clone(keys), send: make([]bool, len(c.Columns))}
	var cols, updates strings.Builder
	for i, col := range c.Columns {
		sh.columns = append(sh.columns, col.Name)
		if info.generated[col.Name] {
			// The new database computes it; writing it is an error.
			continue
		}
		sh.send[i] = true
		sh.sent++
		if sh.sent > 1 {
			cols.WriteString(", ")
		}
		name := quoteIdent(col.Name)
		cols.WriteString(name)
		// An ALWAYS identity column can only be updated to DEFAULT; its
		// value never changes after the insert anyway.
		if !slices.Contains(keys, col.Name) && !info.identityAlways[col.Name] {
			if updates.Len() > 0 {
				updates.WriteString(", ")
			}
			updates.WriteString(name + " = EXCLUDED." + name)
		}
	}
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(quoteTable(c.Table))
	b.WriteString(" (")
	b.WriteString(cols.String())
	b.WriteString(")")
	if len(info.identityAlways) > 0 {
		// The row image carries the identity values the old database
		// generated; GENERATED ALWAYS columns only take them with this.
		b.WriteString(" OVERRIDING SYSTEM VALUE")
	}
	b.WriteString(" VALUES (")
	for i := 1; i <= sh.sent; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(i))
	}
	b.WriteString(")")
	// Without any key (a table without a primary key on either side) the
	// row image is an insert: such tables are verified by multiset.
	if len(keys) > 0 {
		b.WriteString(" ON CONFLICT (")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quoteIdent(k))
		}
		if updates.Len() == 0 {
			b.WriteString(") DO NOTHING")
		} else {
			b.WriteString(") DO UPDATE SET ")
			b.WriteString(updates.String())
		}
	}
	sh.sql = b.String()
	return sh
}

func (t *Target) planDelete(c *mirror.Change) (*statement, error) {
	keys := c.KeyCols
	if len(keys) == 0 {
		keys = t.info(c.Table).primaryKey
	}
	if len(keys) == 0 || len(c.Key) != len(keys) {
		return nil, fmt.Errorf("pgtarget: delete from %s has %d key columns and %d key values", c.Table, len(keys), len(c.Key))
	}
	st := &statement{params: make([][]byte, len(keys))}
	var b strings.Builder
	b.WriteString("DELETE FROM ")
	b.WriteString(quoteTable(c.Table))
	b.WriteString(" WHERE ")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" AND ")
		}
		// "=" rather than IS NOT DISTINCT FROM: only "=" uses the index,
		// and key columns are not null.
		b.WriteString(quoteIdent(k) + " = $" + strconv.Itoa(i+1))
		st.params[i] = param(c.Key[i])
	}
	st.sql = b.String()
	return st, nil
}

// planStatement runs the change's SQL as it is. When Columns describes the
// arguments one to one, built-in type OIDs are passed to Prepare (the server
// then reads "$1 + 1" as the old database did); user-defined types and
// arguments without a description are left for the server to infer.
func planStatement(c *mirror.Change) (*statement, error) {
	if strings.TrimSpace(c.SQL) == "" {
		return nil, errors.New("pgtarget: statement change for " + c.Table + " has no SQL")
	}
	st := &statement{sql: c.SQL, params: make([][]byte, len(c.Args))}
	for i, a := range c.Args {
		st.params[i] = param(a)
	}
	if len(c.Columns) == len(c.Args) {
		for i, col := range c.Columns {
			if col.TypeOID != 0 && col.TypeOID < firstNormalOID {
				if st.oids == nil {
					st.oids = make([]uint32, len(c.Args))
				}
				st.oids[i] = col.TypeOID
			}
		}
	}
	return st, nil
}

// param is a value in the text format of the wire protocol: nil is NULL.
func param(v mirror.Value) []byte {
	if v.Null {
		return nil
	}
	return []byte(v.Text)
}

// quoteTable quotes a "schema.table" name (see schema.SplitName).
func quoteTable(name string) string {
	s, t := schema.SplitName(name)
	return pgx.Identifier{s, t}.Sanitize()
}

func quoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }
