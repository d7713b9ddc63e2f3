package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
	"github.com/shadowproxy/shadowproxy/schema"
)

// TestCheckSchema: `shadowproxy check` finds nothing between identical
// schemas and reports each difference otherwise (exit 4); dual-write runs
// the same check at start-up and shows it in /status.
func TestCheckSchema(t *testing.T) {
	const tables = `
create table a (id int primary key, v text, n numeric(10,2));
create table b (id int primary key);
create table c (k text primary key, x int);`
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	old.Exec(t, tables)
	nw.Exec(t, tables)
	oldURL, newURL := old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres")
	check := func(format string) (int, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"check", "--old", oldURL, "--new", newURL, "--format", format}, &out, &errOut)
		if errOut.Len() > 0 {
			t.Logf("stderr: %s", errOut.String())
		}
		return code, out.String()
	}
	if code, out := check("text"); code != 0 || !strings.Contains(out, "match") {
		t.Fatalf("identical schemas: exit %d, output %q", code, out)
	}

	nw.Exec(t, "alter table a drop column v, alter column n type numeric(12,2); drop table b; alter table c drop constraint c_pkey;")
	want := []string{
		"public.a.v: missing_column: the new table has no column v (text)",
		"public.a.n: type_differs: numeric(10,2) on the old database, numeric(12,2) on the new",
		"public.b: missing_table: no table public.b on the new database",
		"public.c: no_key: the new table has no primary key, nor a unique key on (k), the old table's primary key",
	}
	code, out := check("text")
	if code != 4 || strings.TrimSpace(out) != strings.Join(want, "\n") {
		t.Fatalf("exit %d, output:\n%s\nwant exit 4 and:\n%s", code, out, strings.Join(want, "\n"))
	}
	code, out = check("json")
	var doc struct{ Problems []schema.Problem }
	if err := json.Unmarshal([]byte(out), &doc); code != 4 || err != nil || len(doc.Problems) != len(want) {
		t.Fatalf("json: exit %d, %v, output:\n%s", code, err, out)
	}

	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + oldURL, "SHADOWPROXY_NEW=" + newURL},
		"--phase", "dual-write", "--report-dir", t.TempDir())
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, _ := p.status()["mirror"].(map[string]any)
		ns, _ := m["new_schema"].(map[string]any)
		if ns["checked"] == true {
			if problems, _ := ns["problems"].([]any); len(problems) != len(want) {
				t.Fatalf("/status new_schema problems: %v", problems)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/status new_schema not checked: %v", ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.logs.String(), "the new database's schema differs from the old one's") {
		t.Errorf("no warning in the log:\n%s", tail(p.logs.String(), 3000))
	}
}

// TestSequencesCommand: `shadowproxy sequences` lists the new database's
// sequences that would hand out values the old database's already did,
// owned or not, in either direction, and --apply moves them past those.
func TestSequencesCommand(t *testing.T) {
	const objects = `
create sequence hib_seq;
create sequence down_seq increment -1 start -1 minvalue -1000 maxvalue -1;
create sequence ahead_seq;
create table t (id serial primary key);`
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	old.Exec(t, objects+`
select nextval('hib_seq') from generate_series(1, 5);
select nextval('down_seq') from generate_series(1, 2);
select nextval('ahead_seq');
insert into t default values; insert into t default values; insert into t default values;`)
	nw.Exec(t, objects+"select setval('ahead_seq', 100);")
	oldURL, newURL := old.URL("postgres", "", "postgres"), nw.URL("postgres", "", "postgres")
	run1 := func(args ...string) (int, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"sequences", "--old", oldURL, "--new", newURL}, args...), &out, &errOut)
		if errOut.Len() > 0 {
			t.Logf("stderr: %s", errOut.String())
		}
		return code, out.String()
	}
	want := strings.Join([]string{
		"public.down_seq: the old database handed out -2, the new one would hand out -1 next: behind",
		"public.hib_seq: the old database handed out 5, the new one would hand out 1 next: behind",
		"public.t_id_seq: the old database handed out 3, the new one would hand out 1 next: behind",
	}, "\n")
	if code, out := run1(); code != 4 || strings.TrimSpace(out) != want {
		t.Fatalf("exit %d, output:\n%s\nwant exit 4 and:\n%s", code, out, want)
	}
	if code, out := run1("--apply"); code != 0 || !strings.Contains(out, "moved past it") {
		t.Fatalf("--apply: exit %d, output:\n%s", code, out)
	}
	for seq, next := range map[string]int64{"hib_seq": 6, "down_seq": -3, "t_id_seq": 4, "ahead_seq": 101} {
		var v int64
		if err := queryRow(t, newURL, "select nextval('"+seq+"')", &v); err != nil || v != next {
			t.Errorf("%s on the new database: nextval %d (%v), want %d", seq, v, err, next)
		}
	}
	if code, out := run1(); code != 0 || !strings.Contains(out, "no sequence") {
		t.Fatalf("after --apply: exit %d, output:\n%s", code, out)
	}
}
