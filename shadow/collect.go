package shadow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shadowproxy/shadowproxy/compare"
)

// reader runs a request's read on one database.
type reader interface {
	// read runs r's query and returns its result and the bytes of it
	// reserved from the memory budget, which the caller releases once done
	// with the rows. A query error or a timeout is a Result with Err set
	// (comparing errors is meaningful); a non-nil error means the database
	// was not reached or the result could not be decoded, and nothing can
	// be compared. hints are the old columns' families (for MySQL); with
	// digestOnly the rows are digested, not kept.
	read(ctx context.Context, w *worker, r *Request, hints []compare.Family, digestOnly bool) (*compare.Result, int64, error)
	close() error
}

// batchReader is a reader that runs several requests' reads at once.
type batchReader interface {
	// readBatch runs the reads of reqs and sets out[i] to what reqs[i]'s
	// came back with, as read would return it. Unless timed is set, the
	// reader may leave the results' Elapsed zero (not measured) when that
	// makes the batch cheaper for the database.
	readBatch(ctx context.Context, w *worker, reqs []*Request, out []readResult, timed bool)
}

// errUnreachable wraps failures to reach a database (connect, lost
// connection) as opposed to errors a query returned.
var errUnreachable = errors.New("database unreachable")

// errDecode wraps failures to decode a result.
var errDecode = errors.New("result not decodable")

// valueOverhead estimates the memory of a decoded compare.Value beyond its
// bytes (the struct: family, int, float, string header).
const valueOverhead = 48

// collector gathers one side's decoded rows, within the per-comparison cap
// and the shadower's memory budget: past either it digests every row
// instead, as the proxy does for a capture.
type collector struct {
	s      *Shadower
	cols   []compare.Column
	rows   [][]compare.Value
	size   int64 // bytes of the rows kept (and reserved)
	digest *compare.Digester
}

func newCollector(s *Shadower, cols []compare.Column, digestOnly bool) *collector {
	c := &collector{s: s, cols: cols}
	if digestOnly {
		c.digest = compare.NewDigester(cols, compare.Options{})
	}
	return c
}

// add keeps or digests one decoded row; raw is its size on the wire.
func (c *collector) add(row []compare.Value, raw int64) {
	if c.digest == nil {
		n := raw + int64(len(row))*valueOverhead
		if c.size+n <= c.s.opts.PerComparisonCap && c.s.Reserve(n) {
			c.size += n
			c.rows = append(c.rows, row)
			return
		}
		c.switchToDigest()
	}
	c.digest.Add(row)
}

// switchToDigest folds the rows kept so far into a digest and lets them go.
func (c *collector) switchToDigest() {
	c.digest = compare.NewDigester(c.cols, compare.Options{})
	for _, r := range c.rows {
		c.digest.Add(r)
	}
	c.rows = nil
	c.s.Release(c.size)
	c.size = 0
}

// result returns the collected result.
func (c *collector) result() *compare.Result {
	res := &compare.Result{Columns: c.cols, Rows: c.rows}
	if c.digest != nil {
		res.Truncated = true
		res.Digest = c.digest.Digest()
	}
	return res
}

// release gives back the memory of the kept rows. The rows themselves stay
// readable: the caller is done comparing them.
func (c *collector) release() {
	c.s.Release(c.size)
	c.size = 0
}

// timeoutResult is the result of a query that ran out of time.
func timeoutResult(d time.Duration, started time.Time) *compare.Result {
	return &compare.Result{
		Err:     &compare.Error{Timeout: true, Message: fmt.Sprintf("shadow query timed out after %s", d)},
		Elapsed: time.Since(started),
	}
}
