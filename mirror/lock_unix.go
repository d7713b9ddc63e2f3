//go:build unix

package mirror

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive advisory lock on dir, so that two processes (or
// two Mirrors) never append to the same spool. The kernel releases it when
// the process dies, so a crash never leaves a stale lock behind.
func lockDir(dir string) (unlock func() error, err error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("mirror: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("mirror: %s is in use by another mirror: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("mirror: lock: %w", err)
	}
	return f.Close, nil
}
