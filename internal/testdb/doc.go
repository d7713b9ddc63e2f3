// Package testdb starts throwaway PostgreSQL and MariaDB servers for tests,
// benchmarks and the demo.
//
// Every server is a real one, started from the Debian packages installed on
// the machine (installed on demand by EnsurePackages when the process runs as
// root), listening on 127.0.0.1 on a free port, with its data in a temporary
// directory that is removed when the server is closed. Settings trade
// durability for speed (fsync off), which is right for data nobody keeps.
//
// Two layers:
//
//   - NewPostgres and NewMariaDB take a context and return a handle whose
//     Close stops the server and removes its directory. Use them from
//     TestMain to share one server among a package's tests, and from
//     programs (internal/cmd/devdb, which backs `make demo`).
//   - StartPostgres and StartMariaDB take a testing.TB, fail the test when
//     the server cannot start, and register Close with tb.Cleanup.
//
// Postgres refuses to run as root and MariaDB should not, so when the
// process is root the servers run as the "postgres" or "mysql" system user
// (or a dedicated "shadowproxy-test" user when those do not exist). The
// server processes are started with a parent-death signal, so a test binary
// that dies (a panic, a -timeout) takes its servers with it instead of
// leaving them bound to ports on a shared machine.
//
// Authentication on a Postgres server: the superuser "postgres" is trusted
// on the Unix socket and on loopback TCP (SuperURL needs no password); every
// other role must log in with SCRAM-SHA-256 over TCP, like a production
// server. WithHBA adds rules before that catch-all. On a MariaDB server,
// root logs in over TCP with an empty password.
package testdb
