package proxy

import (
	"testing"

	"github.com/shadowproxy/shadowproxy/rewrite"
)

func TestSearchPathTracking(t *testing.T) {
	cl, err := rewrite.NewClassifier(16)
	if err != nil {
		t.Fatal(err)
	}
	// Events: "> SQL" sends a statement, "ok" / "err" answers the oldest
	// one sent, "rollback" is a ROLLBACK tag, "error" an ErrorResponse,
	// "I" / "T" / "E" a ReadyForQuery (idle), "untracked" a statement seen
	// unclassified; "= path" / "?" check the current path.
	tests := []struct {
		name   string
		params map[string]string
		events []string
	}{
		{"default", nil, []string{"= "}},
		{"startup parameter", map[string]string{"search_path": "tenant_a, public"}, []string{"= tenant_a, public"}},
		{"options", map[string]string{"options": `-c search_path=my\ schema,public -c work_mem=4MB`}, []string{"= my schema,public"}},
		{"options long form", map[string]string{"options": "--search-path=x"}, []string{"= x"}},
		{"autocommit SET", nil, []string{"> SET search_path TO t1", "?", "ok", "= t1", "I", "= t1"}},
		{"failed SET", nil, []string{"> SET search_path TO nope.x", "err", "error", "I", "= "}},
		{"SET in a committed transaction", nil, []string{
			"> BEGIN", "ok", "T", "> SET search_path = t2, public", "ok", "T", "= t2, public", "> COMMIT", "ok", "I", "= t2, public"}},
		{"SET in a rolled back transaction", map[string]string{"search_path": "t0"}, []string{
			"> SET search_path = t2", "ok", "T", "= t2", "rollback", "I", "= t0"}},
		{"SET then an error in the implicit transaction", nil, []string{
			"> SET search_path = t3", "ok", "error", "I", "= "}},
		{"SET LOCAL lasts the transaction", map[string]string{"search_path": "t0"}, []string{
			"> SET LOCAL search_path = t4", "ok", "T", "= t4", "I", "= t0"}},
		{"ROLLBACK TO SAVEPOINT makes it unknown", nil, []string{
			"> SET search_path = t5", "ok", "T", "rollback", "T", "?", "I", "?"}},
		{"RESET", map[string]string{"search_path": "t0"}, []string{"> RESET search_path", "ok", "I", "= "}},
		{"DISCARD ALL", map[string]string{"search_path": "t0"}, []string{"> DISCARD ALL", "ok", "I", "= "}},
		{"set_config", nil, []string{"> SELECT set_config('search_path', 'x', false)", "ok", "I", "?"}},
		{"untracked, then SET", nil, []string{"untracked", "?", "> SET search_path TO y", "ok", "I", "= y"}},
		{"skipped statement", nil, []string{"> SET search_path TO z", "error", "I", "= "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := newSearchPath(tc.params)
			var sent []*rewrite.Statement
			for _, ev := range tc.events {
				switch {
				case ev[0] == '>':
					st, err := cl.ClassifyOne(ev[2:])
					if err != nil {
						t.Fatal(err)
					}
					if changesSearchPath(st) {
						sp.sending()
						sent = append(sent, st)
					}
				case ev == "ok" || ev == "err":
					if len(sent) > 0 {
						sp.answered(sent[0], ev == "ok")
						sent = sent[1:]
					}
				case ev == "rollback":
					sp.rolledBack()
				case ev == "error":
					sp.errored()
				case ev == "I" || ev == "T" || ev == "E":
					sp.ready(ev[0], true)
					sent = nil
				case ev == "untracked":
					sp.untracked()
				case ev == "?":
					if p, known := sp.current(); known {
						t.Fatalf("after %v: path %q known, want unknown", tc.events, p)
					}
				case ev[0] == '=':
					if p, known := sp.current(); !known || p != ev[2:] {
						t.Fatalf("path %q (known %v), want %q, events %v", p, known, ev[2:], tc.events)
					}
				}
			}
		})
	}
}
