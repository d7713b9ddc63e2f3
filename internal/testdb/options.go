package testdb

import (
	"fmt"
	"sort"
)

// Option configures a server started by NewPostgres/StartPostgres or
// NewMariaDB/StartMariaDB. Each option says which servers it applies to; a
// Postgres-only option given to MariaDB is an error rather than ignored.
type Option func(*options)

// PGOption is the name the Postgres constructors' options go by; it is the
// same type as Option.
type PGOption = Option

type options struct {
	dir      string
	port     int
	ssl      bool
	hba      []string
	settings map[string]string
}

func buildOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// sortedSettings returns the WithSetting pairs in name order, so the
// generated configuration is stable.
func (o options) sortedSettings() [][2]string {
	names := make([]string, 0, len(o.settings))
	for n := range o.settings {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([][2]string, len(names))
	for i, n := range names {
		out[i] = [2]string{n, o.settings[n]}
	}
	return out
}

// WithDir puts the server's files in dir instead of a fresh temporary
// directory (Postgres and MariaDB). dir must be missing, empty, or left by
// an earlier testdb server; it is removed by Close. When the process is
// root, every directory above dir must be enterable by the server's user.
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithPort makes the server listen on port instead of a free one (Postgres
// and MariaDB). Start fails if the port is taken.
func WithPort(port int) Option { return func(o *options) { o.port = port } }

// WithSSL turns on TLS with a fresh self-signed certificate for 127.0.0.1,
// ::1 and localhost (Postgres and MariaDB); see CertFile on the handle.
// Plain connections are still accepted.
func WithSSL() Option { return func(o *options) { o.ssl = true } }

// WithHBA inserts pg_hba.conf lines before the catch-all rule that requires
// SCRAM-SHA-256 for every role over loopback (Postgres only). The rules
// before them trust the superuser "postgres" on the socket and loopback.
//
// Example: WithHBA("host all legacy 127.0.0.1/32 md5").
func WithHBA(lines ...string) Option {
	return func(o *options) { o.hba = append(o.hba, lines...) }
}

// WithSetting sets a server setting (Postgres and MariaDB). For Postgres
// it is a postgresql.conf line, e.g. WithSetting("wal_level", "logical");
// the value is written as is, so quote strings ('...'). For MariaDB it is
// a mariadbd option, e.g. WithSetting("sql-mode", "ANSI_QUOTES").
func WithSetting(name, value string) Option {
	return func(o *options) {
		if o.settings == nil {
			o.settings = map[string]string{}
		}
		o.settings[name] = value
	}
}

func (o options) checkMariaDB() error {
	if len(o.hba) > 0 {
		return fmt.Errorf("testdb: WithHBA applies to Postgres only")
	}
	return nil
}
