package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shadowproxy/shadowproxy/config"
)

// namespace prefixes every metric name: shadowproxy_...
const namespace = "shadowproxy"

// RejectReason is the reason label of shadowproxy_client_connections_rejected_total.
type RejectReason string

// Reasons a client connection is refused or dropped before it is usable.
const (
	RejectTooMany        RejectReason = "too_many"        // connection limit reached
	RejectStartupTimeout RejectReason = "startup_timeout" // no complete startup in time
	RejectAuth           RejectReason = "auth"            // authentication failed
	RejectProtocol       RejectReason = "protocol"        // malformed or unsupported startup
	RejectUpstream       RejectReason = "upstream"        // could not reach or log into the upstream
	RejectDraining       RejectReason = "draining"        // proxy is shutting down
)

// rejectReasons lists every RejectReason so New can create the series at zero.
var rejectReasons = []RejectReason{
	RejectTooMany, RejectStartupTimeout, RejectAuth, RejectProtocol, RejectUpstream, RejectDraining,
}

// QueryKind is the kind label of shadowproxy_queries_total.
type QueryKind string

// Statement kinds, as classified by the rewrite package.
const (
	QueryRead     QueryKind = "read"
	QueryWrite    QueryKind = "write"
	QueryDDL      QueryKind = "ddl"
	QueryTx       QueryKind = "tx"
	QuerySession  QueryKind = "session"
	QueryOther    QueryKind = "other"
	QueryUnparsed QueryKind = "unparsed"
)

// Direction is the direction label of shadowproxy_bytes_total.
type Direction string

// Byte-counter directions.
const (
	ClientToUpstream Direction = "client_to_upstream"
	UpstreamToClient Direction = "upstream_to_client"
)

// ErrorSource is the source label of shadowproxy_errors_total.
type ErrorSource string

// Where an error reported to a client came from.
const (
	// SourceUpstream: an ErrorResponse relayed from a database.
	SourceUpstream ErrorSource = "upstream"
	// SourceProxy: an ErrorResponse the proxy generated itself.
	SourceProxy ErrorSource = "proxy"
)

// UnknownClass is the class label used when a SQLSTATE is missing or
// malformed, so a bad code cannot create arbitrary label values.
const UnknownClass = "unknown"

// Config reload results (the result label of shadowproxy_config_reloads_total).
const (
	ReloadOK       = "ok"
	ReloadRejected = "rejected"
)

// LatencyBuckets are the upper bounds, in seconds, of
// shadowproxy_upstream_latency_seconds: 50µs (a loopback round trip) to 10s
// (a slow report query), roughly 1-2.5-5 per decade so quantiles stay readable.
var LatencyBuckets = []float64{
	50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10,
}

// Metrics holds every metric of the proxy. Create it with New; the zero value
// is not usable. All fields and methods are safe for concurrent use.
type Metrics struct {
	// Registry holds all the metrics below plus the Go and process collectors.
	Registry *prometheus.Registry

	// ClientConns is the number of client connections currently open.
	ClientConns prometheus.Gauge
	// ClientConnsTotal counts client connections accepted.
	ClientConnsTotal prometheus.Counter
	// ConnsRejected counts refused connections by reason; see Reject.
	ConnsRejected *prometheus.CounterVec
	// Queries counts statements by kind; on the hot path use CountQuery.
	Queries *prometheus.CounterVec
	// Bytes counts wire bytes by direction; on the hot path use the
	// pre-resolved BytesClientToUpstream and BytesUpstreamToClient.
	Bytes *prometheus.CounterVec
	// Errors counts ErrorResponses sent to clients by source and SQLSTATE
	// class; see ObserveError.
	Errors *prometheus.CounterVec
	// UpstreamLatency is the time from a request's first byte sent upstream
	// to its ReadyForQuery; see ObserveUpstreamLatency.
	UpstreamLatency prometheus.Histogram
	// CancelsForwarded counts CancelRequests relayed to an upstream.
	CancelsForwarded prometheus.Counter
	// EventLoopSessions is the number of sessions the event loop serves
	// (the rest use a goroutine per direction).
	EventLoopSessions prometheus.Gauge
	// EventLoopHandovers counts sessions the event loop handed to their
	// goroutines (they come back once things are quiet again).
	EventLoopHandovers prometheus.Counter
	// EventLoopBusyPolls counts the event loop's busy polls (see
	// loop.busy_poll) by result: "hit" when something became ready while
	// polling, "miss" when the poll ran out and the loop went to sleep.
	EventLoopBusyPolls *prometheus.CounterVec
	// ConfigReloads counts configuration reloads by result; see ConfigReload.
	ConfigReloads *prometheus.CounterVec
	// Phase is 1 for the current migration phase and 0 for the others; set
	// it with SetPhase so exactly one phase is 1.
	Phase *prometheus.GaugeVec

	// BytesClientToUpstream is Bytes{direction="client_to_upstream"}.
	BytesClientToUpstream prometheus.Counter
	// BytesUpstreamToClient is Bytes{direction="upstream_to_client"}.
	BytesUpstreamToClient prometheus.Counter

	// queries holds the pre-resolved Queries children, indexed by queryIndex.
	queries [numQueryKinds]prometheus.Counter

	// phaseMu serializes SetPhase so two concurrent calls cannot leave two
	// phases at 1.
	phaseMu sync.Mutex
}

// Indexes into Metrics.queries.
const (
	qRead = iota
	qWrite
	qDDL
	qTx
	qSession
	qOther
	qUnparsed
	numQueryKinds
)

var queryKinds = [numQueryKinds]QueryKind{
	qRead: QueryRead, qWrite: QueryWrite, qDDL: QueryDDL, qTx: QueryTx,
	qSession: QuerySession, qOther: QueryOther, qUnparsed: QueryUnparsed,
}

// New creates the metrics and registers them, with the Go runtime and process
// collectors, on a fresh registry. Every labelled series with a fixed label set
// is created at zero, so dashboards and rate() see it before the first event.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		ClientConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "client_connections",
			Help:      "Client connections currently open.",
		}),
		ClientConnsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "client_connections_total",
			Help:      "Client connections accepted.",
		}),
		ConnsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "client_connections_rejected_total",
			Help:      "Client connections refused or dropped before use, by reason.",
		}, []string{"reason"}),
		Queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "queries_total",
			Help:      "Statements received from clients, by kind.",
		}, []string{"kind"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "bytes_total",
			Help:      "Protocol bytes relayed, by direction.",
		}, []string{"direction"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "errors_total",
			Help:      "Error responses sent to clients, by source and SQLSTATE class.",
		}, []string{"source", "class"}),
		UpstreamLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "upstream_latency_seconds",
			Help:      "Time from a request's first byte sent upstream to its ReadyForQuery.",
			Buckets:   LatencyBuckets,
		}),
		CancelsForwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "cancels_forwarded_total",
			Help:      "Cancel requests forwarded to an upstream.",
		}),
		EventLoopSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "event_loop_sessions",
			Help:      "Client sessions served by the event loop (plain connections).",
		}),
		EventLoopHandovers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "event_loop_handovers_total",
			Help:      "Sessions the event loop handed to goroutines of their own, for something that could wait (a large message, a full socket, an autocommit write, COPY, DDL).",
		}),
		EventLoopBusyPolls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "event_loop_busy_polls_total",
			Help:      "Busy polls of the event loop (loop.busy_poll), by result: hit (a socket became ready) or miss (the loop went to sleep).",
		}, []string{"result"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "config_reloads_total",
			Help:      "Configuration reloads, by result.",
		}, []string{"result"}),
		Phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "phase",
			Help:      "1 for the current migration phase, 0 for the others.",
		}, []string{"phase"}),
	}

	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ClientConns, m.ClientConnsTotal, m.ConnsRejected, m.Queries, m.Bytes,
		m.Errors, m.UpstreamLatency, m.CancelsForwarded, m.EventLoopSessions, m.EventLoopHandovers, m.EventLoopBusyPolls, m.ConfigReloads, m.Phase,
	)

	m.BytesClientToUpstream = m.Bytes.WithLabelValues(string(ClientToUpstream))
	m.BytesUpstreamToClient = m.Bytes.WithLabelValues(string(UpstreamToClient))
	for i, k := range queryKinds {
		m.queries[i] = m.Queries.WithLabelValues(string(k))
	}
	for _, r := range rejectReasons {
		m.ConnsRejected.WithLabelValues(string(r))
	}
	m.ConfigReloads.WithLabelValues(ReloadOK)
	m.ConfigReloads.WithLabelValues(ReloadRejected)
	for p := config.OldOnly; p <= config.NewOnly; p++ {
		m.Phase.WithLabelValues(p.String())
	}
	return m
}

// ConnOpened records an accepted client connection.
func (m *Metrics) ConnOpened() {
	m.ClientConnsTotal.Inc()
	m.ClientConns.Inc()
}

// ConnClosed records the end of a connection previously passed to ConnOpened.
func (m *Metrics) ConnClosed() { m.ClientConns.Dec() }

// Reject records a refused connection.
func (m *Metrics) Reject(r RejectReason) { m.ConnsRejected.WithLabelValues(string(r)).Inc() }

// CountQuery counts one statement of kind k without a label lookup. A kind
// outside the QueryKind constants is counted as QueryOther, which keeps the
// label set bounded whatever the caller passes.
func (m *Metrics) CountQuery(k QueryKind) {
	i := qOther
	switch k {
	case QueryRead:
		i = qRead
	case QueryWrite:
		i = qWrite
	case QueryDDL:
		i = qDDL
	case QueryTx:
		i = qTx
	case QuerySession:
		i = qSession
	case QueryUnparsed:
		i = qUnparsed
	}
	m.queries[i].Inc()
}

// ObserveError counts an error response. The class label is the first two
// characters of sqlstate (e.g. "23" for 23505 unique_violation), so the
// series count is bounded; a SQLSTATE that is not five digits or upper-case
// letters is counted under UnknownClass.
func (m *Metrics) ObserveError(source ErrorSource, sqlstate string) {
	m.Errors.WithLabelValues(string(source), SQLStateClass(sqlstate)).Inc()
}

// SQLStateClass returns the two-character class of a SQLSTATE, or
// UnknownClass if s is not a well-formed SQLSTATE.
func SQLStateClass(s string) string {
	if len(s) != 5 {
		return UnknownClass
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return UnknownClass
		}
	}
	return s[:2]
}

// ObserveUpstreamLatency records one request's upstream round trip.
func (m *Metrics) ObserveUpstreamLatency(d time.Duration) { m.UpstreamLatency.Observe(d.Seconds()) }

// ConfigReload records a configuration reload: ok if err is nil, rejected
// otherwise (the running configuration was kept).
func (m *Metrics) ConfigReload(err error) {
	if err != nil {
		m.ConfigReloads.WithLabelValues(ReloadRejected).Inc()
		return
	}
	m.ConfigReloads.WithLabelValues(ReloadOK).Inc()
}

// SetPhase makes p the only phase whose gauge is 1. An invalid phase leaves
// every known phase at 0 rather than creating a new series.
func (m *Metrics) SetPhase(p config.Phase) {
	m.phaseMu.Lock()
	defer m.phaseMu.Unlock()
	for q := config.OldOnly; q <= config.NewOnly; q++ {
		v := 0.0
		if q == p {
			v = 1
		}
		m.Phase.WithLabelValues(q.String()).Set(v)
	}
}
