package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// bgProc is a server the bench started (a proxy, pgbouncer), running until
// stop. Its output goes to a log file, shown when it fails.
type bgProc struct {
	name      string
	port      int
	adminPort int // a proxy's admin server (/status), 0 for none
	logPath   string
	cmd       *exec.Cmd
	done      chan struct{} // closed when the process has exited
	err       error         // cmd.Wait's result, valid after done is closed
}

// startBG starts cmd with its output appended to logPath. Pdeathsig makes
// the kernel kill it if the bench dies, so that no server outlives an
// interrupted bench on a shared machine; Setpgid keeps a Ctrl-C in the
// terminal for the bench, which then stops its servers in order.
func startBG(name string, port int, logPath string, cmd *exec.Cmd) (*bgProc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd.Stdout = logf
	cmd.Stderr = logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &bgProc{name: name, port: port, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid is the process id, for /proc.
func (p *bgProc) pid() int { return p.cmd.Process.Pid }

// url is the connection string of the superuser through this server.
func (p *bgProc) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// exited reports whether the process has ended.
func (p *bgProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady polls until a query through the server succeeds, the process
// exits or ctx ends.
func (p *bgProc) waitReady(ctx context.Context, db string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		if last = pingURL(ctx, p.url(db)); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start-up (%v)\n--- %s ---\n%s", p.name, p.err, p.logPath, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last attempt: %v)\n--- %s ---\n%s", p.name, ctx.Err(), last, p.logPath, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pingURL connects and runs SELECT 1.
func pingURL(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
	return err
}

// stop sends sig and waits for the process to exit, killing it after
// grace. It returns an error when the process had to be killed or had
// already died on its own.
func (p *bgProc) stop(sig syscall.Signal, grace time.Duration) error {
	if p.exited() {
		return fmt.Errorf("%s had exited by itself (%v)\n%s", p.name, p.err, p.logTail())
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not exit within %v of %v; killed", p.name, grace, sig)
}

// logTail returns the end of the process's log.
func (p *bgProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	return tailLines(string(b), 30)
}

// rssKiB returns the process's resident set size.
func (p *bgProc) rssKiB() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

// parseVmRSS reads the VmRSS line of /proc/PID/status, e.g.
// "VmRSS:	   12345 kB". The kernel's "kB" is KiB.
func parseVmRSS(status string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS %q: %w", f[0], err)
		}
		return n, nil
	}
	return 0, errors.New("no VmRSS line in process status")
}

// addrInUse reports whether a server's log says it could not bind.
func addrInUse(log string) bool {
	return strings.Contains(strings.ToLower(log), "address already in use")
}

// freePort returns a loopback TCP port that was free a moment ago. A
// server started on it can still lose a race with another process; the
// callers retry with another port then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverCredential returns the identity to run pgbouncer with: nil (this
// process's) unless this process is root, which pgbouncer refuses to run
// as. Then it is the user internal/testdb runs Postgres as: "postgres", or
// "shadowproxy-test" where the package's user does not exist (testdb
// creates it; the bench starts Postgres first).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var errs []error
	for _, name := range []string{"postgres", "shadowproxy-test"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return nil, fmt.Errorf("no non-root user to run pgbouncer as: %w", errors.Join(errs...))
}

// raiseFileLimit raises this process's open-file limit to at least need
// (the hard limit too, when root), so that the idle section's thousands of
// connections fit. Children (the proxy, pgbouncer, Postgres) inherit it:
// setting the limit explicitly stops Go from restoring the original soft
// limit in the processes it starts. It returns the soft limit in force.
func raiseFileLimit(need uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Max < need && os.Geteuid() == 0 {
		lim.Max = need
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit: %w", err)
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	return lim.Cur, nil
}

// reservePort binds a loopback TCP port without listening on it and
// returns it with the function that releases it. A connection to the port
// is refused, as by a stopped server, and no other process can bind it
// while it is held: the socket does not set SO_REUSEADDR, which Linux
// requires of both sockets before it lets a second one bind. (A stopped
// server's port, or one freePort found, could be taken meanwhile by a
// server another program starts on this shared machine, and a client meant
// to find nothing there would reach it.)
func reservePort() (port int, release func() error, err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("reserving a port: socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return 0, nil, fmt.Errorf("reserving a port: bind: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return 0, nil, fmt.Errorf("reserving a port: getsockname: %w", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		syscall.Close(fd)
		return 0, nil, fmt.Errorf("reserving a port: unexpected address %T", sa)
	}
	return in4.Port, func() error { return syscall.Close(fd) }, nil
}

// userHZ is the unit of the CPU times in /proc/PID/stat: USER_HZ, which
// Linux fixes at 100 for user space on every architecture.
const userHZ = 100

// cpuTime returns the CPU time (user and system) the process has used.
func (p *bgProc) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(string(b))
}

// parseProcStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/PID/stat line.
func parseProcStatCPU(stat string) (time.Duration, error) {
	st, err := parseProcStat(stat)
	return st.cpu, err
}

// procStat is what the bench reads from a /proc/PID/stat line.
type procStat struct {
	ppid int           // field 4
	cpu  time.Duration // utime + stime (fields 14, 15)
	// children is cutime + cstime (fields 16, 17): the CPU time of the
	// children the process has waited for, which is where a postmaster
	// keeps that of its ended backends.
	children time.Duration
}

// parseProcStat parses a /proc/PID/stat line. The command name (field 2)
// is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ")".
func parseProcStat(stat string) (procStat, error) {
	var st procStat
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return st, errors.New("unexpected /proc/PID/stat: no command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 15 {
		return st, fmt.Errorf("unexpected /proc/PID/stat: %d fields after the command name", len(f))
	}
	var n [5]int64 // ppid, utime, stime, cutime, cstime
	for j, k := range []int{1, 11, 12, 13, 14} {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return st, fmt.Errorf("/proc/PID/stat field %d %q: %w", k+3, f[k], err)
		}
		n[j] = v
	}
	st.ppid = int(n[0])
	st.cpu = time.Duration(n[1]+n[2]) * time.Second / userHZ
	st.children = time.Duration(n[3]+n[4]) * time.Second / userHZ
	return st, nil
}

// serverCPU returns the CPU time (user and system) a Postgres server has
// used so far: its postmaster's, that of its running children (backends
// and background processes) and that of the children that ended. The
// postmaster is found from dataDir's postmaster.pid. Processes that end
// between the reads may be missed or counted twice; a run's backends live
// through it, so the error is a few ticks.
func serverCPU(dataDir string) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("server CPU: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("server CPU: %s: postmaster PID %q: %w", dataDir, line, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("server CPU: %w", err)
	}
	var total time.Duration
	found := false
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // ended since the listing
		}
		st, err := parseProcStat(string(b))
		switch {
		case err != nil:
		case pid == pm:
			total += st.cpu + st.children
			found = true
		case st.ppid == pm:
			total += st.cpu
		}
	}
	if !found {
		return 0, fmt.Errorf("server CPU: postmaster %d (%s) is not running", pm, dataDir)
	}
	return total, nil
}

// cpuTimes is the CPU time used so far by a run's proxy and its two
// Postgres servers.
type cpuTimes struct{ proxy, old, new time.Duration }

// runCPU reads the CPU time used so far by the proxy p and by the
// Postgres servers in oldDir and newDir.
func runCPU(p *bgProc, oldDir, newDir string) (cpuTimes, error) {
	var cpu cpuTimes
	var err error
	if cpu.proxy, err = p.cpuTime(); err != nil {
		return cpu, err
	}
	if cpu.old, err = serverCPU(oldDir); err != nil {
		return cpu, fmt.Errorf("old Postgres: %w", err)
	}
	if cpu.new, err = serverCPU(newDir); err != nil {
		return cpu, fmt.Errorf("new Postgres: %w", err)
	}
	return cpu, nil
}
