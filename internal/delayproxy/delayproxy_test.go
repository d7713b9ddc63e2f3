package delayproxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// slack is how late a delayed answer may be on a loaded machine (and under
// -race) and still count as delayed by exactly the configured delay. The
// tests use delays larger than it, so that "delayed once" and "delayed
// twice" cannot be confused.
const slack = 400 * time.Millisecond

// server is a loopback TCP server running handle on every connection.
func server(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echo writes back what it reads, then half-closes when the client does.
func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	_ = c.(*net.TCPConn).CloseWrite()
}

func newProxy(t *testing.T, target string, delay time.Duration) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func dial(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

func TestAnswerIsDelayed(t *testing.T) {
	for _, delay := range []time.Duration{0, 150 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			p := newProxy(t, server(t, echo), delay)
			c := dial(t, p)
			for i := range 3 { // every exchange is delayed, not only the first
				msg := []byte{'p', 'i', 'n', 'g', byte('0' + i)}
				start := time.Now()
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil {
					t.Fatal(err)
				}
				took := time.Since(start)
				if !bytes.Equal(got, msg) {
					t.Fatalf("echo %q, want %q", got, msg)
				}
				if took < delay || took > delay+slack {
					t.Errorf("exchange %d took %v, want %v to %v", i, took, delay, delay+slack)
				}
			}
		})
	}
}

// What the client sends reaches the target at once; only answers wait.
func TestRequestsAreNotDelayed(t *testing.T) {
	const delay = 500 * time.Millisecond
	arrived := make(chan time.Time, 1)
	target := server(t, func(c net.Conn) {
		b := make([]byte, 1)
		if _, err := c.Read(b); err == nil {
			arrived <- time.Now()
		}
		_, _ = io.Copy(io.Discard, c)
	})
	c := dial(t, newProxy(t, target, delay))
	sent := time.Now()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-arrived:
		if took := at.Sub(sent); took >= delay/2 {
			t.Errorf("request took %v to reach the target; only answers should be delayed by %v", took, delay)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request never reached the target")
	}
}

// Pipelined chunks are each delayed once: the delay is a latency, not a
// per-chunk wait that accumulates.
func TestDelayDoesNotAccumulate(t *testing.T) {
	const (
		delay = 300 * time.Millisecond
		n     = 8
		gap   = 20 * time.Millisecond
	)
	// The target answers each byte with a chunk of its own, gap apart, so
	// that the proxy reads n separate chunks.
	target := server(t, func(c net.Conn) {
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		for i := range n {
			if _, err := c.Write([]byte{byte('a' + i)}); err != nil {
				return
			}
			time.Sleep(gap)
		}
	})
	c := dial(t, newProxy(t, target, delay))
	start := time.Now()
	if _, err := c.Write([]byte("go")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n)
	for i := range got {
		if _, err := io.ReadFull(c, got[i:i+1]); err != nil {
			t.Fatal(err)
		}
		// Chunk i left the target at about i*gap and is due delay later.
		early := delay + time.Duration(i)*gap - 10*time.Millisecond
		if took := time.Since(start); took < early {
			t.Errorf("chunk %d after %v, before its delay (%v)", i, took, early)
		}
	}
	// Accumulated delays would take n*delay = 2.4 s.
	if took, most := time.Since(start), delay+n*gap+slack; took > most {
		t.Errorf("%d chunks took %v, want at most %v: delays accumulate", n, took, most)
	}
	if string(got) != "abcdefgh" {
		t.Errorf("chunks arrived as %q, want in order abcdefgh", got)
	}
}

// A server answering a pipeline flushes at every Sync: many small chunks.
// Each is still delayed once, however many are waiting, as on a network
// with that latency. A bound on the number of waiting chunks (64, before)
// held the 65th until the first was written, so that it and everything
// after it came a second delay late.
func TestManySmallChunksDelayedOnce(t *testing.T) {
	const (
		delay = time.Second
		n     = 200
		gap   = time.Millisecond
	)
	target := server(t, func(c net.Conn) {
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		for range n {
			if _, err := c.Write([]byte{'x'}); err != nil {
				return
			}
			time.Sleep(gap)
		}
		closeWrite(c)
	})
	c := dial(t, newProxy(t, target, delay))
	start := time.Now()
	if _, err := c.Write([]byte("g")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d bytes, want %d", len(got), n)
	}
	// The target writes them within about n*gap (twice that, on a loaded
	// machine); a second delay would make it 2*delay.
	if took, most := time.Since(start), delay+2*n*gap+slack; took > most {
		t.Errorf("%d chunks took %v, want at most %v: the shim delays them in waves", n, took, most)
	}
}

// A megabyte each way arrives intact and in order, and the client's
// half-close reaches the target (the echo ends, its half-close comes back).
func TestForwardsBytesAndHalfClose(t *testing.T) {
	p := newProxy(t, server(t, echo), 2*time.Millisecond)
	c := dial(t, p)
	payload := make([]byte, 1<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		writeErr <- err
	}()
	got, err := io.ReadAll(c) // ends at the echo's half-close
	if err != nil {
		t.Fatal(err)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("got %d bytes back, want the %d sent, unchanged", len(got), len(payload))
	}
}

// The target's half-close is passed on after its delayed data, not before.
func TestTargetCloseAfterDelayedData(t *testing.T) {
	const delay = 200 * time.Millisecond
	target := server(t, func(c net.Conn) {
		_, _ = c.Write([]byte("bye"))
	})
	p := newProxy(t, target, delay)
	// From before the dial: the target writes as soon as it is connected,
	// which may be before dial returns here.
	start := time.Now()
	c := dial(t, p)
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "bye" {
		t.Errorf("got %q, want %q before the end of stream", got, "bye")
	}
	if took := time.Since(start); took < delay {
		t.Errorf("end of stream after %v, before the data's delay %v", took, delay)
	}
}

func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := dial(t, newProxy(t, addr, 10*time.Millisecond))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read through a proxy to a closed port: %d bytes, %v; want the connection closed", n, err)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	hold := make(chan struct{})
	target := server(t, func(c net.Conn) { <-hold }) // never answers
	// Registered after server's, so it runs first: the server's cleanup
	// waits for this handler.
	t.Cleanup(func() { close(hold) })
	p, err := New("127.0.0.1:0", target, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the proxy has dialed the target
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a connection was open")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("client read after Close: %d bytes, %v; want the connection closed", n, err)
	}
	if c2, err := net.DialTimeout("tcp", p.Addr().String(), time.Second); err == nil {
		c2.Close()
		t.Error("the proxy still accepts connections after Close")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name, listen, target string
		delay                time.Duration
		want                 string
	}{
		{"all interfaces", ":0", "127.0.0.1:5432", 0, "not a loopback"},
		{"unspecified", "0.0.0.0:0", "127.0.0.1:5432", 0, "not a loopback"},
		{"network target", "127.0.0.1:0", "192.0.2.1:5432", 0, "not a loopback"},
		{"host name target", "127.0.0.1:0", "db.example:5432", 0, "not a loopback"},
		{"no port", "127.0.0.1", "127.0.0.1:5432", 0, "missing port"},
		{"empty target port", "127.0.0.1:0", "127.0.0.1:", 0, "has no port"},
		{"negative delay", "127.0.0.1:0", "127.0.0.1:5432", -time.Millisecond, "negative delay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.listen, tt.target, tt.delay)
			if err == nil {
				p.Close()
				t.Fatalf("New(%q, %q, %v) accepted", tt.listen, tt.target, tt.delay)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want one containing %q", err, tt.want)
			}
		})
	}
	for _, ok := range []string{"localhost:0", "[::1]:0", "127.0.0.2:0"} {
		if err := checkLoopback(ok); err != nil {
			t.Errorf("checkLoopback(%q): %v", ok, err)
		}
	}
}
