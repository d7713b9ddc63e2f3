package delayproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// dialTimeout bounds the connection to the target; on loopback a refused
// or unanswered connection shows well within it.
const dialTimeout = 5 * time.Second

// chunkBuffer is the size of one read from the target. queueBytes bounds
// what one connection holds waiting for its delay before the target is
// made to wait; queueChunks bounds the number of chunks, whatever their
// size. The bound is in bytes because a server answering a pipeline
// flushes at every Sync: a group of a few hundred transactions comes back
// as as many small chunks, and a bound of 64 chunks made the shim hold the
// 65th until the first was written, a delay per 64 answers rather than one
// for all, which no network does.
const (
	chunkBuffer = 32 << 10
	queueBytes  = 2 << 20
	queueChunks = 1 << 14
)

// Proxy is a running forwarder. It is safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	done   chan struct{} // closed by Close

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // open client and target connections
	closed bool

	wg sync.WaitGroup // the accept loop and every connection's goroutines
}

// New listens on listen (a loopback host:port; port 0 picks a free one)
// and forwards every connection to target (a loopback host:port), holding
// each chunk the target sends for delay before writing it to the client.
// The caller must Close it.
func New(listen, target string, delay time.Duration) (*Proxy, error) {
	if delay < 0 {
		return nil, fmt.Errorf("delayproxy: negative delay %v", delay)
	}
	if err := checkLoopback(listen); err != nil {
		return nil, fmt.Errorf("delayproxy: listen address: %w", err)
	}
	if err := checkLoopback(target); err != nil {
		return nil, fmt.Errorf("delayproxy: target address: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("delayproxy: %w", err)
	}
	p := &Proxy{
		ln:     ln,
		target: target,
		delay:  delay,
		done:   make(chan struct{}),
		conns:  make(map[net.Conn]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// checkLoopback accepts host:port where host is "localhost" or a loopback
// IP literal. An empty host (all interfaces) is refused: it is not
// loopback.
func checkLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", addr)
	}
	return nil
}

// Addr is the address the proxy listens on, with the port it was given.
func (p *Proxy) Addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

// Delay is the delay applied to what the target sends.
func (p *Proxy) Delay() time.Duration { return p.delay }

// Close stops accepting, closes every forwarded connection (data still
// waiting for its delay is dropped) and waits for the goroutines to end.
// Calling it again is a no-op.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	err := p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// track records an open connection so that Close can end it. It returns
// false, having closed c, once the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed (or broken beyond use)
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve forwards one client connection. A direction that ends cleanly is
// passed on as a half-close; one that fails (a reset, a write to a closed
// peer) closes both connections, so that the other direction does not
// wait forever.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		return // the client sees its connection closed, as if refused
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)

	abort := func() {
		client.Close()
		server.Close()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if _, err := io.Copy(server, client); err != nil {
			abort()
			return
		}
		closeWrite(server)
	}()
	go func() {
		defer wg.Done()
		if err := p.copyDelayed(client, server, abort); err != nil {
			abort()
			return
		}
		closeWrite(client)
	}()
	wg.Wait()
}

// chunk is data read from the target and the time it may be written on.
type chunk struct {
	data []byte
	due  time.Time
}

// copyDelayed copies src to dst holding every chunk for p.delay after it
// was read. A reader goroutine keeps reading while earlier chunks wait, so
// that the delay is added once to each chunk rather than accumulated. It
// returns nil when src ended cleanly and everything read was written. A
// failed write calls abort at once, which must close src: the reader may be
// blocked in a Read that nothing else would end.
func (p *Proxy) copyDelayed(dst io.Writer, src io.Reader, abort func()) error {
	queue := make(chan chunk, queueChunks)
	readErr := make(chan error, 1)
	// What the reader has queued and the writer not yet written or
	// dropped, bounded by queueBytes. The writer releases every chunk it
	// takes from the queue, so an Acquire waits only while there is
	// something ahead of it to release, and a chunk (at most chunkBuffer)
	// always fits when nothing is held.
	held := semaphore.NewWeighted(queueBytes)
	go func() {
		defer close(queue)
		buf := make([]byte, chunkBuffer)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				c := chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(p.delay)}
				_ = held.Acquire(context.Background(), int64(n)) // fails only for a cancelled context
				select {
				case queue <- c:
				case <-p.done:
					readErr <- net.ErrClosed
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readErr <- err
				return
			}
		}
	}()

	var writeErr error
	for c := range queue {
		if writeErr != nil {
			held.Release(int64(len(c.data)))
			continue // drain, so that the reader is never stuck on a full queue
		}
		if wait := time.Until(c.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				writeErr = net.ErrClosed
				continue
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			writeErr = err
			abort()
		}
		held.Release(int64(len(c.data)))
	}
	// The queue is closed only after the reader has put its result.
	if err := <-readErr; err != nil && writeErr == nil {
		return err
	}
	return writeErr
}

// closeWrite half-closes c when it supports it (TCP), else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	c.Close()
}
