package proxy

import (
	"testing"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

func TestTempNames(t *testing.T) {
	cls, err := rewrite.NewClassifier(100)
	if err != nil {
		t.Fatal(err)
	}
	// Each step runs a statement (DDL, or COMMIT/ROLLBACK/DISCARD) and then
	// checks which names are the session's temporary tables.
	type step struct {
		sql  string
		inTx bool
		temp []string // temporary afterwards
		perm []string // not temporary afterwards
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"autocommit create and drop", []step{
			{sql: "create temp table a (id int)", temp: []string{"a", "pg_temp.a"}, perm: []string{"public.a", "b"}},
			{sql: "create temporary table b as select 1", temp: []string{"a", "b"}},
			{sql: "drop table a", temp: []string{"b"}, perm: []string{"a"}},
			{sql: "discard all", perm: []string{"a", "b"}},
		}},
		{"on commit drop outside a transaction is gone at once", []step{
			{sql: "create temp table a (id int) on commit drop", perm: []string{"a"}},
		}},
		{"on commit drop lasts until the transaction ends", []step{
			{sql: "create temp table a (id int) on commit drop", inTx: true, temp: []string{"a"}},
			{sql: "commit", perm: []string{"a"}},
		}},
		{"rollback undoes creates and drops", []step{
			{sql: "create temp table kept (id int)", temp: []string{"kept"}},
			{sql: "create temp table undone (id int)", inTx: true, temp: []string{"kept", "undone"}},
			{sql: "drop table kept", inTx: true, perm: []string{"kept"}},
			{sql: "rollback", temp: []string{"kept"}, perm: []string{"undone"}},
		}},
		{"commit keeps creates and drops", []step{
			{sql: "create temp table gone (id int)", temp: []string{"gone"}},
			{sql: "create temp table made (id int)", inTx: true},
			{sql: "drop table gone", inTx: true},
			{sql: "commit", temp: []string{"made"}, perm: []string{"gone"}},
		}},
		{"dropping a temporary and a permanent table is not temporary DDL", []step{
			{sql: "create temp table a (id int)"},
			{sql: "drop table a, b", temp: []string{"a"}},
		}},
		{"discard temp", []step{
			{sql: "create temp table a (id int)"},
			{sql: "discard temp", perm: []string{"a"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tn tempNames
			for _, s := range tc.steps {
				st, err := cls.ClassifyOne(s.sql)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case st.Kind == rewrite.DDL:
					tn.ddlDone(st, s.inTx)
				case st.TxOp == rewrite.Commit:
					tn.txEnded(true)
				case st.TxOp == rewrite.Rollback:
					tn.txEnded(false)
				case st.Command == "DISCARD ALL" || st.Command == "DISCARD TEMP":
					tn.discard()
				default:
					t.Fatalf("%s: unexpected statement", s.sql)
				}
				for _, n := range s.temp {
					if !tn.has(n) {
						t.Errorf("after %q: %s is not temporary", s.sql, n)
					}
				}
				for _, n := range s.perm {
					if tn.has(n) {
						t.Errorf("after %q: %s is temporary", s.sql, n)
					}
				}
			}
		})
	}
}

func TestIsTemporaryDDL(t *testing.T) {
	cls, err := rewrite.NewClassifier(100)
	if err != nil {
		t.Fatal(err)
	}
	tn := tempNames{names: map[string]bool{"scratch": true}}
	for sql, want := range map[string]bool{
		"create temp table x (id int)":                true,
		"create table x (id int)":                     false,
		"create index on scratch (id)":                true,
		"alter table scratch add column v int":        true,
		"alter table public.scratch add column v int": false,
		"drop table scratch":                          true,
		"drop table scratch, users":                   false,
		"drop index scratch_idx":                      false, // the index's table is not named
		"insert into scratch values (1)":              false, // not DDL
	} {
		st, err := cls.ClassifyOne(sql)
		if err != nil {
			t.Fatal(err)
		}
		if got := tn.isTemporaryDDL(st); got != want {
			t.Errorf("isTemporaryDDL(%q) = %v, want %v", sql, got, want)
		}
	}
	if tn.hasAll(nil) {
		t.Error("hasAll of no names")
	}
}
