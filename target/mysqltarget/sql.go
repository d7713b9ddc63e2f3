package mysqltarget

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
)

// QuoteTable maps a PostgreSQL "schema.table" name to the MySQL table:
// schema "public" is the database of the connection URL, so public.users is
// `users`; any other schema is taken as a database of the same name, so
// sales.orders is `sales`.`orders`. Names keep their case.
func QuoteTable(name string) string {
	s, t := schema.SplitName(name)
	if s == "public" {
		return quoteIdent(t)
	}
	return quoteIdent(s) + "." + quoteIdent(t)
}

func quoteIdent(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// statement is SQL for one or more consecutive changes of a batch.
type statement struct {
	sql         string
	args        []any
	first, last int // indexes of the changes it applies
	// size approximates the bytes of the values; generated is set for SQL
	// built here (as opposed to an OpStatement's), which may be packed.
	size      int
	generated bool
}

// limits bound the statements that group several changes.
type limits struct {
	rows  int // changes per statement
	bytes int // approximate bytes of values per statement
}

// builder turns the changes of a batch into statements. Consecutive
// upserts of the same table and column set become one multi-row INSERT,
// and consecutive deletes of the same table and key columns one DELETE:
// one round trip instead of hundreds, and the order of the changes is kept
// (MySQL inserts multi-row VALUES in order, so a later row for the same key
// updates the earlier one, as separate statements would).
type builder struct {
	conv *Converter
	lim  limits
	out  []statement

	// The group being built.
	kind   string // group key: op, table, columns, keys
	rows   []string
	args   []any
	bytes  int
	first  int
	finish func(rows []string) string // builds the group's SQL
}

// build converts every change; a conversion error is a *mirror.RejectError
// for that change.
func (b *builder) build(changes []mirror.Change) ([]statement, error) {
	for i := range changes {
		c := &changes[i]
		var err error
		switch c.Op {
		case mirror.OpUpsert:
			err = b.upsert(i, c)
		case mirror.OpDelete:
			err = b.delete(i, c)
		case mirror.OpStatement:
			err = b.statement(i, c)
		default:
			err = fmt.Errorf("invalid op %v", c.Op)
		}
		if err != nil {
			return nil, &mirror.RejectError{Err: fmt.Errorf("mysqltarget: %s %s: %w", c.Op, c.Table, err), ChangeIndex: i}
		}
	}
	b.flush(len(changes) - 1)
	return b.out, nil
}

// add appends one row (or key condition) of change i to the group kind,
// starting a new statement, whose SQL newFinish returns, when the kind
// changes or the group is full.
func (b *builder) add(i int, kind, row string, args []any, size int, newFinish func() func([]string) string) {
	if kind != b.kind || len(b.rows) >= b.lim.rows || (len(b.rows) > 0 && b.bytes+size > b.lim.bytes) {
		b.flush(i - 1)
		b.kind, b.first, b.finish = kind, i, newFinish()
	}
	b.rows = append(b.rows, row)
	b.args = append(b.args, args...)
	b.bytes += size
}

func (b *builder) flush(last int) {
	if len(b.rows) == 0 {
		return
	}
	b.out = append(b.out, statement{sql: b.finish(b.rows), args: b.args, first: b.first, last: last, size: b.bytes, generated: true})
	b.kind, b.rows, b.args, b.bytes = "", nil, nil, 0
}

// column returns the description of a column: the change's, completed
// from the old database's catalog when it has no type.
func (b *builder) column(c *mirror.Change, name string) mirror.Column {
	col := mirror.Column{Name: name}
	if i := slices.IndexFunc(c.Columns, func(cc mirror.Column) bool { return cc.Name == name }); i >= 0 {
		col = c.Columns[i]
	}
	if col.TypeOID == 0 && b.conv.cat != nil {
		if t := b.conv.cat.Tables[schema.QualifiedName(schema.SplitName(c.Table))]; t != nil {
			if tc := t.Column(name); tc != nil {
				col.TypeOID, col.TypeName = tc.TypeOID, tc.TypeName
			}
		}
	}
	return col
}

func (b *builder) upsert(i int, c *mirror.Change) error {
	if len(c.Columns) == 0 || len(c.Row) != len(c.Columns) {
		return fmt.Errorf("%d columns and %d values", len(c.Columns), len(c.Row))
	}
	args := make([]any, len(c.Row))
	size := 0
	names := make([]string, len(c.Columns))
	for j := range c.Columns {
		v, err := b.conv.Convert(b.column(c, c.Columns[j].Name), c.Row[j])
		if err != nil {
			return err
		}
		args[j] = v
		size += len(c.Row[j].Text)
		names[j] = c.Columns[j].Name
	}
	kind := "u\x00" + c.Table + "\x00" + strings.Join(names, "\x00") + "\x01" + strings.Join(c.KeyCols, "\x00")
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", ") + ")"
	b.add(i, kind, row, args, size, func() func([]string) string {
		quoted := make([]string, len(names))
		var updates []string
		for j, n := range names {
			quoted[j] = quoteIdent(n)
			// Without key columns every column is updated: setting the key
			// to the value it already has is harmless.
			if !slices.Contains(c.KeyCols, n) {
				updates = append(updates, quoted[j]+" = VALUES("+quoted[j]+")")
			}
		}
		if guard := keyGuard(c.KeyCols, names); guard != "" {
			updates = append([]string{guard}, updates...)
		} else if len(updates) == 0 {
			// Only key columns: the row exists or is inserted; nothing to
			// update (INSERT IGNORE would hide other errors).
			updates = []string{quoted[0] + " = " + quoted[0]}
		}
		head := "INSERT INTO " + QuoteTable(c.Table) + " (" + strings.Join(quoted, ", ") + ") VALUES "
		tail := " ON DUPLICATE KEY UPDATE " + strings.Join(updates, ", ")
		return func(rows []string) string { return head + strings.Join(rows, ", ") + tail }
	})
	return nil
}

// keyGuard returns the first assignment of an upsert's ON DUPLICATE KEY
// UPDATE, which makes it update only the row with the same primary key.
// MySQL takes the duplicate of any unique key for the row to update: a row
// whose value of another unique key is another row's would otherwise
// overwrite that row, silently, and never be inserted. So would a key that
// a case- or accent-insensitive collation, or one that pads with spaces,
// finds equal ('ABC' or 'abc ' for 'abc', other rows on the old database).
// The guard sets the first key column to itself when the keys match byte
// for byte, and otherwise evaluates EXP(1000 + …), which overflows a
// DOUBLE: the server refuses the statement (error 1690, SQLSTATE 22003, a
// rejection: see keyCollision) whatever the column's type and nullability
// (NULL would be taken by a nullable unique column). The term on the
// column keeps the optimizer from evaluating it before the row is known.
// MySQL evaluates the assignments in order, so the guard runs before
// anything changes the row. "" when the change has no key among its
// columns.
func keyGuard(keyCols, names []string) string {
	if len(keyCols) == 0 {
		return ""
	}
	same := make([]string, len(keyCols))
	for i, k := range keyCols {
		if !slices.Contains(names, k) {
			return ""
		}
		q := quoteIdent(k)
		same[i] = "CAST(" + q + " AS BINARY) <=> CAST(VALUES(" + q + ") AS BINARY)"
	}
	first := quoteIdent(keyCols[0])
	return first + " = IF(" + strings.Join(same, " AND ") + ", " + first + ", " + collisionExpr + "(" + first + " IS NULL)))"
}

// collisionExpr opens keyGuard's overflowing expression; the server's error
// message quotes it.
const collisionExpr = "EXP(1000 + "

func (b *builder) delete(i int, c *mirror.Change) error {
	if len(c.KeyCols) == 0 || len(c.Key) != len(c.KeyCols) {
		return fmt.Errorf("%d key columns and %d key values", len(c.KeyCols), len(c.Key))
	}
	args := make([]any, 0, len(c.Key))
	conds := make([]string, len(c.KeyCols))
	size := 0
	exact := false
	for j, k := range c.KeyCols {
		col := b.column(c, k)
		v, err := b.conv.Convert(col, c.Key[j])
		if err != nil {
			return err
		}
		if v == nil {
			return errors.New("NULL key value " + k)
		}
		args = append(args, v)
		size += len(c.Key[j].Text)
		q := quoteIdent(k)
		conds[j] = q + " = " + b.placeholder(col)
		if b.textKey(col) {
			// The column's collation may take 'ABC' or 'abc ' for 'abc'
			// (see keyGuard): the row must also match byte for byte. The
			// plain equality keeps the index lookup.
			conds[j] += " AND CAST(" + q + " AS BINARY) = CAST(? AS BINARY)"
			args = append(args, v)
			exact = true
		}
	}
	kind := "d\x00" + c.Table + "\x00" + strings.Join(conds, "\x00")
	table := QuoteTable(c.Table)
	if len(c.KeyCols) == 1 && !exact {
		// k IN (?, ?, …): one index range per value.
		col := quoteIdent(c.KeyCols[0])
		ph := strings.TrimPrefix(conds[0], col+" = ")
		b.add(i, kind, ph, args, size, func() func([]string) string {
			return func(rows []string) string {
				return "DELETE FROM " + table + " WHERE " + col + " IN (" + strings.Join(rows, ", ") + ")"
			}
		})
		return nil
	}
	// (a = ? AND b = ?) OR (…): the range optimizer of MySQL and MariaDB
	// turns it into index lookups.
	b.add(i, kind, "("+strings.Join(conds, " AND ")+")", args, size, func() func([]string) string {
		return func(rows []string) string { return "DELETE FROM " + table + " WHERE " + strings.Join(rows, " OR ") }
	})
	return nil
}

// textKey reports whether a key column holds text (text, varchar) that a
// MySQL collation may compare loosely. Not char(n): MySQL strips a CHAR's
// trailing spaces, which Postgres prints, so bytes would not match; nor
// citext, which is compared without case on both sides.
func (b *builder) textKey(col mirror.Column) bool {
	t := b.conv.resolve(col.TypeOID, col.TypeName)
	return !t.array && (t.oid == 25 || t.oid == 1043)
}

// placeholder is the parameter marker for comparing a key column. A
// numeric key is compared as DECIMAL: MySQL compares a DECIMAL column with
// a string as floating point, which would round large or precise keys.
func (b *builder) placeholder(col mirror.Column) string {
	if t := b.conv.resolve(col.TypeOID, col.TypeName); !t.array && t.oid == 1700 {
		return "CAST(? AS DECIMAL(65,30))"
	}
	return "?"
}

// statement runs an OpStatement change alone. Its SQL is already MySQL
// (translated by the proxy); the arguments are converted like row values
// when Columns describes them one to one, and passed as strings otherwise.
func (b *builder) statement(i int, c *mirror.Change) error {
	if strings.TrimSpace(c.SQL) == "" {
		return errors.New("no SQL")
	}
	args := make([]any, len(c.Args))
	for j, a := range c.Args {
		col := mirror.Column{Name: fmt.Sprintf("$%d", j+1)}
		if len(c.Columns) == len(c.Args) {
			col = c.Columns[j]
		}
		v, err := b.conv.Convert(col, a)
		if err != nil {
			return err
		}
		args[j] = v
	}
	b.flush(i - 1)
	b.out = append(b.out, statement{sql: c.SQL, args: args, first: i, last: i})
	return nil
}

// pack joins consecutive generated statements into multi-statement
// queries of at most maxBytes (SQL and values), so that a batch whose
// changes alternate between kinds (the delete and upsert pairs of
// key-changing updates) still takes few round trips. It needs
// multiStatements and interpolateParams on the connection. OpStatement SQL
// is never packed: it runs as the proxy wrote it.
func pack(stmts []statement, maxBytes int) []statement {
	out := make([]statement, 0, len(stmts))
	var sql strings.Builder
	for i := 0; i < len(stmts); {
		st := stmts[i]
		i++
		if !st.generated {
			out = append(out, st)
			continue
		}
		sql.Reset()
		sql.WriteString(st.sql)
		args := append([]any(nil), st.args...)
		size := len(st.sql) + st.size
		for i < len(stmts) && stmts[i].generated && size+len(stmts[i].sql)+stmts[i].size <= maxBytes {
			sql.WriteString(";\n")
			sql.WriteString(stmts[i].sql)
			args = append(args, stmts[i].args...)
			size += len(stmts[i].sql) + stmts[i].size
			st.last = stmts[i].last
			i++
		}
		st.sql, st.args, st.size = sql.String(), args, size
		out = append(out, st)
	}
	return out
}
