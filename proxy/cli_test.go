package proxy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runTool runs a Postgres client program against the proxy as app.
func runTool(t *testing.T, p *testProxy, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	host, port := p.host()
	cmd := exec.Command(filepath.Join(pg.BinDir, name), append([]string{"-h", host, "-p", port, "-U", "app"}, args...)...)
	cmd.Env = append(os.Environ(), "PGPASSWORD=app-pass", "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPsql(t *testing.T) {
	p := startProxy(t, nil)
	script := `drop table if exists psql_t;
create table psql_t (id int primary key, v text);
copy psql_t from stdin;
1	one
2	two
\.
copy psql_t (id, v) from stdin with (format csv);
3,"three, with comma"
\.
select 1/0;
select 'recovered after ' || 'error' as msg;
insert into psql_t values (4, 'four'); update psql_t set v = upper(v) where id = 4; select count(*) as n from psql_t;
copy (select id, v from psql_t order by id) to stdout;
`
	out, err := runTool(t, p, script, "psql", "-X", "-d", "shop", "-v", "ON_ERROR_STOP=0", "-f", "-")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	for _, want := range []string{
		"COPY 2", "COPY 1",
		"ERROR:  division by zero",
		"recovered after error",
		"1\tone\n2\ttwo\n3\tthree, with comma\n4\tFOUR\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("psql output lacks %q:\n%s", want, out)
		}
	}
	// A multi-statement string sent as one simple Query.
	out, err = runTool(t, p, "", "psql", "-X", "-d", "shop", "-At", "-c", "select 1; select 2; select count(*) from psql_t")
	if err != nil || out != "1\n2\n4\n" {
		t.Fatalf("multi-statement: %v %q", err, out)
	}
}

func TestPgbench(t *testing.T) {
	p := startProxy(t, nil)
	if out, err := runTool(t, p, "", "pgbench", "-i", "-s", "1", "-q", "shop"); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			out, err := runTool(t, p, "", "pgbench", "-M", mode, "-c", "4", "-j", "2", "-t", "50", "shop")
			if err != nil {
				t.Fatalf("pgbench: %v\n%s", err, out)
			}
			if !strings.Contains(out, "number of transactions actually processed: 200/200") || !strings.Contains(out, "number of failed transactions: 0") {
				t.Fatalf("pgbench did not finish cleanly:\n%s", out)
			}
		})
	}
}
