// Package shadow runs the reads of the shadow-read phase on the new
// database and compares their answers with the old database's.
//
// The proxy serves every read from the old database. For a sample of them
// (Wants: include/exclude rules by table and fingerprint, then a random
// draw) it copies the old answer off the wire into a Request and Submits
// it. From there everything happens off the client's path, in a bounded
// pipeline that a slow or dead new database cannot back up into the proxy:
//
//	Submit     non-blocking send into a bounded queue (QueueLen); a full
//	           queue drops the request and counts it
//	worker     MaxConcurrent goroutines, each with its own connection,
//	           taking turns to gather a batch: the first request, and those
//	           that queue up behind it within BatchWindow (at once when
//	           there is a backlog), up to MaxBatch. For each request:
//	           1. decode the old rows (compare.PGRowDecoder)
//	           2. wait until the mirror has applied Request.MirrorSeq, at
//	              most MirrorWait for the batch (then compare anyway,
//	              labelled RuleMirrorLag)
//	           3. run the read on the new database within Timeout:
//	              Postgres with the client's own parameter types, bytes and
//	              formats and result formats (pgconn, a read-only session,
//	              named prepared statements; a batch goes out as one
//	              pipeline. A timed batch (one in four, or any with a
//	              read of a class with few timed reads) has a Sync after
//	              each read, so that a read's latency counts from the end
//	              of the one before it; the others end in one Sync, so
//	              that the server flushes once, leave latencies unset,
//	              and run again the reads an error made it skip); MySQL
//	              one by one, with the text of
//	              rewrite.TranslateToMySQL and the parameters converted like
//	              the mirror's row images (mysqltarget.Converter; binary ones
//	              decoded by type first)
//	           4. compare.Compare by the query's shape (compare.ShapeFromSQL)
//	           5. now and then (NoiseSample) run the read on the old
//	              database again: old answers that differ among themselves
//	              make the query class noisy, and its mismatches noise
//	re-check   a mismatch is held for RecheckDelay, then both databases are
//	           read again (old first, then new once the mirror has caught
//	           up with the old read). If the re-read matches, or the old
//	           answer itself moved, the mismatch is noise; otherwise the
//	           re-check's outcome is reported
//	record     compare.Aggregator per fingerprint (the live report: Snapshot
//	           and Handler), Prometheus metrics (shadowproxy_shadow_*), and
//	           mismatches to a compare.EventLog under ReportDir, which
//	           `shadowproxy report DIR` renders
//
// Memory is bounded by MemoryCap over everything held: the proxy Reserves
// the bytes of the rows it captures (Request.Reserved) and the workers the
// rows they read back; a result beyond PerComparisonCap, or one that finds
// the budget spent, is compared by row count and an order-independent
// digest instead of row by row.
//
// Reads that cannot be compared are recorded per query class with the
// reason (compare.Event.Ignored, the Ignored* constants): no MySQL
// translation, a parameter MySQL cannot hold, the new database
// unreachable, a transient error on the old database. A time-out on the
// new database is a comparison of its own kind (compare.DiffTimeout).
//
// Consistency: a read may see writes the mirror has not applied to the new
// database yet. MirrorSeq (the mirror position when the read ran) bounds
// that: the new read waits for it. Whatever lag remains is what the
// re-check absorbs.
package shadow
