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
// transaction, and stops at the first that fails: their statements are sent
// in one pipeline (pgconn's Pipeline), each batch's between BEGIN and COMMIT,
// with a single Sync at the end. After an error the server skips everything
// up to that Sync, so no batch behind a failed one runs: those are returned
// as mirror.ErrNotApplied, for the mirror to send again at once. Were they
// to commit, the failed batch, applied again later, would land over their
// newer rows. The failed batch's error is what Apply would return for it.
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
	// One batch runs in the implicit transaction that its Sync commits;
	// several are chained (see ApplyGroup).
	var chain *chainStatements
	if len(send) > 1 {
		var err error
		if chain, err = t.chainStatements(ctx); err != nil {
			fillErrors(errs, send[0].i, err)
			return
		}
	}
	p := t.conn.PgConn().StartPipeline(ctx)
	for _, s := range send {
		if chain != nil {
			p.SendQueryPrepared(chain.begin.Name, nil, nil, nil)
		}
		for k, sd := range s.pb.sds {
			// Not SendQueryStatement: pgconn (v5.12) does not drop the
			// statement descriptions of the statements skipped after an
			// error, and would misread the statements after it.
			p.SendQueryPrepared(sd.Name, s.pb.params[k], nil, nil)
		}
		if chain != nil {
			p.SendQueryPrepared(chain.commit.Name, nil, nil, nil)
		} else {
			p.SendPipelineSync()
		}
	}
	if chain != nil {
		p.SendPipelineSync()
	}
	if err := p.Flush(); err != nil {
		fillErrors(errs, send[0].i, fmt.Errorf("pgtarget: pipeline: %w", err))
		p.Close()
		return
	}
	if chain != nil {
		t.readChain(p, bs, send, errs)
	} else {
		s := send[0]
		err, broken := t.readBatch(p, bs[s.i], s.pb, false)
		if !broken {
			switch commitErr, syncErr := readSync(p); {
			case syncErr != nil:
				// The commit's outcome is unknown.
				err = syncErr
			case err == nil && commitErr != nil:
				err = &batchFailure{done: len(s.pb.sds), err: commitErr}
			}
		}
		errs[s.i] = t.batchResult(bs[s.i], s.pb, err)
	}
	if err := p.Close(); err != nil {
		// Every result was read (or the connection failed, which a result
		// says): the connection is not usable for the next call.
		t.log.Debug("pgtarget: pipeline close", "err", err)
		t.dropConn()
		return
	}
	if chain != nil && t.conn.PgConn().TxStatus() != 'I' {
		// A batch failed inside its BEGIN: its transaction is aborted, not
		// ended, until ROLLBACK.
		if _, err := t.conn.PgConn().Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
			t.log.Debug("pgtarget: rollback after a failed batch", "err", err)
			t.dropConn()
		}
	}
}

// sent is a batch of a group on its way: its index and prepared statements.
type sent struct {
	i  int
	pb *prepared
}

// chainStatements are the prepared BEGIN and COMMIT that chain the batches
// of a group.
type chainStatements struct {
	begin, commit *pgconn.StatementDescription
}

func (t *Target) chainStatements(ctx context.Context) (*chainStatements, error) {
	begin, err := t.prepare(ctx, &statement{sql: "BEGIN"})
	if err != nil {
		return nil, fmt.Errorf("pgtarget: prepare BEGIN: %w", err)
	}
	commit, err := t.prepare(ctx, &statement{sql: "COMMIT"})
	if err != nil {
		return nil, fmt.Errorf("pgtarget: prepare COMMIT: %w", err)
	}
	return &chainStatements{begin: begin, commit: commit}, nil
}

// readChain reads the results of a chained group up to its Sync and sets
// errs: the batches before the first failure committed, the failed one
// has its error, and the ones behind it get mirror.ErrNotApplied (or, when
// the connection failed, the same transient error: they may have run).
func (t *Target) readChain(p *pgconn.Pipeline, bs []*mirror.Batch, send []sent, errs []error) {
	for n, s := range send {
		err, broken := t.readBatch(p, bs[s.i], s.pb, true)
		if err == nil && n < len(send)-1 {
			errs[s.i] = t.batchResult(bs[s.i], s.pb, nil)
			continue
		}
		if !broken {
			// The last batch committed, or this one failed and the server
			// skipped the rest of the group: the Sync follows. Nothing
			// commits at it, and the batches behind a failed one did not
			// run whatever it says; when it cannot be read, p.Close tells,
			// and the connection goes.
			_, _ = readSync(p)
		}
		errs[s.i] = t.batchResult(bs[s.i], s.pb, err)
		rest := error(mirror.ErrNotApplied)
		if broken {
			rest = errs[s.i]
		}
		for _, r := range send[n+1:] {
			errs[r.i] = rest
		}
		return
	}
}

// batchFailure is the server's error that ended a batch, after done of its
// statements ran.
type batchFailure struct {
	done int
	err  error
}

func (f *batchFailure) Error() string { return f.err.Error() }

// readBatch reads the results of one batch's statements, with its BEGIN
// and COMMIT when chained. It returns nil when every statement ran, a
// *batchFailure when the server refused one (it then skips to the Sync),
// or, with broken, the failure of the connection, after which the results
// behind it are unknown.
func (t *Target) readBatch(p *pgconn.Pipeline, b *mirror.Batch, pb *prepared, chained bool) (_ error, broken bool) {
	n := len(pb.sds)
	if chained {
		n += 2 // BEGIN and COMMIT
	}
	for k := range n {
		// done is how many of the batch's own statements ran before this
		// result; BEGIN's is -1.
		done := k
		if chained {
			done--
		}
		res, err := p.GetResults()
		if err == nil {
			rr, ok := res.(*pgconn.ResultReader)
			switch {
			case !ok:
				err = fmt.Errorf("pgtarget: pipeline: got %T for a statement", res)
			case pb.seq && done == len(b.Changes):
				pb.seqRows, err = readSequenceRows(rr)
			default:
				_, err = rr.Close()
			}
		}
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
		case !errors.As(err, &pgErr):
			return fmt.Errorf("pgtarget: pipeline: %w", err), true
		case done < 0:
			// BEGIN cannot fail on a connection between transactions.
			return fmt.Errorf("pgtarget: BEGIN: %w", err), false
		default:
			return &batchFailure{done: done, err: err}, false
		}
	}
	return nil, false
}

// readSync reads the results up to the pipeline's next Sync. commitErr is
// a server error that came first, which for a batch in the implicit
// transaction is the failure of its commit (a deferred constraint, say).
func readSync(p *pgconn.Pipeline) (commitErr, err error) {
	res, err := p.GetResults()
	var pgErr *pgconn.PgError
	if err != nil && errors.As(err, &pgErr) {
		commitErr = err
		res, err = p.GetResults()
	}
	if err != nil {
		return commitErr, fmt.Errorf("pgtarget: pipeline: %w", err)
	}
	if _, ok := res.(*pgconn.PipelineSync); !ok {
		return commitErr, fmt.Errorf("pgtarget: pipeline: got %T for a Sync", res)
	}
	return commitErr, nil
}

// batchResult turns what ended batch b (nil: it committed) into what Apply
// returns, and records the sequences a committed batch moved.
func (t *Target) batchResult(b *mirror.Batch, pb *prepared, err error) error {
	if f, ok := errors.AsType[*batchFailure](err); ok {
		return t.batchError(b, pb, f.done, f.err)
	}
	if err == nil && pb.seq {
		t.sequencesDone(pb.seqVals, pb.seqRows)
	}
	return err
}
