// Package compare is the pure-logic core of shadow reads: it compares the
// result of one query on the old database (Postgres) with the result of the
// same query on the new database (Postgres or MySQL/MariaDB) and aggregates
// the outcomes into reports.
//
// The flow is:
//
//	decode   PGRowDecoder / MySQLRowDecoder turn wire or driver values into
//	         engine-neutral Values (Result.Rows), with one Column per field.
//	shape    ShapeFromSQL (or the caller's own parse tree) says whether the
//	         query has a top-level ORDER BY and LIMIT.
//	compare  Compare(old, new, shape, opts) normalizes both sides per column
//	         pair, hashes rows into multisets, and labels every difference
//	         with a DiffType and the rule that explains it.
//	report   Aggregator.Record collects Outcomes per query fingerprint;
//	         Snapshot gives a Report, rendered by WriteText, WriteJSON and
//	         WriteHTML; EventLog persists events as JSON lines and LoadDir
//	         reads them back.
//
// The rules follow the field notes on cross-engine comparison: rows compare
// as multisets unless the query orders them, numbers by value, floats by
// significant digits then a bounded tolerance pass, timestamps as instants at
// the common fractional precision, text differences that a collation explains
// are labelled "collation" rather than "value", JSON is parsed, UUIDs ignore
// case, and NULL placement differences under ORDER BY are "null_order". The
// goal is no false alarms: a difference is reported only when the data, not
// its representation, differs — and when the representation is all that
// differs in a way a collation or NULL ordering explains, it is labelled so.
//
// Nothing here does I/O except EventLog and LoadDir; everything else is safe
// to call from any goroutine, and Aggregator is safe for concurrent use.
package compare
