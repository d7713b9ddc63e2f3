// Package pgtarget applies mirrored batches (mirror.Target) to a new
// database that is PostgreSQL.
//
// Each batch runs as one transaction over a single connection: its
// statements are sent in one round trip (pgconn's pipeline mode, in the
// implicit transaction of the extended protocol, which commits at the
// batch's Sync and rolls back as a whole at the first error). Apply is a
// group of one (see below): one code path sends and reads every batch. Statements are prepared once
// per connection and per (table, operation, column set), and kept in an LRU
// cache (Options.StatementCacheSize).
//
// Target also implements mirror.GroupTarget: ApplyGroup sends several
// batches in one round trip, through pgconn's pipeline mode, each batch's
// statements between BEGIN and COMMIT, and one Sync at the end. Each batch
// is its own transaction, committed in order, and the first error rolls
// back its batch and stops the group: the server skips everything up to
// the Sync, and the batches behind it are reported mirror.ErrNotApplied,
// so that none is applied ahead of one that failed. This lifts the
// one-transaction-per-round-trip ceiling (1/RTT) when the new database is
// far away. A failure of the connection makes the batch it hit, and every
// one after it, transient: the mirror applies them again from there.
//
//   - OpUpsert: INSERT INTO t (cols) VALUES ($1, …) ON CONFLICT (pk) DO
//     UPDATE SET c = EXCLUDED.c, … (DO NOTHING when every column is a key).
//     The conflict target is the new table's primary key, read from its
//     catalog (package schema) and cached; Change.KeyCols when the new table
//     has none. Stored generated columns of the new table are left out (the
//     new database computes them), and OVERRIDING SYSTEM VALUE is added when
//     the table has GENERATED ALWAYS identity columns, so the identity values
//     of the old database are kept.
//   - OpDelete: DELETE FROM t WHERE k1 = $1 AND …, with Change.KeyCols (or
//     the new table's primary key).
//   - OpStatement: Change.SQL with Change.Args. When Change.Columns has one
//     entry per argument, the built-in type OIDs among them are given to
//     Prepare; otherwise the server infers the types.
//
// Values are sent exactly as the old database printed them: text-format
// parameters of unspecified type, which the server reads with the input
// function of the column they go to. No value is parsed or re-encoded here,
// so every type round-trips exactly, arrays, enums, domains and extension
// types included (user types have different OIDs on the two servers, which
// is why no OID is sent for them). The text must be in the formats a server
// reads back unambiguously: DateStyle ISO, IntervalStyle postgres, bytea
// hex or escape; the producer should capture with those settings.
//
// # Session
//
// The connection sets session_replication_role = replica when permitted, as
// logical replication workers do: ordinary triggers and foreign-key checks
// of the new database do not fire for applied changes, since their effects
// are already in the row images (and foreign keys were checked by the old
// database, in an order a per-statement apply may not reproduce with
// deferred constraints). Without the privilege (superuser, or on PostgreSQL
// 15 and later GRANT SET ON PARAMETER session_replication_role) the target
// logs a warning once and works without it; ReplicaRole reports which, and
// Options.NoReplicaRole turns it off.
//
// # Sequences
//
// An insert with an explicit id does not move the sequence the id column
// draws from, so a new database that only received row images would hand
// out, once it takes writes, ids the mirror already wrote. A batch whose
// upserts write a column owning a sequence of the new database (serial,
// identity: schema.Column.SequenceOID) past what that sequence is known to
// have reached therefore ends with one more statement, in its transaction
// and round trip, that moves the sequence past the batch's values (below
// them for a descending one). It never moves a sequence backwards, and it
// skips, with a warning logged once, sequences the role may not read and
// update and values outside a sequence's range, rather than fail the batch.
// What the sequences have reached is remembered per connection, so a batch
// within it costs nothing. Options.NoSequences turns this off.
//
// # Errors
//
// A server error in the SQLSTATE classes of refused data (22 data
// exception, 23 constraint violation, 42 undefined table or column, syntax
// or permission, and a few more: see classify) becomes a
// *mirror.RejectError with the SQLSTATE and the index of the change; the
// cached catalog is read again after a class 42 error, in case the new
// schema changed. A change that cannot be turned into SQL (values and
// columns of different lengths, no key) is rejected without a SQLSTATE.
// Everything else is transient (connection errors, timeouts, shutdown,
// serialization failures and deadlocks, too many connections): the
// connection is closed, and the next Apply (or ApplyGroup) reconnects.
package pgtarget
