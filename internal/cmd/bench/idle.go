package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/config"
)

// idleSettle is how long the idle connections sit before the proxy's
// memory is measured: the sessions' goroutines have parked and the
// start-up garbage has had time to be collected.
const idleSettle = 2 * time.Second

// idleDialers is how many connections are opened at once. Postgres forks a
// backend per connection, which is the slow part; a few in parallel keep
// both cores busy without a thundering herd on the proxy's accept loop.
const idleDialers = 16

// idleSection measures the proxy's resident memory per idle client
// connection: a fresh proxy's RSS before and after e.opts.idleClients
// connections are opened through it and left idle.
func idleSection(ctx context.Context, e *env) (*report, error) {
	n := e.opts.idleClients
	if need := uint64(2*n + 64); e.fileLimit < need {
		return nil, fmt.Errorf("open-file limit %d is too low for %d connections (need about %d)", e.fileLimit, n, need)
	}
	p, err := e.startProxy(ctx, proxySpec{
		Name:      "idle",
		Configure: func(c *config.Config) { c.Limits.MaxClientConns = n + 10 },
	})
	if err != nil {
		return nil, err
	}
	defer stopProxy(p)

	before, err := p.rssKiB()
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	conns, err := openConns(ctx, p.url("postgres"), n, idleDialers)
	defer closeConns(conns)
	if err != nil {
		return nil, fmt.Errorf("opening %d connections through the proxy: %w", n, err)
	}
	e.logf("%d connections open through the proxy in %v", n, time.Since(begin).Round(time.Millisecond))
	select {
	case <-time.After(idleSettle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	after, err := p.rssKiB()
	if err != nil {
		return nil, err
	}
	// Every connection must still be there: a proxy that dropped some
	// would look cheaper than it is.
	if err := checkOpen(ctx, conns); err != nil {
		return nil, err
	}
	per := float64(after-before) / float64(n)
	e.logf("proxy RSS %d KiB before, %d KiB after %d idle connections", before, after, n)
	return &report{
		text: fmt.Sprintf("idle RSS per client connection: %.1f KiB (%d clients; proxy RSS %.1f MiB before, %.1f MiB after)\n",
			per, n, float64(before)/1024, float64(after)/1024),
		goals: []goal{{
			what: fmt.Sprintf("≤ %.0f KiB RSS per idle client connection", goalIdleKiB),
			got:  fmt.Sprintf("%.1f KiB", per),
			met:  per <= goalIdleKiB,
		}},
	}, nil
}

// openConns opens n connections to url, `parallel` at a time. On error it
// returns the connections opened so far with the first error.
func openConns(ctx context.Context, url string, n, parallel int) ([]*pgconn.PgConn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := make([]*pgconn.PgConn, n)
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range min(parallel, n) {
		wg.Go(func() {
			for i := range next {
				c, err := pgconn.Connect(ctx, url)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i+1, err)
						cancel()
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	opened := conns[:0]
	for _, c := range conns {
		if c != nil {
			opened = append(opened, c)
		}
	}
	if firstErr == nil && len(opened) < n {
		firstErr = ctx.Err()
	}
	return opened, firstErr
}

// checkOpen runs an empty query on every connection, proving that the
// proxy still holds each client and its upstream session.
func checkOpen(ctx context.Context, conns []*pgconn.PgConn) error {
	var errs []error
	for i, c := range conns {
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			errs = append(errs, fmt.Errorf("connection %d: %w", i+1, err))
			if len(errs) == 5 {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// closeConns closes every connection, politely (Terminate) so that the
// backends exit at once.
func closeConns(conns []*pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range conns {
		c.Close(ctx)
	}
}
