package testdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDB is a running (or stopped, between Stop and Restart) throwaway
// MariaDB server. The user root logs in over TCP from 127.0.0.1 with an
// empty password.
type MariaDB struct {
	Host    string // always 127.0.0.1
	Port    int
	Dir     string // the data directory
	Socket  string // the Unix socket
	LogFile string // the server's error log
	// CertFile and KeyFile are the server's PEM certificate and key when
	// started WithSSL; the certificate is self-signed (its own CA).
	CertFile, KeyFile string

	as     runAs
	binary string   // mariadbd
	args   []string // mariadbd's arguments except --port

	server
}

// The MariaDB superuser, reachable over TCP with an empty password.
const mariaSuperuser = "root"

// StartMariaDB starts a MariaDB server for the test and stops it, removing
// its data, when the test ends. It fails the test (it never skips) when the
// server cannot start. WithHBA is not accepted.
func StartMariaDB(tb testing.TB, opts ...Option) *MariaDB {
	tb.Helper()
	m, err := NewMariaDB(context.Background(), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Error(err)
		}
	})
	return m
}

// NewMariaDB initializes and starts a MariaDB server, installing the
// mariadb-server package first if needed (as root). The caller must Close
// it. ctx bounds the start (two minutes when it has no deadline).
func NewMariaDB(ctx context.Context, opts ...Option) (*MariaDB, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	o := buildOptions(opts)
	if err := o.checkMariaDB(); err != nil {
		return nil, err
	}

	mariadbd, installDB, err := findMariaDB()
	if err != nil {
		if ierr := InstallPackages(ctx, "mariadb-server", "mariadb-client"); ierr != nil {
			return nil, fmt.Errorf("%w (%v)", ierr, err)
		}
		if mariadbd, installDB, err = findMariaDB(); err != nil {
			return nil, err
		}
	}
	as, err := serverUser("mysql")
	if err != nil {
		return nil, err
	}
	root, err := as.newRoot(o.dir, "shadowproxy-mariadb-")
	if err != nil {
		return nil, err
	}
	m := &MariaDB{
		Host:    "127.0.0.1",
		Dir:     filepath.Join(root, "data"),
		Socket:  filepath.Join(root, "mysqld.sock"),
		LogFile: filepath.Join(root, "mariadb.log"),
		as:      as,
		binary:  mariadbd,
		server:  server{name: "mariadb", root: root, stopSig: syscall.SIGTERM, crashSig: syscall.SIGKILL},
	}
	m.startFn = func(ctx context.Context) error { return m.start(ctx, true, false) }
	started := false
	defer func() {
		if !started {
			m.Close()
		}
	}()
	if len(m.Socket) > 107 {
		return nil, fmt.Errorf("testdb: socket path %s is longer than Unix sockets allow; use a shorter directory", m.Socket)
	}
	tmp := filepath.Join(root, "tmp")
	for _, d := range []string{m.Dir, tmp} {
		if err := as.mkdir(d, 0o750); err != nil {
			return nil, err
		}
	}
	// The server (not us) creates files in root: the socket and pid file.
	if err := as.chown(root); err != nil {
		return nil, err
	}
	out, err := runAsUser(ctx, as, root, installDB,
		"--no-defaults", "--datadir="+m.Dir, "--tmpdir="+tmp,
		// root gets an empty password rather than unix_socket auth, which
		// only admits the OS user root.
		"--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve")
	if err != nil {
		return nil, fmt.Errorf("testdb: mariadb-install-db: %w\n%s", err, tail(out, 8192))
	}
	if o.ssl {
		if m.CertFile, m.KeyFile, err = writeSelfSignedCert(filepath.Join(root, "ssl"), as); err != nil {
			return nil, err
		}
	}
	m.args = mariaArgs(o, m.Dir, m.Socket, filepath.Join(root, "mariadbd.pid"), tmp, m.CertFile, m.KeyFile)

	m.Port = o.port
	if err := m.start(ctx, o.port != 0, true); err != nil {
		return nil, err
	}
	started = true
	return m, nil
}

// mariaArgs returns mariadbd's command line except --port. --no-defaults
// keeps /etc/mysql/my.cnf (and the system server's settings) out.
func mariaArgs(o options, dataDir, socket, pidFile, tmpDir, certFile, keyFile string) []string {
	args := []string{
		"--no-defaults",
		"--datadir=" + dataDir,
		"--socket=" + socket,
		"--pid-file=" + pidFile,
		"--tmpdir=" + tmpDir,
		"--bind-address=127.0.0.1",
		// Logins are matched by address, never by a reverse DNS lookup.
		"--skip-name-resolve",
		"--max-connections=300",
		"--character-set-server=utf8mb4",
		"--default-time-zone=+00:00",
		// Throwaway data: a small footprint, nothing forced to disk. With
		// flush-log-at-trx-commit=2 a commit still writes its redo log to
		// the OS before it returns, so committed data survives a server
		// crash (Kill); only an OS crash would lose it.
		"--innodb-buffer-pool-size=64M",
		"--innodb-flush-log-at-trx-commit=2",
		"--innodb-doublewrite=0",
	}
	if certFile != "" {
		args = append(args, "--ssl-cert="+certFile, "--ssl-key="+keyFile, "--ssl-ca="+certFile)
	}
	for _, kv := range o.sortedSettings() {
		args = append(args, "--"+kv[0]+"="+kv[1])
	}
	return args
}

// start runs mariadbd and waits until root can log in over TCP. Unless
// fixedPort, it picks a free port and retries with another if a concurrent
// process takes it first. On the first start (initial) it also lets root
// log in from 127.0.0.1, which mariadb-install-db leaves to "localhost"
// (the socket).
func (m *MariaDB) start(ctx context.Context, fixedPort, initial bool) error {
	for attempt := 1; ; attempt++ {
		if !fixedPort {
			port, err := freePort()
			if err != nil {
				return err
			}
			m.Port = port
		}
		offset := fileSize(m.LogFile)
		args := append(append([]string(nil), m.args...), "--port="+strconv.Itoa(m.Port))
		proc, err := startProcess(m.as, m.root, m.LogFile, m.binary, args...)
		if err != nil {
			return err
		}
		ready := m.ping
		if initial {
			ready = m.grantTCPRoot
		}
		err = waitReady(ctx, proc, ready)
		if err == nil {
			m.mu.Lock()
			m.proc = proc
			m.mu.Unlock()
			return nil
		}
		proc.stop(syscall.SIGKILL, 10*time.Second)
		log := readFrom(m.LogFile, offset)
		if !fixedPort && addrInUse(log) && attempt < 5 {
			continue
		}
		return fmt.Errorf("testdb: mariadb on port %d: %w\n--- server log %s ---\n%s", m.Port, err, m.LogFile, tail([]byte(log), 16384))
	}
}

// grantTCPRoot logs in as root over the socket and creates root@127.0.0.1
// with the same powers and an empty password, then pings over TCP.
func (m *MariaDB) grantTCPRoot(ctx context.Context) error {
	cfg := mysql.NewConfig()
	cfg.User = mariaSuperuser
	cfg.Net = "unix"
	cfg.Addr = m.Socket
	cfg.MultiStatements = true
	if err := execMySQL(ctx, cfg.FormatDSN(),
		"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';"+
			"GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"+
			"GRANT PROXY ON ''@'%' TO 'root'@'127.0.0.1' WITH GRANT OPTION"); err != nil {
		return err
	}
	return m.ping(ctx)
}

// ping succeeds when root can log in over TCP and the server is this one,
// not another that happens to hold the port.
func (m *MariaDB) ping(ctx context.Context) error {
	db, err := sql.Open("mysql", m.DSN(""))
	if err != nil {
		return err
	}
	defer db.Close()
	var dir string
	if err := db.QueryRowContext(ctx, "SELECT @@datadir").Scan(&dir); err != nil {
		return err
	}
	if filepath.Clean(dir) != m.Dir {
		return fmt.Errorf("port %d is served by another server (datadir %s)", m.Port, dir)
	}
	return nil
}

// DSN returns a go-sql-driver/mysql DSN for root on database db (may be
// empty) over TCP. It carries no parameters, so callers append their own
// with "?": m.DSN("app") + "?parseTime=true".
func (m *MariaDB) DSN(db string) string { return m.DSNFor(mariaSuperuser, "", db) }

// DSNFor is DSN for another user, e.g. one created with Exec.
func (m *MariaDB) DSNFor(user, password, db string) string {
	cfg := mysql.NewConfig()
	cfg.User = user
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = net.JoinHostPort(m.Host, strconv.Itoa(m.Port))
	cfg.DBName = db
	return cfg.FormatDSN()
}

// URL returns a mysql:// URL (the form shadowproxy's configuration takes)
// for user on database db. An empty password is left out.
func (m *MariaDB) URL(user, password, db string) string {
	u := url.URL{
		Scheme: "mysql",
		User:   url.User(user),
		Host:   net.JoinHostPort(m.Host, strconv.Itoa(m.Port)),
		Path:   "/" + db,
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// SuperURL is URL for root with no database.
func (m *MariaDB) SuperURL() string { return m.URL(mariaSuperuser, "", "") }

// Exec runs sql (one or more statements separated by semicolons) as root,
// failing the test on error.
func (m *MariaDB) Exec(tb testing.TB, sql string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.ExecContext(ctx, sql); err != nil {
		tb.Fatal(err)
	}
}

// ExecContext is Exec returning the error.
func (m *MariaDB) ExecContext(ctx context.Context, sql string) error {
	return execMySQL(ctx, m.DSN("")+"?multiStatements=true", sql)
}

func execMySQL(ctx context.Context, dsn, query string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return fmt.Errorf("testdb: mariadb: %w", err)
	}
	defer db.Close()
	// One connection, so that session state (USE, SET) carries across the
	// statements of a multi-statement query.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, query); err != nil {
		return fmt.Errorf("testdb: mariadb: %s: %w", abbreviate(query), err)
	}
	return nil
}

// Log returns the end of the server log, for failure messages.
func (m *MariaDB) Log() string { return readTail(m.LogFile, 16384) }

// findMariaDB returns the paths of mariadbd and mariadb-install-db. Debian
// puts the server in /usr/sbin, which a non-root PATH often lacks.
func findMariaDB() (server, installDB string, err error) {
	find := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
			for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
				p := filepath.Join(dir, n)
				if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
					return p
				}
			}
		}
		return ""
	}
	server = find("mariadbd", "mysqld")
	installDB = find("mariadb-install-db", "mysql_install_db")
	if server == "" || installDB == "" {
		return "", "", errors.New("testdb: no MariaDB server found (mariadbd and mariadb-install-db)")
	}
	return server, installDB, nil
}
