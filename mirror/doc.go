// Package mirror is the no-loss pipeline that carries writes committed on the
// old database to the new one during the dual-write phases.
//
// The proxy (the producer) captures each transaction as a Batch of row
// images (upserts and deletes by key, or statements with materialized values
// for tables without a key) and hands it to the Mirror. A Target (the
// consumer: Postgres via pgx, MySQL via database/sql) applies each batch as
// one transaction. The mirror knows neither SQL nor the wire protocol.
//
// # Intents
//
// A transaction is handed over as an intent, before its COMMIT reaches the
// old database:
//
//  1. seq, err := m.EnqueueDurable(b), with b.Xid = pg_current_xact_id().
//     It returns once the batch is written to the spool (write(2), no
//     fsync), a few microseconds.
//  2. The proxy forwards COMMIT.
//  3. m.Resolve(seq, committed) once the COMMIT's outcome is known.
//
// A batch with an Xid is pending until its outcome is known, and the
// applier never applies a pending batch: at the head of the line it waits
// for Resolve (Options.ResolveWait), then asks Options.Resolver
// (pg_xact_status on the old database) for it and the pending batches
// behind it. Aborted transactions are skipped (Stats.Aborted); a transaction
// still in progress (a prepared transaction waiting for COMMIT PREPARED, or
// one the producer journals in several batches while it is open, because it
// outgrew what the producer may hold) holds back everything after it. A process killed at any point loses no
// committed transaction: the intent was on disk before the old database
// could commit, and the next Mirror recovers it from the spool and asks the
// Resolver, since nobody is left to call Resolve. Without a Resolver such a
// recovered intent (and any batch not resolved within ResolveWait) is
// applied as committed, with a warning, so a transaction that rolled back
// may then reach the new database.
//
// Writing the intent before COMMIT is also what makes Seq order a valid
// apply order. If transaction B conflicts with transaction A (B wrote a row
// A wrote, or waited for A's row lock), the old database let B proceed only
// after A's COMMIT, which the proxy sent only after A's intent was written.
// B's COMMIT, and so its intent, comes after B's conflicting statement, so
// A's intent was written, and got its Seq, before B's. Seqs are assigned in
// the order of the writes to the spool, under one lock, so conflicting
// transactions are applied in the order the old database committed them;
// transactions that do not conflict commute. The old producer protocol,
// Enqueue after the commit's reply, could not promise this: two conflicting
// commits replied on two sessions at nearly the same time could be enqueued
// in the wrong order, and a crash between the commit and the spool write
// lost the transaction.
//
// Enqueue remains for batches known to have committed (Xid 0): it does an
// in-memory hand-off only and never waits for the disk, and Seqs follow the
// order of the calls, so the producer must call it in commit order.
//
// # Guarantees
//
//   - The client is never failed by the new database, and never waits for
//     it: EnqueueDurable waits for one write to the local disk, Enqueue only
//     for an in-memory hand-off. Neither waits for an fsync (except
//     EnqueueDurable with FsyncAlways, for the previous write's) nor for the
//     Target; both wait when the hand-off to the spool writer
//     (Options.HandoffBytes) is full, i.e. the local disk cannot take writes
//     at the commit rate (Stats.HandoffWaits).
//   - Order: batches are applied in Seq order, each as its own
//     transaction (see Intents, and Groups for several in one round trip).
//   - Nothing is dropped silently: a batch is applied, skipped because its
//     transaction aborted, or written to <Dir>/deadletter.jsonl with the
//     reason, and its tables are reported in Stats.DirtyTables (persisted)
//     for repair from the old database.
//   - Delivery is at-least-once: after a crash the batches applied since the
//     last checkpoint (Options.CheckpointInterval) are applied again. Targets
//     apply upserts and deletes by primary key, so this is idempotent;
//     OpStatement changes (tables without a key) may be applied twice, which
//     verification of those tables (by multiset) reports.
//
// # Pipeline
//
//	Enqueue ─────────┬──► in-memory queue (QueueLen, QueueBytes) ──────────► applier ──► Target
//	EnqueueDurable ──┤     (EnqueueDurable: written through as well)          ▲     ▲
//	                 └──► hand-off (HandoffBytes) ──► append ──► segments ───┘     │
//	                                                        Resolve, Resolver ─────┘
//
// While the target keeps up, batches go through the in-memory queue. When
// the queue is full, or an Apply fails transiently, the mirror switches to
// the spool: the queue (and the batch being applied) is spilled to the spool
// first, and every later batch goes behind it through the spool until the
// applier has drained it, then batches go through memory again. Because the
// switch happens under one lock with the Seq assignment, order is kept
// across both paths. A batch the applier already applied from memory and
// that was also spilled is skipped by Seq when it is read back.
//
// EnqueueDurable writes its batch synchronously, and, outside spooling,
// also puts it in the in-memory queue: the applier takes it from memory and
// the record is read back only after a crash or a switch to the spool
// (write-through). To keep the spool in Seq order, whatever happens next,
// the write also takes every earlier batch the applier has not finished
// that the spool does not have yet (Enqueue'd ones in memory). A later spill
// then writes only what is not on disk; the written-through batches in
// memory join the spool path where they are, and the records before them,
// copies of batches already applied from memory, are skipped without being
// decoded (Mirror.spoolFrom). Segments are deleted once all their records
// are applied, whichever path applied them.
//
// Appends to the spool are serialized by one mutex, held while batches are
// taken from the hand-off and written, so disk order is hand-off order is
// Seq order. The spool writer goroutine appends what Enqueue spools; an
// EnqueueDurable caller appends for itself, and for every caller queued
// behind it at that moment, in one write call per segment (a group commit
// of writes, without a goroutine hand-off when it is alone). A batch that
// could not be written makes EnqueueDurable fail and is dead-lettered; if
// the applier had already taken it from memory it is applied all the same,
// and repairing its dirty tables covers both cases.
//
// The applier runs on a thread of its own at a lower CPU priority (nice
// 10, on Linux): decoding spooled batches and encoding groups for the new
// database must not take a CPU from the proxy's clients, and a backlog
// may wait. A backlog is not starved: the kernel still gives a nice-10
// thread about a tenth of a contended CPU, and all of an idle one.
//
// The applier retries transient errors with capped exponential backoff,
// never skipping ahead. A *RejectError (the new database refused the data)
// dead-letters the whole batch (it was one transaction, rolled back as a
// unit), marks its tables dirty, and the applier moves on.
//
// # Groups
//
// Applying one transaction per round trip caps the mirror at 1/RTT
// transactions per second: a few hundred when the new database is in
// another zone or region, too few to keep up with a busy primary or to
// drain a spool after an outage. A Target that implements GroupTarget gets
// several consecutive batches in one ApplyGroup call, sent in one round
// trip, each still its own transaction committed in Seq order.
//
// After the applier takes a batch that is ready (its transaction known to
// have committed) it adds the batches behind it that are ready at once,
// from the same source (the in-memory queue, or the spool), up to
// Options.MaxGroup batches and Options.MaxGroupBytes. A batch from the
// in-memory queue with fewer than half a group queued behind it first
// waits Options.GroupLinger (1ms) for the transactions committing behind
// it: a new database that keeps up would otherwise get one round trip,
// and a wake-up on both sides, per transaction. Beyond that it never waits
// for a group: a batch not yet enqueued or read, a pending one (its
// outcome unknown) or an aborted one ends the group, and is dealt with as
// before.
// Batches with an OpStatement change are never grouped: they are applied
// alone with Apply, because a transient error makes the mirror apply again
// batches that may have committed, which only row images (upserts and
// deletes by key) tolerate.
//
// The new database sees what it sees without groups. Both targets stop a
// group at its first failed batch (the PostgreSQL target chains the
// batches of its pipeline between BEGIN and COMMIT before one Sync, and
// the server skips what follows an error; a MySQL multi-statement query
// stops at its first error) and report the batches behind it
// ErrNotApplied. Those go again at once, as a group, without a backoff or
// a failure counted. A rejected batch is dead-lettered and the ones behind
// it are applied next; after a transient error the batches before it are
// done, and the mirror retries from it with the usual backoff, alone, then
// groups the rest again. Since none of the batches behind a failed one
// ran, a retried batch is never applied over newer rows. A target that
// went on past a failed batch would leave that to chance: a constraint
// other than the key (a unique column, say) could make the retry collide
// with the rows committed behind it. When the connection fails in the
// middle of a group, the batches from the one it hit on may or may not
// have committed, and are applied again, which leaves the same rows, as
// the replay after a crash does (with the replay's one exposure: while the
// first of them is applied again over the rows of the later ones, another
// unique constraint can refuse it). The batches of a group are in flight
// together: a switch to the spool or Close spills those taken from memory,
// as it does the single in-flight batch, and the position, the checkpoint
// and the counters move batch by batch.
// Options.ApplyTimeout bounds a group of n batches at n times the timeout.
// Stats.Groups and Stats.GroupedBatches count the group round trips.
//
// # Spool
//
// Segment files in Options.Dir, named by the Seq of their first record,
// hold records framed as length, CRC-32C and a versioned binary encoding of
// the Batch (EncodeBatch/DecodeBatch). One appender at a time writes; the
// fsync policy (always: before the next write, a natural group commit;
// interval: in the background, without holding up appends; never) only
// decides how much a machine crash may lose: a process crash loses nothing
// written. Segments rotate at Options.SegmentSize and are deleted once all
// their records are applied. On start every segment is scanned and a torn
// or garbage tail is truncated at the last record whose CRC checks;
// corruption elsewhere is truncated too, logged as an error and
// dead-lettered (reason "spool corrupt"). Every record after the
// checkpoint is applied again, pending ones after asking the Resolver.
//
// The spool is bounded by Options.MaxSpoolBytes. A batch that does not fit
// is not written: it is dead-lettered with reason "spool full" (without its
// rows, which would need the disk space that is missing), its tables are
// marked dirty and Stats.Overflowed is set (and EnqueueDurable returns
// ErrSpoolFull). Dropping is the only way to keep both promises that matter
// more: the disk stays bounded and the client is not blocked; the dirty
// tables tell what to repair. A producer that could not keep a
// transaction's changes at all (they outgrew its memory bound and could not
// be journaled in pieces) reports it with Unmirrored: dead-lettered without
// rows, reason "transaction too large", tables dirty.
//
// Outcomes given by Resolve are kept in memory, in Seq order, only until
// the applier passes their batch, and for at most a million unapplied
// batches; beyond that Resolve is ignored and the Resolver decides.
//
// # State
//
// state.json holds the applied checkpoint, a lease on Seqs (so that Seqs are
// never reused across restarts, even those of batches that were only in
// memory when the process died), the dirty tables and the overflow flag. A
// LOCK file (flock) keeps two mirrors out of one directory.
//
// AppliedSeq and WaitApplied expose the position: a shadow read records the
// Seq of the last write it must see and waits for the mirror to reach it.
//
// Metrics are left to the caller, which exports Stats.
package mirror
