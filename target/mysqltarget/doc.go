// Package mysqltarget applies mirrored batches (mirror.Target) to a new
// database that is MySQL (8.0) or MariaDB (10.5 and later), through
// database/sql and go-sql-driver/mysql.
//
// # Connection
//
// New takes a mysql://user:password@host:port/database?params URL
// (ParseURL turns it into the driver's configuration, keeping the driver
// and session parameters it carries). Every connection of the pool sets
// sql_mode (SQLMode: strict, no backslash escapes, no zero dates, …) and
// time_zone '+00:00' when it is opened, and uses utf8mb4.
//
// Tables: PostgreSQL's schema "public" is the database of the URL, so
// public.users is `users`; a table of another schema goes to the database
// of that name (sales.orders is `sales`.`orders`). See QuoteTable.
//
// # Applying
//
// A batch is one transaction. Consecutive upserts of the same table and
// column set become one multi-row
//
//	INSERT INTO `t` (…) VALUES (…), (…) ON DUPLICATE KEY UPDATE c = VALUES(c), …
//
// (key columns, Change.KeyCols, are not updated; VALUES() is deprecated in
// MySQL 8.0.20 but works there and in MariaDB, where the row-alias form
// does not), and consecutive deletes one DELETE … WHERE k IN (…) (or an OR
// of key conditions for composite keys), bounded by
// Options.MaxRowsPerStatement and MaxStatementBytes. OpStatement changes
// run alone; their SQL is already MySQL (translated by the proxy).
//
// ON DUPLICATE KEY UPDATE fires on any unique key of the table, not only
// the primary key: a row whose value of another unique key is another
// row's would overwrite that row and never be inserted. The update list
// therefore starts with a guard, k = IF(CAST(k AS BINARY) <=>
// CAST(VALUES(k) AS BINARY) AND …, k, EXP(1000 + …)), which leaves the key
// alone when the primary keys match byte for byte and otherwise makes the
// server refuse the statement (the expression overflows, error 1690): the
// batch is rejected, and its error says why. Byte for byte, because a
// case- or accent-insensitive collation (MySQL's and MariaDB's defaults),
// or one that pads with spaces, takes 'ABC' or 'abc ' for the key 'abc',
// which are other rows on the old database. For the same reason a delete
// matches a text or varchar key byte for byte as well (k = ? AND CAST(k AS
// BINARY) = CAST(? AS BINARY), the first term for the index).
//
// The Target is also a mirror.GroupTarget: ApplyGroup sends several
// batches in one multi-statement query, each between START TRANSACTION
// and COMMIT, where Apply takes three round trips per batch. The server
// stops such a query at its first error, so the batches behind a failed
// one never run (mirror.ErrNotApplied); a session variable the query sets
// after each COMMIT says how many committed. Behind a 2 ms round trip the
// mirror applies about 13,000 one-row transactions a second this way,
// against about 140 one batch at a time (BenchmarkMirrorRTT).
//
// # Values
//
// Row images hold PostgreSQL text; Converter turns each value into a
// driver value by its PostgreSQL type (Change.Columns' OIDs, domains
// resolved through Options.Catalog, the old database's catalog):
//
//	boolean                    1 / 0
//	int2, int4, int8           integers
//	oid, xid                   unsigned integers
//	numeric                    the decimal text as is (exact); NaN, ±Infinity refused
//	real, double precision     float64; NaN, ±Infinity refused (MySQL has none)
//	text, varchar, char, name, citext, enums, inet, cidr, macaddr, interval,
//	time, json, jsonb, money, xml, …   the text as is
//	bytea (hex or escape)      the raw bytes
//	uuid                       lower-case text
//	date                       YYYY-MM-DD; infinity, BC and years past 9999 refused
//	timestamp                  YYYY-MM-DD HH:MM:SS.ffffff; same limits
//	timestamptz                converted to UTC (the text carries the old session's
//	                           offset), as for a DATETIME(6) column holding UTC
//	timetz                     the UTC time of day
//	bit(n ≤ 64)                the bits as an unsigned integer (for BIT(n))
//	arrays                     the text of a JSON array: nested like the
//	                           dimensions, NULL as null, numbers and booleans as
//	                           JSON numbers and booleans, json elements embedded,
//	                           other elements as strings converted like scalars
//	                           (timestamptz in UTC); lower bounds are dropped
//
// A value that cannot be converted refuses the batch (*mirror.RejectError
// without a SQLSTATE, wrapping ErrNotRepresentable).
//
// # Errors
//
// Server errors about the data or the schema (duplicate key 1062, foreign
// keys 1451/1452, NOT NULL 1048, no default 1364, too long 1406, out of
// range 1264, bad values 1292/1366, missing table or column 1146/1054,
// syntax 1064, invalid JSON 3140, check constraints 3819/4025, and any
// other error of SQLSTATE class 22, 23 or 42) become a *mirror.RejectError
// with the server's SQLSTATE. When the refused statement grouped several
// changes, the batch is run again change by change in a transaction that
// is rolled back, to report the index of the change to blame. Connection
// errors, timeouts, too many connections (1040), lock wait timeouts (1205),
// deadlocks (1213), read-only servers and anything unclassified are
// transient: the mirror retries, and database/sql replaces broken
// connections.
//
// CreateTableSQL writes MySQL DDL for a PostgreSQL table with the same type
// mapping, for tests and for bootstrapping the new schema; the proxy never
// runs DDL itself.
package mysqltarget
