// Package mirror is the no-loss pipeline that carries writes committed on the
// old database to the new one during the dual-write phases.
//
// The proxy (the producer) captures each committed transaction as a Batch of
// row images (upserts and deletes by key, or statements with materialized
// values for tables without a key) and calls Mirror.Enqueue. A Target (the
// consumer: Postgres via pgx, MySQL via database/sql) applies each batch as
// one transaction. The mirror knows neither SQL nor the wire protocol.
//
// # Guarantees
//
//   - The client is never slowed or failed by the new database: Enqueue only
//     does an in-memory hand-off. It waits neither for the Target nor for an
//     fsync; the only wait is when the hand-off to the spool writer
//     (Options.HandoffBytes) is full, i.e. the local disk cannot take writes
//     at the commit rate (Stats.HandoffWaits).
//   - Order: batches are applied one at a time in Seq order. Seqs are handed
//     out by Enqueue, so the producer must call Enqueue in the order the old
//     database committed, right after the commit's reply and before the
//     session forwards anything else. Two conflicting commits whose replies
//     arrive on two sessions at nearly the same time (a statement that waited
//     on the other's row lock) can still be enqueued in the wrong order by
//     the producer; verification and repair are the backstop for that.
//   - Nothing is dropped silently: a batch is applied, or written to
//     <Dir>/deadletter.jsonl with the reason, and its tables are reported in
//     Stats.DirtyTables (persisted) for repair from the old database.
//   - Delivery is at-least-once: after a crash the batches applied since the
//     last checkpoint (Options.CheckpointInterval) are applied again. Targets
//     apply upserts and deletes by primary key, so this is idempotent;
//     OpStatement changes (tables without a key) may be applied twice, which
//     verification of those tables (by multiset) reports.
//
// # Pipeline
//
//	Enqueue ──► in-memory queue (QueueLen, QueueBytes) ───────────────► applier ──► Target
//	   │                                                                   ▲
//	   └──► hand-off (HandoffBytes) ──► spool writer ──► segment files ──┘
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
// The applier retries transient errors with capped exponential backoff,
// never skipping ahead. A *RejectError (the new database refused the data)
// dead-letters the whole batch (it was one transaction, rolled back as a
// unit), marks its tables dirty, and the applier moves on.
//
// # Spool
//
// Segment files in Options.Dir, named by the Seq of their first record,
// hold records framed as length, CRC-32C and a versioned binary encoding of
// the Batch (EncodeBatch/DecodeBatch). A single writer goroutine appends;
// the fsync policy (always: after every write, a natural group commit;
// interval; never) only decides how much a machine crash may lose, since
// Enqueue never waits for it. Segments rotate at Options.SegmentSize and are
// deleted once all their records are applied. On start every segment is
// scanned and a torn or garbage tail is truncated at the last record whose
// CRC checks; corruption elsewhere is truncated too, logged as an error and
// dead-lettered (reason "spool corrupt").
//
// The spool is bounded by Options.MaxSpoolBytes. A batch that does not fit
// is not written: it is dead-lettered with reason "spool full" (without its
// rows, which would need the disk space that is missing), its tables are
// marked dirty and Stats.Overflowed is set. Dropping is the only way to keep
// both promises that matter more: the disk stays bounded and the client is
// not blocked; the dirty tables tell what to repair.
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
