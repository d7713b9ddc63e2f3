package pgtarget

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/mirror"
)

var _ mirror.GroupTarget = (*Target)(nil)

// ApplyGroup applies the batches in one round trip, each as its own
// transaction: their statements are sent in one pipeline (pgconn's
// Pipeline), each batch's followed by its own Sync, so that each runs in its
// own implicit transaction, committed at its Sync, and an error rolls back
// that batch only (the server skips to its Sync and goes on with the next
// batch). The result for each batch is what Apply would return for it.
//
// A transient error that leaves the connection unusable (network, timeout)
// is returned for that batch and every one after it, whose outcome is then
// unknown: some may have committed. The connection is dropped after any
// transient error, as Apply does. Statements are prepared, with the
// per-connection cache, before the pipeline is sent, and each batch moves
// its sequences in its own transaction, as with Apply. Options.Timeout
// bounds the whole call.
func (t *Target) ApplyGroup(ctx context.Context, bs []*mirror.Batch) []error {
	errs := make([]error, len(bs))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		fillErrors(errs, 0, errClosed)
		return errs
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	if err := t.ensureConn(ctx); err != nil {
		fillErrors(errs, 0, err)
		return errs
	}
	t.applyGroup(ctx, bs, errs)
	drop := false
	for _, err := range errs {
		drop = t.afterApply(ctx, err) || drop
		if drop {
			break
		}
	}
	if drop {
		t.dropConn()
	}
	return errs
}

// fillErrors sets err for the batches from i on that have no error yet.
func fillErrors(errs []error, i int, err error) {
	for ; i < len(errs); i++ {
		if errs[i] == nil {
			errs[i] = err
		}
	}
}

// applyGroup prepares the batches and runs them in one pipeline, setting
// errs. Called with mu held and a connection open.
func (t *Target) applyGroup(ctx context.Context, bs []*mirror.Batch, errs []error) {
	for _, b := range bs {
		if err := t.loadTables(ctx, b); err != nil {
			fillErrors(errs, 0, err)
			return
		}
	}
	type sent struct {
		i  int
		pb *prepared
	}
	var send []sent
	for i, b := range bs {
		if len(b.Changes) == 0 {
			continue
		}
		pb, err := t.prepareBatch(ctx, b)
		if err == nil {
			send = append(send, sent{i, pb})
			continue
		}
		errs[i] = err
		if _, ok := errors.AsType[*mirror.RejectError](err); !ok {
			// Send the batches before it only.
			fillErrors(errs, i, err)
			break
		}
	}
	if len(send) == 0 {
		return
	}
	p := t.conn.PgConn().StartPipeline(ctx)
	for _, s := range send {
		for k, sd := range s.pb.sds {
			// Not SendQueryStatement: pgconn (v5.12) does not drop the
			// statement descriptions of the statements skipped after an
			// error, and would misread the batches after it.
			p.SendQueryPrepared(sd.Name, s.pb.params[k], nil, nil)
		}
		p.SendPipelineSync()
	}
	if err := p.Flush(); err != nil {
		fillErrors(errs, send[0].i, fmt.Errorf("pgtarget: pipeline: %w", err))
		p.Close()
		return
	}
	for _, s := range send {
		err, broken := t.readGroupBatch(p, bs[s.i], s.pb)
		errs[s.i] = err
		if broken {
			fillErrors(errs, s.i, err)
			break
		}
	}
	if err := p.Close(); err != nil {
		// Every result was read (or the connection failed, which a result
		// says): the connection is not usable for the next call.
		t.log.Debug("pgtarget: pipeline close", "err", err)
		t.dropConn()
	}
}

// readGroupBatch reads the results of one batch of the pipeline, up to and
// including its Sync, and returns what Apply would have returned for it.
// broken says the connection failed, so that the results of the batches
// after it are unknown.
func (t *Target) readGroupBatch(p *pgconn.Pipeline, b *mirror.Batch, pb *prepared) (_ error, broken bool) {
	var pgErr *pgconn.PgError
	var failed error
	var seqRows [][][]byte
	done := 0
	for done < len(pb.sds) {
		res, err := p.GetResults()
		if err == nil {
			rr, ok := res.(*pgconn.ResultReader)
			switch {
			case !ok:
				err = fmt.Errorf("pgtarget: pipeline: got %T for a statement", res)
			case done < len(b.Changes):
				_, err = rr.Close()
			default:
				seqRows, err = readSequenceRows(rr)
			}
		}
		if err != nil {
			if !errors.As(err, &pgErr) {
				return fmt.Errorf("pgtarget: pipeline: %w", err), true
			}
			// The server skips the rest of the batch, to its Sync.
			failed = err
			break
		}
		done++
	}
	res, err := p.GetResults()
	if err != nil && errors.As(err, &pgErr) {
		// The commit failed (a deferred constraint, say); the Sync's
		// ReadyForQuery follows.
		failed = err
		res, err = p.GetResults()
	}
	if err != nil {
		return fmt.Errorf("pgtarget: pipeline: %w", err), true
	}
	if _, ok := res.(*pgconn.PipelineSync); !ok {
		return fmt.Errorf("pgtarget: pipeline: got %T for a Sync", res), true
	}
	if failed != nil {
		return t.batchError(b, pb, done, failed), false
	}
	if pb.seq {
		t.sequencesDone(pb.seqVals, seqRows)
	}
	return nil, false
}
