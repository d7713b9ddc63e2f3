package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestDualWriteDateStyles: sessions whose DateStyle is not ISO (German,
// SQL, Postgres; DMY and MDY) in various time zones write dates,
// timestamps and timestamptz values, a date primary key changed by an
// UPDATE, and COPY rows. The row images, captured as text in the session's
// style, reach the new database as the same values; an UPDATE of a table
// without a primary key (mirrored as a statement) is reported as not
// mirrored, with the reason.
func TestDualWriteDateStyles(t *testing.T) {
	const schema = `
create table events (day date primary key, at timestamp, tz timestamptz default now(), note text);
create table log (at timestamptz, msg text);`
	const newSchema = `
create table events (day date primary key, at timestamp, tz timestamptz, note text);
create table log (at timestamptz, msg text);`
	oldURL, _, newURL, p := directAndMirrored(t, "dual-write", schema, newSchema)
	ctx := context.Background()
	styles := []struct{ style, zone string }{
		{"German, DMY", "Europe/Berlin"},
		{"SQL, DMY", "Asia/Kolkata"},
		{"SQL, MDY", "America/New_York"},
		{"Postgres, DMY", "Europe/Istanbul"},
		{"Postgres, MDY", "UTC"},
	}
	for i, s := range styles {
		c, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, fmt.Sprintf("set datestyle = '%s'; set timezone = '%s'", s.style, s.zone), pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		day := fmt.Sprintf("2024-03-%02d", 1+3*i)
		for _, q := range []struct {
			sql  string
			args []any
		}{
			// Both protocols; values from the client, from now(), and a
			// daylight-saving change in the session's zone.
			{fmt.Sprintf("insert into events (day, at, tz, note) values ('%s', '%s 01:02:03.25', '2024-10-27 00:30:00+00', 'simple')", day, day), nil},
			{"insert into events (day, at, note) values ($1::date + 1, $2::timestamp, 'extended')", []any{day, "0044-03-15 12:00:00 BC"}},
			{"update events set day = day + 100, tz = tz + interval '1 hour' where day = $1::date", []any{day}},
			{"insert into log values (now(), $1)", []any{s.style}},
			{"update log set msg = msg || '!' where msg = $1", []any{s.style}},
		} {
			mode := pgx.QueryExecModeSimpleProtocol
			if q.args != nil {
				mode = pgx.QueryExecModeExec
			}
			if _, err := c.Exec(ctx, q.sql, append([]any{mode}, q.args...)...); err != nil {
				t.Fatalf("%s: %s: %v", s.style, q.sql, err)
			}
		}
		// COPY in the session's own input order.
		copyDay := "17.12.1997"
		if s.style == "SQL, MDY" || s.style == "Postgres, MDY" {
			copyDay = "12/17/1997"
		}
		if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader(fmt.Sprintf("%s\t%s 07:37:16\tcopied %d\n", day[:4]+"-12-"+fmt.Sprint(20+i), copyDay, i)),
			"copy events (day, at, note) from stdin"); err != nil {
			t.Fatalf("%s: copy: %v", s.style, err)
		}
		c.Close(ctx)
	}
	m := p.waitMirrored(30 * time.Second)
	compareTables(t, oldURL, newURL, "events")
	nm := fmt.Sprint(m["not_mirrored"])
	// Inserts into log are row images like any other; its UPDATE is
	// mirrored as a statement, whose date literals the new database would
	// read in its own DateStyle.
	if !strings.Contains(nm, "DateStyle is not ISO") || !strings.Contains(nm, "update log") || strings.Count(nm, "fingerprint") != 1 {
		t.Errorf("not_mirrored = %s, want only the update of log (no primary key)", nm)
	}
	if m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("mirror status %v\n%s", m, tail(p.logs.String(), 3000))
	}
}
