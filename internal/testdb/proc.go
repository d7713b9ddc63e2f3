package testdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// startTimeout bounds a server's start (initialization included) when the
// caller's context has no deadline of its own.
const startTimeout = 2 * time.Minute

// withDefaultTimeout returns ctx with startTimeout applied unless it already
// has a deadline.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, startTimeout)
}

// process is one running server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, valid after done is closed
}

// startProcess starts name with args as the user as, in directory dir,
// appending stdout and stderr to logPath. Pdeathsig makes the kernel kill the server when the
// thread that started it dies, i.e. when this process dies: a test binary
// that panics or hits -timeout must not leave servers behind. (Go sets
// Pdeathsig after switching credentials, so it survives the switch.)
func startProcess(as runAs, dir, logPath, name string, args ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testdb: %w", err)
	}
	defer logf.Close() // the child has its own copy of the descriptor
	cmd := exec.Command(name, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = serverEnv()
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: as.cred,
		Pdeathsig:  syscall.SIGKILL,
		// Its own process group: a Ctrl-C in the terminal running the demo
		// reaches devdb, which then stops the servers in order, rather than
		// the servers directly.
		Setpgid: true,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testdb: starting %s: %w", name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// serverEnv is the environment of server processes: ours, minus variables
// that would change what the servers or their tools do (a PGDATA, a
// MYSQL_HOME, the caller's locale), plus the C locale so messages and
// defaults do not depend on the machine.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "MYSQL") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits for the process to exit. After grace it sends
// SIGKILL, so stop always returns once the process is gone.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testdb: signal %v: %w", sig, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("testdb: server did not exit within %v of %v; killed", grace, sig)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// server binding it later can still lose a race with another process, which
// the callers detect (addrInUse) and retry with a new port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testdb: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// addrInUse reports whether a server log says it could not bind its port.
func addrInUse(log string) bool {
	return strings.Contains(log, "Address already in use")
}

// runAsUser runs a set-up command (initdb, mariadb-install-db) as the user
// as, in directory dir (the caller's working directory may be one that user
// cannot enter), and returns its combined output.
func runAsUser(ctx context.Context, as runAs, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = serverEnv()
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: as.cred, Pdeathsig: syscall.SIGKILL}
	return cmd.CombinedOutput()
}

// fileSize returns the size of the file at path, 0 if it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the file at path from byte offset on: the part of a log
// written by the latest start attempt.
func readFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	return string(b[offset:])
}

// appendFile appends text to the file at path.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("testdb: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("testdb: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("testdb: %w", err)
	}
	return nil
}

// abbreviate shortens SQL for error messages.
func abbreviate(sql string) string {
	sql = strings.Join(strings.Fields(sql), " ")
	if len(sql) > 120 {
		return sql[:117] + "..."
	}
	return sql
}

// readTail returns the last n bytes of the file at path, for error messages.
func readTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return tail(b, n)
}

// waitReady calls ready every 50ms until it succeeds, the process exits, or
// ctx is done. lastErr in the returned error explains what ready last saw.
func waitReady(ctx context.Context, p *process, ready func(context.Context) error) error {
	var lastErr error
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		// A server that exits ends the attempt at once: whatever holds the
		// port (the reason it exited, often) may accept and never answer.
		go func() {
			select {
			case <-p.done:
				cancel()
			case <-attempt.Done():
			}
		}()
		lastErr = ready(attempt)
		cancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("server exited during start-up (%v)", p.err)
		case <-ctx.Done():
			return fmt.Errorf("server not ready: %w (last attempt: %v)", ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
