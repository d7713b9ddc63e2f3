// Package admin is shadowproxy's HTTP admin server.
//
// It serves, on its own listener:
//
//	/metrics  Prometheus exposition of the metrics.Metrics registry
//	/status   Options.Status() as pretty-printed JSON, never cached
//	/healthz  200 "ok" while Options.Healthy() is nil, else 503 with the error
//
// plus any handlers a feature mounts through Options.Handlers (for example a
// comparison report at "/report"). Only GET and HEAD are accepted; every
// endpoint is read-only, so anything else is answered 405 before it reaches a
// handler.
//
// Lifecycle: New binds the listener immediately, so an address such as
// "127.0.0.1:0" works and Addr reports the real port before anything is
// served. Serve then blocks serving requests until Close, which drains
// in-flight requests until its context ends. The admin address defaults to
// loopback in the config package; this package listens wherever it is told.
package admin
