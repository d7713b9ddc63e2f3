package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
)

// prepareLibPQ runs libPQProgram: lib/pq, the other pure-Go driver, which
// prepares and describes a statement in one exchange and binds and executes
// it in the next, and copies with CopyIn.
func prepareLibPQ(*testing.T) func(*testing.T, string) string {
	return libPQProgram
}

// libPQProgram is the lib/pq counterpart of testdata/clients: it returns
// a transcript of values that are the same on every run.
func libPQProgram(t *testing.T, pgURL string) string {
	t.Helper()
	var out strings.Builder
	p := func(a ...any) { fmt.Fprintln(&out, a...) }
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("lib/pq: %v\ntranscript so far:\n%s", err, out.String())
		}
	}
	ctx := context.Background()
	db, err := sql.Open("postgres", pgURL)
	check(err)
	defer db.Close()
	db.SetMaxOpenConns(1) // one session, as the other programs use

	var one int
	var x string
	var n sql.NullInt64
	check(db.QueryRow("select 1, 'x'::text, null::int").Scan(&one, &x, &n))
	p("simple", one, x, n.Valid)
	for i := range 3 {
		var id int
		var name string
		var created bool
		check(db.QueryRow("insert into items (name, qty, price, data, meta) values ($1, $2, $3, $4, $5) returning id, name, created is not null",
			fmt.Sprint("pq-", i), i, fmt.Sprintf("%d.75", i), []byte{byte(i), 0, 255}, fmt.Sprintf(`{"i": %d}`, i)).Scan(&id, &name, &created))
		p("inserted", id, name, created)
	}
	ins, err := db.Prepare("insert into events (kind) values ($1)")
	check(err)
	for i := range 4 {
		r, err := ins.Exec(fmt.Sprint("pq-batch-", i))
		check(err)
		k, _ := r.RowsAffected()
		p("event", k)
	}
	check(ins.Close())

	tx, err := db.Begin()
	check(err)
	for _, q := range []string{"update items set qty = qty + 10 where name = 'pq-0'", "savepoint a", "delete from items where name = 'pq-1'",
		"rollback to savepoint a", "update items set name = 'pq-2b' where name = 'pq-2'"} {
		r, err := tx.Exec(q)
		check(err)
		k, _ := r.RowsAffected()
		p("tx", k)
	}
	check(tx.Commit())
	tx, err = db.Begin()
	check(err)
	_, err = tx.Exec("insert into items (name) values ('pq-gone')")
	check(err)
	check(tx.Rollback())

	_, err = db.Exec("insert into items (id, name) values ($1, $2)", 1, "dup")
	var pqErr *pq.Error
	p("error", errors.As(err, &pqErr) && pqErr.Code == "23505")

	rows, err := db.Query("select id, name, qty, price, data, meta, created is not null from items where name like $1 order by id", "pq-%")
	check(err)
	for rows.Next() {
		var id, qty int
		var name, price, meta string
		var data []byte
		var created bool
		check(rows.Scan(&id, &name, &qty, &price, &data, &meta, &created))
		p("row", id, name, qty, price, data, meta, created)
	}
	check(rows.Err())

	tx, err = db.Begin()
	check(err)
	cp, err := tx.Prepare("copy items (name, qty) from stdin")
	check(err)
	for i, name := range []string{"pq-copy-1", "pq-copy-2"} {
		_, err = cp.Exec(name, 7+i)
		check(err)
	}
	_, err = cp.Exec()
	check(err)
	check(cp.Close())
	check(tx.Commit())
	var copied int
	check(db.QueryRow("select count(*) from items where name like 'pq-copy-%'").Scan(&copied))
	p("copied", copied)

	// A context deadline makes lib/pq send a CancelRequest with the key
	// data the proxy handed out.
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = db.ExecContext(cctx, "select pg_sleep(30)")
	cancel()
	p("cancelled", err != nil)
	r, err := db.Exec("delete from items where name = $1", "pq-copy-2")
	check(err)
	k, _ := r.RowsAffected()
	p("deleted", k)
	var count int
	check(db.QueryRow("select count(*) from items where name like 'pq-%'").Scan(&count))
	p("end", count)
	return out.String()
}
