package compare

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// NullsOrder is an ORDER BY key's NULLS FIRST / NULLS LAST clause.
type NullsOrder uint8

// Null orderings.
const (
	NullsDefault NullsOrder = iota
	NullsFirst
	NullsLast
)

// OrderKey is one top-level ORDER BY key.
type OrderKey struct {
	// Column is the 0-based output column the key sorts by, or -1 when the
	// key is an expression that is not an output column.
	Column int
	Desc   bool
	Nulls  NullsOrder
}

// Shape is what the query text says about its result's order.
type Shape struct {
	// OrderBy holds the top-level ORDER BY keys, empty without ORDER BY.
	OrderBy []OrderKey
	// HasLimit is set for a top-level LIMIT, FETCH FIRST or OFFSET: which
	// rows come back then depends on the order.
	HasLimit bool
	// TotalOrder says the ORDER BY keys are unique (e.g. end in the primary
	// key), so rows tied on all keys cannot exist. Only the caller, who
	// knows the schema, can say so.
	TotalOrder bool
}

// Ordered reports whether the query has a top-level ORDER BY.
func (s Shape) Ordered() bool { return len(s.OrderBy) > 0 }

// keyPrefix returns the leading keys that name output columns: the result
// is ordered by them, and rows tied on them are in no defined order.
func (s Shape) keyPrefix(ncols int) []OrderKey {
	for i, k := range s.OrderBy {
		if k.Column < 0 || k.Column >= ncols {
			return s.OrderBy[:i]
		}
	}
	return s.OrderBy
}

// ShapeFromSQL derives the Shape of a query from its text with pg_query.
// ORDER BY keys map to output columns when they are ordinals (ORDER BY 2),
// output aliases, or column references matching an output column by name;
// other expressions get Column -1. For several statements, the last one's
// shape counts (it is the one whose rows are compared). Statements other
// than SELECT have the zero Shape.
func ShapeFromSQL(sql string) (Shape, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return Shape{}, fmt.Errorf("shape: %w", err)
	}
	stmts := tree.GetStmts()
	if len(stmts) == 0 {
		return Shape{}, nil
	}
	sel := stmts[len(stmts)-1].GetStmt().GetSelectStmt()
	if sel == nil {
		return Shape{}, nil
	}
	var shape Shape
	shape.HasLimit = sel.GetLimitCount() != nil || sel.GetLimitOffset() != nil
	// The output columns of a set operation are those of its leftmost arm.
	targets := sel
	for targets.GetOp() != pg_query.SetOperation_SETOP_NONE && targets.GetLarg() != nil {
		targets = targets.GetLarg()
	}
	outputs := targets.GetTargetList()
	for _, n := range sel.GetSortClause() {
		sb := n.GetSortBy()
		if sb == nil {
			continue
		}
		k := OrderKey{Column: outputColumn(sb.GetNode(), outputs), Desc: sb.GetSortbyDir() == pg_query.SortByDir_SORTBY_DESC}
		switch sb.GetSortbyNulls() {
		case pg_query.SortByNulls_SORTBY_NULLS_FIRST:
			k.Nulls = NullsFirst
		case pg_query.SortByNulls_SORTBY_NULLS_LAST:
			k.Nulls = NullsLast
		}
		shape.OrderBy = append(shape.OrderBy, k)
	}
	return shape, nil
}

// outputColumn maps an ORDER BY expression to an output column position.
func outputColumn(expr *pg_query.Node, outputs []*pg_query.Node) int {
	if c := expr.GetAConst(); c != nil {
		if iv := c.GetIval(); iv != nil {
			if i := int(iv.GetIval()) - 1; i >= 0 && i < len(outputs) {
				return i
			}
		}
		return -1
	}
	ref := expr.GetColumnRef()
	if ref == nil {
		return -1
	}
	name, qual := columnRefName(ref)
	if name == "" {
		return -1
	}
	// PG resolves an unqualified ORDER BY name against output aliases first.
	if qual == "" {
		for i, t := range outputs {
			if rt := t.GetResTarget(); rt != nil && rt.GetName() == name {
				return i
			}
		}
	}
	for i, t := range outputs {
		rt := t.GetResTarget()
		if rt == nil || rt.GetName() != "" {
			continue
		}
		if r := rt.GetVal().GetColumnRef(); r != nil {
			n, q := columnRefName(r)
			if n == name && (qual == "" || q == "" || q == qual) {
				return i
			}
		}
	}
	return -1
}

// columnRefName returns a column reference's column name and its qualifier
// (the part before it, dot-joined); "" for a star.
func columnRefName(ref *pg_query.ColumnRef) (name, qual string) {
	fields := ref.GetFields()
	if len(fields) == 0 {
		return "", ""
	}
	name = fields[len(fields)-1].GetString_().GetSval()
	parts := make([]string, 0, len(fields)-1)
	for _, f := range fields[:len(fields)-1] {
		parts = append(parts, f.GetString_().GetSval())
	}
	return name, strings.Join(parts, ".")
}
