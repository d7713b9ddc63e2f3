package shadow

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/compare"
)

func TestReportHandler(t *testing.T) {
	s := newShadower(t, Options{NewURL: "postgres://app@127.0.0.1:1/db"})
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	s.agg.Record(compare.Event{Time: at, Fingerprint: "f1", Query: "SELECT v FROM t WHERE id = $1", Tables: []string{"t"},
		Params: []string{`"7"`}, Outcome: &compare.Outcome{Counts: map[compare.DiffType]int{compare.DiffValue: 1},
			Diffs: []compare.Diff{{Type: compare.DiffValue, Column: "v", RowKey: "id=7", Old: `"a"`, New: `"b"`}}}})
	s.agg.Record(compare.Event{Time: at, Fingerprint: "f2", Query: "SELECT 1", Outcome: &compare.Outcome{Match: true}})
	h := s.Handler()

	tests := []struct {
		target, method string
		status         int
		contentType    string
		contains       string
	}{
		{"/report", http.MethodGet, 200, "application/json", `"mismatched": 1`},
		{"/report?format=json", http.MethodGet, 200, "application/json", `"column": "v"`},
		{"/report?format=text", http.MethodGet, 200, "text/plain", "SELECT v FROM t WHERE id = $1"},
		{"/report?format=html", http.MethodGet, 200, "text/html", "<html"},
		{"/report?format=xml", http.MethodGet, 400, "text/plain", "unknown format"},
		{"/report", http.MethodPost, 405, "text/plain", "not allowed"},
		{"/report", http.MethodHead, 200, "application/json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("content type %q, want %q", ct, tt.contentType)
			}
			if !strings.Contains(rec.Body.String(), tt.contains) {
				t.Errorf("body lacks %q:\n%s", tt.contains, rec.Body)
			}
			if tt.method == http.MethodHead && rec.Body.Len() != 0 {
				t.Error("HEAD has a body")
			}
		})
	}

	// The JSON is the aggregate report.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/report", nil))
	var rep compare.Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Compared != 2 || rep.Matched != 1 || len(rep.Classes) != 2 || rep.Classes[0].Examples[0].Params[0] != `"7"` {
		t.Errorf("report %+v", rep)
	}
}
