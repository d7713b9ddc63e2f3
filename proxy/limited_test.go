package proxy

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/shadowproxy/shadowproxy/protocol"
)

// describe renders backend messages as "D <value>", "s", "C <tag>".
func describeMsgs(t *testing.T, b []byte) string {
	t.Helper()
	var out string
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("truncated message %x", b)
		}
		n := int(b[1])<<24 | int(b[2])<<16 | int(b[3])<<8 | int(b[4])
		body := b[5 : 1+n]
		if out != "" {
			out += "; "
		}
		switch b[0] {
		case 'D':
			out += "D " + string(body[6:])
		case 's':
			out += "s"
		case 'C':
			out += "C " + string(body[:len(body)-1])
		default:
			t.Fatalf("unexpected message %q", b[0])
		}
		b = b[1+n:]
	}
	return out
}

func dataRow(v string) []byte {
	b := []byte{'D', 0, 0, 0, byte(4 + 2 + 4 + len(v)), 0, 1, 0, 0, 0, byte(len(v))}
	return append(b, v...)
}

// TestLimitedPortal replays what Postgres answers to Executes with row
// limits on a portal of 5 rows (see TestDualWriteProtocolEdges for the
// same against a server).
func TestLimitedPortal(t *testing.T) {
	tag := appendCommandComplete(nil, []byte("INSERT 0 5"))
	tests := []struct {
		name   string
		limits []uint32 // the first Execute's, then each later one's
		want   []string // what the client gets for each Execute
	}{
		{"all at once", []uint32{0}, nil}, // not a limited portal: the server's own answer
		{"fetchrow", []uint32{1}, []string{"s"}},
		{"limit by limit", []uint32{2, 2, 2, 2}, []string{"s", "D 3; D 4; s", "D 5; C INSERT 0 1", "C INSERT 0 0"}},
		{"exactly the rest", []uint32{3, 2, 1}, []string{"s", "D 4; D 5; s", "C INSERT 0 0"}},
		{"then the rest unlimited", []uint32{1, 0}, []string{"s", "D 2; D 3; D 4; D 5; C INSERT 0 4"}},
		{"limit above the rows", []uint32{9, 9}, []string{"", "C INSERT 0 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.limits[0] == 0 {
				return
			}
			lp := &limitedPortal{}
			// The first Execute: rows up to the limit go to the client,
			// the rest are held (as trackServer does).
			for i := 1; i <= 5; i++ {
				if lp.sent < int(tt.limits[0]) {
					lp.sent++
				} else {
					lp.hold(dataRow(string(rune('0' + i))))
				}
			}
			out, replaced := lp.ran(protocol.Message{Type: 'C', Body: tag[5:]}, tt.limits[0])
			got := ""
			if replaced {
				got = describeMsgs(t, out)
			}
			if got != tt.want[0] {
				t.Fatalf("first Execute: client gets %q instead of the server's CommandComplete, want %q", got, tt.want[0])
			}
			for i, limit := range tt.limits[1:] {
				if got := describeMsgs(t, lp.next(limit)); got != tt.want[i+1] {
					t.Errorf("Execute %d (limit %d) = %q, want %q", i+2, limit, got, tt.want[i+1])
				}
			}
		})
	}
}

func TestRetag(t *testing.T) {
	for in, want := range map[string]string{"INSERT 0 5": "INSERT 0 2", "UPDATE 10": "UPDATE 2", "DELETE 1": "DELETE 2", "MERGE 3": "MERGE 2", "ODD": "ODD"} {
		if got := string(retag([]byte(in), 2)); got != want {
			t.Errorf("retag(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLimitedPortalSpill holds more than limitedHoldMax: the rows past it go
// through the temporary file and come back whole and in order.
func TestLimitedPortalSpill(t *testing.T) {
	lp := &limitedPortal{}
	big := strings.Repeat("x", 200)
	const n = limitedHoldMax/200 + 500
	for i := range n {
		lp.hold(dataRow(fmt.Sprintf("%06d%s", i, big)[:200]))
	}
	if lp.spill == nil || lp.spilled == 0 {
		t.Fatalf("nothing spilled: %d rows in memory", len(lp.rows))
	}
	lp.tag = []byte("UPDATE 1")
	got := 0
	for {
		out := lp.next(1000)
		for len(out) > 0 && out[0] == 'D' {
			size := int(binary.BigEndian.Uint32(out[1:5]))
			if v := string(out[11:17]); v != fmt.Sprintf("%06d", got) {
				t.Fatalf("row %d came back as %q", got, v)
			}
			got++
			out = out[1+size:]
		}
		if len(out) > 0 && out[0] == 'C' {
			break
		}
	}
	if got != n || lp.spill != nil {
		t.Fatalf("got %d of %d rows; file still open: %v", got, n, lp.spill != nil)
	}
}
