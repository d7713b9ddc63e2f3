package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/proxy"
)

// TestISODateTimeAgainstServer prints values in every DateStyle and in
// several time zones on the real server, turns each into ISO with the
// proxy's conversion, and requires exactly what the server prints in ISO
// (timestamptz in UTC).
func TestISODateTimeAgainstServer(t *testing.T) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.SuperURL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	values := []struct {
		oid uint32
		lit string
	}{
		{1082, "'1997-12-17'::date"}, {1082, "'2024-02-29'::date"}, {1082, "'0044-03-15 BC'::date"},
		{1082, "'infinity'::date"}, {1082, "'-infinity'::date"}, {1082, "'12345-01-02'::date"},
		{1114, "'1997-12-17 07:37:16'::timestamp"}, {1114, "'1997-12-17 07:37:16.000123'::timestamp"},
		{1114, "'0001-01-01 00:00:00 BC'::timestamp"}, {1114, "'infinity'::timestamp"},
		{1184, "'1997-12-17 07:37:16.5+00'::timestamptz"}, {1184, "'2024-07-01 12:00:00+00'::timestamptz"},
		// Both sides of daylight-saving changes in Berlin and New York:
		// the same local clock twice, told apart by the abbreviation.
		{1184, "'2024-10-27 00:30:00+00'::timestamptz"}, {1184, "'2024-10-27 01:30:00+00'::timestamptz"},
		{1184, "'2024-11-03 05:30:00+00'::timestamptz"}, {1184, "'2024-11-03 06:30:00+00'::timestamptz"},
		{1184, "'2024-03-31 01:59:59.999999+00'::timestamptz"},
		{1184, "'1850-06-01 12:00:00+00'::timestamptz"}, // local mean time
		{1184, "'0044-03-15 12:00:00+00 BC'::timestamptz"}, {1184, "'-infinity'::timestamptz"},
	}
	iso := map[string]string{}
	if _, err := c.Exec(ctx, "set datestyle = 'ISO, MDY'; set timezone = 'UTC'"); err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		var s string
		if err := c.QueryRow(ctx, "select ("+v.lit+")::text").Scan(&s); err != nil {
			t.Fatal(err)
		}
		iso[v.lit] = s
	}
	for _, style := range []string{"SQL, DMY", "SQL, MDY", "German, DMY", "Postgres, DMY", "Postgres, MDY"} {
		for _, zone := range []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Europe/Istanbul"} {
			loc, err := time.LoadLocation(zone)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, fmt.Sprintf("set datestyle = '%s'; set timezone = '%s'", style, zone)); err != nil {
				t.Fatal(err)
			}
			var reported string
			if err := c.QueryRow(ctx, "show datestyle").Scan(&reported); err != nil {
				t.Fatal(err)
			}
			for _, v := range values {
				var s string
				if err := c.QueryRow(ctx, "select ("+v.lit+")::text").Scan(&s); err != nil {
					t.Fatal(err)
				}
				got, err := proxy.ISODateTime(v.oid, s, reported, loc)
				if err != nil || got != iso[v.lit] {
					t.Errorf("%s, %s: %q → %q, %v; want %q", reported, zone, s, got, err, iso[v.lit])
				}
			}
		}
	}
}
