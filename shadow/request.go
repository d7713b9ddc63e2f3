package shadow

import (
	"encoding/hex"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shadowproxy/shadowproxy/compare"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// Request is one read the proxy ran on the old database, with the old
// answer as the client got it. The proxy builds it off the wire; after
// Submit the Shadower owns it (and the memory Reserved for it).
type Request struct {
	// Statement is the read's classification (fingerprint, tables, SQL);
	// shared and read-only.
	Statement *rewrite.Statement
	// SQL is the statement text the client sent (Postgres dialect, may use
	// $n). Empty means Statement.SQL.
	SQL string
	// ParamOIDs are the parameter types (may be shorter than Params, or 0
	// for unknown); Params the values, nil for NULL; ParamFormats as in
	// Bind (none: all text, one: for all).
	ParamOIDs    []uint32
	Params       [][]byte
	ParamFormats []int16
	// Fields is the old result's RowDescription; ResultFormats the formats
	// of its rows (as in Bind: none = all text, one = for all).
	Fields        []pgproto3.FieldDescription
	ResultFormats []int16
	// Rows are the old DataRows' values, copied, up to the capture cap.
	Rows [][][]byte
	// Truncated says rows beyond the cap were not kept; Digest then covers
	// every row (compare.NewDigester with the zero compare.Options over
	// the columns of Fields).
	Truncated bool
	Digest    compare.Digest
	// OldErr is the old database's error, if the read failed there.
	OldErr     *compare.Error
	OldLatency time.Duration
	// SearchPath is the search_path the client's session set, as SHOW
	// prints it, or "" for the default: a Postgres target (and the old
	// database, for re-checks) runs the read with it. A MySQL target has
	// no search_path: the proxy does not send it such reads (see
	// Shadower.FollowsSearchPath).
	SearchPath string
	// MirrorSeq is the mirror position the new database must have applied
	// before the read runs there (0: no wait).
	MirrorSeq uint64
	// At is when the read ran (default: when it is compared).
	At time.Time
	// Reserved is the memory the proxy reserved (Reserve) for Rows. Once
	// Submit accepts the request the Shadower releases it; when Submit
	// refuses it, it stays the caller's to release.
	Reserved int64
}

// sql is the text to run.
func (r *Request) sql() string {
	if r.SQL != "" {
		return r.SQL
	}
	return r.Statement.SQL
}

// paramFormat is parameter i's format code.
func (r *Request) paramFormat(i int) int16 {
	switch len(r.ParamFormats) {
	case 0:
		return pgtype.TextFormatCode
	case 1:
		return r.ParamFormats[0]
	}
	if i < len(r.ParamFormats) {
		return r.ParamFormats[i]
	}
	return pgtype.TextFormatCode
}

// maxParamLen truncates parameters in reports.
const maxParamLen = 128

// renderParams renders the parameters for a report's examples: text as a
// quoted string, binary decoded by its type, NULL as NULL.
func (r *Request) renderParams(types *pgtype.Map) []string {
	if len(r.Params) == 0 {
		return nil
	}
	out := make([]string, len(r.Params))
	for i, p := range r.Params {
		switch {
		case p == nil:
			out[i] = "NULL"
		case r.paramFormat(i) == pgtype.BinaryFormatCode:
			var oid uint32
			if i < len(r.ParamOIDs) {
				oid = r.ParamOIDs[i]
			}
			if s, err := binaryToText(types, oid, p); err == nil {
				out[i] = strconv.Quote(truncate(s, maxParamLen))
			} else {
				out[i] = `\x` + hex.EncodeToString(p[:min(len(p), maxParamLen/2)])
			}
		default:
			out[i] = strconv.Quote(truncate(string(p), maxParamLen))
		}
	}
	return out
}

// truncate shortens s to at most n bytes on a rune boundary, marking the
// cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
