package schema

import (
	"slices"
	"strings"
)

// Catalog is the description of a database's user tables and of the types
// their columns use.
type Catalog struct {
	// Tables maps "schema.table" (raw names, not quoted, joined by a dot) to
	// its table.
	Tables map[string]*Table
	// Types maps a type OID to its description, for every type a column uses
	// (directly, or as the element of an array or the base of a domain).
	Types map[uint32]*Type
	// Functions holds, by name, the user-defined functions that may write
	// tables (see FunctionMayWrite). Load fills it; LoadTables does not.
	Functions map[string][]Function
}

// Lookup returns the table a statement means by name, or nil. A qualified
// name ("sales.orders", or the quoted form `"My Schema"."Orders"`) is looked
// up directly. An unqualified one is resolved like PostgreSQL does, through
// searchPath in order ("public" when searchPath is empty); entries that name
// no schema of user tables ("$user", pg_catalog, pg_temp) are skipped, so the
// caller should substitute "$user" itself when it knows the user.
func (c *Catalog) Lookup(name string, searchPath []string) *Table {
	if c == nil {
		return nil
	}
	schema, table, qualified := splitName(name)
	if qualified {
		return c.Tables[QualifiedName(schema, table)]
	}
	if len(searchPath) == 0 {
		searchPath = []string{"public"}
	}
	for _, s := range searchPath {
		s = unquoteIdent(strings.TrimSpace(s))
		if t := c.Tables[QualifiedName(s, table)]; t != nil {
			return t
		}
	}
	return nil
}

// Type returns the description of a type OID, or nil when no column uses it.
func (c *Catalog) Type(oid uint32) *Type {
	if c == nil {
		return nil
	}
	return c.Types[oid]
}

// SortedTables returns the tables ordered by qualified name, for reports.
func (c *Catalog) SortedTables() []*Table {
	ts := make([]*Table, 0, len(c.Tables))
	for _, t := range c.Tables {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b *Table) int { return strings.Compare(a.QualifiedName(), b.QualifiedName()) })
	return ts
}

// Table describes one user table (ordinary or partitioned).
type Table struct {
	Schema string
	Name   string
	OID    uint32
	// Partitioned is set for a partitioned table (relkind 'p'); its rows
	// live in its partitions.
	Partitioned bool
	// PartitionOf is the qualified name of the parent when the table is a
	// partition, or "".
	PartitionOf string
	// Columns in attnum order (dropped columns left out).
	Columns []*Column
	// PrimaryKey holds the primary key's columns in key order; empty when the
	// table has none.
	PrimaryKey []string
	// Unique lists the other unique keys: UNIQUE constraints, and unique
	// indexes over plain columns that are valid and not partial. Unique
	// indexes on expressions are left out: they have no column list.
	Unique []UniqueKey
	// Triggers lists the user-defined triggers; the internal ones
	// (foreign-key enforcement) are left out.
	Triggers []Trigger
}

// QualifiedName returns "schema.table", the key of the table in
// Catalog.Tables and the form mirror.Change.Table uses.
func (t *Table) QualifiedName() string { return QualifiedName(t.Schema, t.Name) }

// Column returns the column with the given name, or nil.
func (t *Table) Column(name string) *Column {
	for _, c := range t.Columns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// HasPrimaryKey reports whether the table has a primary key. Tables without
// one cannot be mirrored by key: their writes are mirrored as statements and
// they are verified by multiset.
func (t *Table) HasPrimaryKey() bool { return len(t.PrimaryKey) > 0 }

// HasTriggers reports whether the table has enabled user-defined triggers:
// their effects are part of the row images captured on the old database, and
// they would apply a second time if they fired on the new one.
func (t *Table) HasTriggers() bool {
	for _, tr := range t.Triggers {
		if tr.Enabled != TriggerDisabled {
			return true
		}
	}
	return false
}

// TriggersWritingOtherTables returns the enabled triggers whose function may
// write tables other than this one. Writes made by a trigger on the old
// database are not visible to the proxy (they are not in the row images of
// the client's statement), so these tables may fall behind on the new side.
func (t *Table) TriggersWritingOtherTables() []Trigger {
	var out []Trigger
	for _, tr := range t.Triggers {
		if tr.Enabled != TriggerDisabled && tr.MayWriteOther {
			out = append(out, tr)
		}
	}
	return out
}

// Column describes one column of a table.
type Column struct {
	Name string
	// Num is the attribute number (attnum); numbers have gaps where columns
	// were dropped.
	Num int
	// TypeOID is the declared type; for a domain column it is the domain.
	TypeOID uint32
	// TypeName is format_type(type, typmod), e.g. "numeric(10,2)",
	// "character varying(20)", "timestamp with time zone", "integer[]" or,
	// for a type outside the search path, "app.mood".
	TypeName string
	// Typmod is the type modifier (atttypmod), -1 when there is none.
	Typmod int32
	// Type is the description of TypeOID (with enum labels, array element,
	// domain base); nil only for a Column built by hand.
	Type *Type

	NotNull bool
	// Default is the default expression as pg_get_expr prints it, or "".
	// Identity and generated columns have none.
	Default string
	// DefaultVolatile is set when evaluating the default again (on another
	// server, later) may give another value: it calls a function that is
	// not IMMUTABLE (now(), nextval(), gen_random_uuid(), random(),
	// clock_timestamp() …; STABLE counts, since it varies between
	// statements), reads a special value like CURRENT_TIMESTAMP or
	// CURRENT_USER, or converts text through a type's input function.
	// Identity columns count as volatile (they draw from a sequence). The
	// check is conservative: it may flag an expression that is in fact
	// reproducible, never the reverse.
	DefaultVolatile bool
	// Identity says whether this is an identity column.
	Identity Identity
	// Generated is set for a stored generated column; GenerationExpr is its
	// expression. Such columns cannot be written.
	Generated      bool
	GenerationExpr string
	// Sequence is the qualified name of the sequence owned by the column
	// (serial, bigserial, identity), or "". Sequences on the new database
	// must be advanced past the mirrored values before it takes writes.
	Sequence string
	// SequenceOID is the OID of that sequence (0: none). Unlike the name it
	// needs no quoting to be looked up.
	SequenceOID uint32
}

// BaseType returns the column's type with domains resolved: the type, its
// name with the type modifier (e.g. "character varying(20)") and the
// modifier. For a column that is not of a domain type it returns the
// column's own type.
func (c *Column) BaseType() (t *Type, name string, typmod int32) {
	t, name, typmod = c.Type, c.TypeName, c.Typmod
	for t != nil && t.Kind == KindDomain && t.Base != nil {
		name, typmod = t.BaseName, t.BaseTypmod
		t = t.Base
	}
	return t, name, typmod
}

// BaseTypeOID is the OID of BaseType, or TypeOID when the type is unknown.
func (c *Column) BaseTypeOID() uint32 {
	if t, _, _ := c.BaseType(); t != nil {
		return t.OID
	}
	return c.TypeOID
}

// Identity is the kind of an identity column.
type Identity byte

const (
	// IdentityNone marks an ordinary column.
	IdentityNone Identity = 0
	// IdentityAlways is GENERATED ALWAYS AS IDENTITY: writing a value needs
	// OVERRIDING SYSTEM VALUE.
	IdentityAlways Identity = 'a'
	// IdentityByDefault is GENERATED BY DEFAULT AS IDENTITY.
	IdentityByDefault Identity = 'd'
)

// String returns "", "always" or "by default".
func (i Identity) String() string {
	switch i {
	case IdentityAlways:
		return "always"
	case IdentityByDefault:
		return "by default"
	}
	return ""
}

// TypeKind classifies a type.
type TypeKind uint8

// Type kinds, after pg_type.typtype, with arrays told apart from other base
// types.
const (
	KindBase TypeKind = iota + 1
	KindArray
	KindEnum
	KindDomain
	KindComposite
	KindRange
	KindMultirange
	KindPseudo
)

var kindNames = [...]string{KindBase: "base", KindArray: "array", KindEnum: "enum", KindDomain: "domain",
	KindComposite: "composite", KindRange: "range", KindMultirange: "multirange", KindPseudo: "pseudo"}

// String returns the kind's name, e.g. "enum".
func (k TypeKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Type describes a data type.
type Type struct {
	OID uint32
	// Name is format_type(oid, NULL), e.g. "integer[]" or "app.mood".
	Name string
	Kind TypeKind
	// Elem is the element type of an array.
	Elem *Type
	// Base is the underlying type of a domain (itself possibly a domain);
	// BaseName is its name with the domain's type modifier, BaseTypmod the
	// modifier.
	Base       *Type
	BaseName   string
	BaseTypmod int32
	// Labels are the values of an enum, in sort order.
	Labels []string
}

// Resolve follows domains down to the type they are built on.
func (t *Type) Resolve() *Type {
	for t != nil && t.Kind == KindDomain && t.Base != nil {
		t = t.Base
	}
	return t
}

// UniqueKey is a unique constraint or unique index over plain columns.
type UniqueKey struct {
	Name    string
	Columns []string
	// Constraint is set for a UNIQUE constraint, unset for a bare index.
	Constraint bool
}

// TriggerEnabled is pg_trigger.tgenabled: when a trigger fires, depending on
// session_replication_role.
type TriggerEnabled byte

// Trigger firing modes.
const (
	// TriggerOrigin fires in the "origin" and "local" roles (the default).
	TriggerOrigin TriggerEnabled = 'O'
	// TriggerReplica fires only in the "replica" role.
	TriggerReplica TriggerEnabled = 'R'
	// TriggerAlways fires in every role, replica included.
	TriggerAlways TriggerEnabled = 'A'
	// TriggerDisabled never fires.
	TriggerDisabled TriggerEnabled = 'D'
)

// Trigger describes a user-defined trigger.
type Trigger struct {
	Name string
	// Function is the qualified name of the trigger function; Language its
	// language (plpgsql, c, internal, plpython3u …).
	Function string
	Language string
	Enabled  TriggerEnabled
	// Timing is "BEFORE", "AFTER" or "INSTEAD OF"; Events lists INSERT,
	// UPDATE, DELETE and TRUNCATE; Row is set for FOR EACH ROW.
	Timing string
	Events []string
	Row    bool
	// Constraint is set for a CONSTRAINT TRIGGER (it may be deferred).
	Constraint bool
	// Writes lists the tables the function's SQL statements write (INSERT,
	// UPDATE, DELETE, MERGE), as they are named in the source.
	Writes []string
	// MayWriteOther is set when the function may write tables other than
	// the trigger's own: Writes names another table, or the function runs
	// dynamic SQL, calls a volatile user-defined function, or is written in
	// a language this package does not analyze. MayWriteOtherReason says
	// which.
	MayWriteOther       bool
	MayWriteOtherReason string
}

// QualifiedName joins a schema and a table name into the "schema.table" form
// used as the key of Catalog.Tables. The names are raw (not quoted).
func QualifiedName(schema, table string) string { return schema + "." + table }

// SplitName splits a table name into schema and table. The name is either
// raw ("public.users": split at the first dot) or quoted SQL
// (`"My Schema"."My.Table"`, quotes removed, case kept). An unqualified name
// gets the schema "public".
func SplitName(name string) (schema, table string) {
	schema, table, qualified := splitName(name)
	if !qualified {
		schema = "public"
	}
	return schema, table
}

func splitName(name string) (schema, table string, qualified bool) {
	if strings.Contains(name, `"`) {
		parts := splitQuoted(name)
		switch len(parts) {
		case 1:
			return "", parts[0], false
		case 2:
			return parts[0], parts[1], true
		}
		// A catalog-qualified name (db.schema.table): the database part is
		// the connection's, ignore it.
		return parts[len(parts)-2], parts[len(parts)-1], true
	}
	if s, t, ok := strings.Cut(name, "."); ok {
		return s, t, true
	}
	return "", name, false
}

// splitQuoted splits a dotted list of identifiers where any part may be
// double-quoted (a doubled quote inside stands for one quote).
func splitQuoted(name string) []string {
	var parts []string
	var cur strings.Builder
	inQuotes := false
	for i := 0; i < len(name); i++ {
		ch := name[i]
		switch {
		case ch == '"' && inQuotes && i+1 < len(name) && name[i+1] == '"':
			cur.WriteByte('"')
			i++
		case ch == '"':
			inQuotes = !inQuotes
		case ch == '.' && !inQuotes:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(ch)
		}
	}
	return append(parts, cur.String())
}

// unquoteIdent removes the double quotes of a quoted identifier, as found in
// a search_path setting; other strings are returned unchanged.
func unquoteIdent(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return s
}

// ParseSearchPath splits a search_path setting as SHOW search_path prints it
// (`"$user", public`) into schema names, quotes removed.
func ParseSearchPath(setting string) []string {
	var out []string
	for _, p := range splitQuotedList(setting) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, unquoteIdent(p))
		}
	}
	return out
}

// splitQuotedList splits at commas outside double quotes.
func splitQuotedList(s string) []string {
	var parts []string
	start, inQuotes := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuotes = !inQuotes
		case ',':
			if !inQuotes {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}
