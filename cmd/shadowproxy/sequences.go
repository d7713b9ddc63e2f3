package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/schema"
)

// runSequences is `shadowproxy sequences`: before the new database takes
// writes, list (and with --apply move) its sequences that would hand out
// values the old database's already did. The mirror moves the sequences
// owned by the columns it writes; the others (a sequence the application
// calls nextval on itself) only this moves.
func runSequences(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newDBCommand("sequences", "postgres://", stderr)
	apply := c.fs.Bool("apply", false, "move the sequences that are behind past the old database's values")
	cfg, status, ok := c.load(args, `usage: shadowproxy sequences [--config FILE] [--old URL] [--new URL] [--apply] [--format text|json]

Lists the sequences of the new (Postgres) database whose next value the old
database's sequence of the same name has already handed out; --apply moves
them past it (never backwards). Run it before the new database takes
writes. Exit status: 0 none behind (or all moved), 4 some behind, 1 error.

`)
	if !ok {
		return status
	}
	if u, err := url.Parse(cfg.New); err == nil && u.Scheme == "mysql" {
		fmt.Fprintln(stdout, "the new database is MySQL: its AUTO_INCREMENT counters move with the ids the mirror inserts")
		return 0
	}
	behind, err := sequencesBehind(ctx, cfg, *apply)
	if err != nil {
		fmt.Fprintln(stderr, "shadowproxy sequences:", err)
		return 1
	}
	if *c.format == "json" {
		if err := writeJSON(stdout, map[string]any{"behind": append([]schema.SequenceBehind{}, behind...), "moved": *apply}); err != nil {
			fmt.Fprintln(stderr, "shadowproxy sequences:", err)
			return 1
		}
	} else {
		for _, b := range behind {
			verb := "behind"
			if *apply {
				verb = "moved past it"
			}
			fmt.Fprintf(stdout, "%s: the old database handed out %d, the new one would hand out %d next: %s\n", b.Name, b.OldLast, b.NewNext, verb)
		}
		if len(behind) == 0 {
			fmt.Fprintln(stdout, "no sequence of the new database is behind the old one's")
		}
	}
	if len(behind) > 0 && !*apply {
		return 4
	}
	return 0
}

// sequencesBehind compares the two databases' sequences and, with apply,
// moves those of the new database that are behind.
func sequencesBehind(ctx context.Context, cfg *config.Config, apply bool) ([]schema.SequenceBehind, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	oldConn, err := oldCatalogConn(cfg)(ctx)
	if err != nil {
		return nil, fmt.Errorf("old: %w", err)
	}
	defer oldConn.Close(context.WithoutCancel(ctx))
	newConn, err := pgx.Connect(ctx, cfg.New)
	if err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	defer newConn.Close(context.WithoutCancel(ctx))
	old, err := schema.LoadSequences(ctx, oldConn)
	if err != nil {
		return nil, fmt.Errorf("old: %w", err)
	}
	nw, err := schema.LoadSequences(ctx, newConn)
	if err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	behind := schema.SequencesBehind(old, nw)
	if !apply {
		return behind, nil
	}
	for _, b := range behind {
		s, n := schema.SplitName(b.Name)
		if _, err := newConn.Exec(ctx, "SELECT pg_catalog.setval(format('%I.%I', $1::text, $2::text)::regclass, $3)", s, n, b.OldLast); err != nil {
			return nil, fmt.Errorf("new: move %s to %d: %w", b.Name, b.OldLast, err)
		}
	}
	return behind, nil
}
