package proxy

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shadowproxy/shadowproxy/compare"
	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/protocol"
	"github.com/shadowproxy/shadowproxy/rewrite"
	"github.com/shadowproxy/shadowproxy/shadow"
)

// Shadower runs reads on the new database and compares them with the old
// database's answers. *shadow.Shadower implements it.
type Shadower interface {
	// Wants says whether a read is to be shadowed (sampling, include and
	// exclude rules). Called for every read: cheap.
	Wants(st *rewrite.Statement) bool
	// Submit hands over a captured read; it never blocks.
	Submit(r *shadow.Request) bool
	// Reserve and Release account for the memory held by captured rows.
	Reserve(n int64) bool
	Release(n int64)
	// PerComparisonCap is how many bytes of rows one capture keeps before it
	// switches to a digest.
	PerComparisonCap() int64
	// NotShadowed counts a read that was not shadowed, by reason.
	NotShadowed(reason string)
	// FollowsSearchPath says whether reads run with the session's
	// search_path (shadow.Request.SearchPath) on the new database.
	FollowsSearchPath() bool
}

// shadowPhase reports whether reads are shadowed in phase p.
func shadowPhase(p config.Phase) bool { return p == config.ShadowRead }

// shadowCapture copies one read's result off the wire, as the client gets
// it, for the shadow comparison. Owned by the upstream goroutine once the
// request is pushed.
type shadowCapture struct {
	req     *shadow.Request
	size    int64 // bytes reserved
	cap     int64
	dec     *compare.PGRowDecoder
	digest  *compare.Digester
	started time.Time
}

// wantShadow decides, on the client goroutine, whether a read is shadowed,
// counting why not when it is a read that is not.
func (ss *session) wantShadow(st *rewrite.Statement) bool {
	sh := ss.srv.shadower
	if !ss.shadowing || sh == nil || st == nil || st.Kind != rewrite.Read {
		return false
	}
	switch {
	case ss.txWrote:
		// The new database cannot see the transaction's own writes yet.
		sh.NotShadowed("read in a transaction that has written")
		return false
	case st.ForUpdate:
		sh.NotShadowed("SELECT ... FOR UPDATE")
		return false
	case st.HasSideEffects || ss.callsWritingFunction(st) != "":
		sh.NotShadowed("read with side effects")
		return false
	case ss.readsTemporary(st):
		sh.NotShadowed("read of a temporary table")
		return false
	case st.ServerInfo:
		// Drivers ask about types, settings and the version; the answer
		// describes the server (OIDs, versions, another engine), not the
		// data being migrated.
		sh.NotShadowed("read of the server's catalogs or settings")
		return false
	}
	if unqualified(st) {
		// Its names mean what the session's search_path makes them.
		switch path, known := ss.path.current(); {
		case !known:
			sh.NotShadowed("read in a session whose search_path the proxy does not know")
			return false
		case path != "" && !sh.FollowsSearchPath():
			sh.NotShadowed("read in a session with its own search_path (MySQL target)")
			return false
		}
	}
	return sh.Wants(st)
}

// unqualified reports whether a statement names a table without its
// schema, which the search_path resolves.
func unqualified(st *rewrite.Statement) bool {
	return slices.ContainsFunc(st.Tables, func(t string) bool { return !strings.Contains(t, ".") })
}

func (ss *session) newShadowCapture(st *rewrite.Statement, sql string, paramOIDs []uint32, params [][]byte, paramFormats, resultFormats []int16) *shadowCapture {
	path, _ := ss.path.current()
	return &shadowCapture{
		req: &shadow.Request{
			Statement: st, SQL: sql, ParamOIDs: paramOIDs, Params: params, ParamFormats: paramFormats,
			ResultFormats: resultFormats, MirrorSeq: ss.srv.mirroring.position(), At: time.Now(),
			SearchPath: path,
		},
		cap:     ss.srv.shadower.PerComparisonCap(),
		started: time.Now(),
	}
}

// fields records the old result's RowDescription.
func (c *shadowCapture) fields(body []byte) {
	var rd pgproto3.RowDescription
	if err := rd.Decode(body); err != nil {
		return
	}
	fs := make([]pgproto3.FieldDescription, len(rd.Fields))
	for i, f := range rd.Fields {
		f.Name = append([]byte(nil), f.Name...)
		fs[i] = f
	}
	c.req.Fields = fs
	if len(c.req.ResultFormats) == 0 {
		// Formats as the server reports them (a portal's Describe); a simple
		// query's rows are text.
		for _, f := range fs {
			c.req.ResultFormats = append(c.req.ResultFormats, f.Format)
		}
	}
}

// row copies one DataRow, or digests it beyond the capture's cap.
func (c *shadowCapture) row(sh Shadower, body []byte) {
	vals, n, err := splitRow(body)
	if err != nil {
		return
	}
	if !c.req.Truncated && (c.size+n > c.cap || !sh.Reserve(n)) {
		c.truncate(sh)
	}
	if c.req.Truncated {
		if c.digest != nil {
			if row, err := c.dec.DecodeRow(vals); err == nil {
				c.digest.Add(row)
			}
		}
		return
	}
	c.size += n
	row := make([][]byte, len(vals))
	for i, v := range vals {
		if v != nil {
			row[i] = append(make([]byte, 0, len(v)), v...)
		}
	}
	c.req.Rows = append(c.req.Rows, row)
}

// truncate switches the capture to a digest of every row: the rows kept
// so far are digested too and let go.
func (c *shadowCapture) truncate(sh Shadower) {
	c.req.Truncated = true
	defer func() {
		sh.Release(c.size)
		c.size = 0
	}()
	if len(c.req.Fields) == 0 {
		return
	}
	c.dec = compare.NewPGRowDecoder(pgtype.NewMap(), c.req.Fields)
	if err := c.dec.SetFormats(c.req.ResultFormats); err != nil {
		return
	}
	c.digest = compare.NewDigester(c.dec.Columns(), compare.Options{})
	for _, r := range c.req.Rows {
		if row, err := c.dec.DecodeRow(r); err == nil {
			c.digest.Add(row)
		}
	}
	c.req.Rows = nil
}

// finish hands the capture to the shadower; errBody is the old database's
// ErrorResponse when the read failed.
func (c *shadowCapture) finish(sh Shadower, errBody []byte) {
	c.req.OldLatency = time.Since(c.started)
	if errBody != nil {
		var er pgproto3.ErrorResponse
		if er.Decode(errBody) == nil {
			c.req.OldErr = &compare.Error{Code: er.Code, Message: er.Message}
		}
		c.req.Rows = nil
	}
	if c.digest != nil {
		c.req.Digest = c.digest.Digest()
	}
	c.req.Reserved = c.size
	if !sh.Submit(c.req) {
		sh.Release(c.size)
	}
}

// splitRow returns a DataRow's values (aliasing body) and their size.
func splitRow(body []byte) ([][]byte, int64, error) {
	if len(body) < 2 {
		return nil, 0, errors.New("short DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	vals := make([][]byte, 0, n)
	off := 2
	for range n {
		if len(body) < off+4 {
			return nil, 0, errors.New("malformed DataRow")
		}
		sz := int(int32(binary.BigEndian.Uint32(body[off:])))
		off += 4
		if sz < 0 {
			vals = append(vals, nil)
			continue
		}
		if len(body) < off+sz {
			return nil, 0, errors.New("malformed DataRow")
		}
		vals = append(vals, body[off:off+sz])
		off += sz
	}
	return vals, int64(len(body)), nil
}

// paramOIDsOf returns a statement's parameter types: as the server
// described them, else as the client declared them in Parse.
func paramOIDsOf(st *stmtState) []uint32 {
	if st == nil {
		return nil
	}
	if p := st.paramTypes.Load(); p != nil {
		return *p
	}
	// Parse's parameter type section has ParameterDescription's layout.
	return parseParamDescription(st.paramOIDs)
}

// shadowServer feeds a shadowed request's responses to its capture. It is
// called by the upstream goroutine for every message while tracking.
func (ss *session) shadowServer(e expectation, msg protocol.Message) {
	c := e.shadow
	if c == nil {
		return
	}
	sh := ss.srv.shadower
	switch msg.Type {
	case 'T':
		if e.kind == expQuery || e.kind == expDescribe {
			c.fields(msg.Body)
		}
	case 'D':
		c.row(sh, msg.Body)
	case 'C':
		if e.kind != expDescribe {
			c.finish(sh, nil)
		}
	case protocol.MsgErrorResponse:
		c.finish(sh, msg.Body)
	}
}
