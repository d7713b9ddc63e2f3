package compare

import (
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MySQL values arrive through go-sql-driver/mysql as sql.RawBytes: the text
// the server sent (text protocol) or the driver's rendering of a binary
// value (prepared statements). Either way integers and decimals are decimal
// text, floats are shortest round-trip text, temporal types are
// "YYYY-MM-DD[ HH:MM:SS[.ffffff]]" — provided the DSN keeps parseTime=false
// (the default), since database/sql cannot store a time.Time in RawBytes.

// mysqlFamily maps a go-sql-driver DatabaseTypeName to a Family, applying
// the old side's family as a hint where MySQL's type alone is ambiguous:
// TINYINT(1)/BIT(1) holding booleans, BINARY(16)/CHAR(36) holding UUIDs.
func mysqlFamily(typeName string, hint Family) Family {
	t := strings.TrimPrefix(strings.ToUpper(typeName), "UNSIGNED ")
	if i := strings.IndexByte(t, '('); i >= 0 {
		t = t[:i]
	}
	switch t {
	case "TINYINT", "BIT":
		if hint == FamilyBool {
			return FamilyBool
		}
		return FamilyInt
	case "SMALLINT", "MEDIUMINT", "INT", "INTEGER", "BIGINT", "YEAR":
		return FamilyInt
	case "DECIMAL", "NUMERIC":
		return FamilyDecimal
	case "FLOAT", "DOUBLE", "REAL":
		return FamilyFloat
	case "CHAR", "VARCHAR", "TEXT", "TINYTEXT", "MEDIUMTEXT", "LONGTEXT", "ENUM", "SET":
		if hint == FamilyUUID {
			return FamilyUUID
		}
		return FamilyText
	case "BINARY", "VARBINARY", "BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB":
		if hint == FamilyUUID {
			return FamilyUUID
		}
		return FamilyBytes
	case "DATE":
		return FamilyDate
	case "DATETIME":
		return FamilyTimestamp
	case "TIMESTAMP":
		// MySQL TIMESTAMP is an instant shown in the session time zone,
		// which the proxy sets to UTC.
		return FamilyTimestampTZ
	case "TIME":
		return FamilyTime
	case "JSON":
		return FamilyJSON
	case "NULL":
		return FamilyNull
	}
	return FamilyOther
}

// MySQLColumn describes a MySQL result column. scale is the column's
// decimals (sql.ColumnType.DecimalSize), the fractional-second digits of
// temporal types; hint is the old side's family for the same position
// (FamilyNull when unknown).
func MySQLColumn(name, typeName string, scale int64, hint Family) Column {
	c := Column{Name: name, Family: mysqlFamily(typeName, hint), TypeName: typeName}
	switch c.Family {
	case FamilyTime, FamilyTimestamp, FamilyTimestampTZ:
		if scale > 0 && scale <= 6 {
			c.Precision = int(scale)
		}
	case FamilyFloat:
		if strings.EqualFold(typeName, "FLOAT") {
			c.Precision = 6
		}
	}
	if strings.EqualFold(typeName, "CHAR") {
		c.PadSpace = true
	}
	return c
}

// MySQLColumnFromType describes a column from database/sql metadata.
func MySQLColumnFromType(ct *sql.ColumnType, hint Family) Column {
	_, scale, _ := ct.DecimalSize()
	return MySQLColumn(ct.Name(), ct.DatabaseTypeName(), scale, hint)
}

// DecodeMySQL decodes one value of a column of the given DatabaseTypeName;
// nil raw is NULL. hint is as for MySQLColumn.
func DecodeMySQL(typeName string, raw []byte, hint Family) (Value, error) {
	return decodeMySQL(mysqlFamily(typeName, hint), typeName, raw)
}

func decodeMySQL(fam Family, typeName string, raw []byte) (Value, error) {
	if raw == nil {
		return Null, nil
	}
	s := string(raw)
	isBit := strings.EqualFold(typeName, "BIT")
	switch fam {
	case FamilyNull:
		return Null, nil
	case FamilyBool, FamilyInt:
		var i int64
		if isBit {
			// BIT(n) arrives as n/8 big-endian bytes.
			if len(raw) > 8 {
				return Value{}, fmt.Errorf("invalid BIT value of %d bytes", len(raw))
			}
			var u uint64
			for _, c := range raw {
				u = u<<8 | uint64(c)
			}
			if u > math.MaxInt64 {
				return Value{Family: FamilyDecimal, Str: strconv.FormatUint(u, 10)}, nil
			}
			i = int64(u)
		} else {
			var err error
			i, err = strconv.ParseInt(s, 10, 64)
			if err != nil {
				// UNSIGNED BIGINT above MaxInt64 is still a number.
				if u, uerr := strconv.ParseUint(s, 10, 64); uerr == nil {
					return Value{Family: FamilyDecimal, Str: strconv.FormatUint(u, 10)}, nil
				}
				return Value{}, fmt.Errorf("invalid integer %q", truncate(s, 40))
			}
		}
		if fam == FamilyBool {
			return BoolValue(i != 0), nil
		}
		return IntValue(i), nil
	case FamilyDecimal:
		return DecimalValue(s)
	case FamilyFloat:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Value{}, fmt.Errorf("invalid float %q", truncate(s, 40))
		}
		return FloatValue(f), nil
	case FamilyText:
		return TextValue(s), nil
	case FamilyBytes:
		return Value{Family: FamilyBytes, Str: s}, nil
	case FamilyUUID:
		if len(raw) == 16 {
			return Value{Family: FamilyUUID, Str: uuidFromBytes(raw)}, nil
		}
		if v, err := UUIDValue(s); err == nil {
			return v, nil
		}
		// Not a UUID after all: keep the text, the comparison will show it.
		return TextValue(s), nil
	case FamilyDate, FamilyTimestamp, FamilyTimestampTZ:
		if strings.HasPrefix(s, "0000-00-00") {
			// MySQL's zero date is no date; keep it visible as text.
			return Value{Family: FamilyOther, Str: s}, nil
		}
		n, err := parseMySQLDateTime(s, fam != FamilyDate)
		return Value{Family: fam, Int: n}, err
	case FamilyTime:
		n, err := parseMySQLTime(s)
		return Value{Family: FamilyTime, Int: n}, err
	case FamilyJSON:
		return JSONValue(raw)
	default:
		return Value{Family: fam, Str: s}, nil
	}
}

// MySQLRowDecoder decodes rows scanned into []sql.RawBytes.
type MySQLRowDecoder struct {
	cols []Column
}

// NewMySQLRowDecoder prepares a decoder for rows.ColumnTypes(). hints holds
// the old side's family per position (may be nil or shorter).
func NewMySQLRowDecoder(types []*sql.ColumnType, hints []Family) *MySQLRowDecoder {
	d := &MySQLRowDecoder{cols: make([]Column, len(types))}
	for i, ct := range types {
		var h Family
		if i < len(hints) {
			h = hints[i]
		}
		d.cols[i] = MySQLColumnFromType(ct, h)
	}
	return d
}

// NewMySQLRowDecoderColumns prepares a decoder for already described
// columns (see MySQLColumn).
func NewMySQLRowDecoderColumns(cols []Column) *MySQLRowDecoder {
	return &MySQLRowDecoder{cols: cols}
}

// Columns returns the Columns of the result (shared; do not modify).
func (d *MySQLRowDecoder) Columns() []Column { return d.cols }

// DecodeRow decodes one row; the bytes are copied, so raw may be reused by
// the next rows.Next.
func (d *MySQLRowDecoder) DecodeRow(raw []sql.RawBytes) ([]Value, error) {
	if len(raw) != len(d.cols) {
		return nil, fmt.Errorf("decode row: %d values for %d columns", len(raw), len(d.cols))
	}
	row := make([]Value, len(raw))
	for i, b := range raw {
		v, err := decodeMySQL(d.cols[i].Family, d.cols[i].TypeName, b)
		if err != nil {
			return nil, fmt.Errorf("decode column %q: %w", d.cols[i].Name, err)
		}
		row[i] = v
	}
	return row, nil
}
