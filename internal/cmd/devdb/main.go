package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

//go:embed seed_postgres.sql
var seedPostgres string

//go:embed seed_mariadb.sql
var seedMariaDB string

// The demo's credentials, on both servers.
const (
	demoUser     = "demo"
	demoPassword = "demo"
	demoDB       = "demo"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devdb:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devdb", flag.ContinueOnError)
	dir := fs.String("dir", ".demo", "directory for the servers' files (wiped if left by an earlier run)")
	envFile := fs.String("env", "", "write the DEVDB_* shell variables here when ready (default DIR/env)")
	withPG := fs.Bool("postgres", true, "run a Postgres server")
	withMaria := fs.Bool("mariadb", true, "run a MariaDB server")
	pgPort := fs.Int("pg-port", 0, "Postgres port (0: a free one)")
	mariaPort := fs.Int("mariadb-port", 0, "MariaDB port (0: a free one)")
	seed := fs.Bool("seed", false, "create the demo role, database and table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *envFile == "" {
		*envFile = filepath.Join(*dir, "env")
	}

	// Stop on the first signal even while the servers are still starting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var env []envVar
	if *withPG {
		begin := time.Now()
		pg, err := testdb.NewPostgres(ctx, testdb.WithDir(filepath.Join(*dir, "postgres")), testdb.WithPort(*pgPort))
		if err != nil {
			return err
		}
		defer pg.Close()
		fmt.Fprintf(stdout, "postgres ready in %v: %s (data in %s, log %s)\n", time.Since(begin).Round(time.Millisecond), pg.SuperURL(), pg.Dir, pg.LogFile)
		env = append(env,
			envVar{"DEVDB_PG_SUPER_URL", pg.SuperURL()},
			envVar{"DEVDB_PG_PORT", fmt.Sprint(pg.Port)},
			envVar{"DEVDB_PG_BINDIR", pg.BinDir},
			envVar{"DEVDB_PG_LOG", pg.LogFile},
		)
		if *seed {
			if err := seedPG(ctx, pg); err != nil {
				return err
			}
			env = append(env, envVar{"DEVDB_OLD_URL", pg.URL(demoUser, demoPassword, demoDB)})
		}
	}
	if *withMaria {
		begin := time.Now()
		m, err := testdb.NewMariaDB(ctx, testdb.WithDir(filepath.Join(*dir, "mariadb")), testdb.WithPort(*mariaPort))
		if err != nil {
			return err
		}
		defer m.Close()
		fmt.Fprintf(stdout, "mariadb ready in %v: %s (data in %s, log %s)\n", time.Since(begin).Round(time.Millisecond), m.SuperURL(), m.Dir, m.LogFile)
		env = append(env,
			envVar{"DEVDB_MARIADB_SUPER_URL", m.SuperURL()},
			envVar{"DEVDB_MARIADB_PORT", fmt.Sprint(m.Port)},
			envVar{"DEVDB_MARIADB_LOG", m.LogFile},
		)
		if *seed {
			if err := seedMaria(ctx, m); err != nil {
				return err
			}
			env = append(env, envVar{"DEVDB_NEW_URL", m.URL(demoUser, demoPassword, demoDB)})
		}
	}

	// Write to a temporary name and rename, so that a script polling for
	// the file never reads half of it.
	tmp := *envFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(renderEnv(env)), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, *envFile); err != nil {
		return err
	}
	defer os.Remove(*envFile)
	fmt.Fprintf(stdout, "variables in %s; stop with Ctrl-C or SIGTERM\n", *envFile)

	<-ctx.Done()
	fmt.Fprintln(stdout, "devdb: stopping")
	return nil
}

// seedPG creates the demo role and database, then the schema as the demo
// role, which also checks that a SCRAM login works.
func seedPG(ctx context.Context, pg *testdb.Postgres) error {
	if err := pg.ExecContext(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", demoUser, demoPassword)); err != nil {
		return err
	}
	// CREATE DATABASE cannot share a simple query with other statements.
	if err := pg.ExecContext(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", demoDB, demoUser)); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, pg.URL(demoUser, demoPassword, demoDB))
	if err != nil {
		return fmt.Errorf("seeding postgres: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, seedPostgres); err != nil {
		return fmt.Errorf("seeding postgres: %w", err)
	}
	return nil
}

// seedMaria creates the demo user and database with the same schema as on
// Postgres, empty: the new database before a backfill.
func seedMaria(ctx context.Context, m *testdb.MariaDB) error {
	q := fmt.Sprintf("CREATE DATABASE %[1]s; CREATE USER '%[2]s'@'127.0.0.1' IDENTIFIED BY '%[3]s'; GRANT ALL ON %[1]s.* TO '%[2]s'@'127.0.0.1'; USE %[1]s; %[4]s",
		demoDB, demoUser, demoPassword, seedMariaDB)
	if err := m.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("seeding mariadb: %w", err)
	}
	return nil
}

type envVar struct{ name, value string }

// renderEnv renders variables as shell assignments, single-quoted.
func renderEnv(vars []envVar) string {
	var b strings.Builder
	b.WriteString("# Written by devdb; removed when it stops.\n")
	for _, v := range vars {
		fmt.Fprintf(&b, "%s=%s\n", v.name, shellQuote(v.value))
	}
	return b.String()
}

// shellQuote quotes s for a POSIX shell. Inside single quotes everything is
// literal except the single quote itself, which must end the quoting, appear
// escaped as \', and reopen it.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
