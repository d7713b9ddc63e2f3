package compare

import (
	"fmt"
	"strconv"
	"strings"
)

// DiffType classifies a difference between the old and the new result.
type DiffType string

// Difference types.
const (
	DiffRowCount    DiffType = "row_count"    // different number of rows, or rows present on one side only
	DiffValue       DiffType = "value"        // a value differs
	DiffOrder       DiffType = "order"        // same rows, different ORDER BY sequence
	DiffNullOrder   DiffType = "null_order"   // the order differs only in where NULLs sort
	DiffColumnShape DiffType = "column_shape" // column count or incompatible type families
	DiffCollation   DiffType = "collation"    // text equal under a case/accent/pad-insensitive collation
	DiffFloat       DiffType = "float"        // a float differs beyond the tolerance
	DiffError       DiffType = "error"        // an error on one side, or different SQLSTATE classes
	DiffTimeout     DiffType = "timeout"      // the new side timed out
)

// DiffTypes lists every DiffType in report order.
var DiffTypes = []DiffType{DiffRowCount, DiffValue, DiffOrder, DiffNullOrder, DiffColumnShape, DiffCollation, DiffFloat, DiffError, DiffTimeout}

// Rules name the comparison rules in Diff.Rule and Outcome.Partial.
const (
	RuleLimitWithoutOrder = "limit-without-order: rows differ legitimately, row count compared only"
	RuleOrderUnchecked    = "order-by-expression: ORDER BY is not on output columns, order not checked"
	RuleDigest            = "digest: result beyond the memory cap, compared by row count and digest only"
	RuleNullOrder         = "null-ordering: PG sorts NULLs last ascending, MySQL first"
	RuleNullLimit         = "null-ordering: NULL placement decides which rows LIMIT keeps"
	RuleTextOrder         = "collation: the engines order text differently"
	RuleFloat             = "float: differs beyond the relative tolerance"
	RulePadSpace          = "collation: trailing spaces (PAD SPACE collation or CHAR)"
	RuleCase              = "collation: case-insensitive collation"
	RuleAccent            = "collation: accent-insensitive collation"
	RuleNullEmpty         = "NULL is not the empty string"
	RuleDecimalScale      = "decimal scale: equal once rounded to the shorter scale (e.g. MySQL div_precision_increment)"
	RuleSQLState          = "errors compare by SQLSTATE class"
	RuleColumnFamily      = "columns compare by count and type family"
	RuleTimeout           = "shadow query timed out"
)

// Diff is one difference, with an example.
type Diff struct {
	Type DiffType `json:"type"`
	// Column is the column's name on the old side ("" for whole rows).
	Column string `json:"column,omitempty"`
	// RowKey identifies the row: "<first column>=<value>", or "row <n>"
	// for positional differences.
	RowKey string `json:"row_key,omitempty"`
	Old    string `json:"old"`
	New    string `json:"new"`
	// Rule is the rule that explains (or would explain) the difference.
	Rule string `json:"rule,omitempty"`
}

// Outcome is the result of one comparison.
type Outcome struct {
	Match bool `json:"match"`
	// Diffs holds up to Options.MaxExamples examples per type.
	Diffs []Diff `json:"diffs,omitempty"`
	// Counts counts every difference found per type, examples or not.
	Counts map[DiffType]int `json:"counts,omitempty"`
	// Columns counts differences per (old) column name.
	Columns map[string]int `json:"columns,omitempty"`
	// Partial names the rule that limited the comparison, if any.
	Partial  string `json:"partial,omitempty"`
	OldRows  int    `json:"old_rows"`
	NewRows  int    `json:"new_rows"`
	OldError *Error `json:"old_error,omitempty"`
	NewError *Error `json:"new_error,omitempty"`
}

// Has reports whether the outcome has a difference of type t.
func (o *Outcome) Has(t DiffType) bool { return o.Counts[t] > 0 }

// Options tune Compare. The zero value means the defaults.
type Options struct {
	// FloatDigits is the significant digits floats are rounded to before
	// hashing (default 12; a float column's Precision can lower it).
	FloatDigits int
	// FloatTolerance is the relative tolerance of the second pass over rows
	// that did not match exactly (default 1e-9).
	FloatTolerance float64
	// TruncateFractional says the new side truncates fractional seconds
	// (MySQL sql_mode TIME_TRUNCATE_FRACTIONAL) rather than rounding.
	TruncateFractional bool
	// DigestTimePrecision is the fractional-second digits time values keep
	// in digests (default 6; set it to what the new schema holds).
	DigestTimePrecision int
	// MaxExamples bounds Diffs per type (default 5).
	MaxExamples int
	// MaxCandidates bounds the rows the tolerance pass tries per unmatched
	// row (default 64): the pass is the one place rows compare pairwise.
	MaxCandidates int
	// ExampleLen truncates example values (default 128 bytes).
	ExampleLen int
}

func (o Options) withDefaults() Options {
	if o.FloatDigits <= 0 || o.FloatDigits > 17 {
		o.FloatDigits = 12
	}
	if o.FloatTolerance <= 0 {
		o.FloatTolerance = 1e-9
	}
	if o.DigestTimePrecision <= 0 || o.DigestTimePrecision > 6 {
		o.DigestTimePrecision = 6
	}
	if o.MaxExamples <= 0 {
		o.MaxExamples = 5
	}
	if o.MaxCandidates <= 0 {
		o.MaxCandidates = 64
	}
	if o.ExampleLen <= 0 {
		o.ExampleLen = 128
	}
	return o
}

// comparer carries one comparison's state.
type comparer struct {
	opts     Options
	out      *Outcome
	old, new *Result
	cols     []Column // old side's columns
	plans    []colPlan
	buf      []byte
}

// Compare compares the old and the new result of one query. It never
// modifies its inputs.
func Compare(old, new *Result, shape Shape, opts Options) *Outcome {
	c := &comparer{
		opts: opts.withDefaults(),
		out:  &Outcome{Match: true, OldRows: len(old.Rows), NewRows: len(new.Rows)},
		old:  old,
		new:  new,
		cols: old.Columns,
	}
	c.run(shape)
	c.out.Match = len(c.out.Counts) == 0
	return c.out
}

func (c *comparer) run(shape Shape) {
	if c.old.Err != nil || c.new.Err != nil {
		c.compareErrors()
		return
	}
	if len(c.old.Columns) != len(c.new.Columns) {
		c.add(Diff{Type: DiffColumnShape, Old: describeColumns(c.old.Columns), New: describeColumns(c.new.Columns), Rule: RuleColumnFamily})
		c.compareCounts(int64(len(c.old.Rows)), int64(len(c.new.Rows)))
		return
	}
	c.planColumns()
	if c.old.Truncated || c.new.Truncated {
		c.out.Partial = RuleDigest
		c.compareDigests()
		return
	}
	keys := shape.keyPrefix(len(c.cols))
	if shape.HasLimit && len(keys) == 0 {
		// Without an order on output columns, LIMIT picks arbitrary rows:
		// only their number is determined.
		c.out.Partial = RuleLimitWithoutOrder
		c.compareCounts(int64(len(c.old.Rows)), int64(len(c.new.Rows)))
		return
	}
	if shape.Ordered() && len(keys) == 0 {
		c.out.Partial = RuleOrderUnchecked
	}
	c.compareRows(shape, keys)
}

// compareErrors handles a failure on either side.
func (c *comparer) compareErrors() {
	oe, ne := c.old.Err, c.new.Err
	c.out.OldError, c.out.NewError = oe, ne
	switch {
	case ne != nil && ne.timedOut() && (oe == nil || !oe.timedOut()):
		c.add(Diff{Type: DiffTimeout, Old: errText(oe), New: errText(ne), Rule: RuleTimeout})
	case oe != nil && ne != nil:
		// Both failed: the same class (e.g. 23 integrity violation) means
		// the engines agree, even when their codes and messages differ.
		if oe.Class() != ne.Class() {
			c.add(Diff{Type: DiffError, Old: errText(oe), New: errText(ne), Rule: RuleSQLState})
		}
	default:
		c.add(Diff{Type: DiffError, Old: errText(oe), New: errText(ne), Rule: RuleSQLState})
	}
}

func errText(e *Error) string {
	if e == nil {
		return "ok"
	}
	return e.String()
}

func describeColumns(cols []Column) string {
	parts := make([]string, len(cols))
	for i, col := range cols {
		parts[i] = col.Name + " " + col.Family.String()
	}
	return strconv.Itoa(len(cols)) + " columns (" + strings.Join(parts, ", ") + ")"
}

// planColumns decides each column pair's normalization and reports pairs of
// incompatible families.
func (c *comparer) planColumns() {
	c.plans = make([]colPlan, len(c.cols))
	for i := range c.cols {
		o, n := c.old.Columns[i], c.new.Columns[i]
		p, ok := planPair(o, n, &c.opts)
		if !ok {
			c.add(Diff{Type: DiffColumnShape, Column: o.Name,
				Old: o.Family.String() + " (" + o.TypeName + ")", New: n.Family.String() + " (" + n.TypeName + ")", Rule: RuleColumnFamily})
		}
		if p.timeLike {
			p.timePrec = min(c.sidePrecision(c.old, i), c.sidePrecision(c.new, i))
		}
		c.plans[i] = p
	}
}

// sidePrecision is a time column's fractional digits on one side: declared,
// else the most any of its values uses.
func (c *comparer) sidePrecision(r *Result, col int) int {
	if p := r.Columns[col].Precision; p > 0 {
		return min(p, 6)
	}
	prec := 0
	for _, row := range r.Rows {
		if col < len(row) && timeFamily(row[col].Family) {
			prec = max(prec, fracDigits(row[col].Int))
			if prec == 6 {
				break
			}
		}
	}
	return prec
}

// add records a difference, keeping up to MaxExamples per type.
func (c *comparer) add(d Diff) {
	if c.out.Counts == nil {
		c.out.Counts = make(map[DiffType]int)
	}
	c.out.Counts[d.Type]++
	if d.Column != "" {
		if c.out.Columns == nil {
			c.out.Columns = make(map[string]int)
		}
		c.out.Columns[d.Column]++
	}
	if c.out.Counts[d.Type] <= c.opts.MaxExamples {
		d.Old = truncate(d.Old, c.opts.ExampleLen)
		d.New = truncate(d.New, c.opts.ExampleLen)
		d.RowKey = truncate(d.RowKey, c.opts.ExampleLen)
		c.out.Diffs = append(c.out.Diffs, d)
	}
}

func (c *comparer) compareCounts(o, n int64) {
	if o != n {
		c.add(Diff{Type: DiffRowCount, Old: rowsText(o), New: rowsText(n)})
	}
}

func rowsText(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return strconv.FormatInt(n, 10) + " rows"
}

// compareDigests compares results of which at least one was truncated.
func (c *comparer) compareDigests() {
	digest := func(r *Result) Digest {
		if r.Truncated {
			return r.Digest
		}
		g := NewDigester(r.Columns, c.opts)
		for _, row := range r.Rows {
			g.Add(row)
		}
		return g.Digest()
	}
	od, nd := digest(c.old), digest(c.new)
	switch {
	case od.Rows != nd.Rows:
		c.compareCounts(od.Rows, nd.Rows)
	case od != nd:
		c.add(Diff{Type: DiffValue, Old: fmt.Sprintf("digest %016x", od.Sum), New: fmt.Sprintf("digest %016x", nd.Sum), Rule: RuleDigest})
	}
}

// side is one result prepared for comparison.
type side struct {
	rows   [][]Value
	hashes []uint64 // per row: hash of the canonical row
	keys   []uint64 // per row: hash of the ORDER BY key columns
}

func (c *comparer) prepare(r *Result, keys []OrderKey) *side {
	s := &side{rows: r.Rows, hashes: make([]uint64, len(r.Rows))}
	for i, row := range r.Rows {
		c.buf = encodeRow(c.buf[:0], row, c.plans, false)
		s.hashes[i] = fnv64a(c.buf)
	}
	if len(keys) > 0 {
		s.keys = make([]uint64, len(r.Rows))
		for i, row := range r.Rows {
			s.keys[i] = c.keyHash(row, keys)
		}
	}
	return s
}

func (c *comparer) keyHash(row []Value, keys []OrderKey) uint64 {
	c.buf = c.buf[:0]
	for _, k := range keys {
		c.buf = c.plans[k.Column].appendValue(c.buf, cell(row, k.Column), false)
	}
	return fnv64a(c.buf)
}

func cell(row []Value, i int) Value {
	if i < len(row) {
		return row[i]
	}
	return Null
}

// lastGroupStart returns where the run of rows tied with the last row on
// the sort keys begins.
func (s *side) lastGroupStart() int {
	n := len(s.keys)
	if n == 0 {
		return 0
	}
	i := n - 1
	for i > 0 && s.keys[i-1] == s.keys[n-1] {
		i--
	}
	return i
}

// compareRows compares row contents as multisets, then the order.
func (c *comparer) compareRows(shape Shape, keys []OrderKey) {
	o, n := c.prepare(c.old, keys), c.prepare(c.new, keys)
	c.compareCounts(int64(len(o.rows)), int64(len(n.rows)))

	// Under ORDER BY … LIMIT without a total order, the rows tied with the
	// last one are an arbitrary choice among equals: compare everything
	// before them, and of them only that they are tied on the same key.
	oEnd, nEnd := len(o.rows), len(n.rows)
	if shape.HasLimit && !(shape.TotalOrder && len(keys) == len(shape.OrderBy)) && oEnd > 0 && nEnd > 0 &&
		o.keys[oEnd-1] == n.keys[nEnd-1] {
		oEnd, nEnd = o.lastGroupStart(), n.lastGroupStart()
	}

	oldLeft, newLeft := unmatched(o.hashes[:oEnd], n.hashes[:nEnd])
	if len(oldLeft) > 0 || len(newLeft) > 0 {
		if shape.HasLimit && c.nullsExplainLimit(o, n, oldLeft, newLeft, keys) {
			return
		}
		c.diagnose(o, n, oldLeft, newLeft)
		return
	}
	if len(keys) > 0 && len(o.rows) == len(n.rows) {
		c.compareOrder(o, n, keys, oEnd)
	}
}

// unmatched returns the indexes of rows present more often on one side than
// on the other, by row hash: a multiset difference in O(n).
func unmatched(old, new []uint64) (oldLeft, newLeft []int) {
	counts := make(map[uint64]int32, len(old))
	for _, h := range old {
		counts[h]++
	}
	for _, h := range new {
		counts[h]--
	}
	for i, h := range old {
		if counts[h] > 0 {
			oldLeft = append(oldLeft, i)
			counts[h]--
		}
	}
	for i, h := range new {
		if counts[h] < 0 {
			newLeft = append(newLeft, i)
			counts[h]++
		}
	}
	return oldLeft, newLeft
}

// nullsExplainLimit recognizes ORDER BY … LIMIT keeping different rows
// because the engines place NULLs differently: the rows only one side kept
// all have NULL in a sort key that the other side's extra rows do not.
func (c *comparer) nullsExplainLimit(o, n *side, oldLeft, newLeft []int, keys []OrderKey) bool {
	allNull := func(s *side, idx []int, col int) bool {
		for _, i := range idx {
			if !cell(s.rows[i], col).IsNull() {
				return false
			}
		}
		return len(idx) > 0
	}
	noneNull := func(s *side, idx []int, col int) bool {
		for _, i := range idx {
			if cell(s.rows[i], col).IsNull() {
				return false
			}
		}
		return true
	}
	for _, k := range keys {
		if (allNull(o, oldLeft, k.Column) && noneNull(n, newLeft, k.Column)) ||
			(allNull(n, newLeft, k.Column) && noneNull(o, oldLeft, k.Column)) {
			ex := Diff{Type: DiffNullOrder, Column: c.cols[k.Column].Name, Rule: RuleNullLimit}
			ex.Old, ex.New = c.leftRow(o, oldLeft), c.leftRow(n, newLeft)
			c.add(ex)
			return true
		}
	}
	return false
}

func (c *comparer) leftRow(s *side, idx []int) string {
	if len(idx) == 0 {
		return "(none)"
	}
	return renderRow(s.rows[idx[0]])
}

// pair is an old row and the new row it is diagnosed against.
type pair struct{ o, n int }

// diagnose explains the rows left unmatched by the exact multiset pass:
// it pairs each old row with the new row most likely to be "the same row"
// and reports per-column differences, so that a report says which column
// differs and why rather than only "row missing / row extra".
func (c *comparer) diagnose(o, n *side, oldLeft, newLeft []int) {
	newUsed := make(map[int]bool, len(newLeft))
	oldUsed := make(map[int]bool, len(oldLeft))
	var pairs []pair

	// Pass 1: rows equal except for floats and collation-folded text.
	// Within such a group, look (boundedly) for a row within the float
	// tolerance — that is a match, not a difference; otherwise pair with
	// the first candidate so the float/collation difference is reported.
	if c.anyLoose() {
		buckets := make(map[uint64][]int)
		for _, j := range newLeft {
			h := c.looseHash(n.rows[j])
			buckets[h] = append(buckets[h], j)
		}
		for _, i := range oldLeft {
			h := c.looseHash(o.rows[i])
			cands := buckets[h]
			if len(cands) == 0 {
				continue
			}
			pick, tolerant := 0, false
			for k := 0; k < len(cands) && k < c.opts.MaxCandidates; k++ {
				if c.withinTolerance(o.rows[i], n.rows[cands[k]]) {
					pick, tolerant = k, true
					break
				}
			}
			j := cands[pick]
			// Remove the pick (order within a bucket does not matter), so
			// a bucket is never rescanned past used rows.
			cands[pick] = cands[len(cands)-1]
			buckets[h] = cands[:len(cands)-1]
			newUsed[j], oldUsed[i] = true, true
			if !tolerant {
				pairs = append(pairs, pair{i, j})
			}
		}
	}

	// Pass 2: pair the rest by their first column (usually the key).
	byKey := make(map[uint64][]int)
	for _, j := range newLeft {
		if !newUsed[j] {
			h := c.cellHash(n.rows[j], 0)
			byKey[h] = append(byKey[h], j)
		}
	}
	var restOld []int
	for _, i := range oldLeft {
		if oldUsed[i] {
			continue
		}
		h := c.cellHash(o.rows[i], 0)
		if js := byKey[h]; len(js) > 0 {
			byKey[h] = js[1:]
			newUsed[js[0]], oldUsed[i] = true, true
			pairs = append(pairs, pair{i, js[0]})
			continue
		}
		restOld = append(restOld, i)
	}
	var restNew []int
	for _, j := range newLeft {
		if !newUsed[j] {
			restNew = append(restNew, j)
		}
	}
	// Pass 3: as many leftovers on each side, same row count: they are
	// most likely the same rows with a changed first column.
	if len(restOld) == len(restNew) {
		for k := range restOld {
			pairs = append(pairs, pair{restOld[k], restNew[k]})
		}
		restOld, restNew = nil, nil
	}

	for _, p := range pairs {
		c.diffRow(o.rows[p.o], n.rows[p.n])
	}
	for _, i := range restOld {
		c.add(Diff{Type: DiffRowCount, RowKey: c.rowKey(o.rows[i]), Old: renderRow(o.rows[i]), New: "(missing)"})
	}
	for _, j := range restNew {
		c.add(Diff{Type: DiffRowCount, RowKey: c.rowKey(n.rows[j]), Old: "(missing)", New: renderRow(n.rows[j])})
	}
}

func (c *comparer) anyLoose() bool {
	for i := range c.plans {
		if c.plans[i].mode == encFloat || c.plans[i].textual {
			return true
		}
	}
	return false
}

func (c *comparer) looseHash(row []Value) uint64 {
	c.buf = encodeRow(c.buf[:0], row, c.plans, true)
	return fnv64a(c.buf)
}

func (c *comparer) cellHash(row []Value, col int) uint64 {
	if len(c.plans) == 0 {
		return 0
	}
	c.buf = c.plans[col].appendValue(c.buf[:0], cell(row, col), false)
	return fnv64a(c.buf)
}

// withinTolerance reports rows equal column by column with floats compared
// by relative tolerance.
func (c *comparer) withinTolerance(a, b []Value) bool {
	for i := range c.plans {
		if k, _ := c.cellDiff(i, cell(a, i), cell(b, i)); k != "" {
			return false
		}
	}
	return true
}

// cellDiff classifies the difference of one column pair: "" when equal
// under the column's normalization (or within the float tolerance).
func (c *comparer) cellDiff(col int, a, b Value) (DiffType, string) {
	p := &c.plans[col]
	if p.mode == encRender {
		// Incompatible families are reported once, as column_shape; their
		// rendered values differing is the same finding again.
		return "", ""
	}
	var ba, bb [64]byte
	ea := p.appendValue(ba[:0], a, false)
	eb := p.appendValue(bb[:0], b, false)
	if string(ea) == string(eb) {
		return "", ""
	}
	if a.IsNull() != b.IsNull() {
		if (a.IsNull() && b.Family == FamilyText && b.Str == "") || (b.IsNull() && a.Family == FamilyText && a.Str == "") {
			return DiffValue, RuleNullEmpty
		}
		return DiffValue, ""
	}
	if p.mode == encFloat {
		fa, oka := toFloat(a)
		fb, okb := toFloat(b)
		if oka && okb {
			if floatClose(fa, fb, p.relTol) {
				return "", ""
			}
			return DiffFloat, RuleFloat
		}
	}
	if decimalScaleOnly(a, b) {
		// Still a difference — the values are not equal — but one that
		// the engines' division/AVG scale explains.
		return DiffValue, RuleDecimalScale
	}
	if p.textual && (a.Family == FamilyText || b.Family == FamilyText) {
		sa, sb := rawText(a), rawText(b)
		switch {
		case strings.TrimRight(sa, " ") == strings.TrimRight(sb, " "):
			return DiffCollation, RulePadSpace
		case strings.EqualFold(strings.TrimRight(sa, " "), strings.TrimRight(sb, " ")):
			return DiffCollation, RuleCase
		case foldText(sa) == foldText(sb):
			return DiffCollation, RuleAccent
		}
	}
	return DiffValue, ""
}

// diffRow reports each differing column of a paired row.
func (c *comparer) diffRow(a, b []Value) {
	for i := range c.plans {
		va, vb := cell(a, i), cell(b, i)
		t, rule := c.cellDiff(i, va, vb)
		if t == "" {
			continue
		}
		c.add(Diff{Type: t, Column: c.cols[i].Name, RowKey: c.rowKey(a), Old: va.String(), New: vb.String(), Rule: rule})
	}
}

// rowKey identifies a row by its first column.
func (c *comparer) rowKey(row []Value) string {
	if len(c.cols) == 0 {
		return ""
	}
	return c.cols[0].Name + "=" + cell(row, 0).String()
}

func renderRow(row []Value) string {
	parts := make([]string, len(row))
	for i, v := range row {
		parts[i] = v.String()
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// compareOrder checks the ORDER BY sequence of two results that hold the
// same rows: the sort keys must come in the same sequence, and rows tied on
// the keys must be the same multiset (their order among themselves is
// undefined). end bounds the rows whose ties are checked (the LIMIT's last
// tie group is an arbitrary pick).
func (c *comparer) compareOrder(o, n *side, keys []OrderKey, end int) {
	pos := -1
	for i := range o.keys {
		if o.keys[i] != n.keys[i] {
			pos = i
			break
		}
	}
	if pos < 0 {
		pos = tieMismatch(o, n, end)
	}
	if pos < 0 {
		return
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = c.cols[k.Column].Name
	}
	d := Diff{Type: DiffOrder, Column: strings.Join(names, ","), RowKey: "row " + strconv.Itoa(pos+1),
		Old: c.renderKey(o.rows[pos], keys), New: c.renderKey(n.rows[pos], keys)}
	if c.nullOrderOnly(o, n, keys) {
		d.Type, d.Rule = DiffNullOrder, RuleNullOrder
	} else {
		for _, k := range keys {
			if c.plans[k.Column].textual {
				d.Rule = RuleTextOrder
			}
		}
	}
	c.add(d)
}

// tieMismatch returns the first row of a tie group whose rows differ
// between the sides (as multisets), or -1.
func tieMismatch(o, n *side, end int) int {
	for start := 0; start < end; {
		stop := start + 1
		for stop < end && o.keys[stop] == o.keys[start] {
			stop++
		}
		var so, sn, mo, mn uint64
		for i := start; i < stop; i++ {
			so += o.hashes[i]
			sn += n.hashes[i]
			mo += mix64(o.hashes[i])
			mn += mix64(n.hashes[i])
		}
		if so != sn || mo != mn {
			return start
		}
		start = stop
	}
	return -1
}

func (c *comparer) renderKey(row []Value, keys []OrderKey) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = cell(row, k.Column).String()
	}
	return strings.Join(parts, ", ")
}

// nullOrderOnly reports whether the two key sequences become equal once
// NULLs are moved to the same place in each: at every key level, within
// each run of rows equal on the previous keys, NULLs go last.
func (c *comparer) nullOrderOnly(o, n *side, keys []OrderKey) bool {
	po, pn := c.nullNormalize(o, keys), c.nullNormalize(n, keys)
	for i := range po {
		if o.keys[po[i]] != n.keys[pn[i]] {
			return false
		}
	}
	return true
}

// nullNormalize returns the row order of s with NULL-keyed rows moved to
// the end of their run at each key level.
func (c *comparer) nullNormalize(s *side, keys []OrderKey) []int {
	idx := make([]int, len(s.rows))
	for i := range idx {
		idx[i] = i
	}
	level := make([]uint64, len(s.rows))
	tmp := make([]int, 0, len(s.rows))
	var rec func(seg []int, k int)
	rec = func(seg []int, k int) {
		if k == len(keys) || len(seg) < 2 {
			return
		}
		col := keys[k].Column
		tmp = tmp[:0]
		for _, i := range seg {
			if !cell(s.rows[i], col).IsNull() {
				tmp = append(tmp, i)
			}
		}
		for _, i := range seg {
			if cell(s.rows[i], col).IsNull() {
				tmp = append(tmp, i)
			}
		}
		copy(seg, tmp)
		for _, i := range seg {
			level[i] = c.cellHash(s.rows[i], col)
		}
		for i := 0; i < len(seg); {
			j := i + 1
			for j < len(seg) && level[seg[j]] == level[seg[i]] {
				j++
			}
			rec(seg[i:j], k+1)
			i = j
		}
	}
	rec(idx, 0)
	return idx
}

// decimalScaleOnly reports two exact numbers that differ only beyond the
// shorter one's scale: 3.3333 vs 3.3333333333333333.
func decimalScaleOnly(a, b Value) bool {
	sa, oka := exactNumber(a)
	sb, okb := exactNumber(b)
	if !oka || !okb {
		return false
	}
	fa, fb := fracLen(sa), fracLen(sb)
	if fa == fb {
		return false
	}
	if fa > fb {
		sa, sb, fb = sb, sa, fa
		fa = fracLen(sa)
	}
	// sa has the shorter scale fa: round sb to it.
	return roundDecimal(sb, fa) == sa
}

func exactNumber(v Value) (string, bool) {
	switch v.Family {
	case FamilyInt:
		return strconv.FormatInt(v.Int, 10), true
	case FamilyDecimal:
		if strings.ContainsAny(v.Str, "eIN") { // scientific, NaN, Infinity
			return "", false
		}
		return v.Str, true
	}
	return "", false
}

func fracLen(s string) int {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return len(s) - i - 1
	}
	return 0
}

// roundDecimal rounds a canonical decimal half away from zero to scale
// fractional digits and returns it canonical.
func roundDecimal(s string, scale int) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	i := strings.IndexByte(s, '.')
	if i < 0 || len(s)-i-1 <= scale {
		return s
	}
	digits := []byte(s[:i] + s[i+1:i+1+scale])
	if s[i+1+scale] >= '5' {
		k := len(digits) - 1
		for ; k >= 0; k-- {
			if digits[k] < '9' {
				digits[k]++
				break
			}
			digits[k] = '0'
		}
		if k < 0 {
			digits = append([]byte{'1'}, digits...)
		}
	}
	intLen := len(digits) - scale
	out := string(digits[:intLen])
	if scale > 0 {
		out += "." + string(digits[intLen:])
	}
	if neg {
		out = "-" + out
	}
	c, _ := canonicalDecimal(out)
	return c
}
