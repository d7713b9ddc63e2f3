package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderLen is the size of a regular message header: one type byte and a
// big-endian int32 length that counts itself but not the type byte.
const HeaderLen = 5

// DefaultBufferSize is the read buffer a Reader starts with. Most messages
// of an OLTP workload fit, and an idle connection holds only this much.
const DefaultBufferSize = 8 << 10

// ErrMessageTooLarge is returned for a message whose declared length
// exceeds the Reader's limit.
var ErrMessageTooLarge = errors.New("message too large")

// A Message is one regular (typed) protocol message inside a Reader's buffer.
// Raw and Body alias that buffer: they stay valid until the next call to
// Fill, Stream or Reset on the Reader, and must be copied to be kept longer
// or handed to another goroutine.
type Message struct {
	Type byte
	Raw  []byte // header and body, as received
	Body []byte // Raw[HeaderLen:]
}

// Reader frames a stream of regular protocol messages without decoding
// them. It is built for forwarding: Next hands out complete messages that
// are already buffered, in order and contiguous in memory, so a caller can
// forward a run of them with a single write; Fill reads more when none is
// complete. A message larger than the buffer can be passed through with
// Stream without being held whole.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	src     io.Reader
	buf     []byte
	r, w    int // unread data is buf[r:w]
	maxBody int
	defSize int
}

// NewReader returns a Reader over src that starts with bufSize bytes of
// buffer and rejects messages whose body exceeds maxBody bytes.
func NewReader(src io.Reader, bufSize, maxBody int) *Reader {
	if bufSize < HeaderLen*2 {
		bufSize = DefaultBufferSize
	}
	return &Reader{src: src, buf: make([]byte, bufSize), maxBody: maxBody, defSize: bufSize}
}

// Source returns the stream the Reader reads from.
func (r *Reader) Source() io.Reader { return r.src }

// SetSource makes the Reader read from src from now on; what is buffered
// stays. It lets a forwarder move a connection between blocking reads and
// an event loop without losing bytes.
func (r *Reader) SetSource(src io.Reader) { r.src = src }

// Buffered returns how many bytes have been read from the source but not
// yet consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// Header returns the type and body length of the next message when its
// header is buffered. It returns ErrMessageTooLarge, or a malformed-length
// error, for a header that cannot start a valid message.
func (r *Reader) Header() (typ byte, bodyLen int, ok bool, err error) {
	if r.w-r.r < HeaderLen {
		return 0, 0, false, nil
	}
	typ = r.buf[r.r]
	n := int(int32(binary.BigEndian.Uint32(r.buf[r.r+1:])))
	if n < 4 {
		return typ, 0, false, fmt.Errorf("invalid message length %d for message type %q", n, typ)
	}
	if n-4 > r.maxBody {
		return typ, n - 4, false, fmt.Errorf("%w: type %q, %d bytes (limit %d)", ErrMessageTooLarge, typ, n-4, r.maxBody)
	}
	return typ, n - 4, true, nil
}

// Next returns the next complete buffered message and consumes it. It never
// reads from the source: ok is false when the next message is not complete
// yet (call Fill, or Stream for a large one).
func (r *Reader) Next() (m Message, ok bool, err error) {
	typ, n, ok, err := r.Header()
	if !ok || err != nil {
		return Message{}, false, err
	}
	end := r.r + HeaderLen + n
	if end > r.w {
		return Message{}, false, nil
	}
	m = Message{Type: typ, Raw: r.buf[r.r:end:end], Body: r.buf[r.r+HeaderLen : end : end]}
	r.r = end
	return m, true, nil
}

// Fits reports whether a message of bodyLen bytes can be held whole in the
// buffer once Fill has made room; if not, Grow or Stream it.
func (r *Reader) Fits(bodyLen int) bool { return HeaderLen+bodyLen <= len(r.buf) }

// Grow enlarges the buffer so that a message of bodyLen bytes fits whole.
// The buffer returns to its default size once it is empty again.
func (r *Reader) Grow(bodyLen int) {
	need := HeaderLen + bodyLen
	if need <= len(r.buf) {
		return
	}
	nb := make([]byte, need)
	r.w = copy(nb, r.buf[r.r:r.w])
	r.r = 0
	r.buf = nb
}

// Fill reads at least one more byte from the source, blocking as needed.
// It invalidates every Message returned before.
func (r *Reader) Fill() error {
	if r.r == r.w {
		r.r, r.w = 0, 0
		if len(r.buf) > r.defSize {
			// A large message has gone through: give the memory back so an
			// idle connection holds only the default buffer.
			r.buf = make([]byte, r.defSize)
		}
	} else if r.r > 0 && (r.w == len(r.buf) || r.w-r.r < HeaderLen || r.r > len(r.buf)/2) {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	if r.w == len(r.buf) {
		// Full of one incomplete message that the caller neither grew nor
		// streamed; this is a caller bug, not bad input.
		return errors.New("protocol: reader buffer full")
	}
	n, err := r.src.Read(r.buf[r.w:])
	r.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	if err == io.EOF && r.w > r.r {
		// The stream ended inside a message.
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Stream copies the next message to w, header included, without holding
// it whole: what is buffered is written first, then the rest of the body
// straight from the source. The header must be buffered (Header returned
// ok). It invalidates every Message returned before.
func (r *Reader) Stream(w io.Writer) (int64, error) {
	_, n, ok, err := r.Header()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errors.New("protocol: Stream called without a buffered header")
	}
	total := HeaderLen + n
	have := min(total, r.w-r.r)
	written, err := w.Write(r.buf[r.r : r.r+have])
	r.r += written
	if err != nil {
		return int64(written), err
	}
	rest, err := io.CopyN(w, r.src, int64(total-have))
	if r.r == r.w {
		r.r, r.w = 0, 0
	}
	return int64(written) + rest, err
}

// Offset returns the buffer position of the next unconsumed byte. With
// Span it lets a forwarder collect a run of consecutive messages and write
// them in one call.
func (r *Reader) Offset() int { return r.r }

// Span returns the bytes consumed since Offset returned from. It is valid
// until the next Fill, Grow or Stream.
func (r *Reader) Span(from int) []byte { return r.buf[from:r.r] }

// Rewind moves the read position back to off, an Offset obtained since
// the last Fill: the messages after it are read again. An event loop uses
// it to leave a message it looked at for the code that handles it.
func (r *Reader) Rewind(off int) {
	if off < 0 || off > r.r {
		panic("protocol: Rewind past the read position")
	}
	r.r = off
}

// Slice returns buf[from:to] for offsets obtained from Offset since the
// last Fill.
func (r *Reader) Slice(from, to int) []byte { return r.buf[from:to] }
