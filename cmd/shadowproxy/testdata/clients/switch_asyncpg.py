"""Prepares statements with asyncpg (which caches them, and their result
types, for the life of the connection), writes, prints "ready" and waits
for a line on stdin, during which TestPhaseSwitchCachedStatements switches
the proxy from old-only to dual-write, then writes again with the same
statements; and so on through shadow-read and back to old-only. Prints a transcript of values the same on every run."""
import asyncio
import sys

import asyncpg


async def main():
    c = await asyncpg.connect(sys.argv[1])
    ins = await c.prepare("insert into items (name, qty) values ($1, $2) returning id, name, created is not null")
    upd = await c.prepare("update items set qty = qty + 1 where name = $1")
    sel = await c.prepare("select id, name, qty, price from items where name like $1 order by id")
    for i in range(3):
        print("before", tuple(await ins.fetchrow(f"sw-a-{i}", i)), flush=True)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for i in range(3):
        print("after", tuple(await ins.fetchrow(f"sw-b-{i}", i)), flush=True)
    print("update", await upd.fetch("sw-b-0"), flush=True)
    async with c.transaction():
        print("in tx", tuple(await ins.fetchrow("sw-b-tx", 9)), flush=True)
        await upd.fetch("sw-b-1")
    # Then shadow-read: the same statements, reads compared.
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print("shadowed", tuple(await ins.fetchrow("sw-b-c", 3)), [tuple(r) for r in await sel.fetch("sw-b-%")], flush=True)
    # And back to old-only: nothing more reaches the new database.
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print("back", tuple(await ins.fetchrow("sw-d-0", 4)), await upd.fetch("sw-b-2"), flush=True)
    print("end", [tuple(r) for r in await sel.fetch("sw-%")], flush=True)
    await c.close()


asyncio.run(main())
