package target

import (
	"context"
	"testing"

	"github.com/shadowproxy/shadowproxy/target/mysqltarget"
	"github.com/shadowproxy/shadowproxy/target/pgtarget"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		url  string
		want string // "pg", "mysql" or "" for an error
	}{
		{"postgres://u@127.0.0.1:1/db", "pg"},
		{"postgresql://u@127.0.0.1:1/db", "pg"},
		{"mysql://u@127.0.0.1:1/db", "mysql"},
		{"mysql://u@127.0.0.1:1/", ""}, // MySQL needs a database
		{"sqlite:///tmp/x", ""},
		{"::bad", ""},
	}
	for _, tc := range tests {
		tg, err := Open(ctx, tc.url, Options{Lazy: true})
		var got string
		switch tg.(type) {
		case *pgtarget.Target:
			got = "pg"
		case *mysqltarget.Target:
			got = "mysql"
		}
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("Open(%q) = %T, %v; want %s", tc.url, tg, err, tc.want)
		}
		if tg != nil {
			tg.Close()
		}
	}
}
