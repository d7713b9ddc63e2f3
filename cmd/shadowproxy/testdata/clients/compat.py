"""Exercises psycopg 3 against the URL in argv[1] and prints a transcript
that holds only values the same on every run. TestClientLibraries runs it
directly against Postgres and through the proxy and requires the same
transcript."""
import sys
import threading
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb


def p(*a):
    print(*a, flush=True)


notes = []
with psycopg.connect(sys.argv[1], autocommit=True) as c:
    c.add_notify_handler(lambda n: notes.append((n.channel, n.payload)))
    p("simple", c.execute("select 1, 'x'::text, null::int").fetchone())
    for i in range(3):
        r = c.execute(
            "insert into items (name, qty, price, data, meta) values (%s, %s, %s, %s, %s)"
            " returning id, name, created is not null, length(tag::text)",
            (f"py-{i}", i, Decimal("2.25") * i, bytes([i, 0, 255]), Jsonb({"i": i})),
            prepare=True,
        ).fetchone()
        p("inserted", r)
    with c.cursor() as cur:
        cur.executemany("insert into events (kind) values (%s)", [(f"py-batch-{i}",) for i in range(4)])
        p("batch", cur.rowcount)
        # executemany with RETURNING: one result set per row, pipelined.
        cur.executemany("insert into events (kind) values (%s) returning id, kind",
                        [(f"py-ret-{i}",) for i in range(3)], returning=True)
        got = []
        while True:
            got.append(cur.fetchone())
            if not cur.nextset():
                break
        p("batch returning", got)
    with c.pipeline():
        c.execute("update items set qty = qty + 1 where name = %s", ("py-0",))
        c.execute("update items set qty = qty + 1 where name = %s", ("py-1",))
        cur = c.execute("select name, qty from items where name like 'py-%%' order by name")
    p("pipeline", cur.fetchall())

    with c.transaction():
        p("update", c.execute("update items set qty = qty + 10 where name = 'py-0'").rowcount)
        with c.transaction() as inner:
            p("delete", c.execute("delete from items where name = 'py-1'").rowcount)
            raise psycopg.Rollback(inner)
        p("rename", c.execute("update items set name = 'py-2b' where name = 'py-2'").rowcount)
    with c.transaction():
        c.execute("insert into items (name) values ('py-gone')")
        raise psycopg.Rollback()

    try:
        c.execute("insert into items (id, name) values (1, 'dup')")
        p("no error")
    except psycopg.Error as e:
        p("error", e.sqlstate)

    for binary in (False, True):
        with c.cursor(binary=binary) as cur:
            cur.execute(
                "select id, name, qty, price, data, meta, created is not null from items where name like %s order by id",
                ("py-%",),
            )
            for r in cur:
                p("row", binary, r)

    # A server-side cursor: DECLARE, then FETCH in batches of itersize.
    with c.transaction():
        with c.cursor(name="pycur") as cur:
            cur.itersize = 2
            cur.execute("select id, name from items where name like 'py-%%' order by id")
            p("named cursor", list(cur))

    with c.cursor() as cur:
        with cur.copy("copy items (name, qty) from stdin") as cp:
            cp.write_row(("py-copy-1", 7))
            cp.write_row(("py-copy-2", 8))
        p("copyin", cur.rowcount)
        with cur.copy("copy items (name, qty) from stdin (format binary)") as cp:
            cp.set_types(["text", "int4"])
            cp.write_row(("py-copy-3", 9))
        p("copyin binary", cur.rowcount)
        with cur.copy("copy (select name, qty from items where name like 'py-copy%' order by name) to stdout") as cp:
            p("copyout", list(cp.rows()))

    c.execute("listen pychan")
    c.execute("notify pychan, 'hello'")
    c.execute("select 1")
    p("notify", notes)

    # conn.cancel sends a CancelRequest with the key data the proxy handed out.
    t = threading.Timer(0.5, c.cancel)
    t.start()
    try:
        c.execute("select pg_sleep(30)")
        p("not cancelled")
    except psycopg.errors.QueryCanceled as e:
        p("cancelled", e.sqlstate)
    t.join()
    p("deleted", c.execute("delete from items where name = %s", ("py-copy-2",)).rowcount)
    p("end", c.execute("select count(*) from items where name like 'py-%'").fetchone())
