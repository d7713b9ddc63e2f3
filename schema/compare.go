package schema

import (
	"fmt"
	"slices"
	"strings"
)

// Problem is a difference between a table of the old database and the
// table the mirror writes on the new one that makes mirrored writes fail,
// or land differently. Found before dual-write starts, it is a schema to
// fix; found by the mirror, it is a dead letter.
type Problem struct {
	Table  string      `json:"table"` // the old database's "schema.table"
	Column string      `json:"column,omitempty"`
	Kind   ProblemKind `json:"kind"`
	Detail string      `json:"detail"`
}

// ProblemKind classifies a Problem.
type ProblemKind string

const (
	// MissingTable: the new database has no such table; every write to it
	// is rejected.
	MissingTable ProblemKind = "missing_table"
	// MissingColumn: the new table lacks a column the row images carry;
	// every upsert is rejected.
	MissingColumn ProblemKind = "missing_column"
	// RequiredColumn: the new table has a NOT NULL column without a
	// default that the old one lacks; every insert is rejected.
	RequiredColumn ProblemKind = "required_column"
	// NoKey: the new table has no primary key or unique key on the old
	// table's primary-key columns, so upserts cannot find the row they
	// replace (rejected on Postgres, inserted twice on MySQL).
	NoKey ProblemKind = "no_key"
	// TypeDiffers: a column has another type on the new database; values
	// may be refused (too long, out of range) or stored differently.
	TypeDiffers ProblemKind = "type_differs"
)

func (p Problem) String() string {
	where := p.Table
	if p.Column != "" {
		where += "." + p.Column
	}
	return fmt.Sprintf("%s: %s: %s", where, p.Kind, p.Detail)
}

// MirroredTables returns the tables of the catalog whose rows the mirror
// writes, sorted by name: every table but partitions, whose rows go to the
// root of their partition tree.
func (c *Catalog) MirroredTables() []*Table {
	var out []*Table
	for _, t := range c.SortedTables() {
		if t.PartitionOf == "" {
			out = append(out, t)
		}
	}
	return out
}

// Compare checks the tables the mirror writes (MirroredTables of old)
// against new, both PostgreSQL catalogs, and returns the problems by table
// name, a table's in the order of the old table's columns, then those of
// the new table's own columns, then its key.
func Compare(old, new *Catalog) []Problem {
	var out []Problem
	for _, o := range old.MirroredTables() {
		n := new.Tables[o.QualifiedName()]
		if n == nil {
			out = append(out, Problem{Table: o.QualifiedName(), Kind: MissingTable, Detail: "no table " + o.QualifiedName() + " on the new database"})
			continue
		}
		out = append(out, compareTable(o, n)...)
	}
	return out
}

func compareTable(o, n *Table) []Problem {
	var out []Problem
	add := func(col string, kind ProblemKind, format string, args ...any) {
		out = append(out, Problem{Table: o.QualifiedName(), Column: col, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
	for _, oc := range o.Columns {
		nc := n.Column(oc.Name)
		switch {
		case nc == nil:
			add(oc.Name, MissingColumn, "the new table has no column %s (%s)", oc.Name, oc.TypeName)
		case nc.TypeName != oc.TypeName:
			add(oc.Name, TypeDiffers, "%s on the old database, %s on the new", oc.TypeName, nc.TypeName)
		}
	}
	for _, nc := range n.Columns {
		if o.Column(nc.Name) == nil && nc.NotNull && nc.Default == "" && !nc.Generated && nc.Identity == IdentityNone {
			add(nc.Name, RequiredColumn, "the new table's column %s is NOT NULL without a default, and the old table has no such column", nc.Name)
		}
	}
	if len(o.PrimaryKey) > 0 && !n.HasKeyOn(o.PrimaryKey) {
		add("", NoKey, "the new table has no primary key, nor a unique key on (%s), the old table's primary key", strings.Join(o.PrimaryKey, ", "))
	}
	return out
}

// HasKeyOn reports whether the table has a primary key, or a unique key on
// exactly the given columns (in any order): what an upsert by those
// columns needs to find its row.
func (t *Table) HasKeyOn(cols []string) bool {
	if len(t.PrimaryKey) > 0 {
		return true
	}
	for _, u := range t.Unique {
		if sameSet(u.Columns, cols) {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
