package mysqltarget

import (
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
)

// CreateTableSQL returns a MySQL CREATE TABLE statement for a PostgreSQL
// table, with the type mapping the converter writes values for. It is a
// helper for tests and for users bootstrapping the new schema: the proxy
// never runs DDL itself, and the result is a starting point to review.
//
// Types: boolean → TINYINT(1); smallint/integer/bigint → SMALLINT/INT/
// BIGINT (AUTO_INCREMENT for a serial or identity column that leads a key);
// numeric(p,s) → DECIMAL(p,s), unbounded numeric → DECIMAL(65,30); real/
// double → FLOAT/DOUBLE; varchar(n) → VARCHAR(n); char(n) → CHAR(n); text
// and other strings → LONGTEXT (VARCHAR(255) in a key, since MySQL cannot
// index LONGTEXT); citext → a case-insensitive collation; bytea → LONGBLOB
// (VARBINARY(255) in a key); timestamp and timestamptz → DATETIME(p)
// holding UTC; date → DATE; time and timetz → TIME(p); uuid → CHAR(36);
// json, jsonb and arrays → JSON; enums → ENUM; inet/cidr/macaddr →
// VARCHAR; bit(n ≤ 64) → BIT(n); interval, money and anything else →
// VARCHAR or LONGTEXT holding the PostgreSQL text. Domains map as their
// base type (their CHECK constraints are not carried over).
//
// Constant defaults are converted like values (a timestamptz constant
// becomes its UTC DATETIME); now(), CURRENT_TIMESTAMP and friends become
// CURRENT_TIMESTAMP(p), CURRENT_DATE becomes (CURRENT_DATE),
// gen_random_uuid() becomes (UUID()). Other defaults, generated columns
// (created as plain columns: the mirror writes their values) and triggers
// are listed in comments before the statement. The primary key and unique
// keys are kept; foreign keys, checks and other indexes are not.
//
// The table name follows QuoteTable. The table collation is utf8mb4_bin,
// which compares like PostgreSQL (case- and accent-sensitive).
func CreateTableSQL(t *schema.Table) (string, error) {
	var notes []string
	keyCols := keyColumns(t)
	// leaders are the columns that lead a key, which AUTO_INCREMENT needs.
	leaders := map[string]bool{}
	if len(t.PrimaryKey) > 0 {
		leaders[t.PrimaryKey[0]] = true
	}
	for _, u := range t.Unique {
		if len(u.Columns) > 0 {
			leaders[u.Columns[0]] = true
		}
	}
	conv := NewConverter(nil)
	var lines []string
	autoInc := false
	for _, c := range t.Columns {
		typ, kind, err := mysqlType(c, keyCols[c.Name])
		if err != nil {
			return "", fmt.Errorf("mysqltarget: table %s: %w", t.QualifiedName(), err)
		}
		def := quoteIdent(c.Name) + " " + typ
		if c.NotNull || slices.Contains(t.PrimaryKey, c.Name) {
			def += " NOT NULL"
		}
		switch {
		case c.Generated:
			notes = append(notes, fmt.Sprintf("column %s is generated in PostgreSQL (%s); here it is a plain column the mirror writes", c.Name, c.GenerationExpr))
		case (c.Identity != schema.IdentityNone || c.Sequence != "") && kind == kindInteger && leaders[c.Name] && !autoInc:
			autoInc = true
			def += " AUTO_INCREMENT"
		case c.Identity != schema.IdentityNone || c.Sequence != "":
			// MySQL allows one AUTO_INCREMENT column per table, leading a key.
			notes = append(notes, fmt.Sprintf("column %s draws from a sequence in PostgreSQL; no AUTO_INCREMENT here (MySQL allows one, on the first column of a key)", c.Name))
		case c.Default != "":
			d, ok := mysqlDefault(conv, c, typ, kind)
			if ok {
				def += " DEFAULT " + d
			} else {
				notes = append(notes, fmt.Sprintf("default of column %s not translated: %s", c.Name, c.Default))
			}
		}
		lines = append(lines, def)
	}
	if len(t.PrimaryKey) > 0 {
		lines = append(lines, "PRIMARY KEY ("+quoteList(t.PrimaryKey)+")")
	} else {
		notes = append(notes, "no primary key: mirrored as statements, verified by multiset")
	}
	for _, u := range t.Unique {
		lines = append(lines, "UNIQUE KEY "+quoteIdent(u.Name)+" ("+quoteList(u.Columns)+")")
	}
	for _, tr := range t.Triggers {
		notes = append(notes, fmt.Sprintf("trigger %s (%s %s, function %s) not translated", tr.Name, tr.Timing, strings.Join(tr.Events, "/"), tr.Function))
	}
	var b strings.Builder
	for _, n := range notes {
		b.WriteString("-- " + strings.ReplaceAll(n, "\n", " ") + "\n")
	}
	b.WriteString("CREATE TABLE " + QuoteTable(t.QualifiedName()) + " (\n  ")
	b.WriteString(strings.Join(lines, ",\n  "))
	b.WriteString("\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
	return b.String(), nil
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteIdent(n)
	}
	return strings.Join(q, ", ")
}

// typeKind groups MySQL column types by how a default is written.
type typeKind uint8

const (
	kindOther    typeKind = iota
	kindInteger           // integers: AUTO_INCREMENT allowed
	kindDatetime          // DATETIME: CURRENT_TIMESTAMP(p) default
	kindDate
	kindLOB // LONGTEXT, LONGBLOB, JSON: literal defaults must be expressions
)

// Limits of MySQL types.
const (
	maxDecimalPrecision = 65
	maxDecimalScale     = 30
	maxVarchar          = 16383 // utf8mb4 characters in 65,535 bytes
	keyVarchar          = 255   // fits InnoDB's 3,072-byte index limit with room for composite keys
)

// mysqlType maps a column's type; key says whether the column is part of
// the primary key or a unique key (MySQL cannot index LOBs).
func mysqlType(c *schema.Column, key bool) (string, typeKind, error) {
	base, _, typmod := c.BaseType()
	oid := c.BaseTypeOID()
	text := func() (string, typeKind, error) {
		if key {
			return fmt.Sprintf("VARCHAR(%d)", keyVarchar), kindOther, nil
		}
		return "LONGTEXT", kindLOB, nil
	}
	precision := func() int32 {
		if typmod < 0 || typmod > 6 {
			return 6
		}
		return typmod
	}
	if base != nil {
		switch base.Kind {
		case schema.KindArray:
			if key {
				return "", 0, fmt.Errorf("column %s: an array (JSON) cannot be part of a key", c.Name)
			}
			return "JSON", kindLOB, nil
		case schema.KindEnum:
			labels := make([]string, len(base.Labels))
			for i, l := range base.Labels {
				if strings.ContainsRune(l, '\\') {
					return "", 0, fmt.Errorf("column %s: enum label %q holds a backslash", c.Name, l)
				}
				labels[i] = quoteString(l)
			}
			if len(labels) == 0 {
				return text()
			}
			return "ENUM(" + strings.Join(labels, ", ") + ")", kindOther, nil
		}
		if name := base.Name; name == "citext" || strings.HasSuffix(name, ".citext") {
			t, k, err := text()
			return t + " COLLATE utf8mb4_general_ci", k, err
		}
	}
	switch oid {
	case pgtype.BoolOID:
		return "TINYINT(1)", kindOther, nil
	case pgtype.Int2OID:
		return "SMALLINT", kindInteger, nil
	case pgtype.Int4OID:
		return "INT", kindInteger, nil
	case pgtype.Int8OID:
		return "BIGINT", kindInteger, nil
	case pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID:
		return "INT UNSIGNED", kindInteger, nil
	case xid8OID:
		return "BIGINT UNSIGNED", kindInteger, nil
	case pgtype.NumericOID:
		if typmod < 0 {
			return fmt.Sprintf("DECIMAL(%d,%d)", maxDecimalPrecision, maxDecimalScale), kindOther, nil
		}
		p := ((typmod - 4) >> 16) & 0xffff
		s := (((typmod - 4) & 0x7ff) ^ 1024) - 1024 // PostgreSQL 15 allows negative scales
		if p > maxDecimalPrecision || s > maxDecimalScale || s < 0 {
			return "", 0, fmt.Errorf("column %s: %s does not fit MySQL DECIMAL (precision ≤ 65, scale 0 to 30)", c.Name, c.TypeName)
		}
		return fmt.Sprintf("DECIMAL(%d,%d)", p, s), kindOther, nil
	case pgtype.Float4OID:
		return "FLOAT", kindOther, nil
	case pgtype.Float8OID:
		return "DOUBLE", kindOther, nil
	case pgtype.VarcharOID:
		if n := typmod - 4; typmod >= 0 && n <= maxVarchar {
			return fmt.Sprintf("VARCHAR(%d)", n), kindOther, nil
		}
		return text()
	case pgtype.BPCharOID:
		n := typmod - 4
		switch {
		case typmod < 0:
			return "CHAR(1)", kindOther, nil
		case n <= 255:
			return fmt.Sprintf("CHAR(%d)", n), kindOther, nil
		case n <= maxVarchar:
			return fmt.Sprintf("VARCHAR(%d)", n), kindOther, nil
		}
		return text()
	case pgtype.NameOID:
		return "VARCHAR(63)", kindOther, nil
	case pgtype.QCharOID:
		return "CHAR(1)", kindOther, nil
	case pgtype.ByteaOID:
		if key {
			return fmt.Sprintf("VARBINARY(%d)", keyVarchar), kindOther, nil
		}
		return "LONGBLOB", kindLOB, nil
	case pgtype.UUIDOID:
		return "CHAR(36)", kindOther, nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		if key {
			return "", 0, fmt.Errorf("column %s: JSON cannot be part of a key", c.Name)
		}
		return "JSON", kindLOB, nil
	case pgtype.DateOID:
		return "DATE", kindDate, nil
	case pgtype.TimestampOID, pgtype.TimestamptzOID:
		return fmt.Sprintf("DATETIME(%d)", precision()), kindDatetime, nil
	case pgtype.TimeOID, pgtype.TimetzOID:
		return fmt.Sprintf("TIME(%d)", precision()), kindOther, nil
	case pgtype.IntervalOID:
		return "VARCHAR(100)", kindOther, nil
	case pgtype.InetOID, pgtype.CIDROID:
		return "VARCHAR(43)", kindOther, nil
	case pgtype.MacaddrOID:
		return "VARCHAR(17)", kindOther, nil
	case 774: // macaddr8
		return "VARCHAR(23)", kindOther, nil
	case pgtype.BitOID:
		if typmod > 0 && typmod <= 64 {
			return fmt.Sprintf("BIT(%d)", typmod), kindOther, nil
		}
		return text()
	case pgtype.VarbitOID:
		if typmod > 0 && typmod <= maxVarchar {
			return fmt.Sprintf("VARCHAR(%d)", typmod), kindOther, nil
		}
		return text()
	case moneyOID:
		return "VARCHAR(32)", kindOther, nil
	}
	return text()
}

// keyColumns are the columns of the table's primary and unique keys, which
// need types MySQL can index.
func keyColumns(t *schema.Table) map[string]bool {
	keys := map[string]bool{}
	for _, k := range t.PrimaryKey {
		keys[k] = true
	}
	for _, u := range t.Unique {
		for _, c := range u.Columns {
			keys[c] = true
		}
	}
	return keys
}

// mysqlDefault translates a column default; ok is false when it cannot.
func mysqlDefault(conv *Converter, c *schema.Column, typ string, kind typeKind) (string, bool) {
	tree, err := pg_query.Parse("SELECT " + c.Default)
	if err != nil || len(tree.Stmts) != 1 {
		return "", false
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 {
		return "", false
	}
	expr := sel.TargetList[0].GetResTarget().GetVal()
	// Casts around a constant are PostgreSQL's way of typing the literal:
	// 'ok'::mood, ('x'::character varying)::text.
	for expr.GetTypeCast() != nil {
		expr = expr.GetTypeCast().GetArg()
	}
	if fn := expr.GetFuncCall(); fn != nil && len(fn.Args) == 0 {
		var name string
		if n := len(fn.Funcname); n > 0 {
			name = fn.Funcname[n-1].GetString_().GetSval()
		}
		switch name {
		case "now", "statement_timestamp", "transaction_timestamp", "clock_timestamp", "localtimestamp":
			if kind == kindDatetime {
				return "CURRENT_TIMESTAMP" + fsp(typ), true
			}
		case "gen_random_uuid", "uuid_generate_v4":
			return "(UUID())", true
		}
		return "", false
	}
	if sv := expr.GetSqlvalueFunction(); sv != nil {
		switch sv.Op {
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N,
			pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
			if kind == kindDatetime {
				return "CURRENT_TIMESTAMP" + fsp(typ), true
			}
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_DATE:
			if kind == kindDate {
				return "(CURRENT_DATE)", true
			}
		}
		return "", false
	}
	text, ok := constantText(expr)
	if !ok {
		return "", false
	}
	if text == nil {
		return "NULL", true
	}
	_, baseName, _ := c.BaseType()
	v, err := conv.Convert(mirror.Column{Name: c.Name, TypeOID: c.BaseTypeOID(), TypeName: baseName}, mirror.Text(*text))
	if str, isStr := v.(string); err != nil || isStr && strings.ContainsRune(str, '\\') {
		return "", false
	}
	lit := literal(v)
	if kind == kindLOB {
		// MySQL 8 takes defaults of TEXT, BLOB and JSON columns only as
		// expressions; MariaDB takes both.
		lit = "(" + lit + ")"
	}
	return lit, true
}

// constantText returns the text of a constant expression (a literal,
// possibly negated); nil for NULL.
func constantText(n *pg_query.Node) (*string, bool) {
	if e := n.GetAExpr(); e != nil && e.Kind == pg_query.A_Expr_Kind_AEXPR_OP && e.Lexpr == nil && len(e.Name) == 1 &&
		e.Name[0].GetString_().GetSval() == "-" {
		s, ok := constantText(e.Rexpr)
		if !ok || s == nil {
			return nil, false
		}
		neg := "-" + *s
		return &neg, true
	}
	c := n.GetAConst()
	if c == nil {
		return nil, false
	}
	var s string
	switch {
	case c.Isnull:
		return nil, true
	case c.GetIval() != nil:
		s = strconv.FormatInt(int64(c.GetIval().GetIval()), 10)
	case c.GetFval() != nil:
		s = c.GetFval().GetFval()
	case c.GetSval() != nil:
		s = c.GetSval().GetSval()
	case c.GetBoolval() != nil:
		s = strconv.FormatBool(c.GetBoolval().GetBoolval())
	case c.GetBsval() != nil:
		s = c.GetBsval().GetBsval()
	default:
		return nil, false
	}
	return &s, true
}

// fsp returns "(p)" for a DATETIME(p) type, "" for DATETIME.
func fsp(typ string) string {
	if i := strings.IndexByte(typ, '('); i >= 0 {
		return typ[i:]
	}
	return ""
}

// literal renders a converted value as a MySQL literal.
func literal(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return "NULL"
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		return "X'" + hex.EncodeToString(x) + "'"
	case string:
		return quoteString(x)
	}
	return quoteString(fmt.Sprint(v))
}

// quoteString quotes a string literal by doubling its quotes. Strings
// holding a backslash are refused by the callers: whether MySQL reads a
// backslash as an escape depends on the sql_mode (NO_BACKSLASH_ESCAPES) of
// whoever runs the DDL, which is unknown here.
func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
