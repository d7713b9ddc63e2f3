package compare

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// EventLogOptions bound an EventLog's disk use.
type EventLogOptions struct {
	// MaxFileSize rotates to a new file past this size (default 64 MiB).
	MaxFileSize int64
	// MaxTotalSize deletes the oldest files past this total (default 1 GiB).
	MaxTotalSize int64
	// Now names new files (default time.Now); tests fix it.
	Now func() time.Time
}

const eventLogExt = ".jsonl"

// EventLog appends events as JSON lines to files in a directory, rotating
// by size and deleting the oldest files beyond a total size. Which events
// to write is the caller's choice — every comparison gives LoadDir exact
// totals, mismatches only keep the log small. Each file names a class's
// query on the class's first event in that file, so files stand alone
// after the older ones are deleted. Safe for concurrent use.
type EventLog struct {
	dir  string
	opts EventLogOptions

	mu      sync.Mutex
	f       *os.File
	size    int64
	seq     int
	queries map[string]bool // fingerprints whose query this file has
	buf     bytes.Buffer
}

// OpenEventLog creates dir if needed and starts a new file in it.
func OpenEventLog(dir string, opts EventLogOptions) (*EventLog, error) {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = 64 << 20
	}
	if opts.MaxTotalSize <= 0 {
		opts.MaxTotalSize = 1 << 30
	}
	if opts.MaxTotalSize < opts.MaxFileSize {
		opts.MaxTotalSize = opts.MaxFileSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	l := &EventLog{dir: dir, opts: opts}
	if err := l.rotate(); err != nil {
		return nil, err
	}
	return l, nil
}

// Write appends one event.
func (l *EventLog) Write(ev Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("event log: closed")
	}
	if err := l.encode(ev); err != nil {
		return err
	}
	if l.size > 0 && l.size+int64(l.buf.Len()) > l.opts.MaxFileSize {
		if err := l.rotate(); err != nil {
			return err
		}
		// The new file has no queries yet: encode again, with the query.
		if err := l.encode(ev); err != nil {
			return err
		}
	}
	n, err := l.f.Write(l.buf.Bytes())
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	if ev.Query != "" {
		l.queries[ev.Fingerprint] = true
	}
	return nil
}

// encode puts ev's JSON line in l.buf, leaving out a query this file has.
func (l *EventLog) encode(ev Event) error {
	if l.queries[ev.Fingerprint] {
		ev.Query = ""
	}
	l.buf.Reset()
	enc := json.NewEncoder(&l.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return fmt.Errorf("event log: encode: %w", err)
	}
	return nil
}

// rotate closes the current file, opens the next and enforces the total
// size cap. Called with l.mu held (or before l is shared).
func (l *EventLog) rotate() error {
	if l.f != nil {
		if err := l.f.Close(); err != nil {
			return fmt.Errorf("event log: %w", err)
		}
	}
	// The timestamp sorts files chronologically; seq breaks ties within
	// one clock tick (and with files of an earlier process).
	stamp := l.opts.Now().UTC().Format("20060102T150405.000000000")
	var f *os.File
	var name string
	for {
		l.seq++
		name = fmt.Sprintf("events-%s-%06d%s", stamp, l.seq, eventLogExt)
		var err error
		f, err = os.OpenFile(filepath.Join(l.dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o640)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) {
			l.f = nil
			return fmt.Errorf("event log: %w", err)
		}
	}
	l.f, l.size, l.queries = f, 0, make(map[string]bool)
	return l.prune(name)
}

// prune deletes the oldest files until the directory is within the cap.
func (l *EventLog) prune(current string) error {
	files, err := logFiles(l.dir)
	if err != nil {
		return err
	}
	var total int64
	sizes := make([]int64, len(files))
	for i, name := range files {
		st, err := os.Stat(filepath.Join(l.dir, name))
		if err != nil {
			continue
		}
		sizes[i] = st.Size()
		total += st.Size()
	}
	for i, name := range files {
		if total <= l.opts.MaxTotalSize-l.opts.MaxFileSize || name == current {
			break
		}
		if err := os.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("event log: %w", err)
		}
		total -= sizes[i]
	}
	return nil
}

// Close flushes and closes the current file.
func (l *EventLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	return nil
}

// logFiles lists the event log files of dir, oldest first.
func logFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), "events-") && strings.HasSuffix(e.Name(), eventLogExt) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// LoadDir reads every event log file in dir, oldest first, into a Report
// generated at the time of the last event. A torn last line (the process
// died mid-write) is skipped; any other malformed line is an error.
func LoadDir(dir string) (*Report, error) {
	files, err := logFiles(dir)
	if err != nil {
		return nil, err
	}
	var last time.Time
	agg := NewAggregator(AggregatorOptions{Now: func() time.Time { return last }})
	for _, name := range files {
		if err := loadFile(filepath.Join(dir, name), func(ev Event) {
			if ev.Time.After(last) {
				last = ev.Time
			}
			agg.Record(ev)
		}); err != nil {
			return nil, err
		}
	}
	return agg.Snapshot(), nil
}

func loadFile(path string, fn func(Event)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load events: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var ev Event
			if jerr := json.Unmarshal(line, &ev); jerr != nil {
				if err == io.EOF {
					return nil // torn final write
				}
				return fmt.Errorf("load events: %s:%d: %w", path, lineNo, jerr)
			}
			fn(ev)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("load events: %s: %w", path, err)
		}
	}
}
