package proxy

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestDataRowColumn(t *testing.T) {
	row, err := (&pgproto3.DataRow{Values: [][]byte{[]byte("a"), nil, {}, []byte("16384")}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	body := row[5:]
	for _, tc := range []struct {
		body []byte
		i    int
		want []byte
		ok   bool
	}{
		{body, 0, []byte("a"), true},
		{body, 1, nil, true},
		{body, 2, []byte{}, true},
		{body, 3, []byte("16384"), true},
		{body, 4, nil, false},
		{body, -1, nil, false},
		{body[:len(body)-1], 3, nil, false}, // value cut short
		{body[:8], 1, nil, false},           // length cut short
		{body[:1], 0, nil, false},
	} {
		v, ok := dataRowColumn(tc.body, tc.i)
		if ok != tc.ok || !bytes.Equal(v, tc.want) || (tc.ok && (v == nil) != (tc.want == nil)) {
			t.Errorf("dataRowColumn(%q, %d) = %q, %v; want %q, %v", tc.body, tc.i, v, ok, tc.want, tc.ok)
		}
	}
}
