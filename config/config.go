package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole validated configuration of a proxy. The zero value is
// not useful: start from DefaultConfig, then Parse, then Validate.
type Config struct {
	// Listen is the address clients connect to.
	Listen string `toml:"listen"`
	// Admin is the address of the HTTP admin server (/metrics, /status,
	// /healthz); empty disables it.
	Admin string `toml:"admin"`
	// Old is the postgres:// URL of the database being migrated from.
	Old string `toml:"old"`
	// New is the postgres:// or mysql:// URL of the database being migrated to.
	New string `toml:"new"`
	// Phase is the global migration phase.
	Phase Phase `toml:"phase"`
	// ReportDir is where comparison reports and mirror dead letters go.
	ReportDir string `toml:"report_dir"`

	Log     LogConfig     `toml:"log"`
	TLS     TLSConfig     `toml:"tls"`
	Auth    AuthConfig    `toml:"auth"`
	Limits  LimitsConfig  `toml:"limits"`
	Loop    LoopConfig    `toml:"loop"`
	Rewrite RewriteConfig `toml:"rewrite"`
	Mirror  MirrorConfig  `toml:"mirror"`
	Shadow  ShadowConfig  `toml:"shadow"`
}

// ShadowConfig tunes shadow reads in phase shadow-read.
type ShadowConfig struct {
	// SampleRate is the fraction of reads shadowed, 0 to 1.
	SampleRate float64 `toml:"sample_rate"`
	// IncludeTables limits shadowing to reads of these tables;
	// ExcludeTables skips reads touching any of them. Patterns may use *.
	IncludeTables []string `toml:"include_tables"`
	ExcludeTables []string `toml:"exclude_tables"`
	// IncludeFingerprints and ExcludeFingerprints select query classes.
	IncludeFingerprints []string `toml:"include_fingerprints"`
	ExcludeFingerprints []string `toml:"exclude_fingerprints"`
	// Timeout bounds one shadow query.
	Timeout time.Duration `toml:"timeout"`
	// MirrorWait bounds the wait for the mirror to apply the writes a read
	// must see.
	MirrorWait time.Duration `toml:"mirror_wait"`
	// MaxConcurrent bounds shadow queries running at once.
	MaxConcurrent int `toml:"max_concurrent"`
	// BatchWindow is how long a shadow worker waits for reads to queue up
	// behind the first, which it then sends to the new database together
	// (0: no waiting); BatchSize bounds a batch (1: no batches).
	BatchWindow time.Duration `toml:"batch_window"`
	BatchSize   int           `toml:"batch_size"`
	// MemoryCap bounds the memory of captured old results, in bytes.
	MemoryCap int64 `toml:"memory_cap"`
}

// MirrorConfig tunes how writes reach the new database in the dual-write
// phases.
type MirrorConfig struct {
	// Dir holds the durable spool, the applied position and the dead
	// letters. Default: "mirror" under report_dir.
	Dir string `toml:"dir"`
	// QueueLen is how many transactions wait in memory before the spool
	// takes over.
	QueueLen int `toml:"queue_len"`
	// MaxSpoolBytes bounds the spool on disk.
	MaxSpoolBytes int64 `toml:"max_spool_bytes"`
	// MaxTxBytes bounds the row images the proxy holds for one open
	// transaction; a transaction that writes more is journaled in chunks
	// while it is open and applied as several transactions once it commits
	// (see proxy.txBuffer). 0: no bound.
	MaxTxBytes int64 `toml:"max_tx_bytes"`
	// Fsync is the spool's fsync policy: "always" (every transaction),
	// "interval" (group commit every fsync_interval) or "never".
	Fsync         string        `toml:"fsync"`
	FsyncInterval time.Duration `toml:"fsync_interval"`
	// MaxGroup bounds how many transactions are sent to the new database
	// in one round trip (each still its own transaction; see
	// mirror.GroupTarget), MaxGroupBytes their size. 1: one per round trip.
	MaxGroup      int   `toml:"max_group"`
	MaxGroupBytes int64 `toml:"max_group_bytes"`
	// GroupLinger is how long a transaction the new database could take at
	// once waits for those committing behind it, to go in one round trip
	// with them (see mirror.Options.GroupLinger). 0: never.
	GroupLinger time.Duration `toml:"group_linger"`
}

// maxGroupLinger bounds mirror.group_linger: it is added to the mirror's
// lag, which shadow reads wait for.
const maxGroupLinger = 100 * time.Millisecond

// MirrorDir returns the mirror's directory, defaulting under ReportDir.
func (c *Config) MirrorDir() string {
	if c.Mirror.Dir != "" || c.ReportDir == "" {
		return c.Mirror.Dir
	}
	return c.ReportDir + "/mirror"
}

// LogConfig selects the log format and level.
type LogConfig struct {
	Format string `toml:"format"` // "text" or "json"
	Level  string `toml:"level"`  // "debug", "info", "warn", "error"
}

// TLSConfig holds the certificate the proxy presents to clients. With no
// certificate the proxy answers SSLRequest with 'N'.
type TLSConfig struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// Enabled reports whether client-facing TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

// Auth modes.
const (
	// AuthPassthrough relays the client's own credentials to the old database.
	AuthPassthrough = "passthrough"
	// AuthUsers authenticates clients against the configured SCRAM verifiers
	// and logs in upstream with the proxy's own credentials.
	AuthUsers = "users"
)

// AuthConfig says how clients authenticate.
type AuthConfig struct {
	Mode string `toml:"mode"`
	// UpstreamUser and UpstreamPassword are the proxy's own credentials for
	// the old database in "users" mode. Empty UpstreamUser means the client's
	// user name; the password may also come from the old URL.
	UpstreamUser     string `toml:"upstream_user"`
	UpstreamPassword string `toml:"upstream_password"`
	Users            []User `toml:"users"`
}

// User is one client login accepted in "users" mode.
type User struct {
	Name string `toml:"name"`
	// SCRAMVerifier is a pg_authid-style verifier:
	// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
	SCRAMVerifier string `toml:"scram_verifier"`
}

// LimitsConfig bounds what one client, and all of them together, may use.
type LimitsConfig struct {
	// MaxClientConns is the most client connections served at once; beyond
	// it clients get SQLSTATE 53300.
	MaxClientConns int `toml:"max_client_conns"`
	// MaxMessageSize is the largest message a client may send, in bytes.
	MaxMessageSize int `toml:"max_message_size"`
	// StartupTimeout bounds the time from accept to the first ReadyForQuery.
	StartupTimeout time.Duration `toml:"startup_timeout"`
	// IdleTimeout closes a client that sent nothing for this long while no
	// transaction was open; zero disables it.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// ShutdownTimeout is how long SIGTERM lets sessions finish.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
}

// LoopConfig tunes the event loop that serves plain (non-TLS) sessions on
// Linux.
type LoopConfig struct {
	// BusyPoll is how long the loop polls its sockets, instead of sleeping,
	// after a wait of the same kind (for answers, or for clients) that
	// ended within BusyPoll, when the machine has a CPU to spare. A sleeping loop is woken by the kernel, which costs some
	// microseconds per round trip; polling trades CPU time for that
	// latency. Zero turns it off; it is off anyway with fewer than two
	// CPUs for the proxy (GOMAXPROCS, which follows a container's limit).
	BusyPoll time.Duration `toml:"busy_poll"`
}

// maxBusyPoll bounds loop.busy_poll: beyond it polling only burns CPU.
const maxBusyPoll = time.Millisecond

// RewriteConfig tunes SQL classification.
type RewriteConfig struct {
	// CacheSize is the number of distinct SQL texts whose classification is kept.
	CacheSize int `toml:"cache_size"`
}

// DefaultConfig returns the configuration used for every field a file or a
// flag does not set.
func DefaultConfig() *Config {
	return &Config{
		Listen: "127.0.0.1:6432",
		Admin:  "127.0.0.1:9187",
		Phase:  OldOnly,
		Log:    LogConfig{Format: "text", Level: "info"},
		Auth:   AuthConfig{Mode: AuthPassthrough},
		Limits: LimitsConfig{
			MaxClientConns:  1000,
			MaxMessageSize:  64 << 20,
			StartupTimeout:  10 * time.Second,
			ShutdownTimeout: 30 * time.Second,
		},
		Loop:    LoopConfig{BusyPoll: 200 * time.Microsecond},
		Rewrite: RewriteConfig{CacheSize: 10000},
		Shadow: ShadowConfig{
			SampleRate:    1,
			Timeout:       5 * time.Second,
			MirrorWait:    2 * time.Second,
			MaxConcurrent: 4,
			BatchWindow:   5 * time.Millisecond,
			BatchSize:     32,
			MemoryCap:     64 << 20,
		},
		Mirror: MirrorConfig{
			QueueLen:      1024,
			MaxSpoolBytes: 8 << 30,
			MaxTxBytes:    256 << 20,
			Fsync:         "interval",
			FsyncInterval: 100 * time.Millisecond,
			MaxGroup:      256,
			MaxGroupBytes: 4 << 20,
			GroupLinger:   time.Millisecond,
		},
	}
}

// Parse reads TOML from r over c. Unknown keys are errors, so that a typo
// does not silently leave a default in force.
func (c *Config) Parse(r io.Reader) error {
	md, err := toml.NewDecoder(r).Decode(c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("config: %s", perr.ErrorWithPosition())
		}
		return fmt.Errorf("config: %w", err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		keys := make([]string, len(un))
		for i, k := range un {
			keys[i] = k.String()
		}
		return &FieldError{Field: keys[0], Err: fmt.Errorf("unknown setting (unknown keys: %s)", strings.Join(keys, ", "))}
	}
	return nil
}

// Load reads the file at path over DefaultConfig. An empty path returns the
// defaults.
func Load(path string) (*Config, error) {
	c := DefaultConfig()
	if path == "" {
		return c, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if err := c.Parse(f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Environment variables that carry secrets, so they need not be in the file
// or on the command line.
const (
	EnvOld = "SHADOWPROXY_OLD"
	EnvNew = "SHADOWPROXY_NEW"
)

// ApplyEnv overrides the database URLs from the environment when set.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if v := getenv(EnvOld); v != "" {
		c.Old = v
	}
	if v := getenv(EnvNew); v != "" {
		c.New = v
	}
}

// FieldError is a validation failure of one setting.
type FieldError struct {
	Field string // the TOML key, e.g. "limits.max_client_conns"
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("config: %s: %v", e.Field, e.Err) }
func (e *FieldError) Unwrap() error { return e.Err }

// ImplementedPhases are the phases this build can run. Validate rejects the
// others by name rather than running a phase half-built.
var ImplementedPhases = map[Phase]bool{OldOnly: true, DualWrite: true, ShadowRead: true}

// Validate checks every field and returns all failures joined, each a
// *FieldError.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Err: fmt.Errorf(format, args...)})
	}
	checkAddr := func(field, v string, optional bool) {
		if v == "" {
			if !optional {
				bad(field, "required")
			}
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(field, "want host:port: %v", err)
		}
	}
	checkAddr("listen", c.Listen, false)
	checkAddr("admin", c.Admin, true)

	if c.Old == "" {
		bad("old", "required (set it in the file, with --old or with %s)", EnvOld)
	} else if err := checkURL(c.Old, "postgres", "postgresql"); err != nil {
		bad("old", "%v", err)
	}
	if c.New != "" {
		if err := checkURL(c.New, "postgres", "postgresql", "mysql"); err != nil {
			bad("new", "%v", err)
		}
	}
	if c.Phase < OldOnly || c.Phase > NewOnly {
		bad("phase", "required")
	} else if !ImplementedPhases[c.Phase] {
		bad("phase", "%s is not implemented in this build", c.Phase)
	} else if c.Phase != OldOnly && c.New == "" {
		bad("new", "required in phase %s", c.Phase)
	}

	if c.Loop.BusyPoll < 0 || c.Loop.BusyPoll > maxBusyPoll {
		bad("loop.busy_poll", "want 0 to %v, got %v", maxBusyPoll, c.Loop.BusyPoll)
	}

	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "want text or json, got %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}

	switch c.Auth.Mode {
	case AuthPassthrough:
	case AuthUsers:
		if len(c.Auth.Users) == 0 {
			bad("auth.users", "at least one user is required in mode %q", AuthUsers)
		}
	default:
		bad("auth.mode", "want %q or %q, got %q", AuthPassthrough, AuthUsers, c.Auth.Mode)
	}
	seen := map[string]bool{}
	for i, u := range c.Auth.Users {
		field := fmt.Sprintf("auth.users[%d]", i)
		if u.Name == "" {
			bad(field+".name", "required")
		} else if seen[u.Name] {
			bad(field+".name", "duplicate user %q", u.Name)
		}
		seen[u.Name] = true
		if _, err := ParseSCRAMVerifier(u.SCRAMVerifier); err != nil {
			bad(field+".scram_verifier", "%v", err)
		}
	}

	if c.Limits.MaxClientConns <= 0 {
		bad("limits.max_client_conns", "must be positive, got %d", c.Limits.MaxClientConns)
	}
	if c.Limits.MaxMessageSize < 4096 {
		bad("limits.max_message_size", "must be at least 4096 bytes, got %d", c.Limits.MaxMessageSize)
	}
	if c.Limits.StartupTimeout <= 0 {
		bad("limits.startup_timeout", "must be positive")
	}
	if c.Limits.IdleTimeout < 0 {
		bad("limits.idle_timeout", "must not be negative")
	}
	if c.Limits.ShutdownTimeout < 0 {
		bad("limits.shutdown_timeout", "must not be negative")
	}
	switch c.Mirror.Fsync {
	case "always", "interval", "never":
	default:
		bad("mirror.fsync", "want always, interval or never, got %q", c.Mirror.Fsync)
	}
	if c.Mirror.MaxTxBytes < 0 {
		bad("mirror.max_tx_bytes", "must be 0 (no bound) or positive, got %d", c.Mirror.MaxTxBytes)
	}
	if c.Mirror.QueueLen <= 0 {
		bad("mirror.queue_len", "must be positive, got %d", c.Mirror.QueueLen)
	}
	if c.Mirror.MaxSpoolBytes < 1<<20 {
		bad("mirror.max_spool_bytes", "must be at least 1 MiB, got %d", c.Mirror.MaxSpoolBytes)
	}
	if c.Mirror.MaxGroup <= 0 {
		bad("mirror.max_group", "must be positive (1: one transaction per round trip), got %d", c.Mirror.MaxGroup)
	}
	if c.Mirror.MaxGroupBytes <= 0 {
		bad("mirror.max_group_bytes", "must be positive, got %d", c.Mirror.MaxGroupBytes)
	}
	if c.Mirror.GroupLinger < 0 || c.Mirror.GroupLinger > maxGroupLinger {
		bad("mirror.group_linger", "want 0 to %v, got %v", maxGroupLinger, c.Mirror.GroupLinger)
	}
	if c.Mirror.Fsync == "interval" && c.Mirror.FsyncInterval <= 0 {
		bad("mirror.fsync_interval", "must be positive")
	}
	if c.Phase > OldOnly && c.MirrorDir() == "" {
		bad("mirror.dir", "required in phase %s (or set report_dir)", c.Phase)
	}
	if c.Shadow.SampleRate < 0 || c.Shadow.SampleRate > 1 {
		bad("shadow.sample_rate", "must be between 0 and 1, got %g", c.Shadow.SampleRate)
	}
	if c.Shadow.Timeout <= 0 {
		bad("shadow.timeout", "must be positive")
	}
	if c.Shadow.MirrorWait < 0 {
		bad("shadow.mirror_wait", "must not be negative")
	}
	if c.Shadow.MaxConcurrent <= 0 {
		bad("shadow.max_concurrent", "must be positive, got %d", c.Shadow.MaxConcurrent)
	}
	if c.Shadow.BatchWindow < 0 || c.Shadow.BatchWindow > time.Second {
		bad("shadow.batch_window", "must be between 0 and 1s, got %s", c.Shadow.BatchWindow)
	}
	if c.Shadow.BatchSize < 1 || c.Shadow.BatchSize > 1024 {
		bad("shadow.batch_size", "must be between 1 and 1024, got %d", c.Shadow.BatchSize)
	}
	if c.Shadow.MemoryCap < 1<<20 {
		bad("shadow.memory_cap", "must be at least 1 MiB, got %d", c.Shadow.MemoryCap)
	}
	if c.Rewrite.CacheSize <= 0 {
		bad("rewrite.cache_size", "must be positive, got %d", c.Rewrite.CacheSize)
	}
	return errors.Join(errs...)
}

func checkURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole input, password included.
		return errors.New("not a valid URL")
	}
	for _, s := range schemes {
		if u.Scheme == s {
			if u.Host == "" {
				return fmt.Errorf("%s URL has no host", u.Scheme)
			}
			return nil
		}
	}
	return fmt.Errorf("scheme %q not supported (want %s)", u.Scheme, strings.Join(schemes, " or "))
}

// RedactURL returns raw with any password replaced, for logs and /status.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
