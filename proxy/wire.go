package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/shadowproxy/shadowproxy/protocol"
)

// This file decodes and builds the protocol messages the dual-write path
// reads or sends itself (Bind, ParameterDescription, Query, Parse,
// Describe, Close, Execute); everything else is forwarded as received.

// bind is a decoded Bind message body.
type bind struct {
	head          []byte // portal and statement names
	paramFormats  []int16
	params        [][]byte
	paramsRaw     []byte // from the parameter format count to the result format count
	resultFormats []int16
}

func parseBind(body []byte) (*bind, error) {
	bad := errors.New("malformed Bind")
	_, rest, ok := protocol.CString(body)
	if !ok {
		return nil, bad
	}
	_, rest, ok = protocol.CString(rest)
	if !ok {
		return nil, bad
	}
	b := &bind{head: body[:len(body)-len(rest)]}
	start := rest
	readInt16 := func() (int, bool) {
		if len(rest) < 2 {
			return 0, false
		}
		v := int(int16(binary.BigEndian.Uint16(rest)))
		rest = rest[2:]
		return v, true
	}
	// readFormats reads a count and that many format codes.
	readFormats := func() ([]int16, bool) {
		n, ok := readInt16()
		if !ok || n < 0 {
			return nil, false
		}
		var out []int16
		for range n {
			f, ok := readInt16()
			if !ok {
				return nil, false
			}
			out = append(out, int16(f))
		}
		return out, true
	}
	if b.paramFormats, ok = readFormats(); !ok {
		return nil, bad
	}
	n, ok := readInt16()
	if !ok || n < 0 {
		return nil, bad
	}
	for range n {
		if len(rest) < 4 {
			return nil, bad
		}
		sz := int(int32(binary.BigEndian.Uint32(rest)))
		rest = rest[4:]
		if sz < 0 {
			b.params = append(b.params, nil)
			continue
		}
		if len(rest) < sz {
			return nil, bad
		}
		b.params = append(b.params, rest[:sz:sz])
		rest = rest[sz:]
	}
	b.paramsRaw = start[:len(start)-len(rest)]
	if b.resultFormats, ok = readFormats(); !ok {
		return nil, bad
	}
	return b, nil
}

// textResults reports whether a well-formed Bind asks for every result
// column in text, without decoding the rest of it: the common case, checked
// on every execution of a captured write.
func textResults(body []byte) bool {
	for range 2 { // portal and statement names
		i := bytes.IndexByte(body, 0)
		if i < 0 {
			return false
		}
		body = body[i+1:]
	}
	skip := func(n int) bool {
		if n < 0 || len(body) < n {
			return false
		}
		body = body[n:]
		return true
	}
	count := func() int {
		if len(body) < 2 {
			return -1
		}
		return int(int16(binary.BigEndian.Uint16(body)))
	}
	if n := count(); !skip(2) || !skip(2*n) {
		return false
	}
	n := count()
	if !skip(2) || n < 0 {
		return false
	}
	for range n {
		if len(body) < 4 {
			return false
		}
		sz := int(int32(binary.BigEndian.Uint32(body)))
		body = body[4:]
		if sz > 0 && !skip(sz) {
			return false
		}
	}
	n = count()
	if !skip(2) || n < 0 || len(body) != 2*n {
		return false
	}
	for i := 0; i < len(body); i += 2 {
		if body[i] != 0 || body[i+1] != 0 {
			return false
		}
	}
	return true
}

// encode returns the Bind message with other result formats.
func (b *bind) encode(resultFormats []int16) []byte {
	out := make([]byte, 0, protocol.HeaderLen+len(b.head)+len(b.paramsRaw)+2+2*len(resultFormats))
	out = append(out, 'B', 0, 0, 0, 0)
	out = append(out, b.head...)
	out = append(out, b.paramsRaw...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(resultFormats)))
	for _, f := range resultFormats {
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
	return out
}

func parseParamDescription(body []byte) []uint32 {
	if len(body) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+4*n {
		return nil
	}
	out := make([]uint32, n)
	for i := range n {
		out[i] = binary.BigEndian.Uint32(body[2+4*i:])
	}
	return out
}

func encodeQuery(sql string) []byte {
	out := make([]byte, 0, protocol.HeaderLen+len(sql)+1)
	out = append(out, 'Q', 0, 0, 0, 0)
	out = append(out, sql...)
	out = append(out, 0)
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
	return out
}

// encodeParse appends a Parse message; paramOIDs is the raw parameter
// type section (count and OIDs) of the client's Parse.
func encodeParse(out []byte, name, sql string, paramOIDs []byte) []byte {
	start := len(out)
	out = append(out, 'P', 0, 0, 0, 0)
	out = append(out, name...)
	out = append(out, 0)
	out = append(out, sql...)
	out = append(out, 0)
	if len(paramOIDs) == 0 {
		out = append(out, 0, 0)
	} else {
		out = append(out, paramOIDs...)
	}
	binary.BigEndian.PutUint32(out[start+1:], uint32(len(out)-start-1))
	return out
}

func encodeDescribe(out []byte, kind byte, name string) []byte {
	return encodeNamed(out, 'D', kind, name)
}

func encodeClose(out []byte, kind byte, name string) []byte {
	return encodeNamed(out, 'C', kind, name)
}

// encodeNamed builds a message whose body is a kind ('S' statement, 'P'
// portal) and a name: Describe and Close.
func encodeNamed(out []byte, typ, kind byte, name string) []byte {
	out = append(out, typ)
	out = binary.BigEndian.AppendUint32(out, uint32(4+1+len(name)+1))
	out = append(out, kind)
	out = append(out, name...)
	return append(out, 0)
}

func encodeBind(out []byte, portal, stmt string) []byte {
	start := len(out)
	out = append(out, 'B', 0, 0, 0, 0)
	out = append(out, portal...)
	out = append(out, 0)
	out = append(out, stmt...)
	out = append(out, 0, 0, 0, 0, 0, 0, 0) // no parameter formats, no parameters, no result formats
	binary.BigEndian.PutUint32(out[start+1:], uint32(len(out)-start-1))
	return out
}

// executeLimit returns an Execute message's row limit (0: all rows).
func executeLimit(body []byte) uint32 {
	if len(body) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(body[len(body)-4:])
}

func encodeExecute(out []byte, portal string) []byte {
	out = append(out, 'E')
	out = binary.BigEndian.AppendUint32(out, uint32(4+len(portal)+1+4))
	out = append(out, portal...)
	return append(out, 0, 0, 0, 0, 0)
}
