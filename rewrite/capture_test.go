package rewrite

import (
	"errors"
	"strings"
	"testing"
)

func TestPlanCapture(t *testing.T) {
	suffix := `__shadowproxy_xid, `
	for _, tc := range []struct {
		in         string
		op         CaptureOp
		table      string
		wantSuffix string // what RETURNING must end with
		clientRet  bool
		set        []string
		notCapt    string
	}{
		{in: "insert into t (v) values ($1)", op: CaptureInsert, table: "t", wantSuffix: suffix + "t.tableoid AS __shadowproxy_tableoid, t.*"},
		{in: "INSERT INTO s.t AS x (v) VALUES ('a'), ('b') ON CONFLICT (id) DO UPDATE SET v = excluded.v", op: CaptureInsert, table: "s.t", wantSuffix: suffix + "x.tableoid AS __shadowproxy_tableoid, x.*"},
		{in: "insert into t select * from u returning id", op: CaptureInsert, table: "t", wantSuffix: suffix + "t.tableoid AS __shadowproxy_tableoid, t.*", clientRet: true},
		{in: "update t set v = now(), w = 1 where id = $1", op: CaptureUpdate, table: "t", wantSuffix: suffix + "t.tableoid AS __shadowproxy_tableoid, t.*", set: []string{"v", "w"}},
		{in: `update "T" x set v = u.v from u where u.id = x.id`, op: CaptureUpdate, table: "T", wantSuffix: suffix + "x.tableoid AS __shadowproxy_tableoid, x.*", set: []string{"v"}},
		{in: "delete from t using u where t.id = u.id returning t.id", op: CaptureDelete, table: "t", wantSuffix: suffix + "t.tableoid AS __shadowproxy_tableoid, t.*", clientRet: true},
		{in: "with a as (select 1) delete from t where id in (select * from a)", op: CaptureDelete, table: "t", wantSuffix: suffix + "t.tableoid AS __shadowproxy_tableoid, t.*"},
		{in: "with a as (delete from u returning id) insert into t select * from a", notCapt: "data-modifying WITH"},
		{in: "merge into t using u on t.id = u.id when matched then delete", notCapt: "MERGE"},
		{in: "truncate t", notCapt: "not an INSERT"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, err := PlanCapture(tc.in, nil)
			if !planned(t, err, tc.notCapt) {
				return
			}
			if c.Op != tc.op || c.Table != tc.table || c.ClientReturning != tc.clientRet || strings.Join(c.SetColumns, ",") != strings.Join(tc.set, ",") {
				t.Fatalf("plan %+v", c)
			}
			if !strings.HasSuffix(c.SQL, tc.wantSuffix) || !strings.Contains(c.SQL, "RETURNING ") {
				t.Fatalf("SQL %q does not end its RETURNING with %q", c.SQL, tc.wantSuffix)
			}
			// The rewritten statement must parse and keep the fingerprint
			// of everything but the RETURNING list.
			if _, err := PlanCapture(c.SQL, nil); err != nil {
				t.Fatalf("rewritten SQL does not parse again: %v", err)
			}
		})
	}
}

func TestCapturerCaches(t *testing.T) {
	c, err := NewCapturer(10, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Plan("insert into t values (1)")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Plan("insert into t values (1)")
	if a != b {
		t.Fatal("second Plan did not come from the cache")
	}
}

func TestPlanCaptureKeyChangingUpdate(t *testing.T) {
	keys := func(table string) ([]string, bool) {
		switch table {
		case "t":
			return []string{"id"}, true
		case "s.c":
			return []string{"a", "b"}, true
		}
		return nil, false
	}
	for _, tc := range []struct{ in, want string }{
		{"update t set id = id + 100 where v = 'x'",
			"UPDATE t SET id = id + 100 FROM (SELECT id AS __shadowproxy_k0 FROM t) __shadowproxy_old WHERE __shadowproxy_old.__shadowproxy_k0 = t.id AND v = 'x' RETURNING pg_current_xact_id() AS __shadowproxy_xid, t.tableoid AS __shadowproxy_tableoid, t.*, __shadowproxy_old.__shadowproxy_k0 AS __shadowproxy_oldkey_0"},
		{"update s.c as x set b = b || '!' from u where u.a = x.a returning x.a",
			"UPDATE s.c x SET b = b || '!' FROM u, (SELECT a AS __shadowproxy_k0, b AS __shadowproxy_k1 FROM s.c) __shadowproxy_old WHERE __shadowproxy_old.__shadowproxy_k0 = x.a AND __shadowproxy_old.__shadowproxy_k1 = x.b AND u.a = x.a RETURNING x.a, pg_current_xact_id() AS __shadowproxy_xid, x.tableoid AS __shadowproxy_tableoid, x.*, __shadowproxy_old.__shadowproxy_k0 AS __shadowproxy_oldkey_0, __shadowproxy_old.__shadowproxy_k1 AS __shadowproxy_oldkey_1"},
		// Not a key column: no self-join.
		{"update t set v = 1", "UPDATE t SET v = 1 RETURNING pg_current_xact_id() AS __shadowproxy_xid, t.tableoid AS __shadowproxy_tableoid, t.*"},
	} {
		c, err := PlanCapture(tc.in, keys)
		if err != nil {
			t.Fatal(err)
		}
		if c.SQL != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, c.SQL, tc.want)
		}
	}
}

func TestParseTruncate(t *testing.T) {
	for _, tc := range []struct {
		in      string
		tables  string
		cascade bool
		restart bool
	}{
		{"truncate t", "t", false, false},
		{"TRUNCATE TABLE ONLY s.a, b RESTART IDENTITY CASCADE", "s.a,b", true, true},
	} {
		tr, err := ParseTruncate(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(tr.Tables, ",") != tc.tables || tr.Cascade != tc.cascade || tr.RestartIdentity != tc.restart {
			t.Errorf("%s: %+v", tc.in, tr)
		}
	}
	if _, err := ParseTruncate("delete from t"); err == nil {
		t.Error("DELETE parsed as TRUNCATE")
	}
}

func TestCopyFrom(t *testing.T) {
	c, err := ParseCopyFrom(`copy s.t (a, "B") from stdin with (format csv, header true) where a > 1`)
	if err != nil || c.Table != "s.t" || strings.Join(c.Columns, ",") != "a,B" || !c.Stdin {
		t.Fatalf("%+v %v", c, err)
	}
	out, err := RetargetCopy(`copy s.t (a, "B") from stdin with (format csv, header true) where a > 1`, "__stage", []string{"a", "B"})
	if err != nil {
		t.Fatal(err)
	}
	want := `COPY pg_temp.__stage(a, "B") FROM STDIN WITH (FORMAT CSV, HEADER true) WHERE a > 1`
	if out != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
	if c, _ := ParseCopyFrom(`copy t from '/tmp/x'`); c == nil || c.Stdin {
		t.Fatalf("server-side file: %+v", c)
	}
	if _, err := ParseCopyFrom("copy t to stdout"); err == nil {
		t.Fatal("COPY TO parsed as COPY FROM")
	}
}

// A PREPARE of a write is planned as its body, and comes back as a PREPARE
// of the body with the capture columns, keeping its name, its parameter
// types and the client's own RETURNING first.
func TestPlanCapturePrepare(t *testing.T) {
	keys := func(table string) ([]string, bool) { return []string{"id"}, table == "t" }
	for _, tc := range []struct {
		in, prefix string
		op         CaptureOp
		clientRet  bool
		oldKey     bool
		notCapt    string
	}{
		{in: "PREPARE ins(int, text) AS INSERT INTO t (id, v) VALUES ($1, $2)", prefix: "PREPARE ins(int, text) AS INSERT INTO t (id, v) VALUES ($1, $2) RETURNING pg_current_xact_id()", op: CaptureInsert},
		{in: "prepare ins as insert into t (v) values ($1) returning id, v", prefix: "PREPARE ins AS INSERT INTO t (v) VALUES ($1) RETURNING id, v, pg_current_xact_id()", op: CaptureInsert, clientRet: true},
		{in: "PREPARE up AS UPDATE t SET id = $1 WHERE id = $2", prefix: "PREPARE up AS UPDATE t SET id = $1 FROM", op: CaptureUpdate, oldKey: true},
		{in: "PREPARE del(int) AS DELETE FROM t WHERE id = $1", prefix: "PREPARE del(int) AS DELETE FROM t WHERE id = $1 RETURNING", op: CaptureDelete},
		{in: "PREPARE m AS MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", notCapt: "MERGE"},
		{in: "PREPARE s AS SELECT 1", notCapt: "not an INSERT"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, err := PlanCapture(tc.in, keys)
			if !planned(t, err, tc.notCapt) {
				return
			}
			if c.Op != tc.op || c.Table != "t" || c.ClientReturning != tc.clientRet || (len(c.OldKey) > 0) != tc.oldKey {
				t.Fatalf("plan %+v", c)
			}
			if !strings.HasPrefix(c.SQL, tc.prefix) || !strings.HasSuffix(c.SQL, "t.*") && !tc.oldKey {
				t.Fatalf("SQL %q, want it to start with %q", c.SQL, tc.prefix)
			}
			cl, err := NewClassifier(0)
			if err != nil {
				t.Fatal(err)
			}
			stmts, err := cl.Classify(c.SQL)
			if err != nil || len(stmts) != 1 || stmts[0].Command != "PREPARE" || stmts[0].Body == nil || !stmts[0].Body.IsWrite() {
				t.Fatalf("rewritten PREPARE classifies as %+v, %v", stmts, err)
			}
		})
	}
}

// planned reports whether a plan was made, failing the test unless that is
// what notCapt ("": capturable) says: otherwise the error must be a
// NotCapturableError whose reason contains notCapt.
func planned(t *testing.T, err error, notCapt string) bool {
	t.Helper()
	if notCapt == "" {
		if err != nil {
			t.Fatal(err)
		}
		return true
	}
	var nc *NotCapturableError
	if !errors.As(err, &nc) || !strings.Contains(nc.Reason, notCapt) {
		t.Fatalf("want NotCapturableError %q, got %v", notCapt, err)
	}
	return false
}
