// Package proxy is shadowproxy's Postgres-wire server: it accepts clients,
// authenticates them (relaying their own credentials to the old database,
// or checking configured SCRAM verifiers), maps cancel requests, and
// forwards traffic between each client and its connection to the old
// database.
//
// # Sessions
//
// Each client is a session served by two goroutines: clientToUpstream
// (the session's own goroutine) reads the client and writes the old
// database, upstreamToClient does the reverse. Messages travel as raw
// frames in batches (protocol.Reader); only the types the proxy needs are
// decoded. The two goroutines share the pending-request queue, the
// transaction status and the client's write lock.
//
// # Event loop
//
// On Linux, plain (non-TLS) sessions are served instead by the event loop
// (loop_linux.go): one goroutine, one epoll set, non-blocking reads and
// writes, the way pgbouncer works. It saves the Go scheduler's work on
// every wait, about a third of the proxy's CPU per round trip on a small
// machine. In the dual-write phases it runs the same capture code as the
// goroutines. Whatever might block — a large message, a full socket, an
// error, an autocommit write the proxy wraps in a transaction of its own,
// COPY FROM, DDL, a COMMIT with results still due, fsync = always — hands
// the session to its goroutines, which go on from the same buffered bytes
// and state; they give it back at a quiet moment (less eagerly each time).
// The loop may poll briefly instead of sleeping when waits of the same kind
// (for the old database's answers, or for the clients) have been ending
// that soon (busypoll_linux.go, loop.busy_poll).
//
// # Dual-write
//
// In the dual-write phases (see track.go) every write is rewritten to
// return the row images it stored (rewrite.PlanCapture appends the
// transaction id, the table and every column to its RETURNING list), the
// responses are split between the client, who sees exactly what it would
// have seen without the proxy, and the open transaction's buffer, and the
// transaction's images are written to the mirror's journal before its
// COMMIT reaches the old database. Autocommit writes run in a transaction
// of the proxy's own so that this holds for them too; COPY FROM runs
// through a staging table so its rows can be captured. The journal's order
// is therefore a valid apply order, and a crash loses nothing: the mirror
// asks the old database how unresolved transactions ended.
//
// Writes prepared with SQL PREPARE are prepared with the capture columns
// in their body, and each EXECUTE of them is tracked as a captured write;
// the session follows its prepared names, settled by the server's answers
// (sqlprepare.go). A statement prepared before the phase captured is
// prepared again, under its own name, in front of its EXECUTE.
//
// What the capture must not change for the client: an Execute with a row
// limit still captures every row (limited.go hands the client its rows
// limit by limit), dates printed in a DateStyle other than ISO are turned
// into ISO for the images (datestyle.go), and an open transaction's images
// are bounded (txbuf.go, mirror.max_tx_bytes): past the bound they are
// journaled in chunks while the transaction is open, resolved with its
// COMMIT's outcome, and so applied as several transactions once it commits;
// meanwhile later transactions wait behind them in the mirror, and shadow
// reads that wait for the mirror may time out. The event loop leaves these
// writes to the session's goroutines.
//
// What no RETURNING can show is reported rather than lost: statements whose
// effects cannot be captured (Mirroring.NotMirrored, by fingerprint: CALL,
// DO, calls of user-defined functions that write, writes in a WITH), and
// the writes that triggers make with SQL of their own, whose tables are
// marked dirty through a dead letter (Mirroring.noteTriggerWrites).
//
// # Shadow reads
//
// In shadow-read a sampled read's answer is copied off the wire as the
// client gets it (shadowread.go) and handed to the Shadower with the mirror
// position it must wait for and the session's search_path (searchpath.go),
// which a Postgres new database runs it with. Reads that describe the
// server rather than the data, reads with side effects and reads in a
// transaction that has written are counted as not shadowed, by reason.
//
// Phases change only between requests with no transaction open.
package proxy
