package mysqltarget

import (
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/target/internal/targettest"
)

// tokenChange and tokenID are the fixture's tokens rows.
var (
	tokenChange = targettest.TokenChange
	tokenID     = targettest.TokenID
)

// tokenValues returns the new database's tokens.v, ordered by id.
func tokenValues(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query("SELECT v FROM tokens ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

// ApplyGroup runs the batches in one multi-statement query, each in its
// own transaction, and stops at the first that fails: the batches before
// it stay committed, the refused one is rolled back as a whole and named
// by Apply, and the ones behind it do not run (mirror.ErrNotApplied).
func TestApplyGroup(t *testing.T) {
	e := setup(t, maria, Options{}, "CREATE UNIQUE INDEX tokens_v ON tokens (v(50))")
	if _, err := e.my.ExecContext(e.ctx, "DELETE FROM tokens"); err != nil {
		t.Fatal(err)
	}
	tmpl := e.capture(t, "public.tokens", "")[0]
	tok := func(n int, v string) mirror.Change { return tokenChange(tmpl, n, v) }
	bs := []*mirror.Batch{
		{Changes: []mirror.Change{tok(1, "one"), tok(2, "two")}},
		{},
		{Changes: []mirror.Change{tok(3, "three")}},
		{Changes: []mirror.Change{tok(4, "four"), tok(5, "one")}}, // duplicate v
		{Changes: []mirror.Change{tok(6, "six")}},
		{Changes: []mirror.Change{tok(7, "seven")}},
	}
	errs := e.target.ApplyGroup(e.ctx, bs)
	if len(errs) != len(bs) {
		t.Fatalf("%d results for %d batches", len(errs), len(bs))
	}
	for i, err := range errs[:3] {
		if err != nil {
			t.Errorf("batch %d: %v", i, err)
		}
	}
	var rej *mirror.RejectError
	if !errors.As(errs[3], &rej) || rej.SQLState != "23000" || rej.ChangeIndex != 1 {
		t.Errorf("batch 3: %v, want a RejectError of change 1, SQLSTATE 23000", errs[3])
	}
	for i, err := range errs[4:] {
		if !errors.Is(err, mirror.ErrNotApplied) {
			t.Errorf("batch %d: %v, want ErrNotApplied", i+4, err)
		}
	}
	// The refused batch left nothing, and nothing behind it ran.
	if got := tokenValues(t, e.my); !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Fatalf("tokens %q", got)
	}
	// The rest, again, as the mirror sends them.
	for i, err := range e.target.ApplyGroup(e.ctx, bs[4:]) {
		if err != nil {
			t.Errorf("again, batch %d: %v", i+4, err)
		}
	}
	if got := tokenValues(t, e.my); !slices.Equal(got, []string{"one", "two", "three", "six", "seven"}) {
		t.Fatalf("tokens %q", got)
	}
	e.target.Close()
	for _, err := range e.target.ApplyGroup(e.ctx, bs[:2]) {
		if !errors.Is(err, errClosed) {
			t.Errorf("after Close: %v", err)
		}
	}
}

// A transient error (here a lock wait timeout behind another session's
// row lock) fails that batch only; the batches behind it do not run, so
// that applying it again later never puts its rows over newer ones.
func TestApplyGroupTransient(t *testing.T) {
	e := setup(t, maria, Options{}, "")
	if _, err := e.my.ExecContext(e.ctx, "DELETE FROM tokens"); err != nil {
		t.Fatal(err)
	}
	tmpl := e.capture(t, "public.tokens", "")[0]
	tok := func(n int, v string) mirror.Change { return tokenChange(tmpl, n, v) }
	e.apply(t, tok(2, "two before"))
	// The target's sessions wait at most a second for a row lock.
	tgt, err := New(e.ctx, e.url+"?innodb_lock_wait_timeout=1", Options{Catalog: e.cat})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	holder, err := e.my.BeginTx(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A lock on that row only (an equality on the primary key): the rows
	// around it can be inserted.
	if _, err := holder.ExecContext(e.ctx, "SELECT v FROM tokens WHERE id = ? FOR UPDATE", tokenID(2)); err != nil {
		t.Fatal(err)
	}
	bs := []*mirror.Batch{
		{Changes: []mirror.Change{tok(1, "one")}},
		{Changes: []mirror.Change{tok(2, "two")}}, // waits for the lock
		{Changes: []mirror.Change{tok(3, "three")}},
	}
	errs := tgt.ApplyGroup(e.ctx, bs)
	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}
	targettest.CheckStoppedAt(t, errs, 1)
	if got := tokenValues(t, e.my); !slices.Equal(got, []string{"one", "two before"}) {
		t.Fatalf("tokens %q", got)
	}
	for i, err := range tgt.ApplyGroup(e.ctx, bs[1:]) {
		if err != nil {
			t.Errorf("again, batch %d: %v", i+1, err)
		}
	}
	if got := tokenValues(t, e.my); !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Fatalf("tokens %q", got)
	}
}

// MySQL's ON DUPLICATE KEY UPDATE updates the row that has the duplicate of
// any unique key. An upsert whose value of a secondary unique key is
// another row's must be refused, not overwrite that row.
func TestUpsertCollidingOnAnotherUniqueKey(t *testing.T) {
	e := setup(t, maria, Options{}, "CREATE UNIQUE INDEX tokens_v ON tokens (v(50))")
	if _, err := e.my.ExecContext(e.ctx, "DELETE FROM tokens"); err != nil {
		t.Fatal(err)
	}
	tmpl := e.capture(t, "public.tokens", "")[0]
	e.apply(t, tokenChange(tmpl, 1, "one"))
	err := e.target.Apply(e.ctx, &mirror.Batch{Changes: []mirror.Change{tokenChange(tmpl, 2, "one")}})
	var rej *mirror.RejectError
	if !errors.As(err, &rej) || rej.SQLState != "23000" || rej.ChangeIndex != 0 {
		t.Fatalf("got %v, want a RejectError of change 0, SQLSTATE 23000", err)
	}
	if !strings.Contains(err.Error(), "unique key other than the primary key") {
		t.Errorf("the error does not say why: %v", err)
	}
	if got := tokenValues(t, e.my); !slices.Equal(got, []string{"one"}) {
		t.Fatalf("tokens %q", got)
	}
	var id string
	if err := e.my.QueryRow("SELECT id FROM tokens").Scan(&id); err != nil || id != tokenID(1) {
		t.Fatalf("the row is %q (%v), want row 1 untouched", id, err)
	}
	// The same key updates as before.
	e.apply(t, tokenChange(tmpl, 1, "uno"))
	if got := tokenValues(t, e.my); !slices.Equal(got, []string{"uno"}) {
		t.Fatalf("tokens %q", got)
	}
}

// Batches larger than MaxStatementBytes go alone, with Apply, between the
// queries of those that fit; every batch is applied, in order.
func TestApplyGroupLargeBatches(t *testing.T) {
	e := setup(t, maria, Options{}, "")
	if _, err := e.my.ExecContext(e.ctx, "DELETE FROM tokens"); err != nil {
		t.Fatal(err)
	}
	tgt, err := New(e.ctx, e.url, Options{Catalog: e.cat, MaxStatementBytes: 400})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	tmpl := e.capture(t, "public.tokens", "")[0]
	var big []mirror.Change
	for n := 10; n < 20; n++ {
		big = append(big, tokenChange(tmpl, n, strings.Repeat("x", 40)+strconv.Itoa(n)))
	}
	bs := []*mirror.Batch{
		{Changes: []mirror.Change{tokenChange(tmpl, 1, "one")}},
		{Changes: []mirror.Change{tokenChange(tmpl, 2, "two")}},
		{Changes: big},
		{Changes: []mirror.Change{tokenChange(tmpl, 3, "three"), tokenChange(tmpl, 10, "ten")}},
	}
	for i, err := range tgt.ApplyGroup(e.ctx, bs) {
		if err != nil {
			t.Errorf("batch %d: %v", i, err)
		}
	}
	got := tokenValues(t, e.my)
	if len(got) != 13 || got[0] != "one" || got[1] != "two" || got[2] != "three" || got[3] != "ten" {
		t.Fatalf("tokens %q", got)
	}
}

// Keys are matched byte for byte: a case-insensitive collation, or one
// that pads with spaces (utf8mb4_bin does, in MariaDB and MySQL 5.7), takes
// 'ABC' or 'abc ' for the key 'abc', which are other rows on the old
// database. The upsert is refused instead of overwriting the row, and a
// delete of those keys leaves the row.
func TestUpsertKeyMatchedByteForByte(t *testing.T) {
	e := setup(t, maria, Options{}, "ALTER TABLE items MODIFY sku VARCHAR(255) COLLATE utf8mb4_general_ci")
	if _, err := e.my.ExecContext(e.ctx, "DELETE FROM items"); err != nil {
		t.Fatal(err)
	}
	tmpl := e.capture(t, "public.items", "")[0]
	item := func(sku string, qty int) mirror.Change {
		c := targettest.Set(tmpl, "sku", mirror.Text(sku))
		c = targettest.Set(c, "n", mirror.Text("1"))
		return targettest.Set(c, "qty", mirror.Text(strconv.Itoa(qty)))
	}
	e.apply(t, item("abc", 1))
	for _, sku := range []string{"ABC", "abc "} {
		err := e.target.Apply(e.ctx, &mirror.Batch{Changes: []mirror.Change{item(sku, 2)}})
		var rej *mirror.RejectError
		if !errors.As(err, &rej) || rej.SQLState != "23000" || !strings.Contains(err.Error(), "would have overwritten") {
			t.Errorf("upsert of %q over %q: %v, want it refused", sku, "abc", err)
		}
	}
	var sku string
	var qty int
	if err := e.my.QueryRow("SELECT sku, qty FROM items").Scan(&sku, &qty); err != nil || sku != "abc" || qty != 1 {
		t.Fatalf("row %q qty %d (%v), want abc untouched", sku, qty, err)
	}
	e.apply(t, item("abc", 3))
	if err := e.my.QueryRow("SELECT qty FROM items").Scan(&qty); err != nil || qty != 3 {
		t.Fatalf("qty %d (%v), want the same key updated", qty, err)
	}
	// Deletes match byte for byte too: deleting 'ABC' leaves 'abc'.
	del := func(sku string) mirror.Change {
		return mirror.Change{Op: mirror.OpDelete, Table: "public.items", KeyCols: []string{"sku", "n"},
			Key: []mirror.Value{mirror.Text(sku), mirror.Text("1")}}
	}
	e.apply(t, del("ABC"), del("abc "))
	var n int
	if err := e.my.QueryRow("SELECT count(*) FROM items").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows (%v) after deleting other keys, want abc left", n, err)
	}
	e.apply(t, del("abc"))
	if err := e.my.QueryRow("SELECT count(*) FROM items").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows (%v) after deleting abc, want none", n, err)
	}
}
