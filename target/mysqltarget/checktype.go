package mysqltarget

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// myType is what a MySQL column type can hold, as far as CheckSchema
// compares: its family and capacity.
type myType struct {
	family   string // see familyOf
	bytes    int    // integers: storage bytes
	unsigned bool
	length   int64 // characters (char family) or bytes (binary family)
	prec     int   // decimal precision, bit width
	scale    int   // decimal scale
	fsp      int   // fractional seconds digits
	labels   []string
}

// familyOf groups MySQL's DATA_TYPE names.
var familyOf = map[string]string{
	"tinyint": "int", "smallint": "int", "mediumint": "int", "int": "int", "integer": "int", "bigint": "int",
	"decimal": "decimal", "numeric": "decimal", "float": "float", "double": "double", "real": "double",
	"char": "char", "varchar": "char", "tinytext": "char", "text": "char", "mediumtext": "char", "longtext": "char",
	"binary": "binary", "varbinary": "binary", "tinyblob": "binary", "blob": "binary", "mediumblob": "binary", "longblob": "binary",
	"date": "date", "datetime": "datetime", "timestamp": "timestamp", "time": "time", "year": "year",
	"json": "json", "enum": "enum", "set": "set", "bit": "bit",
}

var intBytes = map[string]int{"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "integer": 4, "bigint": 8}

// lobLength is the capacity of the text and blob types without a length.
var lobLength = map[string]int64{
	"tinytext": 255, "text": 65535, "mediumtext": 16777215, "longtext": 4294967295,
	"tinyblob": 255, "blob": 65535, "mediumblob": 16777215, "longblob": 4294967295,
}

var typeRe = regexp.MustCompile(`^(?i)\s*([a-z]+)\s*(?:\((.*)\))?\s*(unsigned)?`)

// parseMySQLType reads a column type as CreateTableSQL writes it (or as
// information_schema's COLUMN_TYPE shows it), e.g. "DECIMAL(12,4)",
// "INT UNSIGNED", "ENUM('a','b')", "LONGTEXT COLLATE utf8mb4_general_ci".
func parseMySQLType(s string) (myType, bool) {
	m := typeRe.FindStringSubmatch(s)
	if m == nil {
		return myType{}, false
	}
	name := strings.ToLower(m[1])
	t := myType{family: familyOf[name], bytes: intBytes[name], unsigned: m[3] != "", length: lobLength[name]}
	if t.family == "" {
		return myType{}, false
	}
	var args []int
	if t.family == "enum" || t.family == "set" {
		t.labels = parseLabels(m[2])
	} else if m[2] != "" {
		for _, a := range strings.Split(m[2], ",") {
			n, err := strconv.Atoi(strings.TrimSpace(a))
			if err != nil {
				return myType{}, false
			}
			args = append(args, n)
		}
	}
	arg := func(i, def int) int {
		if i < len(args) {
			return args[i]
		}
		return def
	}
	switch t.family {
	case "char", "binary":
		if t.length == 0 {
			t.length = int64(arg(0, 1)) // CHAR and BINARY default to 1
		}
	case "decimal":
		t.prec, t.scale = arg(0, 10), arg(1, 0)
	case "datetime", "timestamp", "time":
		t.fsp = arg(0, 0)
	case "bit":
		t.prec = arg(0, 1)
	}
	return t, true
}

// parseLabels splits an ENUM's quoted labels: 'a','b”c'.
func parseLabels(s string) []string {
	var out []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' && in && i+1 < len(s) && s[i+1] == '\'':
			cur.WriteByte('\'')
			i++
		case c == '\'' && in:
			out = append(out, cur.String())
			cur.Reset()
			in = false
		case c == '\'':
			in = true
		case in:
			cur.WriteByte(c)
		}
	}
	return out
}

// intDigits is how many decimal digits the integers of a type may have.
func intDigits(t myType) int {
	return map[int]int{1: 3, 2: 5, 3: 8, 4: 10, 8: 20}[t.bytes]
}

// narrower says how the actual column may refuse or change values the
// column CreateTableSQL would make (want) holds, or "" when it holds them.
func narrower(want, got myType) string {
	switch want.family {
	case "int":
		switch got.family {
		case "int":
			if got.bytes < want.bytes || (got.unsigned && !want.unsigned) || (!got.unsigned && want.unsigned && got.bytes <= want.bytes) {
				return "a narrower integer: values out of its range are refused"
			}
			return ""
		case "decimal":
			if got.prec-got.scale >= intDigits(want) {
				return ""
			}
		case "char":
			if want.bytes == 1 { // a boolean: 0 or 1 in a text column
				return ""
			}
			if got.length >= int64(intDigits(want)) {
				return ""
			}
		case "bit":
			if want.bytes == 1 {
				return ""
			}
		}
	case "decimal":
		if got.family == "decimal" {
			if got.prec-got.scale < want.prec-want.scale {
				return fmt.Sprintf("fewer integer digits (%d, here %d): larger values are refused", want.prec-want.scale, got.prec-got.scale)
			}
			if got.scale < want.scale {
				return fmt.Sprintf("fewer decimal places (%d, here %d): values are rounded", want.scale, got.scale)
			}
			return ""
		}
		if got.family == "char" && got.length >= int64(want.prec+2) {
			return ""
		}
	case "float":
		if got.family == "float" || got.family == "double" {
			return ""
		}
	case "double":
		if got.family == "double" {
			return ""
		}
		if got.family == "float" {
			return "single precision: values are rounded"
		}
	case "char", "json":
		switch {
		case got.family == "char" && got.length < want.length:
			return fmt.Sprintf("at most %d characters (%s): longer values are refused", got.length, oldLimit(want.length))
		case got.family == "char":
			return ""
		case got.family == "json" && want.family == "json":
			return ""
		}
	case "binary":
		if got.family == "binary" {
			if got.length < want.length {
				return fmt.Sprintf("at most %d bytes (%s): longer values are refused", got.length, oldLimit(want.length))
			}
			return ""
		}
	case "date":
		if got.family == "date" || got.family == "datetime" {
			return ""
		}
	case "datetime", "time":
		if got.family == "timestamp" && want.family == "datetime" {
			return "TIMESTAMP holds 1970 to 2038 only, and converts by the session's time zone"
		}
		if got.family == want.family {
			if got.fsp < want.fsp {
				return fmt.Sprintf("%d fractional digits of seconds (the old column has %d): values are rounded", got.fsp, want.fsp)
			}
			return ""
		}
	case "enum":
		switch got.family {
		case "enum":
			for _, l := range want.labels {
				if !slices.Contains(got.labels, l) {
					return fmt.Sprintf("no label %q: rows with it are refused", l)
				}
			}
			return ""
		case "char":
			return ""
		}
	case "bit":
		if got.family == "bit" && got.prec >= want.prec {
			return ""
		}
	}
	return fmt.Sprintf("a %s column for values the old database keeps as %s", got.family, want.family)
}

// oldLimit describes the length the old column allows.
func oldLimit(n int64) string {
	if n >= lobLength["longtext"] {
		return "the old column has no such limit"
	}
	return fmt.Sprintf("the old column takes %d", n)
}
