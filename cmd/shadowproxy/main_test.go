package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

func TestInvalidConfigNamesTheField(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		file string
		args []string
		want string
	}{
		{"no old", "", nil, "config: old: required"},
		{"bad flag phase", "", []string{"--old", "postgres://x@127.0.0.1/db", "--phase", "sideways"}, "config: phase: unknown phase"},
		{"bad limit in file", "old = \"postgres://x@127.0.0.1/db\"\n[limits]\nmax_client_conns = -1\n", nil, "limits.max_client_conns"},
		{"typo in file", "old = \"postgres://x@127.0.0.1/db\"\nlisten_addr = \"x\"\n", nil, "listen_addr"},
		{"bad new url", "", []string{"--old", "postgres://x@127.0.0.1/db", "--new", "oracle://x"}, "config: new: scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"serve"}
			if tc.file != "" {
				path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".toml")
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", path)
			}
			args = append(args, tc.args...)
			var out, errOut bytes.Buffer
			t.Setenv("SHADOWPROXY_OLD", "")
			code := run(context.Background(), args, &out, &errOut)
			if code == 0 || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want it to contain %q", code, errOut.String(), tc.want)
			}
		})
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeReloadAndDrain runs the real binary: SIGHUP applies a valid
// configuration and keeps the old one when the new one is invalid;
// SIGTERM drains and exits 0.
func TestServeReloadAndDrain(t *testing.T) {
	pg := testdb.StartPostgres(t)
	bin := filepath.Join(t.TempDir(), "shadowproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	listen, adminAddr := freePort(t), freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "shadowproxy.toml")
	write := func(body string) {
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := fmt.Sprintf("listen = %q\nadmin = %q\n", listen, adminAddr)
	write(base + "[limits]\nmax_client_conns = 5\n")
	oldURL := pg.URL("postgres", "hunter2", "postgres") // trust auth ignores it; it must not be logged
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--log-format", "json")
	cmd.Env = append(os.Environ(), "SHADOWPROXY_OLD="+oldURL)
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	status := func() map[string]any {
		t.Helper()
		var st map[string]any
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get("http://" + adminAddr + "/status")
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				if err == nil {
					return st
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("/status: %v\n%s", err, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if st := status(); st["phase"] != "old-only" || st["max_connections"] != 5.0 {
		t.Fatalf("status %v", st)
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", listen))
	if err != nil {
		t.Fatal(err)
	}
	if st := status(); st["connections"] != 1.0 {
		t.Fatalf("status %v", st)
	}

	// A valid change is applied.
	write(base + "[limits]\nmax_client_conns = 7\n")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload applied", func() bool { return status()["max_connections"] == 7.0 })
	// An invalid one is rejected with the field named, and 7 stays.
	write(base + "[limits]\nmax_client_conns = 0\n")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload rejected", func() bool {
		return strings.Contains(logs.String(), "reload rejected") && strings.Contains(logs.String(), "limits.max_client_conns")
	})
	if st := status(); st["max_connections"] != 7.0 {
		t.Fatalf("invalid reload changed the running config: %v", st)
	}
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`shadowproxy_config_reloads_total{result="ok"} 1`, `shadowproxy_config_reloads_total{result="rejected"} 1`, "shadowproxy_client_connections 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// SIGTERM with a transaction open: it may finish, then the proxy exits 0.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	if _, err := tx.Exec(ctx, "select 1"); err != nil {
		t.Fatalf("transaction cut off by SIGTERM: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("proxy did not exit after SIGTERM\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "hunter2") {
		t.Fatalf("logs contain the old database's password:\n%s", logs.String())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
