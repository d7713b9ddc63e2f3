package target

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
	"github.com/shadowproxy/shadowproxy/target/mysqltarget"
	"github.com/shadowproxy/shadowproxy/target/pgtarget"
)

// Options are the settings both targets take. Zero fields take the targets'
// defaults.
type Options struct {
	Logger *slog.Logger
	// Timeout bounds one Apply (default 1 minute).
	Timeout time.Duration
	// Catalog is the old database's catalog (schema.Load). The MySQL target
	// uses it to convert values of user-defined types; the Postgres target
	// does not need it (values go to the server as text).
	Catalog *schema.Catalog
	// Lazy skips connecting in Open; the first Apply connects.
	Lazy bool
}

// Open returns the target for rawURL: a *pgtarget.Target for postgres://
// and postgresql:// URLs, a *mysqltarget.Target for mysql:// URLs.
func Open(ctx context.Context, rawURL string, opts Options) (mirror.Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("target: bad URL: %w", err)
	}
	// Each branch returns a nil interface on error, not a typed nil pointer.
	switch u.Scheme {
	case "postgres", "postgresql":
		t, err := pgtarget.New(ctx, rawURL, pgtarget.Options{Logger: opts.Logger, Timeout: opts.Timeout, Lazy: opts.Lazy})
		if err != nil {
			return nil, err
		}
		return t, nil
	case "mysql":
		t, err := mysqltarget.New(ctx, rawURL, mysqltarget.Options{Logger: opts.Logger, Timeout: opts.Timeout,
			Catalog: opts.Catalog, Lazy: opts.Lazy})
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, fmt.Errorf("target: unsupported URL scheme %q (want postgres, postgresql or mysql)", u.Scheme)
}
