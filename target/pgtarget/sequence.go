package pgtarget

import (
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/mirror"
)

// Row images carry the ids the old database drew from its sequences, and an
// insert with an explicit id does not move the new database's sequence. Left
// alone, the first insert on the new database after the flip would draw an
// id the mirror already wrote, and fail with a duplicate key. So every batch
// that writes a value past what a sequence of the new database is known to
// have reached ends with one statement that moves those sequences past it,
// in the batch's transaction and round trip.
//
// The statement cannot fail on its own account, since failing would roll
// the batch back: it skips sequences that no longer exist, that the role may
// not read or update ("denied"), and values outside the sequence's range,
// and it never moves a sequence backwards ("ahead"), so a sequence the new
// database already drew from keeps its place. Each sequence is moved in its
// own direction: past the largest value for an ascending one, below the
// smallest for a descending one.
//
// It assumes nothing else draws from those sequences while the mirror
// writes, which holds while the old database is the primary: the check and
// setval are not atomic.
const advanceSequencesSQL = `
SELECT s.seq, s.seq::pg_catalog.regclass::pg_catalog.text, CASE
         WHEN NOT s.allowed THEN 'denied'
         WHEN s.val < s.seqmin OR s.val > s.seqmax THEN 'out of range'
         WHEN CASE WHEN s.up THEN CASE WHEN s.last IS NULL THEN s.val >= s.seqstart ELSE s.val > s.last END
                   ELSE CASE WHEN s.last IS NULL THEN s.val <= s.seqstart ELSE s.val < s.last END
              END
           THEN 'advanced to ' || pg_catalog.setval(s.seq, s.val)
         ELSE 'ahead'
       END
  FROM (SELECT q.seqrelid AS seq, q.seqmin, q.seqmax, q.seqstart, q.seqincrement > 0 AS up,
               CASE WHEN q.seqincrement > 0 THEN v.hi ELSE v.lo END AS val,
               a.allowed,
               CASE WHEN a.allowed THEN pg_catalog.pg_sequence_last_value(q.seqrelid) END AS last
          FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.int8[]),
                         pg_catalog.unnest($3::pg_catalog.int8[])) AS v(seq, hi, lo)
          JOIN pg_catalog.pg_sequence q ON q.seqrelid = v.seq
         CROSS JOIN LATERAL (SELECT pg_catalog.has_sequence_privilege(q.seqrelid, 'UPDATE')
                                    AND pg_catalog.has_sequence_privilege(q.seqrelid, 'SELECT, USAGE') AS allowed) a) s`

// Parameter types of advanceSequencesSQL: oid[], int8[], int8[].
var advanceSequencesOIDs = []uint32{1028, 1016, 1016}

// seqRange is the span of values written to one sequence's column.
type seqRange struct{ lo, hi int64 }

func (r *seqRange) add(v int64) {
	r.lo, r.hi = min(r.lo, v), max(r.hi, v)
}

// covers reports whether every value of o is within r.
func (r seqRange) covers(o seqRange) bool { return o.lo >= r.lo && o.hi <= r.hi }

// sequenceValues collects, per sequence of the new database, the range of
// values the batch's upserts write to columns that own one. Values that are
// not integers (NULL, or a column that only looks like a serial) are left
// out.
func (t *Target) sequenceValues(b *mirror.Batch) map[uint32]seqRange {
	var out map[uint32]seqRange
	for i := range b.Changes {
		c := &b.Changes[i]
		if c.Op != mirror.OpUpsert || len(c.Row) != len(c.Columns) {
			continue
		}
		info := t.tables[c.Table]
		if info == nil || len(info.sequences) == 0 {
			continue
		}
		for j, col := range c.Columns {
			oid, ok := info.sequences[col.Name]
			if !ok || c.Row[j].Null {
				continue
			}
			v, err := strconv.ParseInt(c.Row[j].Text, 10, 64)
			if err != nil {
				continue
			}
			if out == nil {
				out = map[uint32]seqRange{}
			}
			r, seen := out[oid]
			if !seen {
				r = seqRange{v, v}
			}
			r.add(v)
			out[oid] = r
		}
	}
	return out
}

// planSequences returns the statement that moves the sequences of the
// batch past its values, and the ranges it covers; nil when every value is
// within what the sequences are known to have reached. Called with mu held.
func (t *Target) planSequences(b *mirror.Batch) (*statement, map[uint32]seqRange) {
	if t.opts.NoSequences || t.seqFailed {
		return nil, nil
	}
	vals := t.sequenceValues(b)
	for oid, r := range vals {
		if done, ok := t.seqDone[oid]; ok && done.covers(r) {
			delete(vals, oid)
		}
	}
	if len(vals) == 0 {
		return nil, nil
	}
	var oids, his, los strings.Builder
	for oid, r := range vals {
		sep := ","
		if oids.Len() == 0 {
			sep = "{"
		}
		oids.WriteString(sep + strconv.FormatUint(uint64(oid), 10))
		his.WriteString(sep + strconv.FormatInt(r.hi, 10))
		los.WriteString(sep + strconv.FormatInt(r.lo, 10))
	}
	st := &statement{
		sql:    advanceSequencesSQL,
		oids:   advanceSequencesOIDs,
		params: [][]byte{[]byte(oids.String() + "}"), []byte(his.String() + "}"), []byte(los.String() + "}")},
	}
	return st, vals
}

// sequencesDone records what the statement of planSequences did, once its
// batch committed. Whatever the outcome, the sequences are not asked about
// these values again on this connection; a sequence the role may not move,
// or a value outside its range, is logged once.
func (t *Target) sequencesDone(vals map[uint32]seqRange, rows [][][]byte) {
	for oid, r := range vals {
		done, ok := t.seqDone[oid]
		if ok {
			r.add(done.lo)
			r.add(done.hi)
		}
		t.seqDone[oid] = r
	}
	for _, row := range rows {
		if len(row) != 3 {
			continue
		}
		outcome := string(row[2])
		if outcome != "denied" && outcome != "out of range" {
			continue
		}
		oid, err := strconv.ParseUint(string(row[0]), 10, 32)
		if err != nil || t.seqWarned[uint32(oid)] {
			continue
		}
		t.seqWarned[uint32(oid)] = true
		t.log.Warn("pgtarget: a sequence of the new database was not moved past the mirrored values; "+
			"set it before the new database takes writes", "sequence", string(row[1]), "reason", outcome)
	}
}

// sequencesFailed turns sequence moving off for the connection after its
// statement failed, which should not happen; the error is logged, as the
// sequences then need setting by hand before the new database takes writes.
func (t *Target) sequencesFailed(err error) {
	t.seqFailed = true
	t.log.Error("pgtarget: cannot move the new database's sequences past the mirrored values; "+
		"set them before the new database takes writes", "err", err)
}

// readSequenceRows reads the outcome rows of the statement of planSequences.
func readSequenceRows(rr *pgconn.ResultReader) ([][][]byte, error) {
	res := rr.Read()
	return res.Rows, res.Err
}
