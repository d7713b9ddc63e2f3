"""Exercises asyncpg against the URL in argv[1] and prints a transcript
that holds only values the same on every run. asyncpg speaks the extended
protocol only, with binary parameters and results, its own prepared
statements and type introspection, pipelined executemany and binary COPY.
TestClientLibraries runs it directly against Postgres and through the proxy
and requires the same transcript."""
import asyncio
import json
import sys
from decimal import Decimal

import asyncpg


def p(*a):
    print(*a, flush=True)


def rec(r):
    return tuple(r.values()) if r is not None else None


async def main():
    c = await asyncpg.connect(sys.argv[1])
    await c.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    notes = []
    await c.add_listener("apgchan", lambda conn, pid, channel, payload: notes.append((channel, payload)))

    p("simple", rec(await c.fetchrow("select 1 as one, 'x'::text as t, null::int as n")))
    for i in range(3):
        r = await c.fetchrow(
            "insert into items (name, qty, price, data, meta) values ($1, $2, $3, $4, $5)"
            " returning id, name, created is not null, length(tag::text)",
            f"apg-{i}", i, Decimal("3.25") * i, bytes([i, 0, 255]), {"i": i},
        )
        p("inserted", rec(r))
    await c.executemany("insert into events (kind) values ($1)", [(f"apg-batch-{i}",) for i in range(4)])
    p("batch", await c.fetchval("select count(*) from events where kind like 'apg-batch-%'"))

    async with c.transaction():
        p("update", await c.execute("update items set qty = qty + 10 where name = 'apg-0'"))
        try:
            async with c.transaction():  # a savepoint
                p("delete", await c.execute("delete from items where name = 'apg-1'"))
                raise RuntimeError("roll back to the savepoint")
        except RuntimeError:
            pass
        p("rename", await c.execute("update items set name = 'apg-2b' where name = 'apg-2'"))
    tr = c.transaction()
    await tr.start()
    await c.execute("insert into items (name) values ('apg-gone')")
    await tr.rollback()

    try:
        await c.execute("insert into items (id, name) values (1, 'dup')")
        p("no error")
    except asyncpg.PostgresError as e:
        p("error", e.sqlstate)

    stmt = await c.prepare("select id, name, qty, price, data, meta, created is not null as c from items where name like $1 order by id")
    for r in await stmt.fetch("apg-%"):
        p("row", rec(r))
    # A cursor reads through a portal with a row limit, in a transaction.
    async with c.transaction():
        p("cursor", [rec(r) async for r in stmt.cursor("apg-%", prefetch=2)])

    p("copyin", await c.copy_records_to_table("items", records=[("apg-copy-1", 7), ("apg-copy-2", 8)], columns=["name", "qty"]))

    await c.execute("notify apgchan, 'hello'")
    await c.fetchval("select 1")
    await asyncio.sleep(0.1)
    p("notify", notes)

    # A timeout makes asyncpg send a CancelRequest with the key data the
    # proxy handed out.
    try:
        await c.execute("select pg_sleep(30)", timeout=0.5)
        p("not cancelled")
    except asyncio.TimeoutError:
        p("cancelled")
    p("deleted", await c.execute("delete from items where name = $1", "apg-copy-2"))
    p("end", await c.fetchval("select count(*) from items where name like 'apg-%'"))
    await c.close()


asyncio.run(main())
