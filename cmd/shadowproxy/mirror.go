package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/proxy"
	"github.com/shadowproxy/shadowproxy/shadow"
	"github.com/shadowproxy/shadowproxy/target"
)

// dualWrite is the mirroring pipeline cmd wires when a new database is
// configured: catalog of the old database, target adapter, durable mirror,
// and the proxy's capture machinery.
type dualWrite struct {
	mirror    *mirror.Mirror
	mirroring *proxy.Mirroring
	catalog   *proxy.SchemaCatalog
	shadower  *shadow.Shadower
	schema    *schemaCheck
}

// oldCatalogConn connects to the old database to read its catalog, as the
// proxy's own user: the old URL's credentials, or auth.upstream_user and
// upstream_password.
func oldCatalogConn(cfg *config.Config) func(context.Context) (*pgx.Conn, error) {
	return func(ctx context.Context) (*pgx.Conn, error) {
		pc, err := pgx.ParseConfig(cfg.Old)
		if err != nil {
			return nil, fmt.Errorf("old: cannot parse the URL")
		}
		if cfg.Auth.UpstreamUser != "" {
			pc.User = cfg.Auth.UpstreamUser
		}
		if cfg.Auth.UpstreamPassword != "" {
			pc.Password = cfg.Auth.UpstreamPassword
		}
		pc.RuntimeParams["application_name"] = "shadowproxy catalog"
		return pgx.ConnectConfig(ctx, pc)
	}
}

func startDualWrite(ctx context.Context, cfg *config.Config, m *metrics.Metrics, log *slog.Logger) (*dualWrite, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cat, err := proxy.NewSchemaCatalog(lctx, oldCatalogConn(cfg))
	if err != nil {
		return nil, fmt.Errorf("dual-write needs to read the old database's catalog (the old URL, or auth.upstream_user, must carry credentials): %w", err)
	}
	for _, t := range cat.Catalog().SortedTables() {
		for _, tr := range t.TriggersWritingOtherTables() {
			log.Warn("trigger may write other tables; those writes happen inside the old database and are not captured",
				"table", t.QualifiedName(), "trigger", tr.Name, "reason", tr.MayWriteOtherReason)
		}
		if !t.HasPrimaryKey() && !t.Partitioned {
			log.Info("table has no primary key: its updates and deletes are mirrored as statements and it is verified by multiset only", "table", t.QualifiedName())
		}
	}

	u, _ := url.Parse(cfg.New)
	isMySQL := u != nil && u.Scheme == "mysql"
	tgt, err := target.Open(ctx, cfg.New, target.Options{Logger: log, Catalog: cat.Catalog(), Lazy: true})
	if err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	fsync, err := mirror.ParseFsyncPolicy(cfg.Mirror.Fsync)
	if err != nil {
		return nil, fmt.Errorf("mirror.fsync: %w", err)
	}
	mir, err := mirror.New(tgt, mirror.Options{
		Dir:           cfg.MirrorDir(),
		QueueLen:      cfg.Mirror.QueueLen,
		MaxSpoolBytes: cfg.Mirror.MaxSpoolBytes,
		Fsync:         fsync,
		FsyncInterval: cfg.Mirror.FsyncInterval,
		MaxGroup:      cfg.Mirror.MaxGroup,
		MaxGroupBytes: cfg.Mirror.MaxGroupBytes,
		GroupLinger:   groupLinger(cfg.Mirror.GroupLinger),
		Resolver:      xidResolver(cfg),
		Logger:        log.With("component", "mirror"),
	})
	if err != nil {
		tgt.Close()
		return nil, fmt.Errorf("mirror: %w", err)
	}
	mg, err := proxy.NewMirroring(proxy.MirroringOptions{
		Catalog: cat, Mirror: mir, MySQL: isMySQL, CacheSize: cfg.Rewrite.CacheSize, MaxTxBytes: cfg.Mirror.MaxTxBytes, Logger: log,
	})
	if err != nil {
		mir.Close(ctx)
		return nil, err
	}
	dw := &dualWrite{mirror: mir, mirroring: mg, catalog: cat}
	if err := m.RegisterMirror(dw.snapshot); err != nil {
		mir.Close(ctx)
		return nil, err
	}
	oldURL, err := catalogURL(cfg)
	if err != nil {
		mir.Close(ctx)
		return nil, err
	}
	sc := cfg.Shadow
	window := sc.BatchWindow
	if window == 0 {
		window = -1 // shadow.Options: 0 is the default, negative none
	}
	dw.shadower, err = shadow.New(ctx, shadow.Options{
		NewURL: cfg.New, MySQL: isMySQL, Mirror: mir, OldURL: oldURL,
		SampleRate: sc.SampleRate, IncludeTables: sc.IncludeTables, ExcludeTables: sc.ExcludeTables,
		IncludeFingerprints: sc.IncludeFingerprints, ExcludeFingerprints: sc.ExcludeFingerprints,
		Timeout: sc.Timeout, MirrorWait: sc.MirrorWait, MaxConcurrent: sc.MaxConcurrent, MemoryCap: sc.MemoryCap,
		BatchWindow: window, MaxBatch: sc.BatchSize,
		ReportDir: cfg.ReportDir, Logger: log.With("component", "shadow"), Registerer: m.Registry,
	})
	if err != nil {
		mir.Close(ctx)
		return nil, fmt.Errorf("shadow: %w", err)
	}
	dw.schema = startSchemaCheck(ctx, tgt.(schemaChecker), cat.Catalog(), log.With("component", "schema check"))
	return dw, nil
}

// catalogURL is the old URL with the proxy's own credentials, for the
// shadow reads' re-checks on the old database.
func catalogURL(cfg *config.Config) (string, error) {
	u, err := url.Parse(cfg.Old)
	if err != nil {
		return "", errors.New("old: cannot parse the URL")
	}
	if cfg.Auth.UpstreamUser != "" {
		pw, _ := u.User.Password()
		if cfg.Auth.UpstreamPassword != "" {
			pw = cfg.Auth.UpstreamPassword
		}
		u.User = url.UserPassword(cfg.Auth.UpstreamUser, pw)
	}
	q := u.Query()
	q.Set("application_name", "shadowproxy shadow")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (dw *dualWrite) snapshot() metrics.MirrorSnapshot {
	nm, classes, drift := dw.mirroring.Counts()
	return metrics.MirrorSnapshot{Stats: dw.mirror.Stats(), NotMirrored: nm, NotMirroredClasses: classes, SchemaDrift: drift}
}

// xidResolver asks the old database how transactions ended, for journal
// entries whose outcome the proxy did not see (it was killed between a
// COMMIT and its answer).
func xidResolver(cfg *config.Config) func(context.Context, []uint64) (map[uint64]mirror.Outcome, error) {
	connect := oldCatalogConn(cfg)
	return func(ctx context.Context, xids []uint64) (map[uint64]mirror.Outcome, error) {
		conn, err := connect(ctx)
		if err != nil {
			return nil, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		args := make([]string, len(xids))
		for i, x := range xids {
			args[i] = strconv.FormatUint(x, 10)
		}
		rows, err := conn.Query(ctx, "SELECT x::text, pg_xact_status(x) FROM unnest($1::text[]::xid8[]) AS x", args)
		if err != nil {
			return nil, fmt.Errorf("asking the old database about transactions: %w", err)
		}
		out := make(map[uint64]mirror.Outcome, len(xids))
		for rows.Next() {
			var x string
			var status *string
			if err := rows.Scan(&x, &status); err != nil {
				return nil, err
			}
			id, _ := strconv.ParseUint(x, 10, 64)
			switch {
			case status == nil:
				out[id] = mirror.OutcomeUnknown
			case *status == "committed":
				out[id] = mirror.OutcomeCommitted
			case *status == "aborted":
				out[id] = mirror.OutcomeAborted
			default:
				out[id] = mirror.OutcomeInProgress
			}
		}
		return out, rows.Err()
	}
}

// mirrorStatus is /status "mirror".
type mirrorStatus struct {
	Queued       int    `json:"queued"`
	Spooled      int    `json:"spooled"`
	SpoolBytes   int64  `json:"spool_bytes"`
	Applied      uint64 `json:"applied"`
	Failed       uint64 `json:"failed"`
	DeadLettered uint64 `json:"dead_lettered"`
	Dropped      uint64 `json:"dropped"`
	Pending      int    `json:"pending"`
	Aborted      uint64 `json:"aborted"`
	// Groups counts round trips that applied several transactions (see
	// mirror.GroupTarget), GroupedBatches the transactions sent in them.
	Groups         uint64   `json:"groups"`
	GroupedBatches uint64   `json:"grouped_batches"`
	LagSeconds     float64  `json:"lag_seconds"`
	AppliedSeq     uint64   `json:"applied_seq"`
	LastSeq        uint64   `json:"last_seq"`
	Spooling       bool     `json:"spooling"`
	Overflowed     bool     `json:"overflowed"`
	DirtyTables    []string `json:"dirty_tables"`
	TriggerWrites  []string `json:"triggers_writing_other_tables"`
	// CatalogReloads counts the times the old database's catalog was read
	// again: after DDL, or for rows of a table it did not know.
	CatalogReloads uint64 `json:"catalog_reloads"`
	// NewSchema is how the new database's tables compare with the old
	// database's (see schemaCheck).
	NewSchema newSchemaStatus `json:"new_schema"`
	proxy.MirroringStatus
}

func (dw *dualWrite) status() mirrorStatus {
	s := dw.mirror.Stats()
	st := mirrorStatus{
		Queued: s.Queued, Spooled: s.Spooled, SpoolBytes: s.SpoolBytes, Applied: s.Applied, Failed: s.Failed,
		DeadLettered: s.DeadLettered, Dropped: s.Dropped, Pending: s.Pending, Aborted: s.Aborted,
		Groups: s.Groups, GroupedBatches: s.GroupedBatches, LagSeconds: s.Lag.Seconds(), AppliedSeq: s.AppliedSeq,
		LastSeq: s.LastSeq, Spooling: s.Spooling, Overflowed: s.Overflowed, DirtyTables: s.DirtyTables,
		TriggerWrites:   []string{},
		CatalogReloads:  dw.catalog.Reads() - 1, // the first read is not a reload
		MirroringStatus: dw.mirroring.Status(),
	}
	if st.DirtyTables == nil {
		st.DirtyTables = []string{}
	}
	for _, t := range dw.catalog.Catalog().SortedTables() {
		for _, tr := range t.TriggersWritingOtherTables() {
			st.TriggerWrites = append(st.TriggerWrites, t.QualifiedName()+": "+tr.Name)
		}
	}
	st.NewSchema = dw.schema.get()
	return st
}

func (dw *dualWrite) close(ctx context.Context) error {
	dw.schema.close() // before the mirror closes the target it uses
	return errors.Join(dw.shadower.Close(ctx), dw.mirror.Close(ctx), dw.catalog.Close(ctx))
}

// groupLinger maps mirror.group_linger (0: off) to the mirror's option (0:
// the default, negative: off).
func groupLinger(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
