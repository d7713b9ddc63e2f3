package main

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shadowproxy/shadowproxy/compare"
	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

const mysqlSchema = `
create table accounts (id int primary key, name text not null, balance decimal(12,2), created datetime(6), token char(36), r double, active tinyint(1));
create table composite (a varchar(100), b int, v text, primary key (a, b));
create table nokey (msg text, n int, at datetime(6));
create table trig (id bigint primary key, v text, upper_v text, touched datetime(6));
create table kinds (k char(36) primary key, j json, arr json, raw blob, d date, ts datetime(6), tz datetime(6), nums decimal(65,30), f4 float);
create table scratch (id int primary key, v text);
`

// pgTable reads a table from Postgres for comparison; exprs are the
// select list (arrays become JSON, as the MySQL mapping stores them).
func pgTable(t *testing.T, url, table, exprs string) *compare.Result {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "select "+exprs+" from "+table, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var fields []pgproto3.FieldDescription
	for _, f := range rows.FieldDescriptions() {
		fields = append(fields, pgproto3.FieldDescription{Name: []byte(f.Name), DataTypeOID: f.DataTypeOID, TypeModifier: f.TypeModifier, Format: f.Format})
	}
	dec := compare.NewPGRowDecoder(pgtype.NewMap(), fields)
	res := &compare.Result{Columns: dec.Columns()}
	for rows.Next() {
		vals, err := dec.DecodeRow(rows.RawValues())
		if err != nil {
			t.Fatal(err)
		}
		res.Rows = append(res.Rows, vals)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return res
}

func mysqlTable(t *testing.T, dsn, table, cols string, hints []compare.Family) *compare.Result {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("select " + cols + " from " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	types, _ := rows.ColumnTypes()
	dec := compare.NewMySQLRowDecoder(types, hints)
	res := &compare.Result{Columns: dec.Columns()}
	raw := make([]sql.RawBytes, len(types))
	ptrs := make([]any, len(types))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		vals, err := dec.DecodeRow(raw)
		if err != nil {
			t.Fatal(err)
		}
		res.Rows = append(res.Rows, vals)
	}
	return res
}

// compareAcrossEngines compares each table's rows as multisets, normalized
// only for representation (bool vs tinyint, timestamptz as a UTC instant).
func compareAcrossEngines(t *testing.T, pgURL, mysqlDSN string, tables map[string][2]string) {
	t.Helper()
	for table, sel := range tables {
		o := pgTable(t, pgURL, table, sel[0])
		hints := make([]compare.Family, len(o.Columns))
		for i, c := range o.Columns {
			hints[i] = c.Family
		}
		n := mysqlTable(t, mysqlDSN, table, sel[1], hints)
		out := compare.Compare(o, n, compare.Shape{}, compare.Options{})
		if !out.Match {
			var diffs []string
			for _, d := range out.Diffs {
				diffs = append(diffs, string(d.Type)+" "+d.Column+" "+d.RowKey+": old="+d.Old+" new="+d.New+" ("+d.Rule+")")
			}
			t.Errorf("table %s: old %d rows, new %d rows:\n%s", table, len(o.Rows), len(n.Rows), strings.Join(diffs, "\n"))
		}
	}
}

var mysqlTables = map[string][2]string{
	"accounts":  {"id, name, balance, created, token, r, active", "id, name, balance, created, token, r, active"},
	"composite": {"a, b, v", "a, b, v"},
	"nokey":     {"msg, n, at", "msg, n, at"},
	"trig":      {"id, v, upper_v, touched", "id, v, upper_v, touched"},
	"kinds":     {"k, j, to_jsonb(arr) as arr, raw, d, ts, tz, nums, f4", "k, j, arr, raw, d, ts, tz, nums, f4"},
	"scratch":   {"id, v", "id, v"},
}

func TestDualWriteMariaDB(t *testing.T) {
	old := testdb.StartPostgres(t)
	my := testdb.StartMariaDB(t)
	old.Exec(t, dualWriteSchema)
	old.Exec(t, trigSQL)
	my.Exec(t, "create database app; use app;\n"+mysqlSchema)

	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + my.URL("root", "", "app")},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	workload(t, p.url("postgres", "postgres"))
	m := p.waitMirrored(30 * time.Second)
	compareAcrossEngines(t, old.URL("postgres", "", "postgres"), my.DSN("app"), mysqlTables)
	if m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("mirror status %v\n%s", m, tail(p.logs.String(), 3000))
	}
	if t.Failed() {
		return
	}
	// The comparison must be able to fail: a changed value is caught.
	my.Exec(t, "update app.trig set upper_v = 'tampered' where id = 2")
	o := pgTable(t, old.URL("postgres", "", "postgres"), "trig", mysqlTables["trig"][0])
	hints := make([]compare.Family, len(o.Columns))
	for i, c := range o.Columns {
		hints[i] = c.Family
	}
	if out := compare.Compare(o, mysqlTable(t, my.DSN("app"), "trig", mysqlTables["trig"][1], hints), compare.Shape{}, compare.Options{}); out.Match {
		t.Fatal("a tampered row compared equal")
	}
}
