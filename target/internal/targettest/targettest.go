// Package targettest holds what the tests of the targets share: the old
// database's fixture, and the capture of real row images from it.
//
// Row images are read from a real PostgreSQL in text format, as the proxy
// captures them, so that the targets are tested on the text forms the
// server actually prints (arrays, bytea, timestamptz offsets, enums …)
// rather than on forms a test author imagined.
package targettest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
)

// Schema creates the tables of the old database: "every" has a column of
// each type the targets convert; "items" a composite text+int key and an
// identity column; "tokens" a uuid key; "log" no key; "parent" and "child"
// a foreign key.
const Schema = `
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE every (
  id int PRIMARY KEY,
  b bool, i2 int2, i4 int4, i8 int8, o oid,
  num numeric(12,4), numu numeric, f4 float4, f8 float8,
  t text, vc varchar(20), bp char(5), nm name, ci citext,
  by bytea, u uuid, j json, jb jsonb,
  d date, ts timestamp, tstz timestamptz, tm time, ttz timetz, iv interval,
  ai int[], at text[], a2 int[][], ae mood[], ats timestamptz[], ab bool[], an numeric[],
  e mood, pi posint, ip inet, cidr cidr, mac macaddr, bits bit(8), vbits varbit(16),
  doubled int GENERATED ALWAYS AS (id * 2) STORED
);
CREATE TABLE items (
  sku text, n int, qty int NOT NULL DEFAULT 0,
  serial_no int GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (sku, n)
);
CREATE TABLE tokens (id uuid PRIMARY KEY, v text);
CREATE TABLE log (msg text, at timestamptz);
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));
`

// Rows fills the tables. Row 1 of "every" is ordinary, row 2 all NULL, row
// 3 holds edge values (quotes, backslashes, NUL bytes, extreme numbers,
// nested arrays with NULL and quoted elements).
const Rows = `
INSERT INTO every VALUES
 (1, true, 12, 34, 5678901234, 4000000000,
  12345678.1234, 3.141592653589793238462643383279, 1.1, 2.718281828459045,
  'hello', 'varchar', 'ab', 'name', 'MiXeD',
  '\x00ff10', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"a": [1, 2.5, "x"], "b": null}', '{"k": {"n": 1}}',
  '2024-02-29', '2024-01-02 03:04:05.123456', '2024-07-01 12:00:00.5+02', '23:59:59.999999', '10:00:00+02', '1 year 2 mons 3 days 04:05:06.7',
  '{1,2,NULL}', '{"a b","c\"d",NULL,"NULL",""}', '{{1,2},{3,4}}', '{sad,happy}', '{"2024-01-01 00:00:00+05:30"}', '{t,f}', '{1.50,-2}',
  'happy', 7, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'10100101', B'101'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, false, -32768, -2147483648, -9223372036854775808, 0,
  -0.0001, -123456789012345678901234567890.123456789, -3.4e38, 1e308,
  E'it''s a \\ back\nslash 日本語 🎉', '', '  x  ', '', '',
  '\x', '00000000-0000-0000-0000-000000000000', '[]', '"str"',
  '1970-01-01', '1999-12-31 23:59:59', '1969-12-31 23:59:59.999999-08', '00:00:00', '23:30:00-05:30', '-1 days +00:00:01',
  '{}', '{"{x}","a,b"," lead"}', '{{NULL,2},{3,NULL}}', '{}', '{}', '{}', '{}',
  'sad', 1, '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', B'00000000', B'');
INSERT INTO items (sku, n, qty) VALUES ('A-1', 1, 10), ('A-1', 2, 20), ('b 2', -5, 0), ('', 0, 1);
INSERT INTO tokens VALUES ('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'one'), ('6ba7b811-9dad-11d1-80b4-00c04fd430c8', 'two');
INSERT INTO parent VALUES (1), (2);
INSERT INTO child VALUES (10, 1);
`

// OldTimeZone is the TimeZone of the capturing session: timestamptz values
// are printed with its offsets (+05:30), as a client session's would be.
const OldTimeZone = "Asia/Kolkata"

// Capture reads the rows of table (a "schema.table" name) matching where
// (SQL after WHERE, may be empty) in text format, and returns them as
// upserts keyed by the table's primary key, ordered by the first column.
func Capture(ctx context.Context, tb testing.TB, conn *pgx.Conn, cat *schema.Catalog, table, where string) []mirror.Change {
	tb.Helper()
	tbl := cat.Tables[table]
	if tbl == nil {
		tb.Fatalf("capture: no table %s", table)
	}
	sql := "SELECT * FROM " + pgx.Identifier{tbl.Schema, tbl.Name}.Sanitize()
	if where != "" {
		sql += " WHERE " + where
	}
	sql += " ORDER BY 1"
	if _, err := conn.Exec(ctx, "SET TimeZone = '"+OldTimeZone+"'"); err != nil {
		tb.Fatal(err)
	}
	res := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		tb.Fatalf("capture %s: %v", sql, res.Err)
	}
	cols := make([]mirror.Column, len(res.FieldDescriptions))
	for i, fd := range res.FieldDescriptions {
		cols[i] = mirror.Column{Name: fd.Name, TypeOID: fd.DataTypeOID}
		if c := tbl.Column(fd.Name); c != nil {
			cols[i].TypeName = c.TypeName
		}
	}
	changes := make([]mirror.Change, len(res.Rows))
	for r, row := range res.Rows {
		vals := make([]mirror.Value, len(row))
		for i, v := range row {
			if v == nil {
				vals[i] = mirror.Null
			} else {
				vals[i] = mirror.Text(string(v))
			}
		}
		changes[r] = mirror.Change{Op: mirror.OpUpsert, Table: table, Columns: cols, Row: vals, KeyCols: tbl.PrimaryKey}
	}
	return changes
}

// Delete returns a delete of the row whose keyCols equal key (text forms).
func Delete(table string, keyCols []string, key ...string) mirror.Change {
	vals := make([]mirror.Value, len(key))
	for i, k := range key {
		vals[i] = mirror.Text(k)
	}
	return mirror.Change{Op: mirror.OpDelete, Table: table, KeyCols: keyCols, Key: vals}
}

// Set returns a copy of an upsert with the named column set to v.
func Set(c mirror.Change, col string, v mirror.Value) mirror.Change {
	c.Row = append([]mirror.Value(nil), c.Row...)
	for i, cc := range c.Columns {
		if cc.Name == col {
			c.Row[i] = v
			return c
		}
	}
	panic("targettest: no column " + col)
}

// Value returns the text of the named column of an upsert.
func Value(c mirror.Change, col string) mirror.Value {
	for i, cc := range c.Columns {
		if cc.Name == col {
			return c.Row[i]
		}
	}
	panic("targettest: no column " + col)
}

// DBName turns a test name into a database name.
func DBName(prefix string, tb testing.TB) string {
	return prefix + "_" + strings.ToLower(strings.NewReplacer("/", "_", " ", "_", "-", "_").Replace(tb.Name()))
}

// TokenID is the uuid of the fixture's tokens row n.
func TokenID(n int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", n) }

// TokenChange returns an upsert of tokens row n with value v, made from a
// captured change of that table.
func TokenChange(tmpl mirror.Change, n int, v string) mirror.Change {
	c := Set(tmpl, "id", mirror.Text(TokenID(n)))
	return Set(c, "v", mirror.Text(v))
}

// CheckStoppedAt checks the results of a group whose batch failed failed
// for a passing reason: the batches before it committed, it has a
// transient error (neither a rejection nor mirror.ErrNotApplied), and the
// ones behind it were not applied.
func CheckStoppedAt(t testing.TB, errs []error, failed int) {
	t.Helper()
	for i, err := range errs {
		var rej *mirror.RejectError
		switch {
		case i < failed && err != nil:
			t.Errorf("batch %d: %v", i, err)
		case i == failed && (err == nil || errors.As(err, &rej) || errors.Is(err, mirror.ErrNotApplied)):
			t.Errorf("batch %d: %v, want a transient error", i, err)
		case i > failed && !errors.Is(err, mirror.ErrNotApplied):
			t.Errorf("batch %d: %v, want ErrNotApplied", i, err)
		}
	}
}
