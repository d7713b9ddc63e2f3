package testdb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestPostgres(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	p := StartPostgres(t, WithHBA("host all blocked 127.0.0.1/32 reject"))
	t.Logf("postgres started in %v on port %d (%s)", time.Since(begin).Round(time.Millisecond), p.Port, p.BinDir)

	p.Exec(t, `CREATE ROLE app LOGIN PASSWORD 'secret';
		CREATE ROLE blocked LOGIN PASSWORD 'secret'`)
	p.Exec(t, "CREATE DATABASE appdb OWNER app")
	ctx := context.Background()

	t.Run("scram login", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, p.URL("app", "secret", "appdb"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var user, db string
		if err := conn.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
			t.Fatal(err)
		}
		if user != "app" || db != "appdb" {
			t.Errorf("logged in as %s on %s, want app on appdb", user, db)
		}
		// The password must be stored as a SCRAM verifier, or the server
		// would fall back to md5 for this role.
		super, err := pgx.Connect(ctx, p.SuperURL())
		if err != nil {
			t.Fatal(err)
		}
		defer super.Close(ctx)
		var verifier string
		if err := super.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'").Scan(&verifier); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(verifier, "SCRAM-SHA-256$") {
			t.Errorf("app's password is stored as %.20q..., want a SCRAM-SHA-256 verifier", verifier)
		}
	})

	t.Run("auth failures", func(t *testing.T) {
		tests := []struct {
			name, user, password, wantCode string
		}{
			{"wrong password", "app", "wrong", "28P01"},
			{"no password for a non-superuser", "app", "", "28P01"},
			{"WithHBA reject rule", "blocked", "secret", "28000"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				conn, err := pgx.Connect(ctx, p.URL(tt.user, tt.password, "appdb"))
				if err == nil {
					conn.Close(ctx)
					t.Fatal("login succeeded")
				}
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != tt.wantCode {
					t.Fatalf("got %v, want SQLSTATE %s", err, tt.wantCode)
				}
			})
		}
	})

	t.Run("settings", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, p.SuperURL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		want := map[string]string{
			"max_connections":     "300",
			"password_encryption": "scram-sha-256",
			"listen_addresses":    "127.0.0.1",
			"fsync":               "off",
			"TimeZone":            "UTC",
			"server_encoding":     "UTF8",
			"ssl":                 "off",
		}
		for name, w := range want {
			var got string
			if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != w {
				t.Errorf("%s = %q, want %q", name, got, w)
			}
		}
	})

	t.Run("stop and restart keep data", func(t *testing.T) {
		appURL := p.URL("app", "secret", "appdb")
		exec := func(sql string) {
			t.Helper()
			conn, err := pgx.Connect(ctx, appURL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		count := func() int {
			t.Helper()
			conn, err := pgx.Connect(ctx, appURL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
		port := p.Port

		p.Stop(t)
		if conn, err := pgx.Connect(ctx, appURL); err == nil {
			conn.Close(ctx)
			t.Fatal("connected to a stopped server")
		}
		p.Restart(t)
		if p.Port != port {
			t.Errorf("port changed from %d to %d across Restart", port, p.Port)
		}
		if n := count(); n != 1 {
			t.Fatalf("after Stop and Restart: %d rows, want 1", n)
		}

		exec("INSERT INTO t VALUES (2)")
		p.Kill(t)
		p.Restart(t)
		if n := count(); n != 2 {
			t.Fatalf("after Kill and Restart: %d rows, want 2", n)
		}

		// Restart of a running server stops it first.
		p.Restart(t)
		if n := count(); n != 2 {
			t.Fatalf("after Restart while running: %d rows, want 2", n)
		}
	})
}

func TestPostgresSSL(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t, WithSSL(), WithSetting("application_name", "'testdb-ssl'"))
	ctx := context.Background()
	p.Exec(t, "CREATE ROLE app LOGIN PASSWORD 'secret'")

	// verify-full checks the chain against CertFile and the host name
	// 127.0.0.1 against the certificate's addresses.
	conn, err := pgx.Connect(ctx, p.TLSURL("app", "secret", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ssl bool
	var app string
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Error("connection is not encrypted")
	}
	if err := conn.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil {
		t.Fatal(err)
	}
	if app != "testdb-ssl" {
		t.Errorf("WithSetting: application_name = %q, want testdb-ssl", app)
	}
	// Plain connections are still accepted.
	plain, err := pgx.Connect(ctx, p.URL("app", "secret", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	plain.Close(ctx)
}

func TestPostgresPortTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	p, err := NewPostgres(context.Background(), WithPort(port))
	if err == nil {
		p.Close()
		t.Fatalf("started on port %d, which is taken", port)
	}
	// The failure must quote the server log, which says why.
	if !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("error does not quote the server log: %v", err)
	}
}

func TestPostgresWithDir(t *testing.T) {
	t.Parallel()
	// A directory under /tmp, which the server user can reach even when
	// t.TempDir()'s 0700 directories are not.
	parent, err := os.MkdirTemp("/tmp", "testdb-withdir-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "pg")

	// Twice: the second start must wipe what the first left behind (as
	// after a demo killed with SIGKILL), so the first is not closed.
	for i := 0; i < 2; i++ {
		p, err := NewPostgres(context.Background(), WithDir(dir))
		if err != nil {
			t.Fatal(err)
		}
		if p.Dir != filepath.Join(dir, "data") {
			t.Errorf("Dir = %s, want %s/data", p.Dir, dir)
		}
		if err := p.Crash(); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Close left %s behind (%v)", dir, err)
	}
}

func TestMariaDB(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	m := StartMariaDB(t)
	t.Logf("mariadb started in %v on port %d", time.Since(begin).Round(time.Millisecond), m.Port)
	ctx := context.Background()

	root, err := sql.Open("mysql", m.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var version string
	if err := root.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(version, "MariaDB") {
		t.Errorf("VERSION() = %q, want a MariaDB version", version)
	}
	t.Logf("version %s", version)

	var tz, charset string
	if err := root.QueryRowContext(ctx, "SELECT @@time_zone, @@character_set_server").Scan(&tz, &charset); err != nil {
		t.Fatal(err)
	}
	if tz != "+00:00" || charset != "utf8mb4" {
		t.Errorf("time_zone, character_set_server = %q, %q; want +00:00, utf8mb4", tz, charset)
	}

	m.Exec(t, `CREATE DATABASE appdb;
		CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'secret';
		GRANT ALL ON appdb.* TO 'app'@'127.0.0.1';
		CREATE TABLE appdb.t (id INT PRIMARY KEY) ENGINE=InnoDB;
		INSERT INTO appdb.t VALUES (1)`)

	app, err := sql.Open("mysql", m.DSNFor("app", "secret", "appdb")+"?parseTime=true")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	count := func() int {
		t.Helper()
		var n int
		if err := app.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
	wrong, err := sql.Open("mysql", m.DSNFor("app", "wrong", "appdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if err := wrong.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Errorf("login with a wrong password: got %v, want access denied", err)
	}

	port := m.Port
	m.Stop(t)
	if err := root.PingContext(ctx); err == nil {
		t.Fatal("pinged a stopped server")
	}
	m.Restart(t)
	if m.Port != port {
		t.Errorf("port changed from %d to %d across Restart", port, m.Port)
	}
	// database/sql throws away the connections the stop broke.
	if n := count(); n != 1 {
		t.Fatalf("after Stop and Restart: %d rows, want 1", n)
	}

	if _, err := app.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	m.Kill(t)
	m.Restart(t)
	if n := count(); n != 2 {
		t.Fatalf("after Kill and Restart: %d rows, want 2", n)
	}
}

func TestMariaDBSSL(t *testing.T) {
	t.Parallel()
	m := StartMariaDB(t, WithSSL())
	// Verify the server against CertFile, as a client of a real server would.
	certPEM, err := os.ReadFile(m.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatalf("%s holds no PEM certificate", m.CertFile)
	}
	// The driver sets ServerName to the host, 127.0.0.1, which the
	// certificate must name.
	if err := mysql.RegisterTLSConfig("testdb-verify", &tls.Config{RootCAs: roots}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", m.DSN("")+"?tls=testdb-verify")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var name, cipher string
	if err := db.QueryRowContext(context.Background(), "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil {
		t.Fatal(err)
	}
	if cipher == "" {
		t.Error("connection is not encrypted")
	}
}

func TestMariaDBRejectsHBA(t *testing.T) {
	_, err := NewMariaDB(context.Background(), WithHBA("host all all 0.0.0.0/0 trust"))
	if err == nil || !strings.Contains(err.Error(), "Postgres only") {
		t.Fatalf("got %v, want an error about WithHBA", err)
	}
}

func TestEnsurePackagesInstalled(t *testing.T) {
	// dpkg is installed on every Debian system, so this must return at once
	// without apt-get.
	begin := time.Now()
	EnsurePackages(t, "dpkg")
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("took %v for an installed package", d)
	}
	missing, err := missingPackages(context.Background(), []string{"dpkg", "shadowproxy-no-such-package"})
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 1 || missing[0] != "shadowproxy-no-such-package" {
		t.Errorf("missingPackages = %v, want [shadowproxy-no-such-package]", missing)
	}
}

func TestPackageInstalled(t *testing.T) {
	tests := []struct {
		status string
		want   bool
	}{
		{"install ok installed", true},
		{"hold ok installed", true},
		{"deinstall ok config-files", false},
		{"install ok unpacked", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := packageInstalled(tt.status); got != tt.want {
			t.Errorf("packageInstalled(%q) = %v, want %v", tt.status, got, tt.want)
		}
	}
}

func TestPGHBA(t *testing.T) {
	hba := pgHBA([]string{"host all legacy 127.0.0.1/32 md5"})
	lines := strings.Split(strings.TrimSpace(hba), "\n")
	index := func(substr string) int {
		for i, l := range lines {
			if strings.Contains(l, substr) {
				return i
			}
		}
		t.Fatalf("pg_hba.conf has no line with %q:\n%s", substr, hba)
		return -1
	}
	// pg_hba.conf is first-match: the extra rule must precede the catch-all
	// or it would never apply, and the superuser rule must precede both.
	superuser, extra, catchAll := index("postgres  127.0.0.1/32"), index("legacy"), index("all       127.0.0.1/32")
	if !(superuser < extra && extra < catchAll) {
		t.Errorf("rule order superuser=%d extra=%d catch-all=%d, want increasing:\n%s", superuser, extra, catchAll, hba)
	}
	if !strings.HasSuffix(lines[catchAll], "scram-sha-256") {
		t.Errorf("catch-all rule %q does not require scram-sha-256", lines[catchAll])
	}
}

func TestPGConf(t *testing.T) {
	o := buildOptions([]Option{WithSetting("max_connections", "500"), WithSetting("wal_level", "logical")})
	conf := pgConf(o, "/tmp/x'y/sock", "/c.crt", "/c.key")
	for _, want := range []string{
		"unix_socket_directories = '/tmp/x''y/sock'\n",
		"ssl = on\n",
		"ssl_cert_file = '/c.crt'\n",
		"wal_level = logical\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("postgresql.conf lacks %q:\n%s", want, conf)
		}
	}
	// The last occurrence wins in postgresql.conf, so the option must come
	// after the default.
	if d, o := strings.Index(conf, "max_connections = 300"), strings.Index(conf, "max_connections = 500"); d < 0 || o < d {
		t.Errorf("WithSetting does not override the default max_connections:\n%s", conf)
	}
	if strings.Contains(pgConf(options{}, "/s", "", ""), "ssl") {
		t.Error("ssl settings without WithSSL")
	}
}

func TestTraversable(t *testing.T) {
	const me, mygroup, other = 1000, 1000, 2000
	tests := []struct {
		name          string
		mode          fs.FileMode
		owner, group  uint32
		uid, gid      uint32
		wantTraverses bool
	}{
		{"root enters anything", 0o700, other, other, 0, 0, true},
		{"owner with x", 0o700, me, other, me, mygroup, true},
		{"owner without x, others with x", 0o607, me, other, me, mygroup, false},
		{"group with x", 0o750, other, mygroup, me, mygroup, true},
		{"group without x", 0o705, other, mygroup, me, mygroup, false},
		{"other with x", 0o711, other, other, me, mygroup, true},
		{"t.TempDir style 0700 of root", 0o700, 0, 0, me, mygroup, false},
		{"/tmp sticky 1777", 0o777 | fs.ModeSticky, 0, 0, me, mygroup, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := traversable(tt.mode, tt.owner, tt.group, tt.uid, tt.gid); got != tt.wantTraverses {
				t.Errorf("traversable = %v, want %v", got, tt.wantTraverses)
			}
		})
	}
}

func TestWipeRootRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := wipeRoot(dir); err == nil {
		t.Fatal("wiped a directory testdb did not create")
	}
	if _, err := os.Stat(filepath.Join(dir, "main.go")); err != nil {
		t.Fatalf("file gone: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, markerFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := wipeRoot(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("marked directory not wiped: %v", err)
	}
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"9.6", "15", true},
		{"15", "9.6", false},
		{"15", "16", true},
		{"16", "16", false},
		{"16", "16.1", true},
	}
	for _, tt := range tests {
		if got := versionLess(tt.a, tt.b); got != tt.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"line1\nline2\nline3\n", 9, "[...]\nline3\n"},
		{"abcdefghij", 4, "[...]\nghij"},
	}
	for _, tt := range tests {
		if got := tail([]byte(tt.in), tt.n); got != tt.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
