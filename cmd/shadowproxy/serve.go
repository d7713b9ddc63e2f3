package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/shadowproxy/shadowproxy/admin"
	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/metrics"
	"github.com/shadowproxy/shadowproxy/proxy"
)

// serveFlags are the command-line settings of serve. They override the
// configuration file and the environment, at start and at every reload.
type serveFlags struct {
	fs         *flag.FlagSet
	configPath string
}

func newServeFlags(stderr io.Writer) *serveFlags {
	f := &serveFlags{fs: flag.NewFlagSet("serve", flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.fs.StringVar(&f.configPath, "config", "", "TOML configuration `file`")
	f.fs.String("listen", "", "client `address` (default 127.0.0.1:6432)")
	f.fs.String("old", "", "postgres:// `URL` of the old database (or $"+config.EnvOld+")")
	f.fs.String("new", "", "postgres:// or mysql:// `URL` of the new database (or $"+config.EnvNew+")")
	f.fs.String("phase", "", "migration `phase` (default old-only)")
	f.fs.String("admin", "", "admin HTTP `address` for /metrics, /status, /healthz (default 127.0.0.1:9187; \"off\" disables)")
	f.fs.String("report-dir", "", "`directory` for reports and dead letters")
	f.fs.String("log-format", "", "log `format`: text or json")
	f.fs.String("log-level", "", "log `level`: debug, info, warn, error")
	return f
}

// load builds the configuration: defaults, file, environment, flags.
func (f *serveFlags) load() (*config.Config, error) {
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return nil, err
	}
	cfg.ApplyEnv(os.Getenv)
	var perr error
	f.fs.Visit(func(fl *flag.Flag) {
		v := fl.Value.String()
		switch fl.Name {
		case "listen":
			cfg.Listen = v
		case "old":
			cfg.Old = v
		case "new":
			cfg.New = v
		case "phase":
			p, err := config.ParsePhase(v)
			if err != nil {
				perr = &config.FieldError{Field: "phase", Err: err}
			}
			cfg.Phase = p
		case "admin":
			if v == "off" {
				v = ""
			}
			cfg.Admin = v
		case "report-dir":
			cfg.ReportDir = v
		case "log-format":
			cfg.Log.Format = v
		case "log-level":
			cfg.Log.Level = v
		}
	})
	if perr != nil {
		return nil, perr
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	f := newServeFlags(stderr)
	if err := f.fs.Parse(args); err != nil {
		return errUsage
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve: unexpected argument %q\n", f.fs.Arg(0))
		return errUsage
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}

	level := new(slog.LevelVar)
	log := newLogger(stderr, cfg.Log.Format, level)
	setLevel(level, cfg.Log.Level)
	slog.SetDefault(log)

	m := metrics.New()
	var dw *dualWrite
	var mirroring *proxy.Mirroring
	var shadower proxy.Shadower
	handlers := map[string]http.Handler{}
	if os.Getenv("SHADOWPROXY_PPROF") != "" {
		// A debugging aid for profiling the proxy under load, on the admin
		// address only.
		handlers["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		handlers["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		handlers["/debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
	}
	if cfg.New != "" {
		if dw, err = startDualWrite(ctx, cfg, m, log); err != nil {
			return err
		}
		mirroring, shadower = dw.mirroring, dw.shadower
		handlers["/report"] = dw.shadower.Handler()
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := dw.close(cctx); err != nil {
				log.Error("closing the mirror", "err", err)
			}
		}()
	}
	srv, err := proxy.New(proxy.Options{Config: cfg, Metrics: m, Logger: log, Mirroring: mirroring, Shadower: shadower})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}

	var adm *admin.Server
	if cfg.Admin != "" {
		adm, err = admin.New(admin.Options{
			Addr:     cfg.Admin,
			Metrics:  m,
			Handlers: handlers,
			Logger:   log,
			Status: func() any {
				st := struct {
					proxy.Status
					Mirror *mirrorStatus `json:"mirror,omitempty"`
				}{Status: srv.Status()}
				if dw != nil {
					ms := dw.status()
					st.Mirror = &ms
				}
				return st
			},
			Healthy: func() error {
				if srv.Draining() {
					return errors.New("draining")
				}
				return nil
			},
		})
		if err != nil {
			ln.Close()
			return err
		}
		go func() {
			if err := adm.Serve(); err != nil {
				log.Error("admin server failed", "err", err)
			}
		}()
	}

	log.Info("shadowproxy serving", "version", version, "listen", ln.Addr().String(), "admin", cfg.Admin,
		"phase", cfg.Phase.String(), "old", config.RedactURL(cfg.Old))
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	for {
		select {
		case <-hup:
			next, err := f.load()
			if err == nil {
				err = srv.Reload(next)
			}
			m.ConfigReload(err)
			if err != nil {
				log.Error("configuration reload rejected; keeping the running configuration", "err", err)
				continue
			}
			setLevel(level, next.Log.Level)
			log.Info("configuration reloaded", "phase", next.Phase.String())
		case err := <-serveErr:
			return err
		case <-ctx.Done():
			timeout := srv.Config().Limits.ShutdownTimeout
			log.Info("shutting down: draining sessions", "timeout", timeout)
			sctx, cancel := context.WithTimeout(context.Background(), timeout)
			err := srv.Shutdown(sctx)
			cancel()
			if err != nil {
				log.Warn("sessions still running at the shutdown timeout were closed", "err", err)
			}
			if adm != nil {
				actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = adm.Close(actx)
				cancel()
			}
			<-serveErr
			log.Info("shadowproxy stopped")
			return nil
		}
	}
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func setLevel(v *slog.LevelVar, s string) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err == nil {
		v.Set(l)
	}
}
