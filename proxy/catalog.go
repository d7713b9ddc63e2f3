package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/schema"
)

// SchemaCatalog is the old database's catalog as the capture path needs it,
// reloaded after DDL. It implements Catalog.
type SchemaCatalog struct {
	connect func(ctx context.Context) (*pgx.Conn, error)
	mu      sync.Mutex // serializes reloads
	cur     atomic.Pointer[catalogSnapshot]
	reads   atomic.Uint64

	// lookup is a connection kept for Persistence, which runs whenever
	// rows of a table the catalog does not know come back (a new temporary
	// table, typically): connecting each time would cost more than the
	// query. Opened on first use, dropped after an error.
	lmu    sync.Mutex
	lookup *pgx.Conn
	closed bool
}

var _ Catalog = (*SchemaCatalog)(nil)

type catalogSnapshot struct {
	cat   *schema.Catalog
	byOID map[uint32]*schema.Table
	// triggerWrites holds the tables whose triggers write tables (see
	// TriggerWrites), by qualified name.
	triggerWrites map[string]triggerWrites
}

type triggerWrites struct {
	tables []string
	reason string
}

// NewSchemaCatalog loads the catalog through connect, which opens a
// connection to the old database (any role that can log in can read it).
func NewSchemaCatalog(ctx context.Context, connect func(context.Context) (*pgx.Conn, error)) (*SchemaCatalog, error) {
	c := &SchemaCatalog{connect: connect}
	if err := c.Reload(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads the catalog.
func (c *SchemaCatalog) Reload(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, err := c.connect(ctx)
	if err != nil {
		return fmt.Errorf("catalog: connecting to the old database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cat, err := schema.Load(ctx, conn)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	snap := &catalogSnapshot{cat: cat, byOID: make(map[uint32]*schema.Table, len(cat.Tables))}
	for _, t := range cat.Tables {
		snap.byOID[t.OID] = t
		if tw, ok := writingTriggers(cat, t); ok {
			if snap.triggerWrites == nil {
				snap.triggerWrites = map[string]triggerWrites{}
			}
			snap.triggerWrites[t.QualifiedName()] = tw
		}
	}
	c.cur.Store(snap)
	c.reads.Add(1)
	return nil
}

// Reads returns how many times the catalog was read, the first time
// included.
func (c *SchemaCatalog) Reads() uint64 { return c.reads.Load() }

// Persistence looks up one relation on the old database: its
// relpersistence ('p' permanent, 'u' unlogged, 't' temporary), or 0 when no
// relation with that OID is visible (dropped, or created by a transaction
// that has not committed).
func (c *SchemaCatalog) Persistence(ctx context.Context, oid uint32) (byte, error) {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	if c.closed {
		return 0, errors.New("catalog: closed")
	}
	if c.lookup == nil || c.lookup.IsClosed() {
		conn, err := c.connect(ctx)
		if err != nil {
			return 0, fmt.Errorf("catalog: connecting to the old database: %w", err)
		}
		c.lookup = conn
	}
	var p string
	err := c.lookup.QueryRow(ctx, "SELECT relpersistence::text FROM pg_catalog.pg_class WHERE oid = $1", oid).Scan(&p)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		c.lookup.Close(context.WithoutCancel(ctx))
		c.lookup = nil
		return 0, fmt.Errorf("catalog: looking up relation %d: %w", oid, err)
	case len(p) != 1:
		return 0, fmt.Errorf("catalog: relation %d has relpersistence %q", oid, p)
	}
	return p[0], nil
}

// Close closes the connection Persistence keeps.
func (c *SchemaCatalog) Close(ctx context.Context) error {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	c.closed = true
	if c.lookup == nil {
		return nil
	}
	err := c.lookup.Close(ctx)
	c.lookup = nil
	return err
}

// Catalog returns the catalog as last loaded.
func (c *SchemaCatalog) Catalog() *schema.Catalog { return c.cur.Load().cat }

// TableByOID resolves a row's tableoid to the table the mirror writes: a
// partition's rows go to the root of its partition tree.
func (c *SchemaCatalog) TableByOID(oid uint32) (string, []string, bool) {
	snap := c.cur.Load()
	t := snap.byOID[oid]
	if t == nil {
		return "", nil, false
	}
	for range 32 { // partition trees are shallow; bound a malformed loop
		if t.PartitionOf == "" {
			break
		}
		parent := snap.cat.Tables[t.PartitionOf]
		if parent == nil {
			break
		}
		t = parent
	}
	return t.QualifiedName(), t.PrimaryKey, true
}

// KeyOf returns the primary key of a table named as in a statement
// (unqualified names resolve through "public"); ok is false for an unknown
// table, and the key is empty for a table without one.
func (c *SchemaCatalog) KeyOf(name string) ([]string, bool) {
	t := c.cur.Load().cat.Lookup(name, nil)
	if t == nil {
		return nil, false
	}
	return t.PrimaryKey, true
}

// FunctionMayWrite implements Catalog.
func (c *SchemaCatalog) FunctionMayWrite(name string) string {
	return c.cur.Load().cat.FunctionMayWrite(name)
}

// TriggerWrites implements Catalog.
func (c *SchemaCatalog) TriggerWrites(table string) (tables []string, reason string) {
	tw := c.cur.Load().triggerWrites[table]
	return tw.tables, tw.reason
}

// writingTriggers describes what the enabled triggers of t write with SQL of
// their own: other tables, or t itself (an AFTER trigger's UPDATE of t
// happens after the statement's RETURNING was computed, a write of other
// rows is in no RETURNING at all). ok is false when they write nothing.
// Names in the trigger functions resolve through t's schema and "public",
// a guess at the function's search_path; names that resolve to no table are
// left out.
func writingTriggers(cat *schema.Catalog, t *schema.Table) (tw triggerWrites, ok bool) {
	var reasons []string
	for _, tr := range t.Triggers {
		if tr.Enabled == schema.TriggerDisabled || (len(tr.Writes) == 0 && !tr.MayWriteOther) {
			continue
		}
		for _, w := range tr.Writes {
			if wt := cat.Lookup(w, []string{t.Schema, "public"}); wt != nil && !slices.Contains(tw.tables, wt.QualifiedName()) {
				tw.tables = append(tw.tables, wt.QualifiedName())
			}
		}
		why := tr.MayWriteOtherReason
		if why == "" {
			why = "it writes " + strings.Join(tr.Writes, ", ")
		}
		reasons = append(reasons, fmt.Sprintf("trigger %s on %s: %s", tr.Name, t.QualifiedName(), why))
	}
	if len(reasons) == 0 {
		return tw, false
	}
	slices.Sort(tw.tables)
	tw.reason = "written by triggers, not captured (" + strings.Join(reasons, "; ") + ")"
	return tw, true
}

// CopyColumns implements Catalog.
func (c *SchemaCatalog) CopyColumns(name string) (cols, always []string, ok bool) {
	t := c.cur.Load().cat.Lookup(name, nil)
	if t == nil {
		return nil, nil, false
	}
	for _, col := range t.Columns {
		if col.Generated {
			continue
		}
		cols = append(cols, col.Name)
		if col.Identity == schema.IdentityAlways {
			always = append(always, col.Name)
		}
	}
	return cols, always, true
}
