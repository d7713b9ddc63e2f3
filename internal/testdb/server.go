package testdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// server is the life cycle Postgres and MariaDB share: one process that can
// be stopped cleanly or like a crash, started again on the same port with
// the same data, and removed with its files.
type server struct {
	name     string // for messages: "postgres", "mariadb"
	root     string // holds all the server's files; removed by Close
	stopSig  syscall.Signal
	crashSig syscall.Signal
	// startFn starts the process again on its port (it sets proc).
	startFn func(ctx context.Context) error

	mu     sync.Mutex
	proc   *process // nil while stopped
	closed bool
}

// Stop shuts the server down cleanly (committed data is kept); Restart
// brings it back.
func (s *server) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.Shutdown(); err != nil {
		tb.Fatal(err)
	}
}

// Kill stops the server like a crash: the next start runs crash recovery.
// Restart brings it back.
func (s *server) Kill(tb testing.TB) {
	tb.Helper()
	if err := s.Crash(); err != nil {
		tb.Fatal(err)
	}
}

// Restart starts the server again on the same port with the same data,
// stopping it first if it is running.
func (s *server) Restart(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Shutdown(); err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		tb.Fatal(err)
	}
}

// Shutdown is Stop returning the error. Stopping a stopped server is a no-op.
func (s *server) Shutdown() error { return s.halt(s.stopSig) }

// Crash is Kill returning the error.
func (s *server) Crash() error { return s.halt(s.crashSig) }

func (s *server) halt(sig syscall.Signal) error {
	s.mu.Lock()
	proc := s.proc
	s.proc = nil
	s.mu.Unlock()
	if proc == nil {
		return nil
	}
	if err := proc.stop(sig, 30*time.Second); err != nil {
		return fmt.Errorf("testdb: stopping %s: %w", s.name, err)
	}
	return nil
}

// Start starts a stopped server again on the same port with the same data.
func (s *server) Start(ctx context.Context) error {
	s.mu.Lock()
	running, closed := s.proc != nil, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("testdb: %s: Start after Close", s.name)
	case running:
		return fmt.Errorf("testdb: %s: Start while running", s.name)
	}
	return s.startFn(ctx)
}

// Close stops the server at once and removes its files. It is safe to call
// more than once.
func (s *server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.Crash()
	if rerr := os.RemoveAll(s.root); rerr != nil {
		err = errors.Join(err, fmt.Errorf("testdb: %w", rerr))
	}
	return err
}
