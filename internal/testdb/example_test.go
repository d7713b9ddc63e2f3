package testdb_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/shadowproxy/shadowproxy/internal/testdb"
)

// A package's tests share one server through TestMain. Close must run
// before os.Exit, which skips deferred calls.
func ExampleNewPostgres() {
	// In a _test.go file:
	//
	//	var pg *testdb.Postgres
	//
	//	func TestMain(m *testing.M) { os.Exit(run(m)) }
	run := func(m *testing.M) int {
		p, err := testdb.NewPostgres(context.Background())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer p.Close()
		return m.Run()
	}
	_ = run
}

// One server per test, with a role that must log in with SCRAM and a rule
// that lets another log in with md5.
func ExampleStartPostgres() {
	var t testing.TB // the test's *testing.T
	p := testdb.StartPostgres(t, testdb.WithHBA("host all legacy 127.0.0.1/32 md5"))
	p.Exec(t, "CREATE ROLE app LOGIN PASSWORD 'secret'")
	_ = p.URL("app", "secret", "postgres") // postgres://app:secret@127.0.0.1:<port>/postgres?sslmode=disable
}

func ExampleStartMariaDB() {
	var t testing.TB // the test's *testing.T
	m := testdb.StartMariaDB(t)
	m.Exec(t, "CREATE DATABASE app; CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'secret'; GRANT ALL ON app.* TO 'app'@'127.0.0.1'")
	_ = m.DSNFor("app", "secret", "app") + "?parseTime=true" // for database/sql
	_ = m.URL("app", "secret", "app")                        // mysql://..., for shadowproxy's configuration
}
