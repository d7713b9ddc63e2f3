package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// exchange sends msgs (ending with Sync or Query) and returns the answers
// up to the ReadyForQuery of the last, one line each: the message type,
// and the command tag, SQLSTATE or first value where there is one.
func exchange(t *testing.T, c *pgconn.PgConn, msgs ...pgproto3.FrontendMessage) string {
	t.Helper()
	return converse(t, c, func(m pgproto3.BackendMessage) string {
		switch m := m.(type) {
		case *pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.NoData, *pgproto3.CloseComplete:
			return ""
		case *pgproto3.DataRow:
			return "D " + string(m.Values[0])
		case *pgproto3.PortalSuspended:
			return "s"
		case *pgproto3.RowDescription:
			return fmt.Sprintf("T %d", len(m.Fields))
		case *pgproto3.ErrorResponse:
			return "E " + m.Code
		}
		return commonAnswer(m)
	}, msgs...)
}

// TestDualWriteProtocolEdges drives the extended protocol the way some
// drivers do and requires the same answers as from Postgres directly, with
// every write mirrored:
//   - Execute with a row limit on a write without RETURNING (PgJDBC sends
//     1 for executeUpdate): the capture RETURNING must not suspend it;
//   - the same on a write with its own RETURNING (asyncpg's fetchrow
//     sends 1), left suspended or fetched limit by limit, in autocommit
//     and across Syncs in a transaction: the client gets what Postgres
//     sends, and every row the write touched is mirrored;
//   - DEALLOCATE ALL (psycopg after a rollback) and a batch whose error
//     made the server skip the proxy's own prepared BEGIN: the autocommit
//     writes after them still work.
func TestDualWriteProtocolEdges(t *testing.T) {
	const schema = "create table items (id int primary key, v text); insert into items select g, 'v' || g from generate_series(1, 3) g;"
	oldURL, directURL, newURL, p := directAndMirrored(t, "dual-write", schema, schema)

	steps := []struct {
		name string
		msgs []pgproto3.FrontendMessage
		want string
	}{
		{"update with a row limit", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "update items set v = v || '+' where id <= $1"},
			&pgproto3.Bind{Parameters: [][]byte{[]byte("3")}},
			&pgproto3.Execute{MaxRows: 1},
			&pgproto3.Sync{},
		}, "C UPDATE 3; Z I"},
		{"insert batch with row limits", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "ins", Query: "insert into items values ($1, 'batch')"},
			&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("10")}},
			&pgproto3.Execute{MaxRows: 1},
			&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("11")}},
			&pgproto3.Execute{MaxRows: 1},
			&pgproto3.Sync{},
		}, "C INSERT 0 1; C INSERT 0 1; Z I"},
		{"returning left suspended", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "update items set v = v || '!' where id in (1, 2) returning id"},
			&pgproto3.Bind{},
			&pgproto3.Execute{MaxRows: 1},
			&pgproto3.Sync{},
		}, "D 1; s; Z I"},
		{"returning fetched limit by limit", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "update items set v = v || '?' where id <= 3 returning id"},
			&pgproto3.Bind{},
			&pgproto3.Execute{MaxRows: 1},
			&pgproto3.Execute{MaxRows: 1},
			&pgproto3.Execute{MaxRows: 2},
			&pgproto3.Execute{MaxRows: 2},
			&pgproto3.Sync{},
		}, "D 1; s; D 2; s; D 3; C UPDATE 1; C UPDATE 0; Z I"},
		{"returning in a transaction, across Syncs", []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "begin"},
			&pgproto3.Parse{Query: "insert into items select g, 'tx' from generate_series(40, 42) g returning id"},
			&pgproto3.Bind{DestinationPortal: "p"},
			&pgproto3.Execute{Portal: "p", MaxRows: 2},
			&pgproto3.Sync{},
			&pgproto3.Execute{Portal: "p"},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "commit"},
		}, "C BEGIN; Z T; D 40; D 41; s; Z T; D 42; C INSERT 0 1; Z T; C COMMIT; Z I"},
		{"fetchrow of an insert", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "insert into items values (50, 'one') returning id"},
			&pgproto3.Bind{},
			&pgproto3.Execute{MaxRows: 1},
			&pgproto3.Sync{},
		}, "D 50; s; Z I"},
		{"deallocate all", []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "DEALLOCATE ALL"},
		}, "C DEALLOCATE ALL; Z I"},
		{"write after deallocate all", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "insert into items values (20, 'after deallocate')"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}, "C INSERT 0 1; Z I"},
		{"error before a write in one batch", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "select 1/0"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Parse{Query: "insert into items values (30, 'skipped')"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}, "E 22012; Z I"},
		{"write after the skipped batch", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "insert into items values (31, 'after error')"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}, "C INSERT 0 1; Z I"},
	}
	direct, proxied := pgconnPair(t, directURL, p)
	for _, s := range steps {
		d, v := exchange(t, direct, s.msgs...), exchange(t, proxied, s.msgs...)
		if d != s.want || v != s.want {
			t.Errorf("%s:\ndirect:    %s\nproxy:     %s\nwant both: %s", s.name, d, v, s.want)
		}
	}

	m := p.waitMirrored(30 * time.Second)
	compareTables(t, oldURL, newURL, "items")
	if nm, _ := m["not_mirrored"].([]any); len(nm) != 0 {
		t.Errorf("not_mirrored = %v", nm)
	}
	if m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("mirror status %v\n%s", m, tail(p.logs.String(), 3000))
	}
}
