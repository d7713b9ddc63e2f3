package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// TestPhaseSwitchCachedStatements switches the proxy from old-only to
// dual-write, to shadow-read and back to old-only (SIGHUP) while asyncpg
// and PgJDBC hold prepared statements they made before the switches, with
// their result types cached. The programs' answers must be those of a
// direct connection, every write made in dual-write and shadow-read must
// reach the new database and none other, and the shadowed reads must
// compare equal.
func TestPhaseSwitchCachedStatements(t *testing.T) {
	testdb.EnsurePackages(t, "python3-asyncpg", "libpostgresql-jdbc-java", "default-jdk-headless")
	old := testdb.StartPostgres(t)
	nw := testdb.StartPostgres(t)
	oldURL, directURL := oldWithDirect(t, old, clientsSchema)
	newURL := nw.URL("postgres", "", "postgres")
	nw.Exec(t, clientsNewSchema)
	cfgPath, setPhase := phaseFile(t, "old-only")
	p := startProxyProc(t, []string{"SHADOWPROXY_OLD=" + oldURL, "SHADOWPROXY_NEW=" + newURL}, "--config", cfgPath)

	classes := t.TempDir()
	runProgram(t, nil, "javac", "-d", classes, "-cp", "/usr/share/java/postgresql.jar", filepath.Join(clientsDir(t), "Switch.java"))
	programs := map[string]func(pgURL string) *exec.Cmd{
		"asyncpg": func(pgURL string) *exec.Cmd {
			return exec.Command("/usr/bin/python3", filepath.Join(clientsDir(t), "switch_asyncpg.py"), pgURL)
		},
		"pgjdbc": func(pgURL string) *exec.Cmd {
			return exec.Command("java", "-cp", classes+string(os.PathListSeparator)+"/usr/share/java/postgresql.jar", "Switch", jdbcURL(t, pgURL))
		},
	}
	for _, name := range []string{"asyncpg", "pgjdbc"} {
		t.Run(name, func(t *testing.T) {
			direct := runPausing(t, programs[name](directURL), func() {})
			setPhase(p, "old-only")
			next := []string{"dual-write", "shadow-read", "old-only"}
			proxied := runPausing(t, programs[name](p.url("postgres", "postgres")), func() {
				setPhase(p, next[0])
				next = next[1:]
			})
			if direct != proxied {
				t.Errorf("transcripts differ\ndirect:\n%s\nthrough the proxy:\n%s\nproxy log:\n%s", direct, proxied, tail(p.logs.String(), 3000))
			}
		})
	}
	m := p.waitMirrored(30 * time.Second)
	if nm, _ := m["not_mirrored"].([]any); len(nm) != 0 || m["dead_lettered"] != 0.0 {
		t.Errorf("mirror status %v", m)
	}
	// The new database has exactly the rows written in dual-write and
	// shadow-read, as they were before the switch back (the last UPDATE
	// of sw-b-2 was not mirrored).
	want := tableRows(t, oldURL, "(select id, name, case when name like '%sw-b-2' then qty - 1 else qty end, price, data, meta, created, tag from items where name like '%sw-b-%')")
	got := tableRows(t, newURL, "items")
	if strings.Join(got, "\n") != strings.Join(want, "\n") || len(got) != 2*5 {
		t.Errorf("new database has\n%s\nwant the 10 rows written in dual-write and shadow-read:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	waitShadowIdle(t, p)
	if r := report(t, p); r["compared"].(float64) < 2 || r["mismatched"].(float64) != 0 {
		t.Errorf("shadow reads: %v compared, %v mismatched", r["compared"], r["mismatched"])
	}
}

// runPausing runs a program that prints "ready" and waits for a line on
// stdin: onReady runs in between. It returns the program's output.
func runPausing(t *testing.T, cmd *exec.Cmd, onReady func()) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "ready" {
			onReady()
			fmt.Fprintln(stdin)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", cmd.Path, err, out.String(), tail(stderr.String(), 4000))
	}
	return out.String()
}
