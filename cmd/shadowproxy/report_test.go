package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/compare"
)

// writeEvents writes events to a fresh event log directory.
func writeEvents(t *testing.T, events ...compare.Event) string {
	t.Helper()
	dir := t.TempDir()
	l, err := compare.OpenEventLog(dir, compare.EventLogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if err := l.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

var reportAt = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func matchEvent() compare.Event {
	return compare.Event{Time: reportAt, Fingerprint: "aaaa", Query: "SELECT id FROM t", Tables: []string{"t"},
		Outcome: &compare.Outcome{Match: true, OldRows: 2, NewRows: 2}}
}

func valueEvent() compare.Event {
	return compare.Event{Time: reportAt, Fingerprint: "bbbb", Query: "SELECT v FROM t WHERE id = $1", Tables: []string{"t"},
		Params: []string{`"7"`}, Outcome: &compare.Outcome{
			Counts:  map[compare.DiffType]int{compare.DiffValue: 1},
			Columns: map[string]int{"v": 1},
			Diffs:   []compare.Diff{{Type: compare.DiffValue, Column: "v", RowKey: "id=7", Old: `"before"`, New: `"after"`}},
		}}
}

func errorEvent() compare.Event {
	oe := &compare.Error{Code: "42P01", Message: `relation "u" does not exist`}
	return compare.Event{Time: reportAt, Fingerprint: "cccc", Query: "SELECT * FROM u", Outcome: &compare.Outcome{
		Counts:   map[compare.DiffType]int{compare.DiffError: 1},
		Diffs:    []compare.Diff{{Type: compare.DiffError, Old: "ok", New: oe.String(), Rule: compare.RuleSQLState}},
		NewError: oe,
	}}
}

func TestReportExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		events []compare.Event
		want   int
	}{
		{"no events", nil, 0},
		{"matches only", []compare.Event{matchEvent(), matchEvent()}, 0},
		{"a value mismatch", []compare.Event{matchEvent(), valueEvent()}, compare.ExitMismatches},
		{"an error on one side", []compare.Event{errorEvent()}, compare.ExitErrors},
		{"both", []compare.Event{valueEvent(), errorEvent()}, compare.ExitErrors | compare.ExitMismatches},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeEvents(t, tt.events...)
			var stdout, stderr bytes.Buffer
			if code := runReport([]string{dir}, &stdout, &stderr); code != tt.want {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.want, &stderr)
			}
			if !strings.Contains(stdout.String(), "shadowproxy comparison report") {
				t.Errorf("no text report:\n%s", &stdout)
			}
		})
	}
}

func TestReportFormats(t *testing.T) {
	dir := writeEvents(t, matchEvent(), valueEvent())
	tests := []struct {
		args  []string
		check func(t *testing.T, out []byte)
	}{
		{[]string{dir}, func(t *testing.T, out []byte) {
			for _, want := range []string{"mismatched 1", "SELECT v FROM t WHERE id = $1", `old "before" | new "after"`, `params ["7"]`} {
				if !bytes.Contains(out, []byte(want)) {
					t.Errorf("text report lacks %q:\n%s", want, out)
				}
			}
		}},
		{[]string{"--format", "json", dir}, func(t *testing.T, out []byte) {
			var r compare.Report
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if r.Compared != 2 || r.Mismatched != 1 || len(r.Classes) != 2 || r.Classes[0].Examples[0].Column != "v" {
				t.Errorf("report %+v", r)
			}
		}},
		// Flags after the directory work too.
		{[]string{dir, "-format=html"}, func(t *testing.T, out []byte) {
			if !bytes.Contains(out, []byte("<html")) || !bytes.Contains(out, []byte("before")) {
				t.Errorf("not the HTML report:\n%s", out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:len(tt.args)-1], " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runReport(tt.args, &stdout, &stderr); code != compare.ExitMismatches {
				t.Fatalf("exit %d; stderr: %s", code, &stderr)
			}
			tt.check(t, stdout.Bytes())
		})
	}
}

func TestReportOutFile(t *testing.T) {
	dir := writeEvents(t, valueEvent())
	out := filepath.Join(t.TempDir(), "report.html")
	var stdout, stderr bytes.Buffer
	if code := runReport([]string{"--format", "html", "--out", out, dir}, &stdout, &stderr); code != compare.ExitMismatches {
		t.Fatalf("exit %d; stderr: %s", code, &stderr)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout not empty with --out: %s", &stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("<html")) {
		t.Errorf("%s is not the HTML report", out)
	}
}

func TestReportUsageErrors(t *testing.T) {
	events := writeEvents(t, matchEvent())
	empty := t.TempDir()
	file := filepath.Join(empty, "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"no directory", nil, "want exactly one directory"},
		{"two directories", []string{events, events}, "want exactly one directory"},
		{"unknown format", []string{"--format", "pdf", events}, `unknown format "pdf"`},
		{"unknown flag", []string{"--colour", events}, "flag provided but not defined"},
		{"missing directory", []string{filepath.Join(empty, "nope")}, "does not exist"},
		{"not a directory", []string{file}, "is not a directory"},
		{"no event files", []string{empty}, "no event files"},
		{"unwritable output", []string{"--out", filepath.Join(empty, "nope", "r.txt"), events}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runReport(tt.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tt.msg) {
				t.Errorf("stderr lacks %q:\n%s", tt.msg, &stderr)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := runReport([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "usage: shadowproxy report") {
		t.Errorf("-h: exit %d, stdout %q", code, &stdout)
	}
}
