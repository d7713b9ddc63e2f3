package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/rewrite"
)

// Options are what a Server is built from. Config is required; the rest
// have defaults.
type Options struct {
	Config  *config.Config
	Metrics *metrics.Metrics // nil: a private, unexported set
	Logger  *slog.Logger     // nil: slog.Default()
	// Classifier classifies statements for routing and metrics; nil: one
	// sized by Config.Rewrite.CacheSize.
	Classifier *rewrite.Classifier
	// Mirroring is the dual-write machinery; nil when no new database is
	// configured (then only old-only can run).
	Mirroring *Mirroring
	// Shadower runs shadow reads in phase shadow-read; nil disables them.
	Shadower Shadower
}

// Server accepts client connections and runs one session per client.
//
// Configuration is held behind an atomic pointer: Reload swaps it, new
// sessions use the new one at once and running sessions at their next
// transaction boundary (a phase never changes inside a transaction).
type Server struct {
	log        *slog.Logger
	metrics    *metrics.Metrics
	classifier *rewrite.Classifier
	mirroring  *Mirroring
	shadower   Shadower

	cfg   atomic.Pointer[config.Config]
	state atomic.Pointer[runtimeState]

	ctx    context.Context // cancelled by Close: ends every session
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[uint32]*session // by the proxy's own backend PID
	draining  bool

	active  atomic.Int64 // sessions past startup, counted against MaxClientConns
	started time.Time

	loop *eventLoop // nil: every session uses goroutines
}

// runtimeState is what a configuration compiles to: parsed once per
// (re)load, shared read-only by sessions.
type runtimeState struct {
	cfg   *config.Config
	up    *upstream
	tls   *tls.Config
	users map[string]*config.SCRAMVerifier
}

func compile(cfg *config.Config) (*runtimeState, error) {
	up, err := newUpstream(cfg.Old)
	if err != nil {
		return nil, err
	}
	st := &runtimeState{cfg: cfg, up: up}
	if cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		st.tls = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			// libpq 17 sends ALPN "postgresql" and requires it for direct TLS.
			NextProtos: []string{"postgresql"},
		}
	}
	if cfg.Auth.Mode == config.AuthUsers {
		st.users = make(map[string]*config.SCRAMVerifier, len(cfg.Auth.Users))
		for _, u := range cfg.Auth.Users {
			v, err := config.ParseSCRAMVerifier(u.SCRAMVerifier)
			if err != nil {
				return nil, fmt.Errorf("auth.users %q: %w", u.Name, err)
			}
			st.users[u.Name] = v
		}
	}
	return st, nil
}

// New returns a Server for a validated configuration.
func New(opts Options) (*Server, error) {
	if opts.Config == nil {
		return nil, errors.New("proxy: Options.Config is required")
	}
	if capturePhase(opts.Config.Phase) && opts.Mirroring == nil {
		return nil, fmt.Errorf("proxy: phase %s needs Options.Mirroring", opts.Config.Phase)
	}
	st, err := compile(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	s := &Server{
		log:        opts.Logger,
		metrics:    opts.Metrics,
		classifier: opts.Classifier,
		mirroring:  opts.Mirroring,
		shadower:   opts.Shadower,
		listeners:  map[net.Listener]struct{}{},
		sessions:   map[uint32]*session{},
		started:    time.Now(),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.metrics == nil {
		s.metrics = metrics.New()
	}
	if s.classifier == nil {
		if s.classifier, err = rewrite.NewClassifier(opts.Config.Rewrite.CacheSize); err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.loop = newEventLoop(s)
	s.cfg.Store(opts.Config)
	s.state.Store(st)
	s.metrics.SetPhase(opts.Config.Phase)
	return s, nil
}

// Config returns the configuration in force.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// Reload puts a new, validated configuration in force. Settings that
// cannot change while running (the listen address) are kept, with a
// warning. On error the running configuration stays.
func (s *Server) Reload(cfg *config.Config) error {
	old := s.cfg.Load()
	if capturePhase(cfg.Phase) && s.mirroring == nil {
		return fmt.Errorf("proxy: reload: phase %s needs the new database, which was not configured at start (restart with new set)", cfg.Phase)
	}
	if shadowPhase(cfg.Phase) && s.shadower == nil {
		return fmt.Errorf("proxy: reload: phase %s needs shadow reads, which were not set up at start (restart with new set)", cfg.Phase)
	}
	if cfg.New != old.New {
		s.log.Warn("changing the new database needs a restart; keeping the old one", "new", config.RedactURL(old.New))
		c := *cfg
		c.New = old.New
		cfg = &c
	}
	if cfg.Listen != old.Listen {
		s.log.Warn("listen address changes need a restart; keeping the old one", "listen", old.Listen, "requested", cfg.Listen)
		c := *cfg
		c.Listen = old.Listen
		cfg = &c
	}
	st, err := compile(cfg)
	if err != nil {
		return fmt.Errorf("proxy: reload: %w", err)
	}
	s.state.Store(st)
	s.cfg.Store(cfg)
	if s.mirroring != nil {
		s.mirroring.SetMaxTxBytes(cfg.Mirror.MaxTxBytes)
	}
	s.metrics.SetPhase(cfg.Phase)
	if cfg.Phase != old.Phase {
		s.log.Info("phase changes at each session's next transaction boundary", "from", old.Phase, "to", cfg.Phase)
	}
	return nil
}

// Serve accepts connections on ln until Shutdown or Close, and returns nil
// then. Serve may be called for several listeners.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining || s.ctx.Err() != nil {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isClosing() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors, an aborted handshake and the like
			// pass; wait instead of spinning, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if tc, ok := conn.(*net.TCPConn); ok {
			// The proxy batches its own writes; Nagle would only add delay.
			_ = tc.SetNoDelay(true)
			_ = tc.SetKeepAlive(true)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(conn)
		}()
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining || s.ctx.Err() != nil
}

// Shutdown stops accepting connections and lets sessions finish: idle
// sessions are closed at once and busy ones at their next transaction
// boundary, each told with SQLSTATE 57P01. Sessions still running when ctx
// ends are closed. Shutdown returns when every session has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		ln.Close()
	}
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.drain()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer s.loop.close()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel() // ends every remaining session
		<-done
		return fmt.Errorf("proxy: shutdown: %w", ctx.Err())
	}
}

// Close ends every session and listener at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.loop.close()
	return nil
}

// Draining reports whether Shutdown or Close has begun.
func (s *Server) Draining() bool { return s.isClosing() }

// register gives a session its own backend key data and makes it
// reachable by CancelRequest.
func (s *Server) register(ss *session, keyLen int) error {
	key := make([]byte, keyLen)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errDraining
	}
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		pid := binary.BigEndian.Uint32(b[:]) & 0x7fffffff // libpq prints it as a signed int
		if _, taken := s.sessions[pid]; taken || pid == 0 {
			continue
		}
		if _, err := rand.Read(key); err != nil {
			return err
		}
		ss.pid, ss.key = pid, key
		s.sessions[pid] = ss
		return nil
	}
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	if s.sessions[ss.pid] == ss {
		delete(s.sessions, ss.pid)
	}
	s.mu.Unlock()
}

func (s *Server) lookup(pid uint32) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[pid]
}

// Status is a snapshot for /status.
type Status struct {
	Phase       string    `json:"phase"`
	Connections int64     `json:"connections"`
	MaxConns    int       `json:"max_connections"`
	Draining    bool      `json:"draining"`
	Old         string    `json:"old"`
	New         string    `json:"new,omitempty"`
	Started     time.Time `json:"started"`
	Uptime      string    `json:"uptime"`
}

// Status returns the server's state; database URLs have their passwords
// redacted.
func (s *Server) Status() Status {
	cfg := s.cfg.Load()
	st := Status{
		Phase:       cfg.Phase.String(),
		Connections: s.active.Load(),
		MaxConns:    cfg.Limits.MaxClientConns,
		Draining:    s.Draining(),
		Old:         config.RedactURL(cfg.Old),
		Started:     s.started.UTC(),
		Uptime:      time.Since(s.started).Round(time.Second).String(),
	}
	if cfg.New != "" {
		st.New = config.RedactURL(cfg.New)
	}
	return st
}
