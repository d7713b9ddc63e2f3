package compare

import (
	"reflect"
	"testing"
)

func TestShapeFromSQL(t *testing.T) {
	cases := []struct {
		sql  string
		want Shape
	}{
		{"SELECT id, name FROM t", Shape{}},
		{"SELECT id, name FROM t ORDER BY name", Shape{OrderBy: []OrderKey{{Column: 1}}}},
		{"SELECT id, name FROM t ORDER BY 2 DESC, 1", Shape{OrderBy: []OrderKey{{Column: 1, Desc: true}, {Column: 0}}}},
		{"SELECT t.id AS k, name FROM t ORDER BY k NULLS FIRST LIMIT 5", Shape{OrderBy: []OrderKey{{Column: 0, Nulls: NullsFirst}}, HasLimit: true}},
		{"SELECT t.id, t.name FROM t ORDER BY t.name DESC NULLS LAST", Shape{OrderBy: []OrderKey{{Column: 1, Desc: true, Nulls: NullsLast}}}},
		{"SELECT id FROM t ORDER BY lower(name), id", Shape{OrderBy: []OrderKey{{Column: -1}, {Column: 0}}}},
		{"SELECT * FROM t ORDER BY id", Shape{OrderBy: []OrderKey{{Column: -1}}}},
		{"SELECT id FROM t LIMIT 10", Shape{HasLimit: true}},
		{"SELECT id FROM t OFFSET 10", Shape{HasLimit: true}},
		{"SELECT id FROM t FETCH FIRST 3 ROWS ONLY", Shape{HasLimit: true}},
		{"SELECT id FROM a UNION SELECT id FROM b ORDER BY id LIMIT 3", Shape{OrderBy: []OrderKey{{Column: 0}}, HasLimit: true}},
		{"SELECT id FROM (SELECT id FROM t ORDER BY id LIMIT 3) s", Shape{}},
		{"SELECT 1; SELECT a, b FROM t ORDER BY b", Shape{OrderBy: []OrderKey{{Column: 1}}}},
		{"UPDATE t SET a = 1", Shape{}},
		{"SELECT id FROM t ORDER BY 9", Shape{OrderBy: []OrderKey{{Column: -1}}}},
	}
	for _, tc := range cases {
		got, err := ShapeFromSQL(tc.sql)
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.sql, got, tc.want)
		}
	}
	if _, err := ShapeFromSQL("SELEC nonsense"); err == nil {
		t.Error("parse error not reported")
	}
}
