package shadow

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shadowproxy/shadowproxy/compare"
	"github.com/shadowproxy/shadowproxy/internal/testdb"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// Servers are started on first use and shared by the package's tests.
var (
	pgOnce, myOnce sync.Once
	pgSrv          *testdb.Postgres
	mySrv          *testdb.MariaDB
	pgErr, myErr   error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pgSrv != nil {
		pgSrv.Close()
	}
	if mySrv != nil {
		mySrv.Close()
	}
	os.Exit(code)
}

func postgres(t *testing.T) *testdb.Postgres {
	t.Helper()
	pgOnce.Do(func() { pgSrv, pgErr = testdb.NewPostgres(context.Background()) })
	if pgErr != nil {
		t.Fatalf("start postgres: %v", pgErr)
	}
	return pgSrv
}

func mariadb(t *testing.T) *testdb.MariaDB {
	t.Helper()
	myOnce.Do(func() { mySrv, myErr = testdb.NewMariaDB(context.Background()) })
	if myErr != nil {
		t.Fatalf("start mariadb: %v", myErr)
	}
	return mySrv
}

// pgDatabase creates a fresh database on the shared server and returns its
// URL.
func pgDatabase(t *testing.T, name string) string {
	t.Helper()
	p := postgres(t)
	p.Exec(t, "DROP DATABASE IF EXISTS "+name)
	p.Exec(t, "CREATE DATABASE "+name)
	return p.URL("postgres", "", name)
}

func myDatabase(t *testing.T, name string) string {
	t.Helper()
	m := mariadb(t)
	m.Exec(t, "DROP DATABASE IF EXISTS "+name+"; CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin")
	return m.URL("root", "", name)
}

func pgExec(t *testing.T, url, sql string) {
	t.Helper()
	ctx, c, done := pgConnect(t, url)
	defer done()
	if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("postgres: %v\n%s", err, sql)
	}
}

// pgQuery returns the first value of the first row sql returns.
func pgQuery(t *testing.T, url, sql string) string {
	t.Helper()
	ctx, c, done := pgConnect(t, url)
	defer done()
	res := c.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) == 0 || len(res.Rows[0]) == 0 {
		t.Fatalf("postgres: %v (%d rows)\n%s", res.Err, len(res.Rows), sql)
	}
	return string(res.Rows[0][0])
}

// pgConnect connects to url, and returns a context bounding the
// connection's use and the function that ends both.
func pgConnect(t *testing.T, url string) (context.Context, *pgconn.PgConn, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c, err := pgconn.Connect(ctx, url)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return ctx, c, func() {
		c.Close(context.Background())
		cancel()
	}
}

func myExec(t *testing.T, url, sql string) {
	t.Helper()
	name := url[strings.LastIndexByte(url, '/')+1:]
	mariadb(t).Exec(t, "USE "+name+"; "+sql)
}

// oldConn is a raw connection to the old database that captures requests
// the way the proxy does.
type oldConn struct {
	t     *testing.T
	conn  *pgconn.PgConn
	cl    *rewrite.Classifier
	types *pgtype.Map
}

func newOldConn(t *testing.T, url string) *oldConn {
	t.Helper()
	c, err := pgconn.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	cl, err := rewrite.NewClassifier(64)
	if err != nil {
		t.Fatal(err)
	}
	return &oldConn{t: t, conn: c, cl: cl, types: pgtype.NewMap()}
}

// param is a typed parameter value for a test query.
type param struct {
	oid uint32
	v   any    // nil: NULL
	raw []byte // sent as is instead of encoding v
}

// query is a read as a client sends it.
type query struct {
	sql          string
	params       []param
	binaryParams bool
	binaryResult bool
}

func (q query) String() string {
	return fmt.Sprintf("%s %v bin=%v/%v", q.sql, q.params, q.binaryParams, q.binaryResult)
}

// capture runs q on the old database and builds the Request the proxy
// would: the raw rows as received, the field descriptions, the formats.
func (o *oldConn) capture(q query) *Request {
	o.t.Helper()
	st, err := o.cl.ClassifyOne(q.sql)
	if err != nil {
		o.t.Fatal(err)
	}
	r := &Request{Statement: st, SQL: q.sql, At: time.Now()}
	format := int16(pgtype.TextFormatCode)
	if q.binaryParams {
		format = pgtype.BinaryFormatCode
	}
	for _, p := range q.params {
		r.ParamOIDs = append(r.ParamOIDs, p.oid)
		if p.raw != nil {
			r.Params = append(r.Params, p.raw)
			continue
		}
		if p.v == nil {
			r.Params = append(r.Params, nil)
			continue
		}
		b, err := o.types.Encode(p.oid, format, p.v, nil)
		if err != nil {
			o.t.Fatalf("encode %v: %v", p.v, err)
		}
		r.Params = append(r.Params, b)
	}
	if len(q.params) > 0 {
		r.ParamFormats = []int16{format}
	}
	if q.binaryResult {
		r.ResultFormats = []int16{pgtype.BinaryFormatCode}
	}
	started := time.Now()
	rr := o.conn.ExecParams(context.Background(), q.sql, r.Params, r.ParamOIDs, r.ParamFormats, r.ResultFormats)
	// (ResultReader.Read leaves out the fields of an empty result.)
	r.Fields = pgFields(rr.FieldDescriptions())
	for rr.NextRow() {
		var row [][]byte
		for _, v := range rr.Values() {
			if v != nil {
				v = append([]byte{}, v...)
			}
			row = append(row, v)
		}
		r.Rows = append(r.Rows, row)
	}
	_, err = rr.Close()
	r.OldLatency = time.Since(started)
	if err != nil {
		pe, ok := err.(*pgconn.PgError)
		if !ok {
			o.t.Fatalf("%s: %v", q.sql, err)
		}
		r.OldErr = &compare.Error{Code: pe.Code, Message: pe.Message}
		r.Fields, r.Rows = nil, nil
	}
	return r
}

// truncateRequest turns a capture into one past the proxy's cap: a digest
// of every row, computed as the proxy does, and no rows.
func truncateRequest(t *testing.T, r *Request) {
	t.Helper()
	dec := compare.NewPGRowDecoder(pgtype.NewMap(), r.Fields)
	if err := dec.SetFormats(r.ResultFormats); err != nil {
		t.Fatal(err)
	}
	g := compare.NewDigester(dec.Columns(), compare.Options{})
	for _, raw := range r.Rows {
		row, err := dec.DecodeRow(raw)
		if err != nil {
			t.Fatal(err)
		}
		g.Add(row)
	}
	r.Rows, r.Truncated, r.Digest = nil, true, g.Digest()
}

// submit reserves the request's memory like the proxy and submits it.
func submit(t *testing.T, s *Shadower, r *Request) {
	t.Helper()
	var n int64
	for _, row := range r.Rows {
		for _, v := range row {
			n += int64(len(v)) + 4
		}
	}
	if !s.Reserve(n) {
		t.Fatalf("reserve %d bytes refused", n)
	}
	r.Reserved = n
	if !s.Submit(r) {
		s.Release(n)
		t.Fatal("Submit refused the request")
	}
}

// waitRecorded waits until n events (compared or ignored) are recorded and
// every reservation is released, and returns the report.
func waitRecorded(t *testing.T, s *Shadower, n int64) *compare.Report {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := s.Snapshot()
		if r.Compared+r.Ignored >= n && s.mem.Load() == 0 {
			if r.Compared+r.Ignored > n {
				t.Fatalf("recorded %d events, want %d", r.Compared+r.Ignored, n)
			}
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %d of %d events recorded, %d bytes still reserved", r.Compared+r.Ignored, n, s.mem.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newShadower starts a Shadower closed at the end of the test.
func newShadower(t *testing.T, o Options) *Shadower {
	t.Helper()
	if o.SampleRate == 0 {
		o.SampleRate = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// describeDiffs renders a report's examples for failure messages.
func describeDiffs(r *compare.Report) string {
	var b strings.Builder
	for _, c := range r.Classes {
		if c.Mismatched == 0 && len(c.Ignored) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s: mismatched %d ignored %v partial %v", c.Query, c.Mismatched, c.Ignored, c.Partial)
		for _, ex := range c.Examples {
			fmt.Fprintf(&b, "\n  [%s] %s %s old=%s new=%s (%s) params %v", ex.Type, ex.Column, ex.RowKey, ex.Old, ex.New, ex.Rule, ex.Params)
		}
	}
	return b.String()
}

// blackhole is a TCP server that accepts connections and never answers:
// a database that hangs.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
