package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shadowproxy/shadowproxy/metrics"
)

// Timeouts of the admin HTTP server. They bound what a slow or idle client
// can hold open; the write timeout leaves room for large report pages.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Options configures a Server.
type Options struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:9187".
	Addr string
	// Metrics is served at /metrics. Required.
	Metrics *metrics.Metrics
	// Status returns the value served as JSON at /status. It is called once
	// per request, so it must be cheap and safe for concurrent use. Nil
	// leaves /status unmounted (404).
	Status func() any
	// Healthy reports health for /healthz: nil means healthy. Nil Healthy
	// means always healthy.
	Healthy func() error
	// Logger receives server errors. Nil discards them.
	Logger *slog.Logger
	// Handlers mounts further endpoints, keyed by http.ServeMux pattern
	// (e.g. "/report"). A pattern that is invalid or conflicts with a
	// built-in endpoint makes New fail.
	Handlers map[string]http.Handler
}

// Server is a running admin HTTP server. It owns its listener.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	logger *slog.Logger

	mu      sync.Mutex
	serving bool // Serve has been called
}

// New builds the handler and binds opts.Addr. It does not serve requests
// until Serve is called, but connections are already accepted into the
// kernel backlog, so a caller may publish Addr first.
func New(opts Options) (*Server, error) {
	if opts.Metrics == nil {
		return nil, errors.New("admin: Options.Metrics is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "admin")

	h, err := newHandler(opts, logger)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", opts.Addr, err)
	}
	return &Server{
		ln:     ln,
		logger: logger,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
	}, nil
}

// newHandler builds the routing for opts: the built-in endpoints, the extra
// Handlers, and the method check in front of all of them.
func newHandler(opts Options, logger *slog.Logger) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(opts.Metrics.Registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
		// A failing collector should not blank the whole scrape.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.Handle("/healthz", healthHandler(opts.Healthy))
	if opts.Status != nil {
		mux.Handle("/status", statusHandler(opts.Status, logger))
	}

	// Sorted so that, of two conflicting patterns, the error names the same
	// one on every run.
	patterns := make([]string, 0, len(opts.Handlers))
	for p := range opts.Handlers {
		patterns = append(patterns, p)
	}
	slices.Sort(patterns)
	for _, p := range patterns {
		if err := handle(mux, p, opts.Handlers[p]); err != nil {
			return nil, err
		}
	}
	return onlyGet(mux), nil
}

// handle registers h at pattern, turning ServeMux's panic on an invalid or
// conflicting pattern (its only way of reporting one) into an error, so a
// feature's bad route fails startup cleanly instead of crashing it.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	if h == nil {
		return fmt.Errorf("admin: handler for %q is nil", pattern)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("admin: mount %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// onlyGet answers 405 to any method but GET and HEAD: the admin endpoints
// only read state, and refusing writes up front keeps mounted handlers from
// having to check.
func onlyGet(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func healthHandler(healthy func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if healthy != nil {
			if err := healthy(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
}

func statusHandler(status func() any, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		// Marshal before writing anything so a failure can still become a 500.
		b, err := json.MarshalIndent(status(), "", "  ")
		if err != nil {
			logger.Error("encode /status", "err", err)
			http.Error(w, "cannot encode status", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(b, '\n'))
	})
}

// Addr returns the address the server listens on, with the real port when
// Options.Addr asked for port 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves requests until Close. It returns nil after Close, and an error
// if serving fails or Serve was already called.
func (s *Server) Serve() error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("admin: Serve called twice")
	}
	s.serving = true
	s.mu.Unlock()

	s.logger.Info("admin server listening", "addr", s.Addr())
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", err)
	}
	return nil
}

// Close stops accepting connections and waits for in-flight requests until
// ctx is done, then closes whatever is left. It also closes the listener when
// Serve was never called. Close is safe to call more than once.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		// Out of patience: drop the connections still busy.
		_ = s.srv.Close()
		err = fmt.Errorf("admin: shutdown: %w", err)
	}
	// Shutdown only closes listeners that Serve is using.
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = fmt.Errorf("admin: close listener: %w", cerr)
	}
	return err
}
