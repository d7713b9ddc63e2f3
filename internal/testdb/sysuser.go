package testdb

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// fallbackUser is created when a server must not run as root and its
// package's own system user does not exist.
const fallbackUser = "shadowproxy-test"

// runAs is the identity a server process runs with. A nil cred means "as
// this process", which is the case whenever this process is not root.
type runAs struct {
	name     string
	uid, gid uint32
	cred     *syscall.Credential
}

// serverUser picks the user to run a server as: this process itself when it
// is not root; otherwise preferred (the package's system user, "postgres"
// or "mysql"), created as fallbackUser when it does not exist.
func serverUser(preferred string) (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{name: "(self)", uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}, nil
	}
	u, err := user.Lookup(preferred)
	if err != nil {
		if u, err = user.Lookup(fallbackUser); err != nil {
			out, addErr := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
				"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", fallbackUser).CombinedOutput()
			// A concurrent test binary may have created it first, so look
			// again before reporting useradd's failure.
			if u, err = user.Lookup(fallbackUser); err != nil {
				return runAs{}, fmt.Errorf("testdb: need a non-root user to run the server: useradd %s: %v: %s", fallbackUser, addErr, out)
			}
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return runAs{}, fmt.Errorf("testdb: user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return runAs{}, fmt.Errorf("testdb: user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	return runAs{
		name: u.Username,
		uid:  uint32(uid),
		gid:  uint32(gid),
		// An empty Groups drops root's supplementary groups in the child
		// (setgroups with an empty list); the servers need none.
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
	}, nil
}

// chown gives path to the server user. It is a no-op when the server runs
// as this process.
func (r runAs) chown(path string) error {
	if r.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(r.uid), int(r.gid)); err != nil {
		return fmt.Errorf("testdb: %w", err)
	}
	return nil
}

// mkdir creates dir with perm, owned by the server user.
func (r runAs) mkdir(dir string, perm fs.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("testdb: %w", err)
	}
	// MkdirAll's perm is filtered by the umask; the servers are strict about
	// their data directory's mode, so set it exactly.
	if err := os.Chmod(dir, perm); err != nil {
		return fmt.Errorf("testdb: %w", err)
	}
	return r.chown(dir)
}

// traversable reports whether a user (uid, gid) may search a directory with
// the given mode and owner: the x bit of the class the user falls in.
func traversable(mode fs.FileMode, ownerUID, ownerGID, uid, gid uint32) bool {
	if uid == 0 {
		return true
	}
	perm := mode.Perm()
	switch {
	case ownerUID == uid:
		return perm&0o100 != 0
	case ownerGID == gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// checkTraversable returns an error naming the first directory from dir up
// to / that the server user cannot enter. A server run as "postgres" cannot
// use a data directory below root's 0700 home, nor below t.TempDir(), whose
// per-test directories are 0700.
func (r runAs) checkTraversable(dir string) error {
	if r.cred == nil {
		return nil
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("testdb: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("testdb: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("testdb: stat %s: no owner information", d)
		}
		if !traversable(fi.Mode(), st.Uid, st.Gid, r.uid, r.gid) {
			return fmt.Errorf("testdb: the server runs as user %s, which cannot enter %s (mode %v); use a directory it can reach, e.g. under /tmp", r.name, d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// newRoot creates the directory that holds one server's files. With dir
// empty it is a fresh temporary directory below $TMPDIR, or below /tmp when
// the server user cannot reach $TMPDIR. A given dir must be missing, empty,
// or a root left by an earlier run (it holds markerFile), which is wiped:
// this guards against `devdb --dir .` deleting a source tree.
func (r runAs) newRoot(dir, prefix string) (string, error) {
	if dir == "" {
		base := os.TempDir()
		if r.checkTraversable(base) != nil {
			base = "/tmp"
		}
		d, err := os.MkdirTemp(base, prefix)
		if err != nil {
			return "", fmt.Errorf("testdb: %w", err)
		}
		dir = d
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", fmt.Errorf("testdb: %w", err)
		}
		dir = abs
		if err := wipeRoot(dir); err != nil {
			return "", err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("testdb: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, markerFile), []byte("created by shadowproxy internal/testdb; removed when the server is closed\n"), 0o644); err != nil {
		return "", fmt.Errorf("testdb: %w", err)
	}
	// 0755 so that the server user can enter it when we are root; its
	// contents carry their own, stricter modes.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("testdb: %w", err)
	}
	if err := r.checkTraversable(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	// The servers report their data directory with symlinks resolved
	// (MariaDB's @@datadir does); readiness checks compare against it.
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("testdb: %w", err)
	}
	return resolved, nil
}

// markerFile marks a directory as a server root this package created.
const markerFile = ".shadowproxy-testdb"

// wipeRoot removes an earlier run's server root at dir, refusing to touch a
// non-empty directory that is not one.
func wipeRoot(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("testdb: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err != nil {
		names := make([]string, 0, 3)
		for i := 0; i < len(entries) && i < 3; i++ {
			names = append(names, entries[i].Name())
		}
		return fmt.Errorf("testdb: %s is not empty (%s...) and was not created by testdb; refusing to wipe it", dir, strings.Join(names, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("testdb: removing the previous server in %s: %w", dir, err)
	}
	return nil
}
