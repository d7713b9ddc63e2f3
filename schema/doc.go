// Package schema introspects a PostgreSQL database: its user tables, their
// columns and types, keys, defaults and triggers.
//
// The proxy loads the OLD database's catalog at start-up (Load) to know,
// for every table a statement writes:
//
//   - the primary key (Table.PrimaryKey, in key order), by which the mirror
//     applies row images; tables without one (HasPrimaryKey false) are
//     mirrored as statements and verified by multiset;
//   - which columns get values the new database would not reproduce
//     (Column.DefaultVolatile: now(), nextval(), gen_random_uuid(), random()
//     …, identity columns), which the row images must carry;
//   - generated columns (written by neither side) and identity columns
//     (Identity), which need OVERRIDING SYSTEM VALUE when written;
//   - the owned sequences (Column.Sequence) to advance on the new database
//     before it takes writes;
//   - user-defined triggers (Table.Triggers), with whether their function
//     may write other tables (Trigger.MayWriteOther): such writes happen
//     inside the old database and are not in the row images of the client's
//     statements, so the proxy reports them at start-up.
//
// Compare checks a new PostgreSQL database's tables against the old one's
// for what would make row images fail or land differently (Problem); the
// MySQL target makes the same check against its own catalog.
//
// Types are described with domains, enums and arrays resolved
// (Catalog.Types, Column.BaseType), which the targets need to convert
// values: a domain column holds its base type's text form, an enum its
// label.
//
// Names: Catalog.Tables is keyed by "schema.table" with the raw (unquoted,
// case-preserved) names, the same form mirror.Change.Table uses. Lookup
// resolves the names statements use, qualified or through a search_path.
//
// Everything is read from the system catalogs with a handful of queries
// (PostgreSQL 12 or later); nothing is written. Trigger functions in
// PL/pgSQL are parsed with pg_query (PostgreSQL's own parser), so the
// analysis sees the statements, not a text search.
package schema
