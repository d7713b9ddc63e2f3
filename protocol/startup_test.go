package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestReadStartup(t *testing.T) {
	startup30 := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "app", "database": "shop", "application_name": "psql"}}
	startup32 := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32,
		Parameters: map[string]string{"user": "app"}}
	cancel := &pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}
	cancelLong := &pgproto3.CancelRequest{ProcessID: 7, SecretKey: bytes.Repeat([]byte{9}, 32)}
	for _, tc := range []struct {
		name    string
		in      []byte
		want    pgproto3.FrontendMessage
		errCode string
	}{
		{"startup 3.0", encode(t, startup30), startup30, ""},
		{"startup 3.2", encode(t, startup32), startup32, ""},
		{"ssl request", encode(t, &pgproto3.SSLRequest{}), &pgproto3.SSLRequest{}, ""},
		{"gssenc request", encode(t, &pgproto3.GSSEncRequest{}), &pgproto3.GSSEncRequest{}, ""},
		{"cancel", encode(t, cancel), cancel, ""},
		{"cancel 3.2 long key", encode(t, cancelLong), cancelLong, ""},
		{"direct tls", []byte{0x16, 3, 1, 0, 5}, &DirectTLS{}, ""},
		{"protocol 2", []byte{0, 0, 0, 8, 0, 2, 0, 0}, nil, CodeProtocolViolation},
		{"protocol 4", []byte{0, 0, 0, 8, 0, 4, 0, 0}, nil, CodeProtocolViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadStartup(bufio.NewReader(bytes.NewReader(tc.in)))
			if tc.errCode != "" {
				var pe *Error
				if !errors.As(err, &pe) || pe.Code != tc.errCode {
					t.Fatalf("err %v, want SQLSTATE %s", err, tc.errCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestReadStartupLeavesRest(t *testing.T) {
	in := append(encode(t, &pgproto3.SSLRequest{}), 0x16, 3, 1)
	br := bufio.NewReader(bytes.NewReader(in))
	if _, err := ReadStartup(br); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if !bytes.Equal(rest, []byte{0x16, 3, 1}) {
		t.Fatalf("rest %v: ReadStartup consumed past its packet", rest)
	}
}

func TestReadStartupBadLength(t *testing.T) {
	for _, in := range [][]byte{
		{0, 0, 0, 4},                   // shorter than a version word
		{0, 0, 0x30, 0, 0, 3, 0, 0},    // 12288 > MaxStartupPacket
		{0, 0, 0, 20, 0, 3, 0, 0, 'u'}, // truncated
		{0x7f, 0xff, 0xff, 0xff},       // huge
	} {
		if _, err := ReadStartup(bufio.NewReader(bytes.NewReader(in))); err == nil {
			t.Errorf("%v: no error", in)
		}
	}
}

func TestErrorFields(t *testing.T) {
	body := encode(t, &pgproto3.ErrorResponse{Severity: "ERREUR", SeverityUnlocalized: "ERROR", Code: "42P01", Message: "x"})
	sev, code := ErrorFields(body[HeaderLen:])
	if sev != "ERROR" || code != "42P01" {
		t.Fatalf("got %q %q", sev, code)
	}
	e := &Error{Severity: "FATAL", Code: CodeTooManyConnections, Message: "sorry, too many clients already"}
	var back pgproto3.ErrorResponse
	raw := AppendErrorResponse(nil, e)
	if err := back.Decode(raw[HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if back.Code != e.Code || back.Message != e.Message || back.Severity != "FATAL" {
		t.Fatalf("round trip: %+v", back)
	}
}

func FuzzReadStartup(f *testing.F) {
	f.Add(encode(f, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}}))
	f.Add(encode(f, &pgproto3.SSLRequest{}))
	f.Add(encode(f, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}))
	f.Add([]byte{0x16, 3, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		msg, err := ReadStartup(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			return
		}
		// Whatever decodes must encode back to what was read.
		if _, ok := msg.(*DirectTLS); ok {
			return
		}
		out, err := msg.Encode(nil)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", msg, err)
		}
		if sm, ok := msg.(*pgproto3.StartupMessage); ok {
			// Parameter order is not kept by a map; compare decoded forms.
			var back pgproto3.StartupMessage
			if err := back.Decode(out[4:]); err != nil || !reflect.DeepEqual(&back, sm) {
				t.Fatalf("round trip: %v %#v vs %#v", err, back, sm)
			}
			return
		}
		if !bytes.Equal(out, in[:len(out)]) {
			t.Fatalf("re-encoded %x, read %x", out, in[:len(out)])
		}
	})
}
