package protocol

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/jackc/pgx/v5/pgproto3"
)

// encode concatenates encoded messages.
func encode(t testing.TB, msgs ...pgproto3.Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// drain reads every message from r the way the proxy forwards: runs of
// buffered messages, streaming what does not fit. It returns the bytes
// "forwarded" and the message types seen.
func drain(r *Reader) (out []byte, types []byte, err error) {
	var w bytes.Buffer
	for {
		start := r.Offset()
		for {
			_, n, ok, err := r.Header()
			if err != nil {
				return w.Bytes(), types, err
			}
			if !ok {
				break
			}
			if !r.Fits(n) {
				w.Write(r.Span(start))
				typ := r.buf[r.r]
				if _, err := r.Stream(&w); err != nil {
					return w.Bytes(), types, err
				}
				types = append(types, typ)
				start = r.Offset()
				continue
			}
			m, ok, _ := r.Next()
			if !ok {
				break
			}
			if len(m.Raw) != HeaderLen+len(m.Body) {
				return nil, nil, errors.New("raw and body disagree")
			}
			types = append(types, m.Type)
		}
		w.Write(r.Span(start))
		if err := r.Fill(); err != nil {
			if err == io.EOF {
				return w.Bytes(), types, nil
			}
			return w.Bytes(), types, err
		}
	}
}

func TestReaderForwardsExactly(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100_000)
	in := encode(t,
		&pgproto3.Query{String: "select 1"},
		&pgproto3.Parse{Name: "s1", Query: "select $1::int"},
		&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("42")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.CopyData{Data: big},
		&pgproto3.CopyDone{},
		&pgproto3.Terminate{},
	)
	want := []byte{'Q', 'P', 'B', 'E', 'S', 'd', 'c', 'X'}
	for _, tc := range []struct {
		name string
		src  func() io.Reader
		buf  int
	}{
		{"whole", func() io.Reader { return bytes.NewReader(in) }, 8192},
		{"one byte reads", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(in)) }, 8192},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(in)) }, 64},
		{"tiny buffer", func() io.Reader { return bytes.NewReader(in) }, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.src(), tc.buf, 1<<20)
			out, types, err := drain(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("forwarded %d bytes, want %d identical bytes", len(out), len(in))
			}
			if !bytes.Equal(types, want) {
				t.Fatalf("types %q, want %q", types, want)
			}
		})
	}
}

func TestReaderLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		wantErr error
		errText string
	}{
		{"too large", encode(t, &pgproto3.Query{String: string(bytes.Repeat([]byte("a"), 5000))}), ErrMessageTooLarge, ""},
		{"negative length", []byte{'Q', 0xff, 0xff, 0xff, 0xff}, nil, "invalid message length"},
		{"length below 4", []byte{'Q', 0, 0, 0, 3}, nil, "invalid message length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.in), 8192, 4096)
			_, _, err := drain(r)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.errText != "" && !bytes.Contains([]byte(err.Error()), []byte(tc.errText)) {
				t.Fatalf("err %v, want it to mention %q", err, tc.errText)
			}
		})
	}
}

func TestReaderGrowAndShrink(t *testing.T) {
	q := string(bytes.Repeat([]byte("q"), 50_000))
	in := encode(t, &pgproto3.Query{String: q}, &pgproto3.Sync{})
	r := NewReader(bytes.NewReader(in), 1024, 1<<20)
	var got []byte
	for got == nil {
		_, n, ok, err := r.Header()
		if err != nil {
			t.Fatal(err)
		}
		if ok && !r.Fits(n) {
			r.Grow(n)
		}
		if m, ok, _ := r.Next(); ok {
			got = append([]byte(nil), m.Body...)
			break
		}
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
	}
	if s, _, _ := CString(got); string(s) != q {
		t.Fatal("query body corrupted")
	}
	// Consume the Sync, then the next Fill (at EOF) must give the large
	// buffer back.
	for {
		if m, ok, _ := r.Next(); ok && m.Type == 'S' {
			break
		}
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.Fill()
	if len(r.buf) != 1024 {
		t.Fatalf("buffer is %d bytes after the large message, want the default 1024", len(r.buf))
	}
}

func FuzzReader(f *testing.F) {
	f.Add(encode(f, &pgproto3.Query{String: "select 1"}, &pgproto3.Sync{}), 16)
	f.Add(encode(f, &pgproto3.CopyData{Data: bytes.Repeat([]byte{1}, 300)}), 32)
	f.Add([]byte{'Q', 0, 0, 0, 3}, 10)
	f.Fuzz(func(t *testing.T, in []byte, bufSize int) {
		if bufSize < 0 || bufSize > 1<<16 {
			return
		}
		r := NewReader(iotest.HalfReader(bytes.NewReader(in)), bufSize, 1<<16)
		out, _, err := drain(r)
		if err == nil && !bytes.Equal(out, in) {
			t.Fatalf("clean read forwarded %d bytes of %d", len(out), len(in))
		}
		if !bytes.HasPrefix(in, out) {
			t.Fatal("forwarded bytes are not a prefix of the input")
		}
	})
}
