package compare

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fixedClock() func() time.Time { return func() time.Time { return t0 } }

func writeEvents(t *testing.T, dir string, opts EventLogOptions, evs []Event) {
	t.Helper()
	l, err := OpenEventLog(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if err := l.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(evs[0]); err == nil {
		t.Error("write after close succeeded")
	}
}

// reportJSON renders r without its generation time, for comparing reports
// built different ways.
func reportJSON(t *testing.T, r *Report) string {
	t.Helper()
	cp := *r
	cp.Generated = time.Time{}
	var b bytes.Buffer
	if err := WriteJSON(&b, &cp); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestEventLogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	evs := fixtureEvents()
	// Small files force several rotations; each file restates its queries.
	writeEvents(t, dir, EventLogOptions{MaxFileSize: 2000, MaxTotalSize: 1 << 20, Now: fixedClock()}, evs)
	files, err := logFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("expected rotation, got files %v", files)
	}
	for _, name := range files {
		st, _ := os.Stat(filepath.Join(dir, name))
		if st.Size() > 2000 && strings.Count(mustRead(t, filepath.Join(dir, name)), "\n") > 1 {
			t.Errorf("%s is %d bytes, over the rotation size", name, st.Size())
		}
	}
	got, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := fixtureReport(t); reportJSON(t, got) != reportJSON(t, want) {
		t.Errorf("loaded report differs:\n%s\nwant:\n%s", reportJSON(t, got), reportJSON(t, want))
	}
	if !got.Generated.Equal(t0.Add(5*time.Minute + 10*time.Second)) {
		t.Errorf("generated = %v, want the last event's time", got.Generated)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEventLogQueryOncePerFile(t *testing.T) {
	dir := t.TempDir()
	evs := fixtureEvents()[:6] // one class
	writeEvents(t, dir, EventLogOptions{Now: fixedClock()}, evs)
	files, _ := logFiles(dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	if n := strings.Count(mustRead(t, filepath.Join(dir, files[0])), evs[0].Query); n != 1 {
		t.Errorf("query written %d times", n)
	}
}

func TestEventLogTotalCap(t *testing.T) {
	dir := t.TempDir()
	var evs []Event
	for range 20 {
		evs = append(evs, fixtureEvents()...)
	}
	const fileSize, total = 4000, 12000
	writeEvents(t, dir, EventLogOptions{MaxFileSize: fileSize, MaxTotalSize: total, Now: fixedClock()}, evs)
	files, _ := logFiles(dir)
	var size int64
	for _, name := range files {
		st, _ := os.Stat(filepath.Join(dir, name))
		size += st.Size()
	}
	if size > total {
		t.Errorf("directory holds %d bytes in %d files, cap %d", size, len(files), total)
	}
	r, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Compared+r.Ignored == 0 || r.Compared+r.Ignored >= int64(len(evs)) {
		t.Errorf("after pruning, %d events remain of %d", r.Compared+r.Ignored, len(evs))
	}
	for _, c := range r.Classes {
		if c.Query == "" {
			t.Errorf("class %s lost its query after pruning", c.Fingerprint)
		}
	}
}

func TestEventLogReopenAndTornLine(t *testing.T) {
	dir := t.TempDir()
	evs := fixtureEvents()
	writeEvents(t, dir, EventLogOptions{Now: fixedClock()}, evs[:5])
	// Same clock again: the new file must not collide with the old one.
	writeEvents(t, dir, EventLogOptions{Now: fixedClock()}, evs[5:])
	files, _ := logFiles(dir)
	if len(files) != 2 {
		t.Fatalf("files %v", files)
	}
	last := filepath.Join(dir, files[1])
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2025-03-01T12:09:00Z","fingerp`)
	f.Close()
	r, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("torn last line: %v", err)
	}
	if reportJSON(t, r) != reportJSON(t, fixtureReport(t)) {
		t.Error("report with a torn line differs")
	}
	// A malformed line in the middle is corruption, not a torn write.
	os.WriteFile(last, []byte("{not json}\n"+mustRead(t, last)), 0o644)
	if _, err := LoadDir(dir); err == nil {
		t.Error("corrupt line accepted")
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing directory accepted")
	}
}
