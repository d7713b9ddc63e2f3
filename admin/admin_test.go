package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shadowproxy/shadowproxy/config"
	"github.com/shadowproxy/shadowproxy/metrics"
)

// testStatus is what the test Status func returns; it must round-trip.
type testStatus struct {
	Phase   config.Phase   `json:"phase"`
	Clients int            `json:"clients"`
	Tables  map[string]int `json:"tables"`
}

// start runs a Server on a loopback port for the duration of the test and
// checks that Serve ends cleanly when the test closes it.
func start(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
	})
	return s
}

func do(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

func TestEndpoints(t *testing.T) {
	var reportCalls atomic.Int32
	status := testStatus{Phase: config.DualWrite, Clients: 3, Tables: map[string]int{"users": 1}}
	s := start(t, Options{
		Status: func() any { return status },
		Handlers: map[string]http.Handler{
			"/report": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reportCalls.Add(1)
				_, _ = io.WriteString(w, "report body")
			}),
		},
	})
	base := "http://" + s.Addr()

	tests := []struct {
		method, path string
		wantCode     int
		wantHeader   map[string]string
		// wantBody is an exact body; "" with HEAD checks emptiness.
		wantBody string
	}{
		{"GET", "/healthz", 200, map[string]string{"Cache-Control": "no-store"}, "ok\n"},
		{"HEAD", "/healthz", 200, nil, ""},
		{"GET", "/status", 200, map[string]string{
			"Content-Type": "application/json", "Cache-Control": "no-store",
		}, "{\n  \"phase\": \"dual-write\",\n  \"clients\": 3,\n  \"tables\": {\n    \"users\": 1\n  }\n}\n"},
		{"HEAD", "/status", 200, map[string]string{"Content-Type": "application/json"}, ""},
		{"GET", "/report", 200, nil, "report body"},
		{"GET", "/nope", 404, nil, "404 page not found\n"},
		{"POST", "/metrics", 405, map[string]string{"Allow": "GET, HEAD"}, "method not allowed\n"},
		{"PUT", "/healthz", 405, map[string]string{"Allow": "GET, HEAD"}, "method not allowed\n"},
		{"DELETE", "/report", 405, map[string]string{"Allow": "GET, HEAD"}, "method not allowed\n"},
		{"POST", "/nope", 405, nil, "method not allowed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := do(t, tt.method, base+tt.path)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tt.wantCode, body)
			}
			for k, v := range tt.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if body != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
		})
	}
	// The 405 for DELETE /report must come before the handler runs.
	if n := reportCalls.Load(); n != 1 {
		t.Errorf("/report handler ran %d times, want 1", n)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	want := testStatus{Phase: config.ShadowRead, Clients: 7, Tables: map[string]int{"a": 1, "b": 2}}
	var calls atomic.Int32
	s := start(t, Options{Status: func() any { calls.Add(1); return want }})
	for i := 1; i <= 2; i++ {
		resp, body := do(t, "GET", "http://"+s.Addr()+"/status")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		var got testStatus
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
		// Status is consulted on every request, not cached.
		if n := calls.Load(); int(n) != i {
			t.Fatalf("Status called %d times after %d requests", n, i)
		}
	}
}

func TestStatusErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   func() any
		wantCode int
	}{
		{"unset", nil, http.StatusNotFound},
		{"unencodable", func() any { return map[string]any{"c": make(chan int)} }, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Options{Status: tt.status})
			resp, body := do(t, "GET", "http://"+s.Addr()+"/status")
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tt.wantCode, body)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	tests := []struct {
		name     string
		healthy  func() error
		wantCode int
		wantBody string
	}{
		{"nil func", nil, 200, "ok\n"},
		{"healthy", func() error { return nil }, 200, "ok\n"},
		{"unhealthy", func() error { return errors.New("old database unreachable") }, 503, "old database unreachable\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Options{Healthy: tt.healthy})
			resp, body := do(t, "GET", "http://"+s.Addr()+"/healthz")
			if resp.StatusCode != tt.wantCode || body != tt.wantBody {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
		})
	}
}

// TestMetricsExposition scrapes /metrics after some increments and parses
// the text format, checking names and values.
func TestMetricsExposition(t *testing.T) {
	m := metrics.New()
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.Reject(metrics.RejectTooMany)
	m.CountQuery(metrics.QueryRead)
	m.CountQuery(metrics.QueryRead)
	m.CountQuery(metrics.QueryDDL)
	m.BytesClientToUpstream.Add(123)
	m.BytesUpstreamToClient.Add(4567)
	m.ObserveError(metrics.SourceUpstream, "23505")
	m.ObserveUpstreamLatency(2 * time.Millisecond)
	m.CancelsForwarded.Inc()
	m.ConfigReload(nil)
	m.SetPhase(config.DualWrite)

	s := start(t, Options{Metrics: m})
	resp, body := do(t, "GET", "http://"+s.Addr()+"/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}

	// value finds the sample of family name whose labels include want.
	value := func(name string, want map[string]string) (float64, bool) {
		f, ok := fams[name]
		if !ok {
			return 0, false
		}
	metric:
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range mt.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metric
				}
			}
			switch {
			case mt.GetCounter() != nil:
				return mt.GetCounter().GetValue(), true
			case mt.GetGauge() != nil:
				return mt.GetGauge().GetValue(), true
			case mt.GetHistogram() != nil:
				return float64(mt.GetHistogram().GetSampleCount()), true
			case mt.GetUntyped() != nil:
				return mt.GetUntyped().GetValue(), true
			}
		}
		return 0, false
	}

	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"shadowproxy_client_connections", nil, 1},
		{"shadowproxy_client_connections_total", nil, 2},
		{"shadowproxy_client_connections_rejected_total", map[string]string{"reason": "too_many"}, 1},
		{"shadowproxy_client_connections_rejected_total", map[string]string{"reason": "auth"}, 0},
		{"shadowproxy_queries_total", map[string]string{"kind": "read"}, 2},
		{"shadowproxy_queries_total", map[string]string{"kind": "ddl"}, 1},
		{"shadowproxy_queries_total", map[string]string{"kind": "write"}, 0},
		{"shadowproxy_bytes_total", map[string]string{"direction": "client_to_upstream"}, 123},
		{"shadowproxy_bytes_total", map[string]string{"direction": "upstream_to_client"}, 4567},
		{"shadowproxy_errors_total", map[string]string{"source": "upstream", "class": "23"}, 1},
		{"shadowproxy_upstream_latency_seconds", nil, 1},
		{"shadowproxy_cancels_forwarded_total", nil, 1},
		{"shadowproxy_config_reloads_total", map[string]string{"result": "ok"}, 1},
		{"shadowproxy_phase", map[string]string{"phase": "dual-write"}, 1},
		{"shadowproxy_phase", map[string]string{"phase": "old-only"}, 0},
	}
	for _, tt := range tests {
		got, ok := value(tt.name, tt.labels)
		if !ok {
			t.Errorf("%s%v missing from /metrics", tt.name, tt.labels)
			continue
		}
		if got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing: Go/process collectors not exposed", name)
		}
	}
}

func TestNewErrors(t *testing.T) {
	ok := http.NotFoundHandler()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no metrics", Options{Addr: "127.0.0.1:0"}, "Metrics is required"},
		{"conflicts with built-in", Options{Handlers: map[string]http.Handler{"/metrics": ok}}, `mount "/metrics"`},
		{"invalid pattern", Options{Handlers: map[string]http.Handler{"/{bad": ok}}, `mount "/{bad"`},
		{"nil handler", Options{Handlers: map[string]http.Handler{"/report": nil}}, "is nil"},
		{"bad address", Options{Addr: "127.0.0.1:99999"}, "listen 127.0.0.1:99999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name != "no metrics" {
				tt.opts.Metrics = metrics.New()
			}
			if tt.opts.Addr == "" {
				tt.opts.Addr = "127.0.0.1:0"
			}
			s, err := New(tt.opts)
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatalf("New succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestCloseWithoutServe checks that Close releases a listener that was never
// served, and that a later Serve returns at once.
func TestCloseWithoutServe(t *testing.T) {
	s, err := New(Options{Addr: "127.0.0.1:0", Metrics: metrics.New()})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if _, port, _ := net.SplitHostPort(addr); port == "0" {
		t.Fatalf("Addr %q does not report the bound port", addr)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("listener at %s still accepting after Close", addr)
	}
	if err := s.Serve(); err != nil {
		t.Fatalf("Serve after Close = %v, want nil", err)
	}
}

func TestServeTwice(t *testing.T) {
	s := start(t, Options{})
	// Wait until the first Serve is running so the second call is the one
	// refused (the start goroutine may not have been scheduled yet).
	if resp, _ := do(t, "GET", "http://"+s.Addr()+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if err := s.Serve(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Serve = %v, want error", err)
	}
}

// TestCloseDeadline checks that Close gives up on a stuck request when its
// context ends, reports that, and still lets Serve return.
func TestCloseDeadline(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	s, err := New(Options{
		Addr:    "127.0.0.1:0",
		Metrics: metrics.New(),
		Handlers: map[string]http.Handler{"/slow": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		resp, err := http.Get("http://" + s.Addr() + "/slow")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want DeadlineExceeded", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
	// The forced close must have ended the stuck client's request.
	select {
	case <-clientDone:
	case <-time.After(5 * time.Second):
		t.Fatal("client request still open after Close")
	}
}

func TestServerTimeouts(t *testing.T) {
	s, err := New(Options{Addr: "127.0.0.1:0", Metrics: metrics.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if s.srv.ReadHeaderTimeout <= 0 || s.srv.ReadTimeout <= 0 || s.srv.WriteTimeout <= 0 || s.srv.IdleTimeout <= 0 {
		t.Fatalf("timeouts not all set: %+v", s.srv)
	}
}
