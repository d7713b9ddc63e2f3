package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/proxy"
)

// proxySpec is how a section wants its proxy run. Sections differ in phase,
// databases and limits; everything else is the production default.
type proxySpec struct {
	// Name tells the proxy's files and messages apart, e.g. "old-only".
	Name string
	// Configure adjusts the configuration, which starts as the defaults with
	// Listen (a free port), Old (the bench's Postgres) and no admin server.
	Configure func(*config.Config)
	// Args are extra `shadowproxy serve` flags; they override the file.
	// Only for a proxy binary (--proxy): the in-process child takes none.
	Args []string
	// CPUProfile, when set, runs the proxy as a child of this binary that
	// writes a CPU profile there when stopped.
	CPUProfile string
	// Admin runs the admin server (/status) on a free port, recorded in the
	// bgProc's adminPort. Only for a proxy binary: the child has none.
	Admin bool
}

// proxyConfig returns the configuration file's contents for spec, with the
// proxy listening on port, its admin server on adminPort (0: none) and
// forwarding to oldURL. The configuration is validated here so that a
// section's mistake shows before a process starts.
func proxyConfig(spec proxySpec, port, adminPort int, oldURL string) ([]byte, error) {
	cfg := config.DefaultConfig()
	cfg.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.Old = oldURL
	cfg.Admin = ""
	// The bench stops its proxies when idle; waiting for sessions is moot.
	cfg.Limits.ShutdownTimeout = 2 * time.Second
	if spec.Configure != nil {
		spec.Configure(cfg)
	}
	if adminPort != 0 {
		cfg.Admin = net.JoinHostPort("127.0.0.1", strconv.Itoa(adminPort))
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy %s: %w", spec.Name, err)
	}
	b, err := toml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: encoding the configuration: %w", spec.Name, err)
	}
	return b, nil
}

// startProxy starts a proxy for spec on a free port and waits until a
// query goes through it. The caller stops it with stopProxy.
func (e *env) startProxy(ctx context.Context, spec proxySpec) (*bgProc, error) {
	if e.opts.proxyBin == "" && len(spec.Args) > 0 {
		return nil, fmt.Errorf("proxy %s: serve flags %q need a proxy binary (--proxy)", spec.Name, spec.Args)
	}
	if (e.opts.proxyBin == "" || spec.CPUProfile != "") && spec.Admin {
		return nil, fmt.Errorf("proxy %s: the admin server needs a proxy binary (--proxy) and no CPU profile", spec.Name)
	}
	dir := filepath.Join(e.dir, "proxy-"+spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "shadowproxy.toml")
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		adminPort := 0
		if spec.Admin {
			if adminPort, err = freePort(); err != nil {
				return nil, err
			}
		}
		conf, err := proxyConfig(spec, port, adminPort, e.pg.SuperURL())
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(cfgPath, conf, 0o644); err != nil {
			return nil, err
		}
		var cmd *exec.Cmd
		switch {
		case spec.CPUProfile != "" || e.opts.proxyBin == "":
			args := []string{proxyChildCmd, "--config", cfgPath}
			if spec.CPUProfile != "" {
				args = append(args, "--cpuprofile", spec.CPUProfile)
			}
			cmd = exec.Command(e.selfExe, args...)
		default:
			cmd = exec.Command(e.opts.proxyBin, append([]string{"serve", "--config", cfgPath}, spec.Args...)...)
		}
		// The proxy reads its old URL from the file, not the environment.
		cmd.Env = withoutEnv(os.Environ(), config.EnvOld, config.EnvNew)
		p, err := startBG("proxy "+spec.Name, port, filepath.Join(dir, "proxy.log"), cmd)
		if err != nil {
			return nil, err
		}
		p.adminPort = adminPort
		err = p.waitReady(ctx, "postgres")
		if err == nil {
			return p, nil
		}
		_ = p.stop(syscall.SIGKILL, 5*time.Second)
		if attempt < 3 && addrInUse(p.logTail()) {
			continue
		}
		return nil, err
	}
}

// stopProxy stops a proxy gracefully (SIGTERM), which is also when the
// profiling child writes its profile.
func stopProxy(p *bgProc) error {
	return p.stop(syscall.SIGTERM, 15*time.Second)
}

// withoutEnv returns env without the named variables.
func withoutEnv(env []string, names ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, n := range names {
			if len(kv) > len(n) && kv[:len(n)] == n && kv[len(n)] == '=' {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// proxyChildCmd is the hidden command that runs the proxy inside this
// binary. It is what `shadowproxy serve` does, minus the admin server,
// reloads and flags, plus an optional CPU profile.
const proxyChildCmd = "proxy-child"

// runProxyChild runs the proxy from a configuration file until SIGTERM or
// SIGINT.
func runProxyChild(args []string) error {
	fs := flag.NewFlagSet(proxyChildCmd, flag.ContinueOnError)
	cfgPath := fs.String("config", "", "TOML configuration `file`")
	profPath := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv, err := proxy.New(proxy.Options{Config: cfg, Metrics: metrics.New(), Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *profPath != "" {
		f, err := os.Create(*profPath)
		if err != nil {
			ln.Close()
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			ln.Close()
			return err
		}
		defer pprof.StopCPUProfile() // on the error path; a no-op after the stop below
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	// Stopped before the sessions are torn down, so that the profile holds
	// the served load and not the shutdown.
	pprof.StopCPUProfile()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-serveErr; serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// mirrorStatus is the "mirror" object of a dual-writing proxy's /status
// (cmd/shadowproxy), the fields the bench reads. Counts are of batches, one
// per mirrored transaction, since the proxy started.
type mirrorStatus struct {
	Queued       int    `json:"queued"`  // in memory, waiting to be applied
	Spooled      int    `json:"spooled"` // in the spool on disk, waiting
	Applied      uint64 `json:"applied"` // applied to the new database
	Failed       uint64 `json:"failed"`  // failed attempts to apply (retried)
	DeadLettered uint64 `json:"dead_lettered"`
	Dropped      uint64 `json:"dropped"`
	Pending      int    `json:"pending"` // outcome on the old database not known yet
	AppliedSeq   uint64 `json:"applied_seq"`
	LastSeq      uint64 `json:"last_seq"` // batches handed to the mirror
	Spooling     bool   `json:"spooling"`
}

// caughtUp reports whether every batch handed to the mirror was applied.
func (m mirrorStatus) caughtUp() bool {
	return m.AppliedSeq == m.LastSeq && m.Queued == 0 && m.Spooled == 0 && m.Pending == 0
}

// lost counts batches that will never reach the new database.
func (m mirrorStatus) lost() uint64 { return m.DeadLettered + m.Dropped }

// mirrorStatus reads the mirror's figures from the proxy's admin server.
func (p *bgProc) mirrorStatus(ctx context.Context) (mirrorStatus, error) {
	var st struct {
		Mirror *mirrorStatus `json:"mirror"`
	}
	body, err := p.adminGet(ctx, "/status")
	if err != nil {
		return mirrorStatus{}, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return mirrorStatus{}, fmt.Errorf("%s /status: %w", p.name, err)
	}
	if st.Mirror == nil {
		return mirrorStatus{}, fmt.Errorf("%s /status has no mirror: the proxy is not dual-writing", p.name)
	}
	return *st.Mirror, nil
}

// adminGet returns the body of a GET of path (with its query) on the
// proxy's admin server; a status other than 200 is an error.
func (p *bgProc) adminGet(ctx context.Context, path string) ([]byte, error) {
	if p.adminPort == 0 {
		return nil, fmt.Errorf("%s has no admin server", p.name)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d%s", p.adminPort, path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", p.name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", p.name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", p.name, path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}
