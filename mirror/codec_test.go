package mirror

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleBatches covers every field and op, empty and NULL values, and
// non-ASCII text.
func sampleBatches() map[string]*Batch {
	cols := []Column{{Name: "id", TypeOID: 20, TypeName: "int8"}, {Name: "name", TypeOID: 25, TypeName: "text"}, {Name: "data", TypeOID: 17, TypeName: "bytea"}}
	return map[string]*Batch{
		"empty": {Seq: 1},
		"upsert": {Seq: 42, CommittedAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC), Changes: []Change{{
			Op: OpUpsert, Table: "public.users", Columns: cols,
			Row:         []Value{Text("1"), Text("zoë ✓"), Null},
			KeyCols:     []string{"id"},
			Fingerprint: "a1b2c3",
		}}},
		"delete and key change": {Seq: 1 << 40, CommittedAt: time.Unix(-5, 7).UTC(), Changes: []Change{
			{Op: OpDelete, Table: "s.t", KeyCols: []string{"a", "b"}, Key: []Value{Text("-1"), Text("")}},
			{Op: OpUpsert, Table: "s.t", Columns: cols[:2], Row: []Value{Text("2"), Text("x")}, KeyCols: []string{"a", "b"}},
		}},
		"statement": {Seq: 7, Changes: []Change{{
			Op: OpStatement, Table: "public.log", SQL: "INSERT INTO public.log VALUES ($1, $2)",
			Args: []Value{Text("2024-05-06 07:08:09+00"), Null}, Fingerprint: "ff",
		}}},
		"large value": {Seq: 9, Changes: []Change{{Op: OpUpsert, Table: "t", Row: []Value{Text(strings.Repeat("\x00\xff", 1<<10))}}}},
		"intent": {Seq: 77, Xid: 1<<40 + 3, CommittedAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), Changes: []Change{{
			Op: OpDelete, Table: "public.orders", KeyCols: []string{"id"}, Key: []Value{Text("5")},
		}}},
		"intent without time": {Seq: 78, Xid: 1, Changes: []Change{{
			Op: OpUpsert, Table: "public.orders", Columns: cols[:1], Row: []Value{Text("6")}, KeyCols: []string{"id"},
		}}},
	}
}

// v1Upsert is sampleBatches()["upsert"] as version 1 of the codec wrote it
// (testdata/fuzz/FuzzDecodeBatch/seed-upsert), before batches had an Xid.
const v1Upsert = "\x01*\x01\xb2\x87\xc4\xe3\f\x95\x9a\xef:\x01\x01\fpublic.users\x03\x02id\x14\x04int8\x04name\x19\x04text\x04data\x11\x05bytea\x03\x01\x011\x01\bzoë ✓\x00\x01\x02id\x00\x00\x00\x06a1b2c3"

// Spools written before the Xid keep decoding, as batches without an Xid.
func TestDecodeVersion1(t *testing.T) {
	want := sampleBatches()["upsert"]
	got, err := DecodeBatch([]byte(v1Upsert))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("version 1 record:\n got %+v\nwant %+v", got, want)
	}
	if seq, err := peekSeq([]byte(v1Upsert)); err != nil || seq != want.Seq {
		t.Fatalf("peekSeq = %d, %v", seq, err)
	}
	enc, err := EncodeBatch(nil, got)
	if err != nil {
		t.Fatal(err)
	}
	if enc[0] != codecVersion || !bytes.Equal(enc[1:], []byte(v1Upsert)[1:]) {
		// Without an Xid the two versions differ only in the version byte.
		t.Fatalf("re-encoded as %q", enc)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for name, b := range sampleBatches() {
		t.Run(name, func(t *testing.T) {
			enc, err := EncodeBatch(nil, b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeBatch(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, b) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
			}
			seq, err := peekSeq(enc)
			if err != nil || seq != b.Seq {
				t.Fatalf("peekSeq = %d, %v; want %d", seq, err, b.Seq)
			}
			// Every strict prefix is an error, never a panic or a short batch.
			for i := range enc {
				if _, err := DecodeBatch(enc[:i]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrCorrupt", i, len(enc), err)
				}
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := map[string]*Batch{
		"zero op":           {Changes: []Change{{Table: "t"}}},
		"unknown op":        {Changes: []Change{{Op: 9, Table: "t"}}},
		"time out of range": {CommittedAt: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := EncodeBatch(nil, b); err == nil {
				t.Fatal("EncodeBatch succeeded")
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, err := EncodeBatch(nil, sampleBatches()["upsert"])
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][]byte{
		"empty":            {},
		"future version":   append([]byte{codecVersion + 1}, valid[1:]...),
		"xid in version 1": binary.AppendUvarint([]byte{codecVersionV1, 1, flagXid}, 5),
		"xid flag, xid 0":  {codecVersion, 1, flagXid, 0, 0},
		"xid truncated":    {codecVersion, 1, flagXid, 0x80},
		"trailing bytes":   append(append([]byte{}, valid...), 0),
		"unknown flags":    {codecVersion, 1, 0x80},
		"huge count":       binary.AppendUvarint([]byte{codecVersion, 1, 0}, 1<<62),
		"bad op":           {codecVersion, 1, 0, 1, 0},
		"bad value tag":    {codecVersion, 1, 0, 1, byte(OpUpsert), 0, 0, 1, 7},
		"nanoseconds ≥ 1s": binary.AppendUvarint(binary.AppendVarint([]byte{codecVersion, 1, flagCommittedAt}, 0), uint64(time.Second)),
		"string too long":  {codecVersion, 1, 0, 1, byte(OpUpsert), 50, 'a'},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			if b, err := DecodeBatch(p); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeBatch = %+v, %v; want ErrCorrupt", b, err)
			}
		})
	}
}

func TestAppendFrame(t *testing.T) {
	b := sampleBatches()["upsert"]
	prefix := []byte("xyz")
	frame, err := appendFrame(prefix, b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(frame[:3], prefix) {
		t.Fatal("appendFrame overwrote dst")
	}
	f := frame[3:]
	n := binary.LittleEndian.Uint32(f)
	payload := f[frameHeaderSize:]
	if int(n) != len(payload) {
		t.Fatalf("length %d, payload %d bytes", n, len(payload))
	}
	if crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(f[4:]) {
		t.Fatal("bad CRC-32C")
	}
	if _, err := appendFrame(nil, &Batch{Changes: []Change{{}}}); err == nil {
		t.Fatal("appendFrame accepted an invalid op")
	}
}

// FuzzDecodeBatch checks that the decoder never panics and that whatever it
// accepts re-encodes to something that decodes to the same batch, and that
// this encoding is stable (Encode∘Decode is the identity on encodings), and
// that peekSeq (what recovery and the reader's skip rely on) agrees with it.
// The committed corpus is in testdata/fuzz/FuzzDecodeBatch; it holds
// records of both codec versions.
func FuzzDecodeBatch(f *testing.F) {
	for _, b := range sampleBatches() {
		enc, err := EncodeBatch(nil, b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := DecodeBatch(p)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if seq, err := peekSeq(p); err != nil || seq != b.Seq {
			t.Fatalf("peekSeq = %d, %v; DecodeBatch says seq %d", seq, err, b.Seq)
		}
		enc, err := EncodeBatch(nil, b)
		if err != nil {
			t.Fatalf("decoded batch does not encode: %v", err)
		}
		b2, err := DecodeBatch(enc)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if !reflect.DeepEqual(b, b2) {
			t.Fatalf("decode(encode(b)) != b:\n%+v\n%+v", b, b2)
		}
		enc2, err := EncodeBatch(nil, b2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %v", err)
		}
	})
}
