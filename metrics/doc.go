// Package metrics defines shadowproxy's Prometheus metrics.
//
// Everything lives on a private *prometheus.Registry owned by a Metrics value
// (never the global default registry), so tests and several proxies in one
// process do not collide. The registry also carries the standard Go runtime
// and process collectors. The admin package serves it at /metrics.
//
// # Hot path
//
// Metrics fields are touched once per query or per message, so label lookups
// are kept off that path: children whose labels are fixed are resolved once in
// New and exposed as plain counters (BytesClientToUpstream,
// BytesUpstreamToClient) or reached through helpers that pick a pre-resolved
// child with a switch (CountQuery). The *Vec fields remain available for
// tests and for rare events (rejections, reloads), where a lookup is cheap
// enough.
//
// All label values are bounded: every label has a fixed set of values,
// declared as typed constants here, except the SQLSTATE class, which is two
// characters by construction (see ObserveError).
//
// # Adding metrics
//
// Callers hold a *Metrics and use the fields or helpers they need. A new group
// of metrics (the mirror's queue depth and apply latency, the shadow
// comparison's match/mismatch counters, ...) is added as new fields — or as a
// sub-struct field such as `Mirror MirrorMetrics` — created and registered in
// New. Existing callers do not change, because nothing is positional and no
// caller constructs Metrics itself.
package metrics
