package testdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnsurePackages installs the Debian packages pkgs that are not installed
// yet, and fails the test when that is impossible (not root, not Debian, no
// network). It does nothing, quickly, when all are installed.
func EnsurePackages(tb testing.TB, pkgs ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := InstallPackages(ctx, pkgs...); err != nil {
		tb.Fatal(err)
	}
}

// aptUpdated records that this process has refreshed the package lists, so
// that a test binary which needs packages twice runs apt-get update once.
var aptUpdated struct {
	sync.Mutex
	done bool
}

// aptLockPath serializes installs between test binaries: `go test ./...`
// runs several packages at once and each may want the same packages. apt's
// own lock would make all but one fail instead of wait.
const aptLockPath = "/tmp/shadowproxy-testdb-apt.lock"

// policyRCPath is Debian's hook that decides whether maintainer scripts may
// start services. A script that exits 101 forbids it, which keeps
// mariadb-server's postinst from starting a system server on port 3306.
const policyRCPath = "/usr/sbin/policy-rc.d"

// InstallPackages is EnsurePackages for callers without a testing.TB. It
// returns an error naming the missing packages when it cannot install them.
func InstallPackages(ctx context.Context, pkgs ...string) error {
	missing, err := missingPackages(ctx, pkgs)
	if err != nil || len(missing) == 0 {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("testdb: Debian packages %s are not installed and this process is not root; run scripts/install-deps.sh as root (or: sudo apt-get install %s)",
			strings.Join(missing, ", "), strings.Join(missing, " "))
	}

	unlock, err := lockFile(ctx, aptLockPath)
	if err != nil {
		return err
	}
	defer unlock()
	// Another process may have installed them while we waited for the lock.
	if missing, err = missingPackages(ctx, pkgs); err != nil || len(missing) == 0 {
		return err
	}

	if _, err := os.Lstat(policyRCPath); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policyRCPath, []byte("#!/bin/sh\n# Written by shadowproxy testdb while installing packages.\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(policyRCPath)
		}
	}

	aptUpdated.Lock()
	defer aptUpdated.Unlock()
	if !aptUpdated.done {
		if out, err := apt(ctx, "update"); err != nil {
			return fmt.Errorf("testdb: apt-get update: %w\n%s", err, tail(out, 4096))
		}
		aptUpdated.done = true
	}
	args := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	if out, err := apt(ctx, args...); err != nil {
		return fmt.Errorf("testdb: apt-get install %s: %w\n%s", strings.Join(missing, " "), err, tail(out, 8192))
	}
	if still, err := missingPackages(ctx, pkgs); err != nil {
		return err
	} else if len(still) > 0 {
		return fmt.Errorf("testdb: apt-get install succeeded but %s still not installed", strings.Join(still, ", "))
	}
	return nil
}

// apt runs apt-get non-interactively. DPkg::Lock::Timeout makes it wait for
// a dpkg run outside our control (unattended upgrades, a human) instead of
// failing at once.
func apt(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"-q", "-o", "DPkg::Lock::Timeout=300"}, args...)
	cmd := exec.CommandContext(ctx, "apt-get", full...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=a")
	return cmd.CombinedOutput()
}

// missingPackages returns the packages of pkgs that dpkg does not report as
// installed.
func missingPackages(ctx context.Context, pkgs []string) ([]string, error) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		return nil, fmt.Errorf("testdb: dpkg-query not found: this is not a Debian-like system, install %s by hand", strings.Join(pkgs, ", "))
	}
	var missing []string
	for _, p := range pkgs {
		// dpkg-query exits non-zero for a package it has never heard of;
		// that is "missing", not an error.
		out, _ := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Status}", p).Output()
		if !packageInstalled(string(out)) {
			missing = append(missing, p)
		}
	}
	return missing, ctx.Err()
}

// packageInstalled interprets dpkg-query's ${Status} field, e.g.
// "install ok installed" or "deinstall ok config-files".
func packageInstalled(status string) bool {
	f := strings.Fields(status)
	return len(f) == 3 && f[2] == "installed"
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel
// the wait. The returned function releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("testdb: lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testdb: lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("testdb: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("testdb: waiting for %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tail returns at most the last n bytes of b, starting at a line boundary
// when possible, for error messages that quote a log.
func tail(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
		b = b[i+1:]
	}
	return "[...]\n" + string(b)
}
