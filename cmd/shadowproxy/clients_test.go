package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// clientsSchema is what the client programs in testdata/clients write to:
// values from defaults (serial, identity, now(), gen_random_uuid()) that the
// mirror must copy from the old database.
const clientsSchema = `
create table items (id serial primary key, name text not null, qty int default 0, price numeric(10,2),
  data bytea, meta jsonb, created timestamptz default now(), tag uuid default gen_random_uuid());
create table events (id bigint generated always as identity primary key, kind text, at timestamptz default now());
`

const clientsNewSchema = `
create table items (id int primary key, name text not null, qty int, price numeric(10,2),
  data bytea, meta jsonb, created timestamptz, tag uuid);
create table events (id bigint primary key, kind text, at timestamptz);
`

// clientLib is a client library and the program in testdata/clients that
// exercises it.
type clientLib struct {
	name string
	// prepare installs what the program needs and returns a function that
	// runs it against a postgres:// URL, returning its standard output.
	prepare func(t *testing.T) func(t *testing.T, pgURL string) string
}

var clientLibs = []clientLib{
	{"pgjdbc", preparePgJDBC},
	{"psycopg", preparePsycopg},
	{"asyncpg", prepareAsyncpg},
	{"lib/pq", prepareLibPQ},
	{"node-postgres", prepareNodePostgres},
}

// TestClientLibraries runs PgJDBC, psycopg 3, asyncpg, lib/pq and node-postgres programs
// once directly against Postgres and once through the proxy in phase
// shadow-read (dual-write with reads compared), and requires the same
// transcript from both: generated keys (PgJDBC's own RETURNING *, to which
// the proxy adds its capture columns), batches, pipelines, savepoints,
// errors, binary results, COPY, LISTEN and NOTIFY, and cancel. Then the new
// database must hold what the old one does, and no shadowed read may have
// answered differently there.
func TestClientLibraries(t *testing.T) {
	oldURL, directURL, newURL, p := directAndMirrored(t, "shadow-read", clientsSchema, clientsNewSchema)
	runClientPrograms(t, directURL, p)
	checkClientsMirrored(t, p)
	compareTables(t, oldURL, newURL, "items", "events")
}

const clientsMySQLSchema = `
create table items (id int primary key, name text not null, qty int, price decimal(10,2),
  data blob, meta json, created datetime(6), tag char(36));
create table events (id bigint primary key, kind text, at datetime(6));
`

// TestClientLibrariesMariaDB is TestClientLibraries with MariaDB as the new
// database: the programs' reads are translated and compared across engines.
func TestClientLibrariesMariaDB(t *testing.T) {
	old := testdb.StartPostgres(t)
	my := testdb.StartMariaDB(t)
	oldURL, directURL := oldWithDirect(t, old, clientsSchema)
	my.Exec(t, "create database app; use app;\n"+clientsMySQLSchema)
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + oldURL, "SHADOWPROXY_NEW=" + my.URL("root", "", "app")},
		"--phase", "shadow-read", "--report-dir", t.TempDir())
	runClientPrograms(t, directURL, p)
	checkClientsMirrored(t, p)
	compareAcrossEngines(t, oldURL, my.DSN("app"), map[string][2]string{
		"items":  {"id, name, qty, price, data, meta, created, tag", "id, name, qty, price, data, meta, created, tag"},
		"events": {"id, kind, at", "id, kind, at"},
	})
}

// runClientPrograms runs each client program against directURL and
// through p, one after another in the same order on both databases, so
// that serial and identity values agree between the two.
func runClientPrograms(t *testing.T, directURL string, p *proxyProc) {
	t.Helper()
	for _, lib := range clientLibs {
		t.Run(lib.name, func(t *testing.T) {
			run := lib.prepare(t)
			direct := run(t, directURL)
			proxied := run(t, p.url("postgres", "postgres"))
			if direct != proxied {
				t.Errorf("transcripts differ\ndirect:\n%s\nthrough the proxy:\n%s", direct, proxied)
			}
			if !strings.Contains(direct, "end ") {
				t.Errorf("the program did not reach its end:\n%s", direct)
			}
		})
	}
}

// checkClientsMirrored waits for the mirror and the shadower, and requires
// every write mirrored and every compared read equal.
func checkClientsMirrored(t *testing.T, p *proxyProc) {
	t.Helper()
	m := p.waitMirrored(30 * time.Second)
	if m["dead_lettered"] != 0.0 || m["failed"] != 0.0 {
		t.Errorf("mirror status %v\n%s", m, tail(p.logs.String(), 3000))
	}
	if nm, _ := m["not_mirrored"].([]any); len(nm) != 0 {
		t.Errorf("statements not mirrored: %v", nm)
	}
	waitShadowIdle(t, p)
	r := report(t, p)
	// About 15 of the programs' reads are compared; the others ran in a
	// transaction that had written, or failed on the old database for a
	// reason that is not the query's (cancelled, aborted transaction).
	if r["compared"].(float64) < 10 {
		t.Errorf("only %v reads compared", r["compared"])
	}
	if r["mismatched"].(float64) != 0 {
		js, _ := json.MarshalIndent(r["classes"], "", "  ")
		t.Errorf("shadow reads mismatched: %v of %v\n%s", r["mismatched"], r["compared"], js)
	}
}

// directAndMirrored starts an old Postgres with schema in two databases,
// "postgres" and "direct", a new Postgres with newSchema, and the proxy in
// phase (dual-write or shadow-read) between the old "postgres" and the new
// one: for tests that run a client against "direct" and through the proxy,
// and compare.
func directAndMirrored(t *testing.T, phase, schema, newSchema string) (oldURL, directURL, newURL string, p *proxyProc) {
	t.Helper()
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	oldURL, directURL = oldWithDirect(t, old, schema)
	newURL = nw.URL("postgres", "", "postgres")
	nw.Exec(t, newSchema)
	p = startProxyProc(t, []string{"SHADOWPROXY_OLD=" + oldURL, "SHADOWPROXY_NEW=" + newURL},
		"--phase", phase, "--report-dir", t.TempDir())
	return oldURL, directURL, newURL, p
}

// waitShadowIdle waits until the shadower has nothing queued, no result
// held for comparison (none running) and no mismatch waiting for its
// re-check.
func waitShadowIdle(t *testing.T, p *proxyProc) {
	t.Helper()
	waitFor(t, "the shadower to finish", func() bool {
		resp, err := http.Get("http://" + p.admin + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return false
		}
		idle := 0
		for _, line := range strings.Split(string(b), "\n") {
			switch line {
			case "shadowproxy_shadow_queue_length 0", "shadowproxy_shadow_pending_rechecks 0", "shadowproxy_shadow_memory_bytes 0":
				idle++
			}
		}
		return idle == 3
	})
}

// oldWithDirect creates schema in the old database's "postgres" and in a
// new database "direct", and returns the URLs of both.
func oldWithDirect(t *testing.T, old *testdb.Postgres, schema string) (oldURL, directURL string) {
	t.Helper()
	old.Exec(t, schema)
	old.Exec(t, "create database direct")
	oldURL, directURL = old.URL("postgres", "", "postgres"), old.URL("postgres", "", "direct")
	execIn(t, directURL, schema)
	return oldURL, directURL
}

func execIn(t *testing.T, pgURL, sql string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
}

// queryRow runs a one-row query on pgURL and scans it into dest.
func queryRow(t *testing.T, pgURL, sql string, dest ...any) error {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.QueryRow(ctx, sql).Scan(dest...)
}

// runProgram runs a client program with a time limit and returns its
// standard output, failing the test with both outputs when it fails.
func runProgram(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), tail(stderr.String(), 4000))
	}
	return stdout.String()
}

func clientsDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("testdata", "clients"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// preparePgJDBC compiles Compat.java against Debian's PgJDBC.
func preparePgJDBC(t *testing.T) func(*testing.T, string) string {
	testdb.EnsurePackages(t, "libpostgresql-jdbc-java", "default-jdk-headless")
	const jar = "/usr/share/java/postgresql.jar"
	classes := t.TempDir()
	runProgram(t, nil, "javac", "-d", classes, "-cp", jar, filepath.Join(clientsDir(t), "Compat.java"))
	return func(t *testing.T, pgURL string) string {
		return runProgram(t, nil, "java", "-cp", classes+string(os.PathListSeparator)+jar, "Compat", jdbcURL(t, pgURL))
	}
}

// jdbcURL turns a postgres:// URL (user without password) into PgJDBC's.
func jdbcURL(t *testing.T, pgURL string) string {
	t.Helper()
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("jdbc:postgresql://%s:%s%s?user=%s&sslmode=disable", host, port, u.Path, url.QueryEscape(u.User.Username()))
}

// preparePsycopg uses Debian's psycopg 3 with Debian's own Python (another
// Python may come first on PATH).
func preparePsycopg(t *testing.T) func(*testing.T, string) string {
	testdb.EnsurePackages(t, "python3-psycopg")
	script := filepath.Join(clientsDir(t), "compat.py")
	return func(t *testing.T, pgURL string) string {
		return runProgram(t, nil, "/usr/bin/python3", script, pgURL)
	}
}

// prepareAsyncpg uses Debian's asyncpg with Debian's own Python.
func prepareAsyncpg(t *testing.T) func(*testing.T, string) string {
	testdb.EnsurePackages(t, "python3-asyncpg")
	script := filepath.Join(clientsDir(t), "compat_asyncpg.py")
	return func(t *testing.T, pgURL string) string {
		return runProgram(t, nil, "/usr/bin/python3", script, pgURL)
	}
}

// nodePostgresVersion is the node-postgres release the test installs.
const nodePostgresVersion = "8.23.1"

// prepareNodePostgres installs node-postgres with npm (once per machine,
// in a directory of the system's temporary directory) and runs compat.js
// with it.
func prepareNodePostgres(t *testing.T) func(*testing.T, string) string {
	if _, err := exec.LookPath("npm"); err != nil {
		testdb.EnsurePackages(t, "nodejs", "npm")
	}
	dir := filepath.Join(os.TempDir(), "shadowproxy-node-pg-"+nodePostgresVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pg", "package.json")); err != nil {
		// Install beside, then rename: a half-finished install is never
		// taken for a finished one.
		tmp, err := os.MkdirTemp(os.TempDir(), "shadowproxy-node-pg-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		runProgram(t, nil, "npm", "install", "--prefix", tmp, "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "pg@"+nodePostgresVersion)
		if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
			if _, serr := os.Stat(filepath.Join(dir, "node_modules", "pg", "package.json")); serr != nil {
				t.Fatal(err)
			}
		}
	}
	script := filepath.Join(clientsDir(t), "compat.js")
	return func(t *testing.T, pgURL string) string {
		cmd := []string{script, pgURL}
		t.Setenv("NODE_PATH", filepath.Join(dir, "node_modules"))
		return runProgram(t, nil, "node", cmd...)
	}
}
