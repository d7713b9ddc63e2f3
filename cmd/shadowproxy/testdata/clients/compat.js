// Exercises node-postgres against the URL in argv[2] and prints a
// transcript that holds only values the same on every run.
// TestClientLibraries runs it directly against Postgres and through the
// proxy and requires the same transcript.
'use strict';
const { Client } = require('pg');

const p = (...a) => console.log(a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' '));

async function main() {
  const c = new Client({ connectionString: process.argv[2] });
  await c.connect();
  const notes = [];
  c.on('notification', (m) => notes.push([m.channel, m.payload]));

  p('simple', (await c.query("select 1 as one, 'x'::text as t, null::int as n")).rows);
  for (let i = 0; i < 3; i++) {
    const r = await c.query({
      name: 'ins',
      text: 'insert into items (name, qty, price, data, meta) values ($1, $2, $3, $4, $5) returning id, name, created is not null as c',
      values: [`node-${i}`, i, (1.75 * i).toFixed(2), Buffer.from([i, 0, 255]), { i }],
    });
    p('inserted', r.rowCount, r.rows);
  }
  // Several statements in one simple query.
  const multi = await c.query("insert into events (kind) values ('node-multi'); update items set qty = qty + 1 where name = 'node-0'; select count(*) as n from items where name like 'node-%'");
  p('multi', multi.map((r) => [r.command, r.rowCount, r.rows]));

  await c.query('begin');
  p('update', (await c.query("update items set qty = qty + 10 where name = 'node-0'")).rowCount);
  await c.query('savepoint a');
  p('delete', (await c.query("delete from items where name = 'node-1'")).rowCount);
  await c.query('rollback to savepoint a');
  p('rename', (await c.query("update items set name = 'node-2b' where name = 'node-2'")).rowCount);
  await c.query('commit');
  await c.query('begin');
  await c.query("insert into items (name) values ('node-gone')");
  await c.query('rollback');

  try {
    await c.query("insert into items (id, name) values (1, 'dup')");
    p('no error');
  } catch (e) {
    p('error', e.code);
  }
  // An error inside a transaction, then recovery.
  await c.query('begin');
  try {
    await c.query('select 1/0');
  } catch (e) {
    p('error', e.code);
  }
  try {
    await c.query('select 1');
  } catch (e) {
    p('aborted', e.code);
  }
  await c.query('rollback');

  const rows = await c.query({
    name: 'sel',
    text: 'select id, name, qty, price, data, meta, created is not null as c from items where name like $1 order by id',
    values: ['node-%'],
    rowMode: 'array',
  });
  p('rows', rows.fields.map((f) => [f.name, f.dataTypeID]), rows.rows);

  await c.query('listen nchan');
  await c.query("notify nchan, 'hello'");
  await c.query('select 1');
  p('notify', notes);

  p('deleted', (await c.query({ text: 'delete from items where name = $1', values: ['node-0'] })).rowCount);
  p('end', (await c.query("select count(*) as n from items where name like 'node-%'")).rows);
  await c.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
