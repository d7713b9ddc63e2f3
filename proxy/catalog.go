package proxy

import (
	"context"
	"fmt"
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
}

var _ Catalog = (*SchemaCatalog)(nil)

type catalogSnapshot struct {
	cat   *schema.Catalog
	byOID map[uint32]*schema.Table
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
	}
	c.cur.Store(snap)
	return nil
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
