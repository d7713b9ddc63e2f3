package mysqltarget

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pingcap/tidb/pkg/parser"
	_ "github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/schema"
)

// mustParseMySQL checks that sql is valid MySQL with the TiDB parser.
func mustParseMySQL(t testing.TB, sql string) {
	t.Helper()
	if _, _, err := parser.New().Parse(sql, "", ""); err != nil {
		t.Errorf("emitted SQL does not parse: %v\n%s", err, sql)
	}
}

func col(name string, oid uint32) mirror.Column { return mirror.Column{Name: name, TypeOID: oid} }

func TestConvert(t *testing.T) {
	// A catalog for the user types: an enum, a domain over int, a domain
	// over an array of the enum.
	mood := &schema.Type{OID: 70000, Name: "mood", Kind: schema.KindEnum, Labels: []string{"sad", "ok"}}
	moodArr := &schema.Type{OID: 70001, Name: "mood[]", Kind: schema.KindArray, Elem: mood}
	int4 := &schema.Type{OID: 23, Name: "integer", Kind: schema.KindBase}
	posint := &schema.Type{OID: 70002, Name: "posint", Kind: schema.KindDomain, Base: int4, BaseName: "integer"}
	boolT := &schema.Type{OID: 16, Name: "boolean", Kind: schema.KindBase}
	flag := &schema.Type{OID: 70003, Name: "flag", Kind: schema.KindDomain, Base: boolT, BaseName: "boolean"}
	flags := &schema.Type{OID: 70004, Name: "flag[]", Kind: schema.KindArray, Elem: flag}
	moods := &schema.Type{OID: 70005, Name: "moods", Kind: schema.KindDomain, Base: moodArr, BaseName: "mood[]"}
	cat := &schema.Catalog{Types: map[uint32]*schema.Type{}}
	for _, ty := range []*schema.Type{mood, moodArr, int4, posint, boolT, flag, flags, moods} {
		cat.Types[ty.OID] = ty
	}
	conv := NewConverter(cat)

	tests := []struct {
		name string
		col  mirror.Column
		in   string
		want any // nil with reject set means an error is expected
	}{
		{"bool t", col("b", 16), "t", int64(1)},
		{"bool f", col("b", 16), "f", int64(0)},
		{"int2", col("i", 21), "-32768", int64(-32768)},
		{"int8 min", col("i", 20), "-9223372036854775808", int64(-9223372036854775808)},
		{"oid", col("o", 26), "4000000000", uint64(4000000000)},
		{"numeric", col("n", 1700), "-123456789012345678901234567890.123456789", "-123456789012345678901234567890.123456789"},
		{"float8", col("f", 701), "1e+308", 1e308},
		{"float4", col("f", 700), "-3.4e+38", -3.4e38},
		{"text", col("t", 25), `it's \ "q"`, `it's \ "q"`},
		{"bytea hex", col("b", 17), `\x00ff10`, []byte{0, 0xff, 0x10}},
		{"bytea empty", col("b", 17), `\x`, []byte{}},
		{"bytea escape", col("b", 17), `a\\b\000\377`, []byte{'a', '\\', 'b', 0, 0xff}},
		{"uuid", col("u", 2950), "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"json", col("j", 114), `{"a": [1]}`, `{"a": [1]}`},
		{"date", col("d", 1082), "2024-02-29", "2024-02-29"},
		{"timestamp", col("ts", 1114), "2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.123456"},
		{"timestamp no fraction", col("ts", 1114), "1999-12-31 23:59:59", "1999-12-31 23:59:59"},
		{"timestamptz offset", col("ts", 1184), "2024-07-01 12:00:00.5+02", "2024-07-01 10:00:00.5"},
		{"timestamptz half hour", col("ts", 1184), "2024-01-01 00:00:00+05:30", "2023-12-31 18:30:00"},
		{"timestamptz seconds offset", col("ts", 1184), "1900-01-01 00:00:00+00:09:21", "1899-12-31 23:50:39"},
		{"time", col("tm", 1083), "23:59:59.999999", "23:59:59.999999"},
		{"timetz", col("tt", 1266), "10:00:00+02", "08:00:00"},
		{"timetz wraps", col("tt", 1266), "23:30:00.25-05:30", "05:00:00.25"},
		{"interval", col("iv", 1186), "1 year 2 mons", "1 year 2 mons"},
		{"bit", col("b", 1560), "10100101", uint64(165)},
		{"varbit", col("b", 1562), "101", "101"},
		{"inet", col("ip", 869), "192.168.0.1/24", "192.168.0.1/24"},
		{"unknown oid", col("x", 99999), "anything", "anything"},
		{"no oid", col("x", 0), "t", "t"},
		{"int array", col("a", 1007), "{1,2,NULL}", "[1,2,null]"},
		{"text array", col("a", 1009), `{"a b","c\"d",NULL,"NULL","","<&>"}`, `["a b","c\"d",null,"NULL","","<&>"]`},
		{"2-d array", col("a", 1007), "{{1,2},{3,4}}", "[[1,2],[3,4]]"},
		{"2-d with nulls", col("a", 1007), "{{NULL,2},{3,NULL}}", "[[null,2],[3,null]]"},
		{"empty array", col("a", 1007), "{}", "[]"},
		{"lower bound", col("a", 1007), "[0:1]={7,8}", "[7,8]"},
		{"bool array", col("a", 1000), "{t,f}", "[true,false]"},
		{"numeric array", col("a", 1231), "{1.50,-2}", "[1.50,-2]"},
		{"tstz array", col("a", 1185), `{"2024-01-01 00:00:00+05:30"}`, `["2023-12-31 18:30:00"]`},
		{"jsonb array", col("a", 3807), `{"{\"a\": 1}",null}`, `[{"a":1},null]`},
		{"bytea array", col("a", 1001), `{"\\x0102"}`, `["\\x0102"]`},
		{"enum array via catalog", col("a", 70001), "{sad,ok}", `["sad","ok"]`},
		{"domain array via catalog", col("a", 70004), "{t,f}", "[true,false]"},
		{"domain over array", col("a", 70005), "{ok}", `["ok"]`},
		{"user array by name", mirror.Column{Name: "a", TypeOID: 80000, TypeName: "other[]"}, "{x,y}", `["x","y"]`},
		{"user array by _name", mirror.Column{Name: "a", TypeOID: 80000, TypeName: "_other"}, "{x}", `["x"]`},
		{"enum", col("e", 70000), "ok", "ok"},
		{"domain over bool", col("f", 70003), "t", int64(1)},
		{"domain over int", col("p", 70002), "7", int64(7)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := conv.Convert(tc.col, mirror.Text(tc.in))
			if err != nil {
				t.Fatalf("Convert(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Convert(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
	if v, err := conv.Convert(col("x", 23), mirror.Null); v != nil || err != nil {
		t.Errorf("NULL = %v, %v", v, err)
	}

	rejects := []struct {
		name string
		col  mirror.Column
		in   string
	}{
		{"numeric NaN", col("n", 1700), "NaN"},
		{"numeric infinity", col("n", 1700), "-Infinity"},
		{"float NaN", col("f", 701), "NaN"},
		{"float infinity", col("f", 700), "Infinity"},
		{"date infinity", col("d", 1082), "infinity"},
		{"date BC", col("d", 1082), "0044-03-15 BC"},
		{"timestamp infinity", col("ts", 1114), "-infinity"},
		{"timestamptz infinity", col("ts", 1184), "infinity"},
		{"year 10000", col("d", 1082), "10000-01-01"},
		{"bad int", col("i", 23), "12x"},
		{"bad bool", col("b", 16), "maybe"},
		{"bad bytea", col("b", 17), `\xZZ`},
		{"bad bytea escape", col("b", 17), `a\9`},
		{"NaN in array", col("a", 1022), "{1,NaN}"},
		{"bad array", col("a", 1007), "{1,2"},
		{"bad timetz", col("tt", 1266), "10:00:00"},
	}
	for _, tc := range rejects {
		t.Run(tc.name, func(t *testing.T) {
			v, err := conv.Convert(tc.col, mirror.Text(tc.in))
			if !errors.Is(err, ErrNotRepresentable) {
				t.Errorf("Convert(%q) = %#v, %v; want ErrNotRepresentable", tc.in, v, err)
			}
		})
	}
}

func TestParseURL(t *testing.T) {
	cfg, err := ParseURL("mysql://app:p%40ss%2Fw:rd@db.example:3307/shop?tls=skip-verify&loc=America%2FNew_York&autocommit=1&interpolateParams=false")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "app" || cfg.Passwd != "p@ss/w:rd" || cfg.Addr != "db.example:3307" || cfg.DBName != "shop" || cfg.Net != "tcp" {
		t.Errorf("connection fields: %+v", cfg)
	}
	if cfg.TLS == nil || !cfg.TLS.InsecureSkipVerify {
		t.Error("tls parameter lost")
	}
	if cfg.Loc.String() != "America/New_York" || cfg.InterpolateParams {
		t.Errorf("URL parameters must win over the defaults: loc %v interpolate %v", cfg.Loc, cfg.InterpolateParams)
	}
	if !cfg.ParseTime || !cfg.ClientFoundRows || !cfg.MultiStatements || cfg.Timeout != 10*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.Params["autocommit"] != "1" || cfg.Params["sql_mode"] != "'"+SQLMode+"'" || cfg.Params["time_zone"] != "'+00:00'" {
		t.Errorf("session params: %v", cfg.Params)
	}

	if cfg, err := ParseURL("mysql://root@h/x?multiStatements=false"); err != nil || cfg.MultiStatements {
		t.Errorf("multiStatements=false must be kept: %v", err)
	}
	cfg, err = ParseURL("mysql://root@[::1]/x?sql_mode=%27ANSI%27")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "[::1]:3306" || cfg.Params["sql_mode"] != "'ANSI'" || cfg.Loc != time.UTC || !cfg.InterpolateParams {
		t.Errorf("defaults with IPv6: %+v %v", cfg, cfg.Params)
	}
	// The configuration must produce a DSN the driver takes back.
	if _, err := mysql.ParseDSN(cfg.FormatDSN()); err != nil {
		t.Errorf("FormatDSN round trip: %v", err)
	}

	for _, bad := range []string{"postgres://h/db", "mysql:///db", "mysql://h/db?tls=bogus", "::"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) must fail", bad)
		}
	}
}

func TestQuoteTable(t *testing.T) {
	for in, want := range map[string]string{
		"public.users":   "`users`",
		"sales.orders":   "`sales`.`orders`",
		"users":          "`users`",
		"public.we`ird":  "`we``ird`",
		`"My S"."T.x"`:   "`My S`.`T.x`",
		"public.MixedUp": "`MixedUp`",
	} {
		if got := QuoteTable(in); got != want {
			t.Errorf("QuoteTable(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestBuildStatements(t *testing.T) {
	conv := NewConverter(&schema.Catalog{Tables: map[string]*schema.Table{
		"public.acct": {Schema: "public", Name: "acct", Columns: []*schema.Column{
			{Name: "id", TypeOID: 1700, TypeName: "numeric"}, {Name: "ok", TypeOID: 16, TypeName: "boolean"}}},
	}})
	cols := []mirror.Column{col("sku", 25), col("n", 23), col("qty", 23)}
	up := func(sku string, n int) mirror.Change {
		return mirror.Change{Op: mirror.OpUpsert, Table: "public.items", Columns: cols, KeyCols: []string{"sku", "n"},
			Row: []mirror.Value{mirror.Text(sku), mirror.Text(fmt.Sprint(n)), mirror.Text("1")}}
	}
	del := func(sku string, n int) mirror.Change {
		return mirror.Change{Op: mirror.OpDelete, Table: "public.items", Columns: cols[:2], KeyCols: []string{"sku", "n"},
			Key: []mirror.Value{mirror.Text(sku), mirror.Text(fmt.Sprint(n))}}
	}
	changes := []mirror.Change{
		up("a", 1), up("a", 2), up("a", 1), // one statement, order kept
		del("a", 1), del("b", 2),
		{Op: mirror.OpDelete, Table: "public.acct", KeyCols: []string{"id"}, Key: []mirror.Value{mirror.Text("1.10")}},
		{Op: mirror.OpDelete, Table: "public.acct", KeyCols: []string{"id"}, Key: []mirror.Value{mirror.Text("2")}},
		{Op: mirror.OpStatement, Table: "public.log", SQL: "INSERT INTO `log` (`msg`, `ok`) VALUES (?, ?)",
			Columns: []mirror.Column{col("msg", 25), col("ok", 16)}, Args: []mirror.Value{mirror.Text("x"), mirror.Text("t")}},
		{Op: mirror.OpUpsert, Table: "sales.k", Columns: []mirror.Column{col("id", 23)}, KeyCols: []string{"id"}, Row: []mirror.Value{mirror.Text("5")}},
		{Op: mirror.OpUpsert, Table: "public.nokeys", Columns: []mirror.Column{col("a", 23), col("b", 23)}, Row: []mirror.Value{mirror.Text("5"), mirror.Null}},
		up("c", 3), up("c", 4), up("c", 5), // split by the row limit
	}
	b := &builder{conv: conv, lim: limits{rows: 2, bytes: 1 << 20}}
	stmts, err := b.build(changes)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		sql         string
		args        []any
		first, last int
	}{
		{"INSERT INTO `items` (`sku`, `n`, `qty`) VALUES (?, ?, ?), (?, ?, ?) ON DUPLICATE KEY UPDATE `sku` = IF(CAST(`sku` AS BINARY) <=> CAST(VALUES(`sku`) AS BINARY) AND CAST(`n` AS BINARY) <=> CAST(VALUES(`n`) AS BINARY), `sku`, EXP(1000 + (`sku` IS NULL))), `qty` = VALUES(`qty`)",
			[]any{"a", int64(1), int64(1), "a", int64(2), int64(1)}, 0, 1},
		{"INSERT INTO `items` (`sku`, `n`, `qty`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE `sku` = IF(CAST(`sku` AS BINARY) <=> CAST(VALUES(`sku`) AS BINARY) AND CAST(`n` AS BINARY) <=> CAST(VALUES(`n`) AS BINARY), `sku`, EXP(1000 + (`sku` IS NULL))), `qty` = VALUES(`qty`)",
			[]any{"a", int64(1), int64(1)}, 2, 2},
		{"DELETE FROM `items` WHERE (`sku` = ? AND CAST(`sku` AS BINARY) = CAST(? AS BINARY) AND `n` = ?) OR (`sku` = ? AND CAST(`sku` AS BINARY) = CAST(? AS BINARY) AND `n` = ?)",
			[]any{"a", "a", int64(1), "b", "b", int64(2)}, 3, 4},
		{"DELETE FROM `acct` WHERE `id` IN (CAST(? AS DECIMAL(65,30)), CAST(? AS DECIMAL(65,30)))",
			[]any{"1.10", "2"}, 5, 6},
		{"INSERT INTO `log` (`msg`, `ok`) VALUES (?, ?)", []any{"x", int64(1)}, 7, 7},
		{"INSERT INTO `sales`.`k` (`id`) VALUES (?) ON DUPLICATE KEY UPDATE `id` = IF(CAST(`id` AS BINARY) <=> CAST(VALUES(`id`) AS BINARY), `id`, EXP(1000 + (`id` IS NULL)))", []any{int64(5)}, 8, 8},
		{"INSERT INTO `nokeys` (`a`, `b`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `a` = VALUES(`a`), `b` = VALUES(`b`)",
			[]any{int64(5), nil}, 9, 9},
		{"INSERT INTO `items` (`sku`, `n`, `qty`) VALUES (?, ?, ?), (?, ?, ?) ON DUPLICATE KEY UPDATE `sku` = IF(CAST(`sku` AS BINARY) <=> CAST(VALUES(`sku`) AS BINARY) AND CAST(`n` AS BINARY) <=> CAST(VALUES(`n`) AS BINARY), `sku`, EXP(1000 + (`sku` IS NULL))), `qty` = VALUES(`qty`)",
			[]any{"c", int64(3), int64(1), "c", int64(4), int64(1)}, 10, 11},
		{"INSERT INTO `items` (`sku`, `n`, `qty`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE `sku` = IF(CAST(`sku` AS BINARY) <=> CAST(VALUES(`sku`) AS BINARY) AND CAST(`n` AS BINARY) <=> CAST(VALUES(`n`) AS BINARY), `sku`, EXP(1000 + (`sku` IS NULL))), `qty` = VALUES(`qty`)",
			[]any{"c", int64(5), int64(1)}, 12, 12},
	}
	if len(stmts) != len(want) {
		for _, s := range stmts {
			t.Logf("%d-%d %s", s.first, s.last, s.sql)
		}
		t.Fatalf("%d statements, want %d", len(stmts), len(want))
	}
	for i, w := range want {
		s := stmts[i]
		if s.sql != w.sql || !reflect.DeepEqual(s.args, w.args) || s.first != w.first || s.last != w.last {
			t.Errorf("statement %d:\n got %d-%d %s %#v\nwant %d-%d %s %#v", i, s.first, s.last, s.sql, s.args, w.first, w.last, w.sql, w.args)
		}
		mustParseMySQL(t, s.sql)
	}

	// The byte limit splits groups too, but never leaves a row alone
	// in no statement.
	b = &builder{conv: conv, lim: limits{rows: 100, bytes: 3}}
	stmts, err = b.build([]mirror.Change{up("aaaa", 1), up("b", 2)})
	if err != nil || len(stmts) != 2 {
		t.Errorf("byte limit: %d statements, %v", len(stmts), err)
	}

	bad := []mirror.Change{
		{Op: mirror.OpUpsert, Table: "public.t", Columns: cols, Row: []mirror.Value{mirror.Text("a")}},
		{Op: mirror.OpDelete, Table: "public.t", Key: []mirror.Value{mirror.Text("a")}},
		{Op: mirror.OpDelete, Table: "public.t", KeyCols: []string{"k"}, Key: []mirror.Value{mirror.Null}},
		{Op: mirror.OpStatement, Table: "public.t"},
		{Op: mirror.OpUpsert, Table: "public.t", Columns: []mirror.Column{col("f", 701)}, Row: []mirror.Value{mirror.Text("NaN")}},
		{Op: 0, Table: "public.t"},
	}
	for _, c := range bad {
		b := &builder{conv: conv, lim: limits{rows: 10, bytes: 1 << 20}}
		_, err := b.build([]mirror.Change{up("ok", 1), c})
		var rej *mirror.RejectError
		if !errors.As(err, &rej) || rej.ChangeIndex != 1 || rej.SQLState != "" {
			t.Errorf("build(%+v) = %v, want a RejectError for change 1", c, err)
		}
	}
}

func TestClassify(t *testing.T) {
	mk := func(n uint16, state string) error {
		e := &mysql.MySQLError{Number: n, Message: "m"}
		copy(e.SQLState[:], state)
		return fmt.Errorf("wrapped: %w", e)
	}
	tests := []struct {
		err    error
		reject bool
		state  string
	}{
		{mk(1062, "23000"), true, "23000"},
		{mk(1452, "23000"), true, "23000"},
		{mk(1146, "42S02"), true, "42S02"},
		{mk(1364, "HY000"), true, "HY000"},
		{mk(3140, "22032"), true, "22032"},
		{mk(9999, "22007"), true, "22007"}, // unlisted, by SQLSTATE class
		{mk(1203, "42000"), false, ""},     // too many user connections: class 42 but transient
		{mk(1213, "40001"), false, ""},
		{mk(1205, "HY000"), false, ""},
		{mk(1040, "08004"), false, ""},
		{mk(9999, "HY000"), false, ""},
		{mysql.ErrInvalidConn, false, ""},
		{errors.New("dial tcp: connection refused"), false, ""},
		{fmt.Errorf("x: %w", mysql.ErrPktTooLarge), true, ""},
		{nil, false, ""},
	}
	for _, tc := range tests {
		rej, ok := classify(tc.err)
		if ok != tc.reject || ok && rej.SQLState != tc.state {
			t.Errorf("classify(%v) = %v %v, want reject=%v state %q", tc.err, rej, ok, tc.reject, tc.state)
		}
	}
}

func TestCreateTableSQL(t *testing.T) {
	mood := &schema.Type{OID: 70000, Name: "mood", Kind: schema.KindEnum, Labels: []string{"sad", "it's ok"}}
	arr := &schema.Type{OID: 1007, Name: "integer[]", Kind: schema.KindArray}
	typ := func(oid uint32, name string) *schema.Type {
		return &schema.Type{OID: oid, Name: name, Kind: schema.KindBase}
	}
	c := func(name string, oid uint32, typeName string, typmod int32, mods ...func(*schema.Column)) *schema.Column {
		col := &schema.Column{Name: name, TypeOID: oid, TypeName: typeName, Typmod: typmod, Type: typ(oid, typeName)}
		for _, m := range mods {
			m(col)
		}
		return col
	}
	def := func(d string) func(*schema.Column) { return func(c *schema.Column) { c.Default = d } }
	notNull := func(c *schema.Column) { c.NotNull = true }
	tbl := &schema.Table{Schema: "public", Name: "every", PrimaryKey: []string{"id", "code"},
		Unique:   []schema.UniqueKey{{Name: "every_email_key", Columns: []string{"email"}}},
		Triggers: []schema.Trigger{{Name: "touch", Timing: "BEFORE", Events: []string{"UPDATE"}, Function: "public.touch"}},
		Columns: []*schema.Column{
			c("id", 20, "bigint", -1, def("nextval('every_id_seq'::regclass)"), func(c *schema.Column) { c.Sequence = "public.every_id_seq" }),
			c("code", 25, "text", -1),
			c("email", 1043, "character varying(320)", 324, notNull),
			c("flag", 16, "boolean", -1, def("true")),
			c("amount", 1700, "numeric(10,2)", (10<<16|2)+4, def("'-1.50'::numeric")),
			c("big", 1700, "numeric", -1),
			c("note", 25, "text", -1, def("'it''s'::text")),
			c("bs", 25, "text", -1, def(`'a\b'::text`)),
			c("created", 1184, "timestamp with time zone", -1, notNull, def("now()")),
			c("at3", 1114, "timestamp(3) without time zone", 3, def("CURRENT_TIMESTAMP")),
			c("fixed", 1184, "timestamp with time zone", -1, def("'2020-01-01 00:00:00+02'::timestamp with time zone")),
			c("day", 1082, "date", -1, def("CURRENT_DATE")),
			c("uid", 2950, "uuid", -1, def("gen_random_uuid()")),
			c("data", 3802, "jsonb", -1, def("'{}'::jsonb")),
			c("tags", 1007, "integer[]", -1, def("'{}'::integer[]"), func(c *schema.Column) { c.Type = arr }),
			c("mood", 70000, "mood", -1, def("'sad'::mood"), func(c *schema.Column) { c.Type = mood }),
			c("raw", 17, "bytea", -1, def(`'\x00ff'::bytea`)),
			c("ch", 1042, "character(3)", 7),
			c("tm", 1266, "time(2) with time zone", 2),
			c("bits", 1560, "bit(8)", 8),
			c("ip", 869, "inet", -1),
			c("odd", 600, "point", -1, def("random()")),
			c("neg", 23, "integer", -1, def("'-5'::integer")),
			c("gen", 23, "integer", -1, func(c *schema.Column) { c.Generated, c.GenerationExpr = true, "(neg * 2)" }),
			c("nul", 23, "integer", -1, def("NULL::integer")),
			c("second_serial", 23, "integer", -1, func(c *schema.Column) { c.Identity = schema.IdentityAlways }),
		}}
	ddl, err := CreateTableSQL(tbl)
	if err != nil {
		t.Fatal(err)
	}
	mustParseMySQL(t, ddl)
	for _, want := range []string{
		"`id` BIGINT NOT NULL AUTO_INCREMENT,",
		"`code` VARCHAR(255) NOT NULL,",
		"`email` VARCHAR(320) NOT NULL,",
		"`flag` TINYINT(1) DEFAULT 1,",
		"`amount` DECIMAL(10,2) DEFAULT '-1.50',",
		"`big` DECIMAL(65,30),",
		"`note` LONGTEXT DEFAULT ('it''s'),",
		"`bs` LONGTEXT,",
		"`created` DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),",
		"`at3` DATETIME(3) DEFAULT CURRENT_TIMESTAMP(3),",
		"`fixed` DATETIME(6) DEFAULT '2019-12-31 22:00:00',",
		"`day` DATE DEFAULT (CURRENT_DATE),",
		"`uid` CHAR(36) DEFAULT (UUID()),",
		"`data` JSON DEFAULT ('{}'),",
		"`tags` JSON DEFAULT ('[]'),",
		"`mood` ENUM('sad', 'it''s ok') DEFAULT 'sad',",
		"`raw` LONGBLOB DEFAULT (X'00ff'),",
		"`ch` CHAR(3),",
		"`tm` TIME(2),",
		"`bits` BIT(8),",
		"`ip` VARCHAR(43),",
		"`odd` LONGTEXT,",
		"`neg` INT DEFAULT -5,",
		"`gen` INT,",
		"`nul` INT DEFAULT NULL,",
		"PRIMARY KEY (`id`, `code`),",
		"UNIQUE KEY `every_email_key` (`email`)",
		"CREATE TABLE `every` (",
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
		"-- default of column bs not translated",
		"-- default of column odd not translated: random()",
		"-- column gen is generated in PostgreSQL ((neg * 2))",
		"-- trigger touch (BEFORE UPDATE, function public.touch) not translated",
		"-- column second_serial draws from a sequence in PostgreSQL; no AUTO_INCREMENT",
		"`second_serial` INT,",
	} {
		if !strings.Contains(ddl, want) {
			t.Errorf("DDL lacks %q:\n%s", want, ddl)
		}
	}

	for _, bad := range []*schema.Column{
		c("n", 1700, "numeric(70,2)", (70<<16|2)+4),
		c("n", 1700, "numeric(10,-2)", (10<<16|(0x7ff&-2))+4),
		c("j", 3802, "jsonb", -1),
	} {
		_, err := CreateTableSQL(&schema.Table{Schema: "s", Name: "t", PrimaryKey: []string{bad.Name}, Columns: []*schema.Column{bad}})
		if err == nil {
			t.Errorf("CreateTableSQL with %s key must fail", bad.TypeName)
		}
	}
	noKey, err := CreateTableSQL(&schema.Table{Schema: "sales", Name: "log", Columns: []*schema.Column{c("m", 25, "text", -1)}})
	if err != nil || !strings.Contains(noKey, "CREATE TABLE `sales`.`log`") || !strings.Contains(noKey, "-- no primary key") {
		t.Errorf("table without key: %v\n%s", err, noKey)
	}
	mustParseMySQL(t, noKey)
}

func TestPack(t *testing.T) {
	gen := func(sql string, first int, args ...any) statement {
		return statement{sql: sql, args: args, first: first, last: first, size: 1, generated: true}
	}
	stmts := []statement{
		gen("A", 0, 1), gen("B", 1, 2), gen("C", 2, 3),
		{sql: "USER", args: []any{4}, first: 3, last: 3},
		gen("D", 4, 5), gen("EEEEEEEEEE", 5, 6), gen("F", 6, 7),
	}
	got := pack(stmts, 8)
	want := []statement{
		{sql: "A;\nB;\nC", args: []any{1, 2, 3}, first: 0, last: 2, size: 6, generated: true},
		{sql: "USER", args: []any{4}, first: 3, last: 3},
		{sql: "D", args: []any{5}, first: 4, last: 4, size: 2, generated: true},
		{sql: "EEEEEEEEEE", args: []any{6}, first: 5, last: 5, size: 11, generated: true},
		{sql: "F", args: []any{7}, first: 6, last: 6, size: 2, generated: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pack:\n got %+v\nwant %+v", got, want)
	}
	if stmts[0].sql != "A" || len(stmts[0].args) != 1 {
		t.Error("pack must not modify its input")
	}
}
