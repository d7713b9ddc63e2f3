package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Op says how a Change is applied.
type Op uint8

// The zero Op is invalid on purpose, so that a Change built without an Op is
// caught by the encoder instead of being applied as something.
const (
	// OpUpsert inserts Row, or replaces the row with the same key.
	OpUpsert Op = iota + 1
	// OpDelete deletes the row whose KeyCols equal Key.
	OpDelete
	// OpStatement runs SQL with Args. It is used for tables without a primary
	// key, which cannot be applied by key; volatile values (now(), random(),
	// serials) must already be materialized in Args by the producer.
	OpStatement
)

var opNames = [...]string{OpUpsert: "upsert", OpDelete: "delete", OpStatement: "statement"}

func (o Op) valid() bool { return o >= OpUpsert && o <= OpStatement }

// String returns the name used in dead letters, e.g. "upsert".
func (o Op) String() string {
	if !o.valid() {
		return fmt.Sprintf("op(%d)", uint8(o))
	}
	return opNames[o]
}

// MarshalText implements encoding.TextMarshaler (dead letters are JSON).
func (o Op) MarshalText() ([]byte, error) {
	if !o.valid() {
		return nil, fmt.Errorf("mirror: invalid op %d", uint8(o))
	}
	return []byte(o.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (o *Op) UnmarshalText(b []byte) error {
	for i := OpUpsert; i <= OpStatement; i++ {
		if opNames[i] == string(b) {
			*o = i
			return nil
		}
	}
	return fmt.Errorf("mirror: unknown op %q", b)
}

// Value is one column value in PostgreSQL text format. Together with the
// column's type OID and name, the text form lets any Target convert it into
// its own types without the mirror knowing about them.
type Value struct {
	Null bool
	Text string
}

// Text returns a non-null Value.
func Text(s string) Value { return Value{Text: s} }

// Null is the SQL NULL value.
var Null = Value{Null: true}

// MarshalJSON renders NULL as JSON null and anything else as a string, which
// keeps dead letters readable.
func (v Value) MarshalJSON() ([]byte, error) {
	if v.Null {
		return []byte("null"), nil
	}
	return json.Marshal(v.Text)
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (v *Value) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*v = Null
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("mirror: value: %w", err)
	}
	*v = Value{Text: s}
	return nil
}

// Column describes one column of a row image.
type Column struct {
	Name     string `json:"name"`
	TypeOID  uint32 `json:"type_oid,omitempty"`
	TypeName string `json:"type_name,omitempty"`
}

// Change is one row image, or one statement, to apply to the new database.
type Change struct {
	Op Op `json:"op"`
	// Table is schema-qualified, e.g. "public.users".
	Table string `json:"table"`
	// Columns describes Row (and, by name, Key).
	Columns []Column `json:"columns,omitempty"`
	// Row is the full row image of an upsert, one Value per Column.
	Row []Value `json:"row,omitempty"`
	// KeyCols and Key identify the row of a delete. A key-changing update is
	// sent as a delete of the old key followed by an upsert of the new row.
	KeyCols []string `json:"key_cols,omitempty"`
	Key     []Value  `json:"key,omitempty"`
	// SQL and Args are the statement of an OpStatement change.
	SQL  string  `json:"sql,omitempty"`
	Args []Value `json:"args,omitempty"`
	// Fingerprint identifies the statement that produced the change, for
	// dead letters and reports.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Batch is the set of changes of one transaction of the old database. Once a
// Batch is passed to Enqueue or EnqueueDurable it belongs to the Mirror: the
// caller must not modify it any more.
type Batch struct {
	// Seq is assigned by Enqueue or EnqueueDurable. It is the apply order
	// (see the package documentation) and is never reused, not even across
	// restarts, but it is not dense: a restart skips ahead.
	Seq     uint64
	Changes []Change
	// CommittedAt is when the old database committed the transaction; it
	// measures the mirror's lag. Enqueue sets it to now when it is zero.
	CommittedAt time.Time
	// Xid is the transaction's id on the old database (pg_current_xact_id(),
	// an xid8) when the batch is enqueued before its COMMIT's outcome is
	// known (an intent, see EnqueueDurable). Such a batch is pending: it is
	// not applied before Resolve or Options.Resolver says the transaction
	// committed, and is skipped if it aborted. 0 means the transaction is
	// known to have committed.
	Xid uint64
}

// tables returns the distinct tables the batch touches, sorted.
func (b *Batch) tables() []string {
	var ts []string
	for i := range b.Changes {
		if t := b.Changes[i].Table; !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	slices.Sort(ts)
	return ts
}

// memSize estimates the memory a batch holds, for the queue byte bounds. It
// need not be exact, only proportional and cheap.
func (b *Batch) memSize() int64 {
	const (
		batchOverhead  = 64
		changeOverhead = 160
		valueOverhead  = 24
		columnOverhead = 40
	)
	n := int64(batchOverhead)
	vals := func(vs []Value) {
		for _, v := range vs {
			n += valueOverhead + int64(len(v.Text))
		}
	}
	for i := range b.Changes {
		c := &b.Changes[i]
		n += changeOverhead + int64(len(c.Table)+len(c.SQL)+len(c.Fingerprint))
		for _, col := range c.Columns {
			n += columnOverhead + int64(len(col.Name)+len(col.TypeName))
		}
		for _, k := range c.KeyCols {
			n += 16 + int64(len(k))
		}
		vals(c.Row)
		vals(c.Key)
		vals(c.Args)
	}
	return n
}

// Target is the new database as the mirror sees it. A Target that can apply
// several batches in one round trip also implements GroupTarget.
//
// Apply must be idempotent per batch: after a crash the mirror applies again
// the batches after its last checkpoint (at-least-once delivery). Targets get
// this for free by applying upserts and deletes by primary key; statements
// (OpStatement, tables without a key) are the exception and may be applied
// twice after a crash, which verification of such tables (by multiset)
// reports.
type Target interface {
	// Apply applies one batch as one transaction. A *RejectError means the
	// new database refused the data (constraint, missing table or column,
	// type): retrying will not help, and the whole batch was rolled back. Any
	// other error is transient (connection refused, timeout): the mirror
	// retries the same batch later, keeping the order. Apply must not modify
	// b, which the spool writer may be encoding at the same time.
	Apply(ctx context.Context, b *Batch) error
	// Close releases the target's connections. The Mirror calls it from
	// Close.
	Close() error
}

// RejectError is returned by a Target when the new database refused a batch.
type RejectError struct {
	Err error
	// SQLState is the error code reported by the new database, if any.
	SQLState string
	// ChangeIndex is the index in Batch.Changes of the refused change, or -1
	// when the target cannot tell.
	ChangeIndex int
}

func (e *RejectError) Error() string {
	if e.SQLState != "" {
		return fmt.Sprintf("mirror: change %d rejected (SQLSTATE %s): %v", e.ChangeIndex, e.SQLState, e.Err)
	}
	return fmt.Sprintf("mirror: change %d rejected: %v", e.ChangeIndex, e.Err)
}

func (e *RejectError) Unwrap() error { return e.Err }
