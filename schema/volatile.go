package schema

import (
	"context"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Whether a default is volatile is decided from its analyzed expression
// tree (pg_attrdef.adbin, the pg_node_tree text form), not from the text
// pg_get_expr prints: the tree names every function by OID, after overload
// resolution, and every operator with the function that implements it. So
// `'2020-01-01'::timestamptz + interval '1 day'` is found to call
// timestamptz_pl_interval (STABLE: it depends on TimeZone) without guessing
// which "+" is meant. pg_depend cannot answer this: dependencies on built-in
// (pinned) functions such as now() are not recorded.
var (
	funcIDRe = regexp.MustCompile(`:(?:funcid|opfuncid) (\d+)`)
	opnoRe   = regexp.MustCompile(`:opno (\d+)`)
)

// volatileNodes are expression nodes that produce values which differ
// between evaluations, or that hide functions this check does not resolve:
// CURRENT_TIMESTAMP, CURRENT_USER … (SQLVALUEFUNCTION), the sequence of an
// identity column (NEXTVALUEEXPR), text-to-type conversions through an input
// function such as 'now'::text::timestamptz (COERCEVIAIO), sub-selects and
// row comparisons.
var volatileNodes = []string{"{SQLVALUEFUNCTION", "{NEXTVALUEEXPR", "{COERCEVIAIO", "{SUBLINK", "{ROWCOMPARE"}

type volatileCheck struct {
	col  *Column
	tree string
}

// checkVolatile sets DefaultVolatile for each pending default, looking up
// the volatility of all the functions involved in one query.
func checkVolatile(ctx context.Context, q Querier, pending []volatileCheck) error {
	funcs := map[uint32]bool{}
	ops := map[uint32]bool{}
	for _, p := range pending {
		for _, m := range funcIDRe.FindAllStringSubmatch(p.tree, -1) {
			if id := parseOID(m[1]); id != 0 {
				funcs[id] = true
			}
		}
		for _, m := range opnoRe.FindAllStringSubmatch(p.tree, -1) {
			if id := parseOID(m[1]); id != 0 {
				ops[id] = true
			}
		}
	}
	// mutableFunc and mutableOp say whether a function or operator is not
	// IMMUTABLE. One that the query does not return (dropped concurrently)
	// counts as mutable.
	mutableFunc := map[uint32]bool{}
	mutableOp := map[uint32]bool{}
	if len(funcs) > 0 || len(ops) > 0 {
		const sql = `
SELECT 'f', p.oid, p.provolatile <> 'i' FROM pg_proc p WHERE p.oid = ANY($1)
UNION ALL
SELECT 'o', o.oid, p.provolatile <> 'i' FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode WHERE o.oid = ANY($2)`
		err := queryEach(ctx, q, sql, []any{keys(funcs), keys(ops)}, func(r pgx.Rows) error {
			var (
				kind    string
				oid     uint32
				mutable bool
			)
			if err := r.Scan(&kind, &oid, &mutable); err != nil {
				return err
			}
			if kind == "f" {
				mutableFunc[oid] = mutable
			} else {
				mutableOp[oid] = mutable
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, p := range pending {
		p.col.DefaultVolatile = treeVolatile(p.tree, func(oid uint32) bool {
			m, ok := mutableFunc[oid]
			return !ok || m
		}, func(oid uint32) bool {
			m, ok := mutableOp[oid]
			return !ok || m
		})
	}
	return nil
}

// treeVolatile decides from a pg_node_tree text whether the expression is
// not reproducible, given the volatility of its functions and operators.
func treeVolatile(tree string, mutableFunc, mutableOp func(uint32) bool) bool {
	for _, n := range volatileNodes {
		if strings.Contains(tree, n) {
			return true
		}
	}
	for _, m := range funcIDRe.FindAllStringSubmatch(tree, -1) {
		if id := parseOID(m[1]); id != 0 && mutableFunc(id) {
			return true
		}
	}
	for _, m := range opnoRe.FindAllStringSubmatch(tree, -1) {
		if id := parseOID(m[1]); id != 0 && mutableOp(id) {
			return true
		}
	}
	return false
}

func parseOID(s string) uint32 {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0
	}
	return uint32(v)
}

func keys(m map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
