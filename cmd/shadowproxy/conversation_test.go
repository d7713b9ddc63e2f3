package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// converse sends msgs (ending with Sync or Query) and returns the answers
// up to the ReadyForQuery of the last, joined by "; ", each as render
// writes it ("" leaves it out).
func converse(t *testing.T, c *pgconn.PgConn, render func(pgproto3.BackendMessage) string, msgs ...pgproto3.FrontendMessage) string {
	t.Helper()
	fe := c.Frontend()
	ready := 0
	for _, m := range msgs {
		fe.Send(m)
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query:
			ready++
		}
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if line := render(m); line != "" {
			out = append(out, line)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			if ready--; ready == 0 {
				return strings.Join(out, "; ")
			}
		}
	}
}

// commonAnswer renders the answers every conversation shows alike: command
// tags, ReadyForQuery with its status, and the type of anything else.
func commonAnswer(m pgproto3.BackendMessage) string {
	switch m := m.(type) {
	case *pgproto3.CommandComplete:
		return "C " + string(m.CommandTag)
	case *pgproto3.ReadyForQuery:
		return "Z " + string(m.TxStatus)
	}
	return fmt.Sprintf("%T", m)
}

// pgconnPair connects to directURL and through the proxy p, both closed at
// the end of the test.
func pgconnPair(t *testing.T, directURL string, p *proxyProc) (direct, proxied *pgconn.PgConn) {
	t.Helper()
	for _, u := range []struct {
		url  string
		conn **pgconn.PgConn
	}{{directURL, &direct}, {p.url("postgres", "postgres"), &proxied}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c, err := pgconn.Connect(ctx, u.url)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		*u.conn = c
	}
	return direct, proxied
}

// phaseFile writes a configuration file with phase and returns its path
// and the function that switches a running proxy to another phase: it
// rewrites the file, sends SIGHUP and waits for /status to show the phase.
func phaseFile(t *testing.T, phase string) (path string, setPhase func(p *proxyProc, phase string)) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "shadowproxy.toml")
	write := func(phase string) {
		body := fmt.Sprintf("phase = %q\nreport_dir = %q\n", phase, filepath.Dir(path))
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(phase)
	return path, func(p *proxyProc, phase string) {
		t.Helper()
		write(phase)
		_ = p.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the reload to "+phase, func() bool { return p.status()["phase"] == phase })
	}
}
