package schema

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Sequence is the position of a sequence.
type Sequence struct {
	Name      string // "schema.sequence", raw names
	Increment int64
	Start     int64
	// Last is the value nextval last returned (or setval set); Called is
	// false when nextval has not been called since the sequence was created
	// or reset, and the next value is then Start (or Last, after setval with
	// is_called false, which this does not tell apart).
	Last   int64
	Called bool
}

// Next returns the value nextval would return now.
func (s Sequence) Next() int64 {
	if !s.Called {
		return s.Start
	}
	return s.Last + s.Increment
}

// LoadSequences reads the position of every sequence the role may read, by
// "schema.sequence".
func LoadSequences(ctx context.Context, q Querier) (map[string]Sequence, error) {
	const sql = `
SELECT schemaname || '.' || sequencename, increment_by, start_value,
       COALESCE(last_value, start_value), last_value IS NOT NULL
  FROM pg_catalog.pg_sequences
 WHERE has_sequence_privilege(format('%I.%I', schemaname, sequencename), 'SELECT')
   AND schemaname NOT IN ('pg_catalog', 'information_schema')
   AND schemaname NOT LIKE 'pg\_temp\_%'`
	out := map[string]Sequence{}
	err := queryEach(ctx, q, sql, nil, func(r pgx.Rows) error {
		var s Sequence
		if err := r.Scan(&s.Name, &s.Increment, &s.Start, &s.Last, &s.Called); err != nil {
			return err
		}
		out[s.Name] = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("schema: sequences: %w", err)
	}
	return out, nil
}

// SequenceBehind is a sequence of the new database that would hand out a
// value the old database's sequence of the same name already did.
type SequenceBehind struct {
	Name      string `json:"sequence"`
	OldLast   int64  `json:"old_last"`
	NewNext   int64  `json:"new_next"`
	Increment int64  `json:"increment"`
}

// SequencesBehind compares the sequences of two databases by name: those
// whose next value on the new database is not past the last value the old
// one handed out (in the sequence's direction), sorted by name. Before the
// new database takes writes they must be moved: a sequence that is not
// owned by a column (Hibernate's hibernate_sequence, say) is not moved by
// the mirror.
func SequencesBehind(old, new map[string]Sequence) []SequenceBehind {
	var out []SequenceBehind
	for name, o := range old {
		n, ok := new[name]
		if !ok || !o.Called {
			continue
		}
		next := n.Next()
		if (o.Increment > 0 && next <= o.Last) || (o.Increment < 0 && next >= o.Last) {
			out = append(out, SequenceBehind{Name: name, OldLast: o.Last, NewNext: next, Increment: n.Increment})
		}
	}
	slices.SortFunc(out, func(a, b SequenceBehind) int { return strings.Compare(a.Name, b.Name) })
	return out
}
