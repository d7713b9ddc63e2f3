package proxy

import (
	"encoding/binary"
	"slices"
	"testing"
)

// bindBody encodes a Bind message body.
func bindBody(portal, stmt string, paramFormats []int16, params [][]byte, resultFormats []int16) []byte {
	b := append([]byte(portal), 0)
	b = append(b, stmt...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(paramFormats)))
	for _, f := range paramFormats {
		b = binary.BigEndian.AppendUint16(b, uint16(f))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(params)))
	for _, p := range params {
		if p == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(resultFormats)))
	for _, f := range resultFormats {
		b = binary.BigEndian.AppendUint16(b, uint16(f))
	}
	return b
}

func TestTextResults(t *testing.T) {
	params := [][]byte{[]byte("42"), nil, {0, 0, 0, 1}}
	tests := []struct {
		name string
		body []byte
		want bool
	}{
		{"no result formats", bindBody("", "s1", nil, params, nil), true},
		{"one text format", bindBody("p", "s1", []int16{1}, params, []int16{0}), true},
		{"all text", bindBody("", "", []int16{0, 1, 1}, params, []int16{0, 0, 0}), true},
		{"one binary format", bindBody("", "s1", nil, params, []int16{1}), false},
		{"mixed", bindBody("", "s1", nil, params, []int16{0, 1}), false},
		{"truncated", bindBody("", "s1", nil, params, []int16{0})[:20], false},
		{"trailing bytes", append(bindBody("", "s1", nil, params, nil), 0), false},
		{"no names", []byte("abc"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := textResults(tt.body); got != tt.want {
				t.Fatalf("textResults = %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzBind checks the Bind decoders against each other: textResults must
// say true exactly when parseBind accepts the message and every result
// format is text.
func FuzzBind(f *testing.F) {
	f.Add(bindBody("", "s1", []int16{1}, [][]byte{[]byte("1"), nil}, []int16{0}))
	f.Add(bindBody("p", "", nil, nil, []int16{1, 0}))
	f.Add(bindBody("", "", nil, [][]byte{{}}, nil))
	f.Fuzz(func(t *testing.T, body []byte) {
		got := textResults(body)
		b, err := parseBind(body)
		want := err == nil && !slices.ContainsFunc(b.resultFormats, func(f int16) bool { return f != 0 })
		if want && len(body) != len(b.head)+len(b.paramsRaw)+2+2*len(b.resultFormats) {
			want = false // parseBind ignores trailing bytes; textResults refuses them
		}
		if got != want {
			t.Fatalf("textResults = %v, parseBind says %v (err %v)", got, want, err)
		}
		if err == nil {
			if enc := b.encode(b.resultFormats); string(enc[5:]) != string(body[:len(enc)-5]) {
				t.Fatalf("encode does not round-trip: %x vs %x", enc[5:], body)
			}
		}
	})
}
