package rewrite

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzClassify feeds arbitrary text to the Classifier. Besides "never
// panics" it checks the invariants the proxy relies on: no error, a valid
// kind for every statement, Unparsed only ever alone, statement texts that
// are pieces of the input, and cache hits equal to the first answer.
// The committed corpus is in testdata/fuzz/FuzzClassify; the table of
// TestClassify is added as further seeds.
func FuzzClassify(f *testing.F) {
	for _, tc := range classifyCases {
		f.Add(tc.sql)
	}
	c, err := NewClassifier(64)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		stmts, err := c.Classify(sql)
		if err != nil {
			t.Fatalf("Classify(%q): %v", sql, err)
		}
		for i, st := range stmts {
			if st == nil {
				t.Fatalf("statement %d is nil", i)
			}
			if st.Kind < Read || st.Kind > Unparsed {
				t.Fatalf("statement %d has kind %v", i, st.Kind)
			}
			if st.Kind == Unparsed {
				if len(stmts) != 1 || st.ParseError == "" || st.Fingerprint != "" {
					t.Fatalf("bad Unparsed result %+v among %d", st, len(stmts))
				}
				continue
			}
			if st.Command == "" || len(st.Fingerprint) != 16 {
				t.Fatalf("statement %d: command %q fingerprint %q", i, st.Command, st.Fingerprint)
			}
			if (st.Kind == Tx) != (st.TxOp != NotTx) {
				t.Fatalf("statement %d: kind %v with TxOp %v", i, st.Kind, st.TxOp)
			}
			if !strings.Contains(sql, st.SQL) {
				t.Fatalf("statement %d: text %q not in input", i, st.SQL)
			}
			for _, w := range st.WriteTables {
				if !slices.Contains(st.Tables, w) {
					t.Fatalf("statement %d: write table %q not among tables %q", i, w, st.Tables)
				}
			}
		}
		again, err := c.Classify(sql)
		if err != nil || !reflect.DeepEqual(stmts, again) {
			t.Fatalf("second call differs: %v, %v", again, err)
		}
	})
}

// FuzzTranslateToMySQL checks that the translator never panics and that
// whatever it emits parses as one MySQL statement with one Args entry per
// placeholder, each naming a parameter the Postgres text has.
func FuzzTranslateToMySQL(f *testing.F) {
	for _, tc := range translateCases {
		f.Add(tc.pg)
	}
	for _, tc := range unsupportedCases {
		f.Add(tc.pg)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		got, err := TranslateToMySQL(sql)
		if err != nil {
			return
		}
		requireMySQL(t, got.SQL, len(got.Args))
		st, err := classify(sql)
		if err != nil || len(st) != 1 {
			t.Fatalf("translated text does not classify as one statement: %v, %v", st, err)
		}
		for _, a := range got.Args {
			if a < 0 || a >= st[0].Params {
				t.Fatalf("Args %v out of range for %d parameters", got.Args, st[0].Params)
			}
		}
	})
}
