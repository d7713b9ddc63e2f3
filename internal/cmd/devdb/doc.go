// Command devdb runs throwaway Postgres and MariaDB servers in a directory
// until it is interrupted, for `make demo` and for trying the proxy by hand.
// It is a thin wrapper over internal/testdb, so the demo starts its servers
// exactly the way the tests do.
//
// Usage:
//
//	devdb [--dir .demo] [--seed] [--env FILE] [--postgres=false] [--mariadb=false]
//
// When the servers are ready devdb writes FILE (default DIR/env), a shell
// fragment of DEVDB_* variables, and prints the connection strings. On
// SIGINT or SIGTERM it stops the servers, removes their files and FILE.
//
// With --seed it creates the demo: a role and database "demo" (password
// "demo") holding a small table on Postgres (the old database), and the
// same schema, empty, for a user "demo" on MariaDB (the new database).
package main
