package mirror

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// DeadLetterFile is the name of the dead-letter file in Options.Dir: one JSON
// object (a DeadLetter) per line, appended and fsynced.
const DeadLetterFile = "deadletter.jsonl"

// Dead-letter reasons.
const (
	// ReasonRejected: the Target refused the batch (*RejectError).
	ReasonRejected = "rejected"
	// ReasonSpoolFull: the batch did not fit in MaxSpoolBytes and was
	// dropped.
	ReasonSpoolFull = "spool full"
	// ReasonSpoolWrite: writing the batch to the spool failed (disk error) and
	// it was dropped.
	ReasonSpoolWrite = "spool write failed"
	// ReasonSpoolCorrupt: spooled data could not be read back; the batches
	// in it are lost.
	ReasonSpoolCorrupt = "spool corrupt"
	// ReasonClosed: Enqueue was called after Close.
	ReasonClosed = "mirror closed"
	// ReasonUnencodable: the batch could not be encoded for the spool (a
	// Change with an invalid Op).
	ReasonUnencodable = "unencodable"
	// ReasonTooLarge: the producer did not keep a transaction's changes,
	// which outgrew its bound and could not be journaled in pieces (see
	// Mirror.Unmirrored).
	ReasonTooLarge = "transaction too large"
)

// DeadLetter is one line of deadletter.jsonl: a batch the mirror could not
// apply. A batch is one transaction and the Target applies it as one, so a
// rejected change rolls back the whole batch: Changes holds all of it, and
// every table in Tables was marked dirty.
type DeadLetter struct {
	Time        time.Time `json:"time"`
	Reason      string    `json:"reason"`
	Seq         uint64    `json:"seq,omitempty"`
	CommittedAt time.Time `json:"committed_at,omitzero"`
	// Table and Fingerprint are those of the refused change when the target
	// said which one (ChangeIndex >= 0).
	Table       string `json:"table,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	SQLState    string `json:"sqlstate,omitempty"`
	Error       string `json:"error,omitempty"`
	ChangeIndex int    `json:"change_index"`
	// Change is the refused change, when known.
	Change *Change `json:"change,omitempty"`
	// Changes is the whole batch for a rejected batch. Batches dropped for
	// lack of spool space (or a disk error) are recorded without their rows,
	// which would take the very disk space that is missing: Tables says what
	// to repair from the old database.
	Changes []Change `json:"changes,omitempty"`
	// NumChanges is the number of changes in the batch.
	NumChanges int `json:"num_changes,omitempty"`
	// Fingerprints are the distinct statement fingerprints of the batch.
	Fingerprints []string `json:"fingerprints,omitempty"`
	// Tables are the tables marked dirty because of this dead letter.
	Tables []string `json:"tables,omitempty"`
	// Segment and Offset locate lost spool data (ReasonSpoolCorrupt).
	Segment string `json:"segment,omitempty"`
	Offset  int64  `json:"offset,omitempty"`
	// Lost is the number of batches lost in a corrupt spool span.
	Lost int `json:"lost,omitempty"`
}

// newDeadLetter describes batch b, dropped for reason. withRows says whether
// the changes themselves are recorded.
func newDeadLetter(now time.Time, reason string, b *Batch, err error, withRows bool) *DeadLetter {
	dl := &DeadLetter{
		Time:        now,
		Reason:      reason,
		Seq:         b.Seq,
		CommittedAt: b.CommittedAt,
		ChangeIndex: -1,
		NumChanges:  len(b.Changes),
		Tables:      b.tables(),
	}
	if withRows {
		dl.Changes = b.Changes
	}
	for i := range b.Changes {
		if fp := b.Changes[i].Fingerprint; fp != "" && !slices.Contains(dl.Fingerprints, fp) {
			dl.Fingerprints = append(dl.Fingerprints, fp)
		}
	}
	if err != nil {
		dl.Error = err.Error()
	}
	return dl
}

// deadLetters appends to deadletter.jsonl; it is used by the applier and the
// spool writer.
type deadLetters struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openDeadLetters(dir string) (*deadLetters, error) {
	path := filepath.Join(dir, DeadLetterFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("mirror: dead letters: %w", err)
	}
	return &deadLetters{path: path, f: f}, nil
}

// write appends dl as one line and fsyncs: dead letters are rare and are the
// only record of lost data, so they are made durable one by one.
func (d *deadLetters) write(dl *DeadLetter) error {
	b, err := json.Marshal(dl)
	if err != nil {
		// The rows themselves cannot be rendered (a Change with an invalid
		// Op, the very reason for ReasonUnencodable): record the batch
		// without them rather than not at all.
		slim := *dl
		slim.Changes, slim.Change = nil, nil
		slim.Error = strings.TrimPrefix(dl.Error+"; rows not recorded: "+err.Error(), "; ")
		if b, err = json.Marshal(&slim); err != nil {
			return fmt.Errorf("mirror: dead letter: %w", err)
		}
	}
	b = append(b, '\n')
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return fmt.Errorf("mirror: dead letter: %s is closed", d.path)
	}
	if _, err := d.f.Write(b); err != nil {
		return fmt.Errorf("mirror: dead letter: %w", err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("mirror: dead letter: %w", err)
	}
	return nil
}

func (d *deadLetters) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}

// ReadDeadLetters parses a deadletter.jsonl stream. A torn last line (a crash
// during an append) is ignored; any other malformed line is an error.
func ReadDeadLetters(r io.Reader) ([]DeadLetter, error) {
	var out []DeadLetter
	br := bufio.NewReader(r)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if err == io.EOF {
			// No newline: an incomplete last line, or nothing.
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("mirror: dead letters: %w", err)
		}
		var dl DeadLetter
		if err := json.Unmarshal(b, &dl); err != nil {
			return out, fmt.Errorf("mirror: dead letters: line %d: %w", line, err)
		}
		out = append(out, dl)
	}
}
