package testdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres is a running (or stopped, between Stop and Restart) throwaway
// PostgreSQL server.
type Postgres struct {
	Host      string // always 127.0.0.1
	Port      int
	Dir       string // the data directory (PGDATA)
	SocketDir string // where the Unix socket is
	LogFile   string // the server's stderr
	BinDir    string // where postgres, initdb, psql, pgbench are
	// CertFile and KeyFile are the server's PEM certificate and key when
	// started WithSSL. The certificate is self-signed: use CertFile as the
	// client's root (see TLSURL).
	CertFile, KeyFile string

	as runAs

	server
}

// The role trusted without a password on the socket and on loopback.
const pgSuperuser = "postgres"

// StartPostgres starts a Postgres server for the test and stops it, removing
// its data, when the test ends. It fails the test (it never skips) when the
// server cannot start.
func StartPostgres(tb testing.TB, opts ...Option) *Postgres {
	tb.Helper()
	p, err := NewPostgres(context.Background(), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Error(err)
		}
	})
	return p
}

// NewPostgres initializes and starts a Postgres server. The caller must Close
// it. ctx bounds the start (two minutes when it has no deadline, enough to
// install the packages on a fresh machine).
func NewPostgres(ctx context.Context, opts ...Option) (*Postgres, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	o := buildOptions(opts)

	bin, err := findPGBinDir()
	if err != nil {
		if ierr := InstallPackages(ctx, "postgresql", "postgresql-contrib"); ierr != nil {
			return nil, fmt.Errorf("%w (%v)", ierr, err)
		}
		if bin, err = findPGBinDir(); err != nil {
			return nil, err
		}
	}
	as, err := serverUser("postgres")
	if err != nil {
		return nil, err
	}
	root, err := as.newRoot(o.dir, "shadowproxy-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		Host:      "127.0.0.1",
		Dir:       filepath.Join(root, "data"),
		SocketDir: filepath.Join(root, "sock"),
		LogFile:   filepath.Join(root, "postgres.log"),
		BinDir:    bin,
		as:        as,
		// SIGINT is the "fast" shutdown (clients get SQLSTATE 57P01);
		// SIGQUIT the "immediate" one, without a shutdown checkpoint, like
		// a crash.
		server: server{name: "postgres", root: root, stopSig: syscall.SIGINT, crashSig: syscall.SIGQUIT},
	}
	p.startFn = func(ctx context.Context) error { return p.start(ctx, true) }
	started := false
	defer func() {
		if !started {
			p.Close()
		}
	}()

	if err := as.mkdir(p.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := as.mkdir(p.SocketDir, 0o755); err != nil {
		return nil, err
	}
	// The socket path must fit sockaddr_un's 108 bytes.
	if n := len(filepath.Join(p.SocketDir, ".s.PGSQL.65535")); n > 107 {
		return nil, fmt.Errorf("testdb: socket path in %s is %d bytes, longer than Unix sockets allow; use a shorter directory", p.SocketDir, n)
	}
	out, err := runAsUser(ctx, as, root, filepath.Join(bin, "initdb"),
		"-D", p.Dir, "-U", pgSuperuser, "--auth-local=trust", "--auth-host=scram-sha-256",
		"--encoding=UTF8", "--no-locale", "--no-sync")
	if err != nil {
		return nil, fmt.Errorf("testdb: initdb: %w\n%s", err, tail(out, 8192))
	}
	if o.ssl {
		if p.CertFile, p.KeyFile, err = writeSelfSignedCert(filepath.Join(root, "ssl"), as); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(p.Dir, "pg_hba.conf"), []byte(pgHBA(o.hba)), 0o600); err != nil {
		return nil, fmt.Errorf("testdb: %w", err)
	}
	if err := appendFile(filepath.Join(p.Dir, "postgresql.conf"), pgConf(o, p.SocketDir, p.CertFile, p.KeyFile)); err != nil {
		return nil, err
	}

	p.Port = o.port
	if err := p.start(ctx, o.port != 0); err != nil {
		return nil, err
	}
	started = true
	return p, nil
}

// pgHBA renders pg_hba.conf: the superuser is trusted locally (tests and
// the harness connect without a password), extra rules come next, and any
// other role must use SCRAM over loopback, as on a production server.
func pgHBA(extra []string) string {
	var b strings.Builder
	b.WriteString("# Written by shadowproxy internal/testdb.\n")
	b.WriteString("# TYPE  DATABASE     USER      ADDRESS        METHOD\n")
	b.WriteString("local   all          all                      trust\n")
	b.WriteString("local   replication  all                      trust\n")
	for _, addr := range []string{"127.0.0.1/32", "::1/128"} {
		fmt.Fprintf(&b, "host    all          postgres  %-14s trust\n", addr)
		fmt.Fprintf(&b, "host    replication  postgres  %-14s trust\n", addr)
	}
	if len(extra) > 0 {
		b.WriteString("# WithHBA\n")
		for _, l := range extra {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	for _, addr := range []string{"127.0.0.1/32", "::1/128"} {
		fmt.Fprintf(&b, "host    all          all       %-14s scram-sha-256\n", addr)
	}
	return b.String()
}

// pgConf renders the settings appended to postgresql.conf. Later lines win,
// so WithSetting values come last and override the defaults here.
func pgConf(o options, socketDir, certFile, keyFile string) string {
	var b strings.Builder
	set := func(name, value string) { fmt.Fprintf(&b, "%s = %s\n", name, value) }
	b.WriteString("\n# Added by shadowproxy internal/testdb.\n")
	set("listen_addresses", pgQuote("127.0.0.1"))
	set("unix_socket_directories", pgQuote(socketDir))
	// pgbench and the benchmarks open hundreds of connections.
	set("max_connections", "300")
	set("shared_buffers", "32MB")
	// Throwaway data: nothing is forced to disk, which spares I/O on a
	// shared machine. A commit still writes its WAL to the OS before it
	// returns (synchronous_commit stays on), so committed data survives a
	// server crash (Kill), which the fault tests rely on; only an OS crash
	// would lose it.
	set("fsync", "off")
	set("full_page_writes", "off")
	set("password_encryption", pgQuote("scram-sha-256"))
	// Stable, machine-independent time zone for tests that print times.
	set("timezone", pgQuote("UTC"))
	set("log_timezone", pgQuote("UTC"))
	set("log_line_prefix", pgQuote("%m [%p] %q%u@%d "))
	if certFile != "" {
		set("ssl", "on")
		set("ssl_cert_file", pgQuote(certFile))
		set("ssl_key_file", pgQuote(keyFile))
	}
	for _, kv := range o.sortedSettings() {
		set(kv[0], kv[1])
	}
	return b.String()
}

// pgQuote quotes s as a postgresql.conf string.
func pgQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// start runs the postmaster and waits until it accepts connections. Unless
// fixedPort, it picks a free port and retries with another if a concurrent
// process takes it first. Callers hold no lock; p.mu is taken only around
// the state change.
func (p *Postgres) start(ctx context.Context, fixedPort bool) error {
	for attempt := 1; ; attempt++ {
		if !fixedPort {
			port, err := freePort()
			if err != nil {
				return err
			}
			p.Port = port
		}
		offset := fileSize(p.LogFile)
		proc, err := startProcess(p.as, p.root, p.LogFile, filepath.Join(p.BinDir, "postgres"),
			"-D", p.Dir, "-p", strconv.Itoa(p.Port))
		if err != nil {
			return err
		}
		err = waitReady(ctx, proc, p.ping)
		if err == nil {
			p.mu.Lock()
			p.proc = proc
			p.mu.Unlock()
			return nil
		}
		proc.stop(syscall.SIGQUIT, 10*time.Second)
		log := readFrom(p.LogFile, offset)
		if !fixedPort && addrInUse(log) && attempt < 5 {
			continue
		}
		return fmt.Errorf("testdb: postgres on port %d: %w\n--- server log %s ---\n%s", p.Port, err, p.LogFile, tail([]byte(log), 16384))
	}
}

// ping succeeds when the server answers queries and is this server, not
// another one that happens to hold the port.
func (p *Postgres) ping(ctx context.Context) error {
	conn, err := pgconn.Connect(ctx, p.SuperURL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "SHOW data_directory").ReadAll()
	if err != nil {
		return err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return errors.New("SHOW data_directory returned no row")
	}
	if got := string(res[0].Rows[0][0]); got != p.Dir {
		return fmt.Errorf("port %d is served by another server (data directory %s)", p.Port, got)
	}
	return nil
}

// URL returns a postgres:// URL for user over TCP with sslmode=disable. An
// empty password is left out (the superuser "postgres" needs none).
func (p *Postgres) URL(user, password, db string) string {
	return p.url(user, password, db, url.Values{"sslmode": {"disable"}})
}

// TLSURL is URL with TLS required and the server certificate verified
// against CertFile (sslmode=verify-full). Only for servers started WithSSL.
func (p *Postgres) TLSURL(user, password, db string) string {
	return p.url(user, password, db, url.Values{"sslmode": {"verify-full"}, "sslrootcert": {p.CertFile}})
}

// SuperURL is the URL of the superuser "postgres" on database "postgres".
func (p *Postgres) SuperURL() string { return p.URL(pgSuperuser, "", "postgres") }

func (p *Postgres) url(user, password, db string, q url.Values) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(user),
		Host:     net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
		Path:     "/" + db,
		RawQuery: q.Encode(),
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// Exec runs sql as the superuser on database "postgres", failing the test
// on error. sql may hold several statements; they go as one simple query,
// so they run in one implicit transaction (send CREATE DATABASE alone).
// Use URL("postgres", "", db) to run SQL in another database.
func (p *Postgres) Exec(tb testing.TB, sql string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.ExecContext(ctx, sql); err != nil {
		tb.Fatal(err)
	}
}

// ExecContext is Exec returning the error.
func (p *Postgres) ExecContext(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, p.SuperURL())
	if err != nil {
		return fmt.Errorf("testdb: connecting to postgres: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("testdb: postgres: %s: %w", abbreviate(sql), err)
	}
	return nil
}

// Log returns the end of the server log, for failure messages.
func (p *Postgres) Log() string { return readTail(p.LogFile, 16384) }

// findPGBinDir returns the directory of the newest installed Postgres
// server: $SHADOWPROXY_PG_BINDIR if set, else the highest
// /usr/lib/postgresql/<version>/bin (Debian's layout, which can hold several
// versions), else `pg_config --bindir`.
func findPGBinDir() (string, error) {
	hasServer := func(dir string) bool {
		for _, name := range []string{"postgres", "initdb"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("SHADOWPROXY_PG_BINDIR"); d != "" {
		if !hasServer(d) {
			return "", fmt.Errorf("testdb: SHADOWPROXY_PG_BINDIR=%s has no postgres and initdb", d)
		}
		return d, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	var dirs []string
	for _, m := range matches {
		if d := filepath.Dir(m); hasServer(d) {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) > 0 {
		sort.Slice(dirs, func(i, j int) bool {
			return versionLess(filepath.Base(filepath.Dir(dirs[i])), filepath.Base(filepath.Dir(dirs[j])))
		})
		return dirs[len(dirs)-1], nil
	}
	// pg_config alone is not enough: libpq-dev ships one without a server.
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); hasServer(d) {
			return d, nil
		}
	}
	return "", errors.New("testdb: no PostgreSQL server found (looked in /usr/lib/postgresql/*/bin and pg_config --bindir)")
}

// versionLess compares dotted version strings numerically ("9.6" < "15").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, errx := strconv.Atoi(as[i])
		y, erry := strconv.Atoi(bs[i])
		if errx != nil || erry != nil {
			if as[i] != bs[i] {
				return as[i] < bs[i]
			}
			continue
		}
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}
