package mysqltarget

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// SQLMode is the sql_mode every connection sets (unless the URL sets
// sql_mode itself):
//
//   - STRICT_ALL_TABLES: refuse bad values instead of storing a truncated or
//     zero value with a warning, so that a difference shows as a rejection;
//   - NO_BACKSLASH_ESCAPES: backslashes in strings are plain characters, as
//     in PostgreSQL with standard_conforming_strings (the driver escapes
//     interpolated strings accordingly);
//   - NO_ZERO_DATE, NO_ZERO_IN_DATE: PostgreSQL has no zero dates;
//   - ERROR_FOR_DIVISION_BY_ZERO: an error, as in PostgreSQL, not NULL;
//   - NO_AUTO_VALUE_ON_ZERO: an explicit 0 in an AUTO_INCREMENT column is
//     stored as 0 (serial keys may be zero), not replaced by the next value;
//   - NO_ENGINE_SUBSTITUTION: fail rather than silently use another engine.
//
// Identifiers are quoted with backticks, so ANSI_QUOTES is not set.
const SQLMode = "STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,NO_ZERO_DATE,NO_ZERO_IN_DATE," +
	"ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"

// ParseURL converts a mysql://user:password@host[:port]/database?params URL
// into a go-sql-driver configuration. Query parameters are the driver's DSN
// parameters (tls, timeout, charset, …) or session variables; they are
// kept. Unless the URL sets them, ParseURL sets:
//
//   - parseTime=true, loc=UTC: DATETIME values come back as UTC times;
//   - clientFoundRows=true: an upsert that changes nothing reports the row
//     as matched, like PostgreSQL;
//   - interpolateParams=true: arguments are interpolated by the driver,
//     which saves the prepare and close round trips per statement;
//   - multiStatements=true: the target sends several of its statements in
//     one round trip (see pack);
//   - the session variables sql_mode=SQLMode and time_zone='+00:00' (sent
//     as SET on every new connection of the pool), so NOW() and TIMESTAMP
//     columns work in UTC like the DATETIME values written;
//   - a dial timeout of 10 seconds.
//
// The port defaults to 3306. Only TCP is supported.
func ParseURL(rawURL string) (*mysql.Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("mysqltarget: bad URL: %w", err)
	}
	if u.Scheme != "mysql" {
		return nil, fmt.Errorf("mysqltarget: URL scheme %q, want mysql", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("mysqltarget: URL has no host")
	}
	port := u.Port()
	if port == "" {
		port = "3306"
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	q := u.Query()
	// The driver parses its own parameters; the query is re-encoded so that
	// no '/' or '@' in a value confuses its DSN syntax. Credentials and the
	// database are set afterwards, outside that syntax, so they may hold
	// any character.
	cfg, err := mysql.ParseDSN("tcp(" + addr + ")/?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("mysqltarget: URL parameters: %w", err)
	}
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if !q.Has("parseTime") {
		cfg.ParseTime = true
	}
	if !q.Has("loc") {
		cfg.Loc = time.UTC
	}
	if !q.Has("clientFoundRows") {
		cfg.ClientFoundRows = true
	}
	if !q.Has("interpolateParams") {
		cfg.InterpolateParams = true
	}
	if !q.Has("multiStatements") {
		cfg.MultiStatements = true
	}
	if !q.Has("timeout") {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["sql_mode"]; !ok {
		cfg.Params["sql_mode"] = "'" + SQLMode + "'"
	}
	if _, ok := cfg.Params["time_zone"]; !ok {
		cfg.Params["time_zone"] = "'+00:00'"
	}
	return cfg, nil
}
