package shadow

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// The fixture: the same rows in Postgres and in MariaDB, with the types a
// migration maps (bool → TINYINT(1), uuid → CHAR(36), bytea → BLOB,
// timestamptz → DATETIME(6) in UTC, jsonb → JSON) and the awkward values
// (NULLs everywhere, trailing spaces, mixed case, ties, non-terminating
// floats, upper-case UUIDs on the MySQL side). MariaDB's text uses the
// NO PAD binary collation, which is what makes its text semantics those of
// Postgres' C collation; the tests of collation differences live in
// compare.

const pgSchema = `
CREATE TABLE items (id int PRIMARY KEY, flag bool, qty int, price numeric(12,2), ratio float8, name text,
  raw bytea, doc jsonb, meta json, uid uuid, day date, at timestamp, atz timestamptz, grp int);
CREATE TABLE tags (item_id int, tag text, PRIMARY KEY (item_id, tag));
`

const mySchema = `
CREATE TABLE items (id int PRIMARY KEY, flag tinyint(1), qty int, price decimal(12,2), ratio double, name text,
  raw blob, doc json, meta json, uid char(36), day date, at datetime(6), atz datetime(6), grp int);
CREATE TABLE tags (item_id int, tag varchar(100), PRIMARY KEY (item_id, tag));
`

const fixtureRows = 40

var names = []string{"alpha", "Alpha", "alpha  ", "beta", "BETA", "gamma ", "", "Ærø"}

// item is one fixture row; nil fields are NULL.
type item struct {
	id, grp                     int
	flag                        *bool
	qty                         *int
	price, name, doc, meta, uid *string
	ratio                       *float64
	raw                         []byte
	day, at, atz                *time.Time
	upperUUID                   bool // stored upper-case on the MySQL side
}

func ptr[T any](v T) *T { return &v }

func fixture() []item {
	base := time.Date(2024, 2, 3, 4, 5, 6, 123456000, time.UTC)
	var items []item
	for i := 1; i <= fixtureRows; i++ {
		it := item{id: i, grp: i % 4, upperUUID: i%3 == 0}
		if i%7 != 0 {
			it.flag = ptr(i%2 == 0)
		}
		if i%5 != 0 {
			it.qty = ptr(i * 7 % 13)
		}
		if i%11 != 0 {
			it.price = ptr(fmt.Sprintf("%d.%02d", i*37%1000, i%100))
		}
		if i%9 != 0 {
			it.ratio = ptr(float64(i) / 7)
		}
		if i%8 != 7 {
			it.name = ptr(names[i%len(names)])
		}
		if i%6 != 0 {
			it.raw = []byte{byte(i), 0, 255, '\'', '\\'}
		}
		if i%10 != 0 {
			it.doc = ptr(fmt.Sprintf(`{"b": %d, "a": [1, 2.50, {"z": null}], "s": "x y"}`, i))
			it.meta = ptr(fmt.Sprintf(`{"k": "v%d", "n": 1.50}`, i))
		}
		if i%12 != 0 {
			it.uid = ptr(fmt.Sprintf("%08x-0000-4000-8000-%012x", i*2654435761%(1<<32), i*1103515245))
		}
		if i%8 != 0 {
			it.day = ptr(base.AddDate(0, 0, i))
		}
		if i%13 != 0 {
			it.at = ptr(base.Add(time.Duration(i) * time.Minute))
			it.atz = ptr(base.Add(time.Duration(i)*time.Hour + time.Duration(i)*time.Microsecond))
		}
		items = append(items, it)
	}
	return items
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// insertSQL renders the fixture as INSERT statements for one engine.
func insertSQL(mysql bool) string {
	lit := func(p *string) string {
		if p == nil {
			return "NULL"
		}
		return quote(*p)
	}
	timeLit := func(t *time.Time, layout string) string {
		if t == nil {
			return "NULL"
		}
		return quote(t.Format(layout))
	}
	var b strings.Builder
	for _, it := range fixture() {
		var vals []string
		vals = append(vals, strconv.Itoa(it.id))
		switch {
		case it.flag == nil:
			vals = append(vals, "NULL")
		case mysql:
			vals = append(vals, map[bool]string{true: "1", false: "0"}[*it.flag])
		default:
			vals = append(vals, strconv.FormatBool(*it.flag))
		}
		if it.qty == nil {
			vals = append(vals, "NULL")
		} else {
			vals = append(vals, strconv.Itoa(*it.qty))
		}
		vals = append(vals, lit(it.price))
		if it.ratio == nil {
			vals = append(vals, "NULL")
		} else {
			vals = append(vals, strconv.FormatFloat(*it.ratio, 'g', -1, 64))
		}
		vals = append(vals, lit(it.name))
		switch {
		case it.raw == nil:
			vals = append(vals, "NULL")
		case mysql:
			vals = append(vals, "X'"+hex.EncodeToString(it.raw)+"'")
		default:
			vals = append(vals, `'\x`+hex.EncodeToString(it.raw)+"'")
		}
		vals = append(vals, lit(it.doc), lit(it.meta))
		if it.uid != nil && mysql && it.upperUUID {
			vals = append(vals, quote(strings.ToUpper(*it.uid)))
		} else {
			vals = append(vals, lit(it.uid))
		}
		vals = append(vals, timeLit(it.day, "2006-01-02"), timeLit(it.at, "2006-01-02 15:04:05.999999"))
		if mysql {
			vals = append(vals, timeLit(it.atz, "2006-01-02 15:04:05.999999"))
		} else {
			// A non-UTC offset: the instant is what must compare.
			var s *string
			if it.atz != nil {
				s = ptr(it.atz.In(time.FixedZone("", 2*3600)).Format("2006-01-02 15:04:05.999999-07:00"))
			}
			vals = append(vals, lit(s))
		}
		vals = append(vals, strconv.Itoa(it.grp))
		fmt.Fprintf(&b, "INSERT INTO items VALUES (%s);\n", strings.Join(vals, ", "))
		if it.id%3 != 0 {
			fmt.Fprintf(&b, "INSERT INTO tags VALUES (%d, 't%d'), (%d, 'x');\n", it.id, it.id%4, it.id)
		}
	}
	return b.String()
}

// loadFixture creates and fills the fixture tables.
func loadPGFixture(t *testing.T, url string) { pgExec(t, url, pgSchema+insertSQL(false)) }
func loadMyFixture(t *testing.T, url string) { myExec(t, url, mySchema+insertSQL(true)) }

var (
	sampleUUID  = fixture()[0].uid
	paramTime   = time.Date(2024, 2, 3, 10, 0, 0, 0, time.UTC)
	paramDay    = time.Date(2024, 2, 28, 0, 0, 0, 0, time.UTC)
	paramNumber = func() pgtype.Numeric {
		var n pgtype.Numeric
		if err := n.Scan("100.5"); err != nil {
			panic(err)
		}
		return n
	}()
)

func uuidBytes(s string) [16]byte {
	var u [16]byte
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil {
		panic(err)
	}
	copy(u[:], b)
	return u
}

// fixtureQueries are reads of every shape over the fixture that both
// engines answer the same, with parameters in text and in binary and
// results in text and in binary.
func fixtureQueries() []query {
	uid := uuidBytes(*sampleUUID)
	typed := []param{
		{oid: pgtype.TimestamptzOID, v: paramTime}, {oid: pgtype.UUIDOID, v: uid}, {oid: pgtype.NumericOID, v: paramNumber},
		{oid: pgtype.DateOID, v: paramDay}, {oid: pgtype.BoolOID, v: true},
	}
	var qs []query
	for _, bin := range []bool{false, true} {
		qs = append(qs,
			query{sql: "SELECT * FROM items", binaryResult: bin},
			query{sql: "SELECT id, name FROM items ORDER BY grp, id", binaryResult: bin},
			query{sql: "SELECT grp, name, flag FROM items ORDER BY grp", binaryResult: bin},
			query{sql: "SELECT id, qty FROM items ORDER BY qty", binaryResult: bin},
			query{sql: "SELECT id, qty, ratio FROM items ORDER BY qty DESC, ratio", binaryResult: bin},
			query{sql: "SELECT count(*), sum(qty), sum(price), min(at), max(atz), max(name), min(day) FROM items", binaryResult: bin},
			query{sql: "SELECT grp, count(*) AS n, sum(price) AS total FROM items GROUP BY grp", binaryResult: bin},
			query{sql: "SELECT name, count(*) FROM items GROUP BY name ORDER BY name", binaryResult: bin},
			query{sql: "SELECT i.id, t.tag, i.raw FROM items i JOIN tags t ON t.item_id = i.id WHERE i.grp = $1 ORDER BY i.id, t.tag",
				params: []param{{oid: pgtype.Int4OID, v: int32(2)}}, binaryParams: bin, binaryResult: bin},
			query{sql: "SELECT id, name FROM items ORDER BY id LIMIT 5", binaryResult: bin},
			query{sql: "SELECT id FROM items LIMIT 3", binaryResult: bin},
			query{sql: "SELECT id, price, atz, uid, raw FROM items WHERE atz >= $1 AND uid <> $2 AND price > $3 AND day <= $4 AND flag = $5",
				params: typed, binaryParams: bin, binaryResult: bin},
			query{sql: "SELECT id, doc, meta FROM public.items WHERE qty = $1 OR id = $2",
				params: []param{{oid: pgtype.Int4OID, v: nil}, {oid: pgtype.Int4OID, v: int32(4)}}, binaryParams: bin, binaryResult: bin},
			query{sql: "SELECT id, name FROM items WHERE name = $1 ORDER BY id",
				params: []param{{oid: pgtype.TextOID, v: "alpha  "}}, binaryParams: bin, binaryResult: bin},
			query{sql: "SELECT id, uid, day, at FROM items WHERE id > 100", binaryResult: bin},
		)
	}
	return qs
}
