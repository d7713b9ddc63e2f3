//go:build !unix

package mirror

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir creates dir/LOCK exclusively. Without flock a crash leaves the file
// behind, and the operator has to delete it after checking that no proxy runs.
func lockDir(dir string) (unlock func() error, err error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o640)
	if os.IsExist(err) {
		return nil, fmt.Errorf("mirror: %s is in use by another mirror (or remove %s): %w", dir, path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("mirror: lock: %w", err)
	}
	return func() error {
		f.Close()
		return os.Remove(path)
	}, nil
}
