package rewrite

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	driver "github.com/pingcap/tidb/pkg/parser/test_driver"
)

// paramCounter counts the `?` markers of a parsed MySQL statement.
type paramCounter struct{ n int }

func (c *paramCounter) Enter(n ast.Node) (ast.Node, bool) {
	if _, ok := n.(*driver.ParamMarkerExpr); ok {
		c.n++
	}
	return n, false
}

func (c *paramCounter) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// requireMySQL asserts that sql is one statement the MySQL grammar accepts,
// parsed the way the mirror's session runs it (NO_BACKSLASH_ESCAPES, no
// ANSI_QUOTES), with exactly wantParams placeholders. It returns the tree.
func requireMySQL(t testing.TB, sql string, wantParams int) ast.StmtNode {
	t.Helper()
	p := parser.New()
	p.SetSQLMode(mysql.ModeNoBackslashEscapes)
	stmt, err := p.ParseOneStmt(sql, "", "")
	if err != nil {
		t.Fatalf("MySQL parser rejects %q: %v", sql, err)
	}
	var c paramCounter
	stmt.Accept(&c)
	if c.n != wantParams {
		t.Fatalf("%q has %d placeholders, Args has %d", sql, c.n, wantParams)
	}
	return stmt
}

func TestRequireMySQLCatchesBadSQL(t *testing.T) {
	// The helper is the oracle of every translation test: make sure it
	// does reject what MySQL rejects, and counts placeholders.
	ft := &fakeTB{}
	func() {
		defer func() { _ = recover() }()
		requireMySQL(ft, `UPDATE t SET a = 1 FROM u`, 0)
	}()
	if !ft.failed {
		t.Error("UPDATE ... FROM accepted")
	}
	ft = &fakeTB{}
	func() {
		defer func() { _ = recover() }()
		requireMySQL(ft, "SELECT ? FROM t WHERE a = ?", 1)
	}()
	if !ft.failed {
		t.Error("placeholder miscount accepted")
	}
	// A backslash before the closing quote is literal under
	// NO_BACKSLASH_ESCAPES, so this is one complete string.
	requireMySQL(t, `SELECT 'a\'`, 0)
}

// fakeTB records a failure instead of stopping the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}

var translateCases = []struct {
	pg   string
	want string
	args []int
}{
	// INSERT.
	{"INSERT INTO users (id, name) VALUES ($1, $2)", "INSERT INTO `users` (`id`, `name`) VALUES (?, ?)", []int{0, 1}},
	{"insert into Users (ID, \"Name\") values (1, 'o''brien'), (2, DEFAULT), ($2, $1)",
		"INSERT INTO `users` (`id`, `Name`) VALUES (1, 'o''brien'), (2, DEFAULT), (?, ?)", []int{1, 0}},
	{`INSERT INTO "Sales"."Order" ("Id") VALUES (1)`, "INSERT INTO `Sales`.`Order` (`Id`) VALUES (1)", nil},
	{"INSERT INTO t DEFAULT VALUES", "INSERT INTO `t` () VALUES ()", nil},
	{"INSERT INTO t (a) SELECT b FROM u WHERE c > $1", "INSERT INTO `t` (`a`) SELECT `b` FROM `u` WHERE `c` > ?", []int{0}},
	{"INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
		"INSERT INTO `kv` (`k`, `v`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `v` = VALUES(`v`)", []int{0, 1}},
	{"INSERT INTO kv (k, v, n) VALUES ($1, $2, 1) ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = kv.n + 1, ts = now()",
		"INSERT INTO `kv` (`k`, `v`, `n`) VALUES (?, ?, 1) ON DUPLICATE KEY UPDATE `v` = VALUES(`v`), `n` = `kv`.`n` + 1, `ts` = NOW(6)", []int{0, 1}},
	{"INSERT INTO kv AS t (k, v) VALUES (1, 2) ON CONFLICT ON CONSTRAINT kv_pkey DO UPDATE SET v = t.v + EXCLUDED.v WHERE t.v < $1",
		"INSERT INTO `kv` (`k`, `v`) VALUES (1, 2) ON DUPLICATE KEY UPDATE `v` = IF(`kv`.`v` < ?, `kv`.`v` + VALUES(`v`), `v`)", []int{0}},
	{"INSERT INTO kv (k, v) VALUES (1, 2) ON CONFLICT DO NOTHING", "INSERT INTO `kv` (`k`, `v`) VALUES (1, 2) ON DUPLICATE KEY UPDATE `k` = `k`", nil},
	{"INSERT INTO kv (v, k) VALUES (1, 2) ON CONFLICT (k) DO NOTHING", "INSERT INTO `kv` (`v`, `k`) VALUES (1, 2) ON DUPLICATE KEY UPDATE `k` = `k`", nil},
	{"INSERT INTO t (a, b) VALUES ($1, $1)", "INSERT INTO `t` (`a`, `b`) VALUES (?, ?)", []int{0, 0}},

	// Literals and casts.
	{`INSERT INTO t (s) VALUES (E'line\nnext\\ tab\t''q'), ('back\slash'), ($$dollar 'quoted'$$), (U&'\0041')`,
		"INSERT INTO `t` (`s`) VALUES ('line\nnext\\ tab\t''q'), ('back\\slash'), ('dollar ''quoted'''), ('A')", nil},
	{"INSERT INTO t (a, b, c, d) VALUES (1.5, -2, 1_000_000, 0x1F), (.5, 1e3, 99999999999999999999, -0.25)",
		"INSERT INTO `t` (`a`, `b`, `c`, `d`) VALUES (1.5, -2, 1000000, 31), (0.5, 1000, 99999999999999999999, -0.25)", nil},
	{"INSERT INTO t (a, b, c, d) VALUES (1.50e-2, 2E+2, 1., 0.000)", "INSERT INTO `t` (`a`, `b`, `c`, `d`) VALUES (0.0150, 200, 1, 0.000)", nil},
	{"INSERT INTO t (a, b, c) VALUES (TRUE, false, NULL)", "INSERT INTO `t` (`a`, `b`, `c`) VALUES (TRUE, FALSE, NULL)", nil},
	{"INSERT INTO t (b) VALUES (B'1010'), (X'FF')", "INSERT INTO `t` (`b`) VALUES (b'1010'), (X'FF')", nil},
	{"INSERT INTO t (a, b, c, d, e, f) VALUES ($1::int, $2::bigint, $3::text, '1.50'::numeric(10,2), $4::float8, $5::jsonb)",
		"INSERT INTO `t` (`a`, `b`, `c`, `d`, `e`, `f`) VALUES (CAST(? AS SIGNED), CAST(? AS SIGNED), CAST(? AS CHAR), CAST('1.50' AS DECIMAL(10,2)), CAST(? AS DOUBLE), CAST(? AS JSON))",
		[]int{0, 1, 2, 3, 4}},
	{"INSERT INTO t (a, b, c, d) VALUES ('t'::boolean, 'off'::bool, $1::boolean, 1::bool)",
		"INSERT INTO `t` (`a`, `b`, `c`, `d`) VALUES (TRUE, FALSE, ?, TRUE)", []int{0}},
	{"INSERT INTO t (a, b) VALUES ($1::varchar(20), x::numeric)",
		"INSERT INTO `t` (`a`, `b`) VALUES (CAST(? AS CHAR(20)), CAST(`x` AS DECIMAL(65,30)))", []int{0}},
	{"INSERT INTO t (d, ts, tz, tz2) VALUES ('2024-01-02'::date, '2024-01-02 03:04:05.123456'::timestamp, '2024-05-01 10:00:00+02'::timestamptz, $1::timestamptz)",
		"INSERT INTO `t` (`d`, `ts`, `tz`, `tz2`) VALUES (CAST('2024-01-02' AS DATE), CAST('2024-01-02 03:04:05.123456' AS DATETIME(6)), '2024-05-01 08:00:00', ?)", []int{0}},
	{"INSERT INTO t (u, b) VALUES ('{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}'::uuid, '\\xDEADbeef'::bytea)",
		"INSERT INTO `t` (`u`, `b`) VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', X'DEADbeef')", nil},
	{"INSERT INTO t (id, created, d) VALUES (gen_random_uuid(), CURRENT_TIMESTAMP, current_date)",
		"INSERT INTO `t` (`id`, `created`, `d`) VALUES (UUID(), NOW(6), CURDATE())", nil},

	// UPDATE.
	{"UPDATE users SET name = $1, updated_at = now() WHERE id = $2",
		"UPDATE `users` SET `name` = ?, `updated_at` = NOW(6) WHERE `id` = ?", []int{0, 1}},
	{"UPDATE t SET (a, b) = ($2, $1), c = DEFAULT WHERE id = $3",
		"UPDATE `t` SET `a` = ?, `b` = ?, `c` = DEFAULT WHERE `id` = ?", []int{1, 0, 2}},
	{"UPDATE t SET x = u.x FROM u WHERE t.id = u.id AND u.flag",
		"UPDATE `t` JOIN `u` ON (`t`.`id` = `u`.`id`) AND `u`.`flag` SET `t`.`x` = `u`.`x`", nil},
	{"UPDATE accounts a SET balance = a.balance + $1 FROM transfers tr, users us WHERE tr.acct = a.id AND us.id = tr.uid AND tr.id = $2",
		"UPDATE `accounts` AS `a` JOIN `transfers` AS `tr` JOIN `users` AS `us` ON (`tr`.`acct` = `a`.`id`) AND (`us`.`id` = `tr`.`uid`) AND (`tr`.`id` = ?) SET `a`.`balance` = `a`.`balance` + ?",
		[]int{1, 0}},
	{"UPDATE t SET n = n + 1", "UPDATE `t` SET `n` = `n` + 1", nil},
	{"UPDATE public.t SET a = 1", "UPDATE `public`.`t` SET `a` = 1", nil},

	// DELETE.
	{"DELETE FROM sessions WHERE expires_at < $1", "DELETE FROM `sessions` WHERE `expires_at` < ?", []int{0}},
	{"DELETE FROM t", "DELETE FROM `t`", nil},
	{"DELETE FROM t USING u WHERE t.uid = u.id AND u.banned = true",
		"DELETE `t` FROM `t` JOIN `u` ON (`t`.`uid` = `u`.`id`) AND (`u`.`banned` = TRUE)", nil},
	{"DELETE FROM orders o USING users u WHERE o.uid = u.id AND u.id = $1",
		"DELETE `o` FROM `orders` AS `o` JOIN `users` AS `u` ON (`o`.`uid` = `u`.`id`) AND (`u`.`id` = ?)", []int{0}},
	{"DELETE FROM t AS x WHERE x.a = 1", "DELETE `x` FROM `t` AS `x` WHERE `x`.`a` = 1", nil},

	// Expressions.
	{"DELETE FROM t WHERE a IS NULL OR NOT (b IS NOT NULL AND c <> 3)",
		"DELETE FROM `t` WHERE (`a` IS NULL) OR (NOT ((`b` IS NOT NULL) AND (`c` <> 3)))", nil},
	{"DELETE FROM t WHERE a IN (1, 2, $1) AND b NOT IN ('x') AND c BETWEEN $2 AND 10 AND d NOT BETWEEN 1 AND 2",
		"DELETE FROM `t` WHERE (`a` IN (1, 2, ?)) AND (`b` NOT IN ('x')) AND (`c` BETWEEN ? AND 10) AND (`d` NOT BETWEEN 1 AND 2)", []int{0, 1}},
	{`DELETE FROM t WHERE a LIKE 'x\_%' AND b NOT LIKE $1 AND c ILIKE '%Foo%' AND d NOT ILIKE 'a' AND e LIKE 'a#_' ESCAPE '#'`,
		"DELETE FROM `t` WHERE (`a` LIKE 'x\\_%' ESCAPE '\\') AND (`b` NOT LIKE ? ESCAPE '\\') AND (LOWER(`c`) LIKE LOWER('%Foo%') ESCAPE '\\') AND (LOWER(`d`) NOT LIKE LOWER('a') ESCAPE '\\') AND (`e` LIKE 'a#_' ESCAPE '#')",
		[]int{0}},
	{"UPDATE t SET s = CASE WHEN a > 0 THEN 'pos' WHEN a < 0 THEN 'neg' ELSE 'zero' END, k = CASE b WHEN 1 THEN 'one' END",
		"UPDATE `t` SET `s` = CASE WHEN `a` > 0 THEN 'pos' WHEN `a` < 0 THEN 'neg' ELSE 'zero' END, `k` = CASE `b` WHEN 1 THEN 'one' END", nil},
	{"UPDATE t SET a = COALESCE($1, a, 0), b = NULLIF(c, '')", "UPDATE `t` SET `a` = COALESCE(?, `a`, 0), `b` = NULLIF(`c`, '')", []int{0}},
	{"UPDATE t SET full_name = first || ' ' || last, tag = 'x' || $1",
		"UPDATE `t` SET `full_name` = CONCAT(`first`, ' ', `last`), `tag` = CONCAT('x', ?)", []int{0}},
	{"UPDATE t SET s = concat(a, NULL, b), l = lower(name), n = length(name), r = round(x, 2), p = 2 ^ 3",
		"UPDATE `t` SET `s` = CONCAT_WS('', `a`, NULL, `b`), `l` = LOWER(`name`), `n` = CHAR_LENGTH(`name`), `r` = ROUND(`x`, 2), `p` = POW(2, 3)", nil},
	{"UPDATE t SET a = -b, c = d * (e + f) % 7, g = h / 2.0 WHERE i >= j AND k != l",
		"UPDATE `t` SET `a` = -(`b`), `c` = (`d` * (`e` + `f`)) % 7, `g` = `h` / 2.0 WHERE (`i` >= `j`) AND (`k` <> `l`)", nil},
	{"DELETE FROM t WHERE a IS DISTINCT FROM $1 OR b IS NOT DISTINCT FROM NULL",
		"DELETE FROM `t` WHERE (NOT (`a` <=> ?)) OR (`b` <=> NULL)", []int{0}},
	{"DELETE FROM t WHERE flag IS TRUE AND other IS NOT FALSE AND x IS UNKNOWN",
		"DELETE FROM `t` WHERE (`flag` IS TRUE) AND (`other` IS NOT FALSE) AND (`x` IS UNKNOWN)", nil},
	{"DELETE FROM t WHERE id = ANY(ARRAY[1, 2, 3]) AND k <> ALL(ARRAY['a'])",
		"DELETE FROM `t` WHERE (`id` IN (1, 2, 3)) AND (`k` NOT IN ('a'))", nil},
	{"DELETE FROM t WHERE (a, b) = (1, 2)", "DELETE FROM `t` WHERE (`a`, `b`) = (1, 2)", nil},

	// Subqueries and SELECT.
	{"DELETE FROM t WHERE uid IN (SELECT id FROM u WHERE banned) AND EXISTS (SELECT 1 FROM v WHERE v.id = t.vid)",
		"DELETE FROM `t` WHERE (`uid` IN (SELECT `id` FROM `u` WHERE `banned`)) AND (EXISTS (SELECT 1 FROM `v` WHERE `v`.`id` = `t`.`vid`))", nil},
	{"UPDATE t SET total = (SELECT sum(amount) FROM items i WHERE i.tid = t.id) WHERE id = $1",
		"UPDATE `t` SET `total` = (SELECT SUM(`amount`) FROM `items` AS `i` WHERE `i`.`tid` = `t`.`id`) WHERE `id` = ?", []int{0}},
	{"UPDATE t SET n = 0 WHERE x > ALL (SELECT y FROM u)", "UPDATE `t` SET `n` = 0 WHERE `x` > ALL (SELECT `y` FROM `u`)", nil},
	{"SELECT DISTINCT a, count(*) AS n FROM t LEFT JOIN u ON u.id = t.uid WHERE t.x = $1 GROUP BY a HAVING count(*) > 1 ORDER BY a, n DESC LIMIT 10 OFFSET $2",
		"SELECT DISTINCT `a`, COUNT(*) AS `n` FROM `t` LEFT JOIN `u` ON `u`.`id` = `t`.`uid` WHERE `t`.`x` = ? GROUP BY `a` HAVING COUNT(*) > 1 ORDER BY `a` IS NULL, `a`, COUNT(*) IS NULL DESC, COUNT(*) DESC LIMIT 10 OFFSET ?",
		[]int{0, 1}},
	{"SELECT a FROM t ORDER BY a NULLS FIRST, b DESC NULLS LAST, 1 OFFSET 5",
		"SELECT `a` FROM `t` ORDER BY `a`, `b` DESC, `a` IS NULL, `a` LIMIT 18446744073709551615 OFFSET 5", nil},
	{"SELECT * FROM a JOIN b USING (id) CROSS JOIN c WHERE a.x = 1 FOR UPDATE SKIP LOCKED",
		"SELECT * FROM `a` JOIN `b` USING (`id`) CROSS JOIN `c` WHERE `a`.`x` = 1 FOR UPDATE SKIP LOCKED", nil},
	{"SELECT t.* AS ignored, t.id AS x FROM t", "SELECT `t`.*, `t`.`id` AS `x` FROM `t`", nil},
	{"SELECT t.* FROM (SELECT id FROM t) AS s JOIN t ON t.id = s.id",
		"SELECT `t`.* FROM (SELECT `id` FROM `t`) AS `s` JOIN `t` ON `t`.`id` = `s`.`id`", nil},
	{"SELECT a FROM t UNION ALL SELECT b FROM u", "(SELECT `a` FROM `t`) UNION ALL (SELECT `b` FROM `u`)", nil},
	{"INSERT INTO t (a) SELECT x FROM u JOIN (v JOIN w ON v.id = w.id) ON u.id = v.id",
		"INSERT INTO `t` (`a`) SELECT `x` FROM `u` JOIN (`v` JOIN `w` ON `v`.`id` = `w`.`id`) ON `u`.`id` = `v`.`id`", nil},
	{"UPDATE t SET a = left(s, 3), b = right(s, 2), c = trunc(x), d = substring(s, 2, 3), e = btrim(s), f = mod(n, 3), g = replace(s, 'a', 'b'), h = upper(s || 'x')",
		"UPDATE `t` SET `a` = LEFT(`s`, 3), `b` = RIGHT(`s`, 2), `c` = TRUNCATE(`x`, 0), `d` = SUBSTRING(`s`, 2, 3), `e` = TRIM(`s`), `f` = MOD(`n`, 3), `g` = REPLACE(`s`, 'a', 'b'), `h` = UPPER(CONCAT(`s`, 'x'))", nil},
	{"UPDATE t SET a = substring(s from 2 for $1), b = CURRENT_TIMESTAMP(3), c = clock_timestamp(), d = random()",
		"UPDATE `t` SET `a` = SUBSTRING(`s`, 2, ?), `b` = NOW(3), `c` = SYSDATE(6), `d` = RAND()", []int{0}},
	{"SELECT count(DISTINCT a) FROM t LIMIT ALL", "SELECT COUNT(DISTINCT `a`) FROM `t`", nil},
}

func TestTranslateToMySQL(t *testing.T) {
	for _, tc := range translateCases {
		t.Run(tc.pg, func(t *testing.T) {
			got, err := TranslateToMySQL(tc.pg)
			if err != nil {
				t.Fatalf("TranslateToMySQL: %v", err)
			}
			if got.SQL != tc.want {
				t.Errorf("SQL\n got %s\nwant %s", got.SQL, tc.want)
			}
			if !reflect.DeepEqual(got.Args, tc.args) {
				t.Errorf("Args = %v, want %v", got.Args, tc.args)
			}
			requireMySQL(t, got.SQL, len(got.Args))
		})
	}
}

// unsupportedCases are statements TranslateToMySQL must refuse, with the
// construct it names. An empty construct marks a look-alike that must be
// accepted.
var unsupportedCases = []struct{ pg, construct string }{
	{"INSERT INTO t (a) VALUES (1) RETURNING id", "RETURNING"},
	{"UPDATE t SET a = 1 RETURNING *", "RETURNING"},
	{"DELETE FROM t WHERE id = ANY($1)", "= ANY/ALL(array parameter or expression)"},
	{"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "WITH"},
	{"UPDATE t SET a = b, b = a", "SET reading a column assigned before it"},
	{"INSERT INTO a (a) VALUES (0) ON CONFLICT (a) DO UPDATE SET a = row()", "ROW() without columns"},
	{"UPDATE t SET a = 1, b = t.a + 1", "SET reading a column assigned before it"},
	{"INSERT INTO t (k, v) VALUES (1, 2) ON CONFLICT (k) DO UPDATE SET v = 1, w = v", "SET reading a column assigned before it"},
	{"INSERT INTO t (k, v) VALUES (1, 2) ON CONFLICT (k) DO UPDATE SET v = 1, w = 2 WHERE t.v > 0", "ON CONFLICT WHERE reading an assigned column"},
	{"UPDATE t SET a = b / 2", "division of possibly integer operands"},
	{"UPDATE t SET a = greatest(b, c)", "GREATEST/LEAST"},
	{"UPDATE t SET a = date_trunc('day', b)", "function date_trunc"},
	{"UPDATE t SET a = b::interval", "cast to interval"},
	{"UPDATE t SET a = '2024-01-01 10:00'::timestamptz", "timestamptz literal without a UTC offset"},
	{"UPDATE t SET a = b ->> 'k'", "operator ->>"},
	{"DELETE FROM t WHERE a ~ 'x'", "operator ~"},
	{"UPDATE t SET a = ARRAY[1, 2]", "A_ArrayExpr"},
	{"UPDATE t SET a[1] = 2", "SET of a subscript or field"},
	{"MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", "MERGE statement"},
	{"CREATE TABLE x (a int)", "CREATE TABLE statement"},
	{"INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", "ON CONFLICT DO NOTHING without a column list or conflict column"},
	{"DELETE FROM t WHERE CURRENT OF c", "WHERE CURRENT OF"},
	{"SELECT a FROM t FULL JOIN u ON true", "FULL JOIN"},
	{"SELECT DISTINCT ON (a) a FROM t", "DISTINCT ON"},
	{"UPDATE t SET d = CURRENT_DATE + 1", "date/time arithmetic"},
	{"UPDATE t SET a = -(-5)", ""},
	{"UPDATE t SET a = - $1", ""},
	{"UPDATE t SET a = 1e100", "numeric literal 1e100"},
	{"UPDATE t SET a = 0.1234567890123456789012345678901", "numeric literal 0.1234567890123456789012345678901"},
	{"SELECT a FROM t UNION SELECT b FROM u ORDER BY 1", "ORDER BY on UNION"},
	{"SELECT * FROM (SELECT 1)", "subquery in FROM without alias"},
	{"UPDATE t SET a = 1 + DEFAULT", "DEFAULT inside an expression"},
	{"DELETE FROM t WHERE a LIKE b ESCAPE ''", "LIKE ... ESCAPE other than one character"},
	{"UPDATE t SET a = trunc()", "function trunc with 0 arguments"},
	{"UPDATE t SET a = lower(b, c)", "function lower with 2 arguments"},
	{"UPDATE t SET a = b | 1", "operator |"},
	{"UPDATE t SET u = current_user", "current_user"},
	{"UPDATE t SET b = x::boolean", "cast of an expression to boolean"},
	{"UPDATE t SET s = substring(s from 'a.c')", "function substring with a pattern"},
	{"INSERT INTO t (a) OVERRIDING SYSTEM VALUE VALUES (1)", "OVERRIDING"},
}

func TestTranslateUnsupported(t *testing.T) {
	for _, tc := range unsupportedCases {
		pgSQL, construct := tc.pg, tc.construct
		t.Run(pgSQL, func(t *testing.T) {
			got, err := TranslateToMySQL(pgSQL)
			if construct == "" {
				// Not refused: make sure the output is valid.
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				requireMySQL(t, got.SQL, len(got.Args))
				return
			}
			var u *UnsupportedError
			if !errors.As(err, &u) {
				t.Fatalf("got %v, %v; want UnsupportedError", got, err)
			}
			if u.Construct != construct {
				t.Errorf("Construct = %q, want %q", u.Construct, construct)
			}
			if !IsUnsupported(err) || !strings.Contains(err.Error(), construct) {
				t.Errorf("error text %q", err)
			}
		})
	}
}

func TestTranslateErrors(t *testing.T) {
	for _, sql := range []string{"UPDAT t", "", "DELETE FROM a; DELETE FROM b"} {
		_, err := TranslateToMySQL(sql)
		if err == nil || IsUnsupported(err) {
			t.Errorf("%q: got %v, want a plain error", sql, err)
		}
	}
}

func TestTranslateSchemaMap(t *testing.T) {
	got, err := TranslateToMySQL(
		"UPDATE public.t SET a = 1 FROM app.u, other.v WHERE t.id = u.id",
		WithSchemaMap(map[string]string{"public": "", "app": "appdb"}))
	if err != nil {
		t.Fatal(err)
	}
	want := "UPDATE `t` JOIN `appdb`.`u` JOIN `other`.`v` ON `t`.`id` = `u`.`id` SET `t`.`a` = 1"
	if got.SQL != want {
		t.Errorf("got  %s\nwant %s", got.SQL, want)
	}
	requireMySQL(t, got.SQL, 0)
}

func TestBindArgs(t *testing.T) {
	m, err := TranslateToMySQL("UPDATE t SET a = $2, b = $1 WHERE c = $2")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.BindArgs([]any{"one", 2})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []any{2, "one", 2}) {
		t.Errorf("BindArgs = %v", got)
	}
	if _, err := m.BindArgs([]any{"only one"}); err == nil {
		t.Error("missing parameter accepted")
	}
}
