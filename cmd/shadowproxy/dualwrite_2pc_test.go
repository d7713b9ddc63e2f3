package main

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// Two-phase commit through the proxy in dual-write: a prepared
// transaction reaches the new database once COMMIT PREPARED succeeded (from
// another session too), never after ROLLBACK PREPARED, and a PREPARE
// TRANSACTION that fails (its gid held by another prepared transaction)
// neither reaches it nor takes that gid: committing the holder must not
// mirror the failed transaction's rows. Both protocols.
func TestDualWriteTwoPhaseCommit(t *testing.T) {
	old := testdb.StartPostgres(t, testdb.WithSetting("max_prepared_transactions", "10"))
	nw := testdb.StartPostgres(t)
	const schema = "create table tpc (id int primary key, v text)"
	old.Exec(t, schema)
	nw.Exec(t, schema)
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + old.URL("postgres", "", "postgres"), "SHADOWPROXY_NEW=" + nw.URL("postgres", "", "postgres")},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connect := func(mode pgx.QueryExecMode) *pgx.Conn {
		cfg, err := pgx.ParseConfig(p.url("postgres", "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DefaultQueryExecMode = mode
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	run := func(c *pgx.Conn, sqls ...string) {
		t.Helper()
		for _, sql := range sqls {
			if _, err := c.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
	}
	newRows := func() int {
		var n int
		if err := queryRow(t, nw.URL("postgres", "", "postgres"), "select count(*) from tpc", &n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	for _, tc := range []struct {
		name string
		mode pgx.QueryExecMode
		base int
	}{
		{"simple", pgx.QueryExecModeSimpleProtocol, 0},
		{"extended", pgx.QueryExecModeCacheStatement, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := connect(tc.mode), connect(tc.mode)
			id := func(n int) string { return strconv.Itoa(tc.base + n) }
			gid := func(s string) string { return "'" + tc.name + "-" + s + "'" }

			// Prepared, then committed from another session.
			run(a, "begin", "insert into tpc values ("+id(1)+", 'committed')", "prepare transaction "+gid("g1"))
			// Rolled back.
			run(a, "begin", "insert into tpc values ("+id(2)+", 'rolled back')", "prepare transaction "+gid("g2"))
			run(b, "rollback prepared "+gid("g2"))
			// Held, then a second PREPARE of the same gid fails.
			run(a, "begin", "insert into tpc values ("+id(3)+", 'held')", "prepare transaction "+gid("g3"))
			run(b, "begin", "insert into tpc values ("+id(4)+", 'failed prepare')")
			_, err := b.Exec(ctx, "prepare transaction "+gid("g3"))
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42710" {
				t.Fatalf("second PREPARE of a gid in use: %v, want 42710", err)
			}
			before := newRows()
			run(b, "commit prepared "+gid("g1"), "commit prepared "+gid("g3"))
			run(a, "insert into tpc values ("+id(5)+", 'after')")
			p.waitMirrored(30 * time.Second)
			if got := newRows(); got != before+3 {
				t.Errorf("new database has %d rows, want %d", got, before+3)
			}
		})
	}
	compareTables(t, old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres"), "tpc")
	m := p.waitMirrored(30 * time.Second)
	if m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("mirror status %v\n%s", m, tail(p.logs.String(), 3000))
	}
}
