package mirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is the name of the small persisted state in Options.Dir. It is
// JSON so an operator can read it; it is replaced atomically (write a
// temporary file, fsync, rename, fsync the directory).
const stateFile = "state.json"

const stateVersion = 1

// state is what must survive a restart besides the spool itself.
type state struct {
	Version int `json:"version"`
	// AppliedSeq is the checkpoint: every batch up to it was applied (or
	// dead-lettered). A restart resumes after it.
	AppliedSeq uint64 `json:"applied_seq"`
	// SeqCeiling is a lease on Seqs: this process may hand out Seqs up to it,
	// and the next process starts above it, so Seqs are never reused even
	// for batches that were only in memory when the process died.
	SeqCeiling uint64 `json:"seq_ceiling"`
	// Overflowed and DirtyTables record data the mirror lost (spool full,
	// rejected batches, corrupt spool): repair is needed.
	Overflowed  bool     `json:"overflowed,omitempty"`
	DirtyTables []string `json:"dirty_tables,omitempty"`
}

func readState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return state{Version: stateVersion}, nil
	}
	if err != nil {
		return st, fmt.Errorf("mirror: state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("mirror: state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Version != stateVersion {
		return st, fmt.Errorf("mirror: state %s: unsupported version %d", filepath.Join(dir, stateFile), st.Version)
	}
	return st, nil
}

func writeState(dir string, st state) error {
	st.Version = stateVersion
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("mirror: state: %w", err)
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("mirror: state: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, stateFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("mirror: state: %w", err)
	}
	return nil
}
