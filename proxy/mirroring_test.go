package proxy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/shadowproxy/shadowproxy/mirror"
)

// fakeCatalog is a catalog whose tables show up on Reload, and which
// counts how often it is asked.
type fakeCatalog struct {
	mu          sync.Mutex
	tables      map[uint32]string // loaded
	created     map[uint32]string // permanent tables a reload finds
	persistence map[uint32]byte
	lookupErr   error
	reloads     int
	lookups     int
}

func (c *fakeCatalog) TableByOID(oid uint32) (string, []string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name, ok := c.tables[oid]
	return name, []string{"id"}, ok
}
func (c *fakeCatalog) KeyOf(string) ([]string, bool) { return []string{"id"}, true }
func (c *fakeCatalog) CopyColumns(string) ([]string, []string, bool) {
	return nil, nil, false
}
func (c *fakeCatalog) TriggerWrites(string) ([]string, string) { return nil, "" }
func (c *fakeCatalog) FunctionMayWrite(string) string          { return "" }
func (c *fakeCatalog) Reload(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reloads++
	for oid, name := range c.created {
		c.tables[oid] = name
	}
	return nil
}
func (c *fakeCatalog) Persistence(_ context.Context, oid uint32) (byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lookups++
	return c.persistence[oid], c.lookupErr
}

type nopJournal struct{}

func (nopJournal) EnqueueDurable(*mirror.Batch) (uint64, error) { return 0, nil }
func (nopJournal) Resolve(uint64, bool)                         {}
func (nopJournal) SyncsEachWrite() bool                         { return false }
func (nopJournal) Unmirrored(string, []string, []string, int)   {}

// An OID the catalog does not know is looked up once: a temporary table is
// remembered as such without reloading the catalog, a permanent table made
// since the catalog was read reloads it, and the answer is kept.
func TestResolveTable(t *testing.T) {
	cat := &fakeCatalog{
		tables:      map[uint32]string{1: "public.known"},
		created:     map[uint32]string{3: "public.later"},
		persistence: map[uint32]byte{2: 't', 3: 'p', 4: 'p'},
	}
	m, err := NewMirroring(MirroringOptions{Catalog: cat, Mirror: nopJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		table, reason    string
		lookups, reloads int
		known            bool // knowsOID afterwards
	}
	for _, tc := range []struct {
		name string
		oid  uint32
		want want
	}{
		{"known", 1, want{table: "public.known", known: true}},
		{"temporary", 2, want{reason: "write to a temporary table", lookups: 1, known: true}},
		{"temporary again", 2, want{reason: "write to a temporary table", lookups: 1, known: true}},
		{"created since", 3, want{table: "public.later", lookups: 2, reloads: 1, known: true}},
		{"created since, again", 3, want{table: "public.later", lookups: 2, reloads: 1, known: true}},
		{"permanent but not in the catalog", 4, want{reason: "rows of a table missing from the catalog", lookups: 3, reloads: 2, known: true}},
		{"invisible", 5, want{reason: "rows of a table other sessions cannot see", lookups: 4, reloads: 2, known: true}},
	} {
		table, _, reason := m.resolveTable(tc.oid)
		if table != tc.want.table || !strings.HasPrefix(reason, tc.want.reason) || (tc.want.reason == "") != (reason == "") {
			t.Errorf("%s: resolveTable(%d) = %q, %q; want %q, %q", tc.name, tc.oid, table, reason, tc.want.table, tc.want.reason)
		}
		if cat.lookups != tc.want.lookups || cat.reloads != tc.want.reloads {
			t.Errorf("%s: %d lookups and %d reloads, want %d and %d", tc.name, cat.lookups, cat.reloads, tc.want.lookups, tc.want.reloads)
		}
		if got := m.knowsOID(tc.oid); got != tc.want.known {
			t.Errorf("%s: knowsOID(%d) = %v", tc.name, tc.oid, got)
		}
	}
	if m.knowsOID(6) {
		t.Error("knowsOID of an OID never seen")
	}

	// An old database that cannot be asked: not mirrored, with the reason,
	// and not asked again at once.
	cat.lookupErr = errors.New("connection refused")
	for range 2 {
		if _, _, reason := m.resolveTable(7); !strings.Contains(reason, "cannot look up") {
			t.Errorf("reason %q when the lookup fails", reason)
		}
	}
	if cat.lookups != 5 {
		t.Errorf("%d lookups after a failing one was repeated, want 5", cat.lookups)
	}
}
