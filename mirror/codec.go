package mirror

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// The spool stores each Batch as one record. The record payload is an
// explicit binary encoding, versioned by its first byte, so that a spool
// written by one build can be read by the next one (or refused clearly):
//
//	payload  = version:u8(=2) seq:uvarint flags:u8 [sec:varint nsec:uvarint] [xid:uvarint] nchanges:uvarint change*
//	           flags bit 0: CommittedAt is set (sec, nsec follow)
//	           flags bit 1: Xid is set (xid follows, never 0)
//	change   = op:u8 table:str ncols:uvarint (name:str oid:uvarint typename:str)*
//	           row:vals keycols:strs key:vals sql:str args:vals fingerprint:str
//	vals     = n:uvarint (tag:u8(0 null, 1 text) [text:str])*
//	strs     = n:uvarint str*
//	str      = len:uvarint bytes
//
// Version 1, written before batches had an Xid, is the same without flags
// bit 1; it is still decoded (Xid 0: already committed). EncodeBatch always
// writes the current version.
//
// gob was the alternative; it is self-describing but its stream carries type
// definitions that make single records large and its compatibility rules
// implicit. Here every byte is accounted for and the decoder is strict
// (trailing bytes, unknown versions, flags and ops are errors), so
// Encode∘Decode is the identity, which the fuzz test checks.
const (
	codecVersion   = 2
	codecVersionV1 = 1 // no Xid
)

const (
	flagCommittedAt = 1 << 0
	flagXid         = 1 << 1
)

// CommittedAt must lie in years 1 to 9999, which keeps time.Unix exact (far
// larger values overflow time.Time's internal representation).
const (
	minUnix = -62135596800
	maxUnix = 253402300799
)

// ErrCorrupt is wrapped by decoding errors of spool data.
var ErrCorrupt = errors.New("mirror: corrupt spool data")

// EncodeBatch appends the binary encoding of b to dst and returns the
// extended slice. It fails only for a Change with an invalid Op or a
// CommittedAt outside years 1 to 9999.
func EncodeBatch(dst []byte, b *Batch) ([]byte, error) {
	dst = append(dst, codecVersion)
	dst = binary.AppendUvarint(dst, b.Seq)
	var flags byte
	if !b.CommittedAt.IsZero() {
		if sec := b.CommittedAt.Unix(); sec < minUnix || sec > maxUnix {
			return dst, fmt.Errorf("mirror: encode batch %d: committed_at %v out of range", b.Seq, b.CommittedAt)
		}
		flags |= flagCommittedAt
	}
	if b.Xid != 0 {
		flags |= flagXid
	}
	dst = append(dst, flags)
	if flags&flagCommittedAt != 0 {
		dst = binary.AppendVarint(dst, b.CommittedAt.Unix())
		dst = binary.AppendUvarint(dst, uint64(b.CommittedAt.Nanosecond()))
	}
	if flags&flagXid != 0 {
		dst = binary.AppendUvarint(dst, b.Xid)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.Changes)))
	for i := range b.Changes {
		c := &b.Changes[i]
		if !c.Op.valid() {
			return dst, fmt.Errorf("mirror: encode change %d of %s: invalid op %d", i, c.Table, uint8(c.Op))
		}
		dst = append(dst, byte(c.Op))
		dst = appendString(dst, c.Table)
		dst = binary.AppendUvarint(dst, uint64(len(c.Columns)))
		for _, col := range c.Columns {
			dst = appendString(dst, col.Name)
			dst = binary.AppendUvarint(dst, uint64(col.TypeOID))
			dst = appendString(dst, col.TypeName)
		}
		dst = appendValues(dst, c.Row)
		dst = binary.AppendUvarint(dst, uint64(len(c.KeyCols)))
		for _, k := range c.KeyCols {
			dst = appendString(dst, k)
		}
		dst = appendValues(dst, c.Key)
		dst = appendString(dst, c.SQL)
		dst = appendValues(dst, c.Args)
		dst = appendString(dst, c.Fingerprint)
	}
	return dst, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendValues(dst []byte, vs []Value) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(vs)))
	for _, v := range vs {
		if v.Null {
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, 1)
		dst = appendString(dst, v.Text)
	}
	return dst
}

// DecodeBatch decodes a payload written by EncodeBatch. Errors wrap
// ErrCorrupt. It never panics and never allocates more than a small multiple
// of len(p), whatever p holds: every count is checked against the bytes left.
func DecodeBatch(p []byte) (*Batch, error) {
	d := decoder{buf: p}
	version := d.byte()
	known := byte(flagCommittedAt | flagXid)
	switch {
	case d.err != nil:
	case version == codecVersionV1:
		known = flagCommittedAt
	case version != codecVersion:
		return nil, fmt.Errorf("%w: unsupported batch encoding version %d", ErrCorrupt, version)
	}
	b := &Batch{Seq: d.uvarint()}
	flags := d.byte()
	if d.err == nil && flags&^known != 0 {
		d.fail(fmt.Sprintf("unknown flags %#x in version %d", flags, version))
	}
	if flags&flagCommittedAt != 0 {
		sec := d.varint()
		nsec := d.uvarint()
		if d.err == nil && (nsec >= uint64(time.Second) || sec < minUnix || sec > maxUnix) {
			d.fail("committed_at out of range")
		}
		b.CommittedAt = time.Unix(sec, int64(nsec)).UTC()
	}
	if flags&flagXid != 0 {
		// 0 means "no Xid" and is encoded by leaving the flag out; refusing
		// it keeps a single encoding per batch.
		if b.Xid = d.uvarint(); d.err == nil && b.Xid == 0 {
			d.fail("xid flag with xid 0")
		}
	}
	if n := d.count(); n > 0 {
		b.Changes = make([]Change, n)
	}
	for i := range b.Changes {
		if d.err != nil {
			break
		}
		c := &b.Changes[i]
		c.Op = Op(d.byte())
		if d.err == nil && !c.Op.valid() {
			d.fail(fmt.Sprintf("change %d: unknown op %d", i, c.Op))
		}
		c.Table = d.string()
		if n := d.count(); n > 0 {
			c.Columns = make([]Column, n)
		}
		for j := range c.Columns {
			c.Columns[j].Name = d.string()
			oid := d.uvarint()
			if oid > math.MaxUint32 {
				d.fail("type oid out of range")
			}
			c.Columns[j].TypeOID = uint32(oid)
			c.Columns[j].TypeName = d.string()
		}
		c.Row = d.values()
		if n := d.count(); n > 0 {
			c.KeyCols = make([]string, n)
		}
		for j := range c.KeyCols {
			c.KeyCols[j] = d.string()
		}
		c.Key = d.values()
		c.SQL = d.string()
		c.Args = d.values()
		c.Fingerprint = d.string()
	}
	if d.err == nil && len(d.buf) > 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.buf)))
	}
	if d.err != nil {
		return nil, d.err
	}
	return b, nil
}

// peekSeq returns the Seq of an encoded batch without decoding the rest; the
// spool recovery scan uses it.
func peekSeq(p []byte) (uint64, error) {
	d := decoder{buf: p}
	if v := d.byte(); d.err == nil && v != codecVersion && v != codecVersionV1 {
		return 0, fmt.Errorf("%w: unsupported batch encoding version %d", ErrCorrupt, v)
	}
	seq := d.uvarint()
	return seq, d.err
}

// decoder reads the encoding; after the first error every read returns a
// zero value and the error sticks, which keeps DecodeBatch linear.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, msg)
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.fail("unexpected end of record")
		return 0
	}
	v := d.buf[0]
	d.buf = d.buf[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// count reads an element count. Every element takes at least one byte, so a
// count larger than the bytes left is corrupt; checking it here bounds the
// allocations a hostile or damaged record can cause.
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)) {
		d.fail(fmt.Sprintf("count %d exceeds the %d bytes left", n, len(d.buf)))
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.buf)) {
		d.fail(fmt.Sprintf("string of %d bytes exceeds the %d bytes left", n, len(d.buf)))
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

func (d *decoder) values() []Value {
	n := d.count()
	if n == 0 {
		return nil
	}
	vs := make([]Value, n)
	for i := range vs {
		switch tag := d.byte(); tag {
		case 0:
			vs[i] = Null
		case 1:
			vs[i] = Value{Text: d.string()}
		default:
			d.fail(fmt.Sprintf("unknown value tag %d", tag))
		}
		if d.err != nil {
			return nil
		}
	}
	return vs
}

// Records are framed in segment files as
//
//	length:u32le crc:u32le payload[length]
//
// where crc is CRC-32C (Castagnoli) of the payload. A torn write at the end
// of a file shows as a short header, a length running past the end of the
// file, or a CRC mismatch; all three are detected on recovery.
const frameHeaderSize = 8

// maxFrameSize bounds one record. Larger batches are refused by the spool
// writer (and dead-lettered) rather than split, because a batch is a
// transaction and must be applied whole.
const maxFrameSize = math.MaxUint32

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends b as one framed record to dst.
func appendFrame(dst []byte, b *Batch) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeaderSize)...)
	dst, err := EncodeBatch(dst, b)
	if err != nil {
		return dst[:start], err
	}
	payload := dst[start+frameHeaderSize:]
	if uint64(len(payload)) > maxFrameSize {
		return dst[:start], fmt.Errorf("mirror: batch %d encodes to %d bytes, more than a record can hold", b.Seq, len(payload))
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, crcTable))
	return dst, nil
}
