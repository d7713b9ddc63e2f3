package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// pgbouncerConfig is what the bench's pgbouncer.ini says.
type pgbouncerConfig struct {
	Port       int    // pgbouncer's client port on 127.0.0.1
	PGPort     int    // Postgres's port on 127.0.0.1
	DB         string // the database, under the same name on both sides
	AuthFile   string // the userlist
	MaxClients int    // max_client_conn
	PoolSize   int    // default_pool_size: at least the clients of a run
}

// renderPGBouncerINI returns pgbouncer.ini for c: session pooling (one
// server connection per client, like the proxy), trust authentication
// (the superuser is trusted by Postgres too), no Unix socket, logging to
// stderr.
func renderPGBouncerINI(c pgbouncerConfig) string {
	var b strings.Builder
	b.WriteString("; Written by shadowproxy internal/cmd/bench.\n")
	b.WriteString("[databases]\n")
	fmt.Fprintf(&b, "%s = host=127.0.0.1 port=%d dbname=%s user=postgres\n", c.DB, c.PGPort, c.DB)
	b.WriteString("\n[pgbouncer]\n")
	set := func(k string, v any) { fmt.Fprintf(&b, "%s = %v\n", k, v) }
	set("listen_addr", "127.0.0.1")
	set("listen_port", c.Port)
	set("unix_socket_dir", "")
	set("pool_mode", "session")
	// trust still requires the user to be in auth_file.
	set("auth_type", "trust")
	set("auth_file", c.AuthFile)
	set("max_client_conn", c.MaxClients)
	set("default_pool_size", c.PoolSize)
	// JDBC and some drivers send it; pgbench does not, but a refusal would
	// be a confusing failure if the bench grows.
	set("ignore_startup_parameters", "extra_float_digits")
	// Connections are logged at start and end only; stats every minute
	// would only add noise to the log.
	set("stats_period", 3600)
	return b.String()
}

// startPGBouncer starts pgbouncer in session mode in front of the bench's
// Postgres and waits until a query goes through it. It runs as the same
// non-root user as Postgres: pgbouncer refuses to run as root.
func (e *env) startPGBouncer(ctx context.Context, maxClients int) (*bgProc, error) {
	bin, err := findPGBouncer(ctx)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.dir, "pgbouncer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Readable by pgbouncer's user: the directory is 0755, the files 0644,
	// and neither holds a secret (trust, no passwords).
	userlist := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(userlist, []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return nil, err
	}
	ini := filepath.Join(dir, "pgbouncer.ini")
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		conf := renderPGBouncerINI(pgbouncerConfig{
			Port: port, PGPort: e.pg.Port, DB: "postgres", AuthFile: userlist,
			MaxClients: maxClients, PoolSize: maxClients,
		})
		if err := os.WriteFile(ini, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, ini)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		p, err := startBG("pgbouncer", port, filepath.Join(dir, "pgbouncer.log"), cmd)
		if err != nil {
			return nil, err
		}
		err = p.waitReady(ctx, "postgres")
		if err == nil {
			return p, nil
		}
		_ = p.stop(syscall.SIGKILL, 5*time.Second)
		if attempt < 3 && addrInUse(p.logTail()) {
			continue
		}
		return nil, err
	}
}

// stopPGBouncer stops pgbouncer at once (SIGTERM is its immediate
// shutdown; SIGINT would wait for clients).
func stopPGBouncer(p *bgProc) error {
	return p.stop(syscall.SIGTERM, 10*time.Second)
}

// findPGBouncer returns the pgbouncer binary, installing the Debian package
// when it is missing (as root; scripts/install-deps.sh does it otherwise).
// Debian puts it in /usr/sbin, which a non-root PATH often lacks.
func findPGBouncer(ctx context.Context) (string, error) {
	look := func() string {
		if p, err := exec.LookPath("pgbouncer"); err == nil {
			return p
		}
		for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
		return ""
	}
	if p := look(); p != "" {
		return p, nil
	}
	if err := testdb.InstallPackages(ctx, "pgbouncer"); err != nil {
		return "", err
	}
	if p := look(); p != "" {
		return p, nil
	}
	return "", errors.New("pgbouncer not found after installing the package")
}
