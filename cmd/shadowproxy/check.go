package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/schema"
	"github.com/shadowproxy/shadowproxy/target"
	"github.com/shadowproxy/shadowproxy/target/mysqltarget"
	"github.com/shadowproxy/shadowproxy/target/pgtarget"
)

// schemaChecker is what the targets (pgtarget, mysqltarget) offer to compare
// the old database's tables with the new database's.
type schemaChecker interface {
	CheckSchema(ctx context.Context, old *schema.Catalog) ([]schema.Problem, error)
}

// newSchemaStatus is /status "mirror"."new_schema": how the new database's
// tables compare with the old database's, as checked once at start-up.
type newSchemaStatus struct {
	Checked   bool             `json:"checked"`
	CheckedAt time.Time        `json:"checked_at,omitzero"`
	Problems  []schema.Problem `json:"problems"`
	// Error is the last attempt's while the check has not succeeded (the
	// new database is down, say).
	Error string `json:"error,omitempty"`
}

// schemaCheck compares the new database's schema with the old one's in the
// background when dual-write starts, retrying until the new database
// answers, so that a missing table or column shows in the log and /status
// before writes to it are dead-lettered.
type schemaCheck struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	status newSchemaStatus
}

// schemaCheckRetry is how long the check waits between attempts.
const schemaCheckRetry = 30 * time.Second

func startSchemaCheck(ctx context.Context, c schemaChecker, old *schema.Catalog, log *slog.Logger) *schemaCheck {
	ctx, cancel := context.WithCancel(ctx)
	sc := &schemaCheck{cancel: cancel, done: make(chan struct{}), status: newSchemaStatus{Problems: []schema.Problem{}}}
	go sc.run(ctx, c, old, log)
	return sc
}

func (sc *schemaCheck) run(ctx context.Context, c schemaChecker, old *schema.Catalog, log *slog.Logger) {
	defer close(sc.done)
	for attempt := 0; ; attempt++ {
		problems, err := c.CheckSchema(ctx, old)
		if err == nil {
			sc.mu.Lock()
			sc.status = newSchemaStatus{Checked: true, CheckedAt: time.Now().UTC(), Problems: append([]schema.Problem{}, problems...)}
			sc.mu.Unlock()
			for _, p := range problems {
				log.Warn("the new database's schema differs from the old one's: mirrored writes may be dead-lettered",
					"table", p.Table, "column", p.Column, "kind", p.Kind, "detail", p.Detail)
			}
			if len(problems) == 0 {
				log.Info("the new database's tables match the old database's")
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		sc.mu.Lock()
		sc.status.Error = err.Error()
		sc.mu.Unlock()
		if attempt == 0 {
			log.Info("cannot compare the new database's schema with the old one's yet; retrying", "every", schemaCheckRetry, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(schemaCheckRetry):
		}
	}
}

func (sc *schemaCheck) get() newSchemaStatus {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.status
}

// close stops the check and waits for it.
func (sc *schemaCheck) close() {
	sc.cancel()
	<-sc.done
}

// runCheck is `shadowproxy check`: compare the new database's tables with
// the old database's before dual-write, and exit 4 when they differ.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newDBCommand("check", "postgres:// or mysql://", stderr)
	cfg, status, ok := c.load(args, `usage: shadowproxy check [--config FILE] [--old URL] [--new URL] [--format text|json]

Compares the tables the mirror writes with the new database's: missing
tables and columns, NOT NULL columns the old tables lack, missing keys, and
column types that may refuse or change values. Exit status: 0 no problem,
4 problems, 1 error.

`)
	if !ok {
		return status
	}
	problems, err := checkSchema(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "shadowproxy check:", err)
		return 1
	}
	if *c.format == "json" {
		if err := writeJSON(stdout, map[string]any{"problems": append([]schema.Problem{}, problems...)}); err != nil {
			fmt.Fprintln(stderr, "shadowproxy check:", err)
			return 1
		}
	} else {
		for _, p := range problems {
			fmt.Fprintln(stdout, p)
		}
		if len(problems) == 0 {
			fmt.Fprintln(stdout, "the new database's tables match the old database's")
		}
	}
	if len(problems) > 0 {
		return 4
	}
	return 0
}

// dbCommand is what the commands that compare the two databases share:
// the flags --config, --old, --new and --format, and how they make the
// configuration.
type dbCommand struct {
	name   string
	fs     *flag.FlagSet
	stderr io.Writer

	configPath, oldURL, newURL, format *string
}

// newDBCommand defines the shared flags of command name, whose new
// database may be of the kinds newKinds ("postgres://", say). The command
// adds its own flags to fs before load.
func newDBCommand(name, newKinds string, stderr io.Writer) *dbCommand {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &dbCommand{
		name:       name,
		fs:         fs,
		stderr:     stderr,
		configPath: fs.String("config", "", "TOML configuration `file` (its old and new URLs)"),
		oldURL:     fs.String("old", "", "postgres:// `URL` of the old database (or $"+config.EnvOld+")"),
		newURL:     fs.String("new", "", newKinds+" `URL` of the new database (or $"+config.EnvNew+")"),
		format:     fs.String("format", "text", "output `format`: text or json"),
	}
}

// load parses args (usage is the help text before the flags) and builds
// the configuration: the file, the environment, then the flags; both URLs
// are required. When ok is false it has reported why on stderr and the
// command exits with status: 2 for bad usage, 1 for a bad configuration.
func (c *dbCommand) load(args []string, usage string) (cfg *config.Config, status int, ok bool) {
	c.fs.Usage = func() {
		fmt.Fprint(c.stderr, usage)
		c.fs.PrintDefaults()
	}
	if err := c.fs.Parse(args); err != nil || c.fs.NArg() > 0 || (*c.format != "text" && *c.format != "json") {
		if err == nil {
			c.fs.Usage()
		}
		return nil, 2, false
	}
	cfg, err := c.configuration()
	if err != nil {
		fmt.Fprintf(c.stderr, "shadowproxy %s: %v\n", c.name, err)
		return nil, 1, false
	}
	return cfg, 0, true
}

func (c *dbCommand) configuration() (*config.Config, error) {
	cfg, err := config.Load(*c.configPath)
	if err != nil {
		return nil, err
	}
	cfg.ApplyEnv(os.Getenv)
	if *c.oldURL != "" {
		cfg.Old = *c.oldURL
	}
	if *c.newURL != "" {
		cfg.New = *c.newURL
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.New == "" {
		return nil, &config.FieldError{Field: "new", Err: errors.New("required by " + c.name)}
	}
	return cfg, nil
}

// writeJSON writes v to w as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// checkSchema reads the old database's catalog and compares the new
// database's tables with it.
func checkSchema(ctx context.Context, cfg *config.Config) ([]schema.Problem, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := oldCatalogConn(cfg)(ctx)
	if err != nil {
		return nil, fmt.Errorf("old: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cat, err := schema.Load(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("old: %w", err)
	}
	t, err := target.Open(ctx, cfg.New, target.Options{Catalog: cat, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	defer t.Close()
	return t.(schemaChecker).CheckSchema(ctx, cat)
}

// Both targets compare schemas.
var (
	_ schemaChecker = (*pgtarget.Target)(nil)
	_ schemaChecker = (*mysqltarget.Target)(nil)
)
