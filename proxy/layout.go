package proxy

import (
	"encoding/binary"
	"errors"
	"strings"

	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/protocol"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// layout is the shape of a captured write's result: the client's own
// RETURNING columns first, then the columns the proxy added (see
// rewrite.PlanCapture). It is parsed from the RowDescription the old
// database sends, so it is right whatever the table looks like.
type layout struct {
	clientCols int // columns the client sees
	xidIdx     int // absolute index of rewrite.CaptureXidColumn
	tabIdx     int // absolute index of rewrite.CaptureTableColumn
	rowStart   int // first column of the row image
	rowEnd     int // one past its last column
	oldKeyIdx  []int
	total      int             // all columns
	cols       []mirror.Column // the row image's columns
	// clientRowDesc is the RowDescription the client sees, or nil when it
	// asked for no rows (no RETURNING): then it gets NoData or nothing.
	clientRowDesc []byte
}

// field is one column of a RowDescription, as far as the proxy needs it.
type field struct {
	name   string
	typOID uint32
	start  int // offset of the field's entry in the body
	end    int
	format int16
}

func parseRowDescription(body []byte) ([]field, error) {
	if len(body) < 2 {
		return nil, errors.New("short RowDescription")
	}
	n := int(binary.BigEndian.Uint16(body))
	fields := make([]field, 0, n)
	off := 2
	for range n {
		name, rest, ok := protocol.CString(body[off:])
		if !ok || len(rest) < 18 {
			return nil, errors.New("malformed RowDescription")
		}
		start := off
		off += len(name) + 1
		fields = append(fields, field{
			name:   string(name),
			typOID: binary.BigEndian.Uint32(body[off+6:]),
			format: int16(binary.BigEndian.Uint16(body[off+16:])),
			start:  start,
			end:    off + 18,
		})
		off += 18
	}
	return fields, nil
}

// parseLayout returns the capture layout of a RowDescription, or nil when
// it is not a captured write's (it has no xid marker column).
func parseLayout(body []byte) (*layout, error) {
	fields, err := parseRowDescription(body)
	if err != nil {
		return nil, err
	}
	lsn := -1
	for i, f := range fields {
		if f.name == rewrite.CaptureXidColumn {
			lsn = i
			break
		}
	}
	if lsn < 0 {
		return nil, nil
	}
	if lsn+1 >= len(fields) || fields[lsn+1].name != rewrite.CaptureTableColumn {
		return nil, errors.New("capture columns out of order")
	}
	l := &layout{clientCols: lsn, xidIdx: lsn, tabIdx: lsn + 1, rowStart: lsn + 2, rowEnd: len(fields), total: len(fields)}
	for i := l.rowStart; i < len(fields); i++ {
		if strings.HasPrefix(fields[i].name, rewrite.CaptureOldKeyPrefix) {
			if l.rowEnd == len(fields) {
				l.rowEnd = i
			}
			l.oldKeyIdx = append(l.oldKeyIdx, i)
		}
	}
	for _, f := range fields[l.rowStart:l.rowEnd] {
		l.cols = append(l.cols, mirror.Column{Name: f.name, TypeOID: f.typOID})
	}
	if lsn > 0 {
		b := make([]byte, 0, protocol.HeaderLen+fields[lsn-1].end)
		b = append(b, 'T', 0, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(lsn))
		b = append(b, body[2:fields[lsn-1].end]...)
		binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
		l.clientRowDesc = b
	}
	return l, nil
}

// maxLayouts bounds a session's remembered layouts.
const maxLayouts = 64

// layoutOf is parseLayout, remembered per session by the RowDescription's
// bytes: drivers such as libpq describe a prepared statement again on every
// execution, and the answer is the same each time. Layouts are never
// changed once parsed, so sharing them is safe.
func (ss *session) layoutOf(body []byte) (*layout, error) {
	if l, ok := ss.layouts[string(body)]; ok {
		return l, nil
	}
	l, err := parseLayout(body)
	if err != nil {
		return nil, err
	}
	if ss.layouts == nil || len(ss.layouts) >= maxLayouts {
		ss.layouts = make(map[string]*layout)
	}
	ss.layouts[string(body)] = l
	return l, nil
}

// splitDataRow returns the client's part of a captured DataRow (nil when
// the client asked for no rows) and the raw values of every column (nil
// for NULL). The values alias body.
// dataRowColumn returns the value of column i of a DataRow body (nil for
// NULL); ok is false when the row has no such column or is malformed.
func dataRowColumn(body []byte, i int) (v []byte, ok bool) {
	if len(body) < 2 || i < 0 || i >= int(binary.BigEndian.Uint16(body)) {
		return nil, false
	}
	off := 2
	for c := 0; ; c++ {
		if len(body) < off+4 {
			return nil, false
		}
		sz := int(int32(binary.BigEndian.Uint32(body[off:])))
		off += 4
		switch {
		case sz < 0:
			if c == i {
				return nil, true
			}
		case len(body) < off+sz:
			return nil, false
		case c == i:
			return body[off : off+sz], true
		default:
			off += sz
		}
	}
}

func (l *layout) splitDataRow(body []byte, vals [][]byte) (client []byte, _ [][]byte, err error) {
	if len(body) < 2 {
		return nil, nil, errors.New("short DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	vals = vals[:0]
	off := 2
	clientEnd := 2
	for i := range n {
		if len(body) < off+4 {
			return nil, nil, errors.New("malformed DataRow")
		}
		sz := int(int32(binary.BigEndian.Uint32(body[off:])))
		off += 4
		if sz < 0 {
			vals = append(vals, nil)
		} else {
			if len(body) < off+sz {
				return nil, nil, errors.New("malformed DataRow")
			}
			vals = append(vals, body[off:off+sz:off+sz])
			off += sz
		}
		if i == l.clientCols-1 {
			clientEnd = off
		}
	}
	if n <= l.rowStart {
		return nil, nil, errors.New("DataRow narrower than its RowDescription")
	}
	if l.clientCols > 0 {
		client = make([]byte, 0, protocol.HeaderLen+clientEnd)
		client = append(client, 'D', 0, 0, 0, 0)
		client = binary.BigEndian.AppendUint16(client, uint16(l.clientCols))
		client = append(client, body[2:clientEnd]...)
		binary.BigEndian.PutUint32(client[1:], uint32(len(client)-1))
	}
	return client, vals, nil
}
