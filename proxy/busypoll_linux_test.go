//go:build linux

package proxy

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestParseRunnable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		okay bool
	}{
		{"0.61 0.43 0.40 3/250 12345\n", 3, true},
		{"12.00 9.10 8.00 17/1024 99\n", 17, true},
		{"0.00 0.00 0.00 0/1 1", 0, true},
		{"0.61 0.43 0.40 /250 12345", 0, false},
		{"0.61 0.43 0.40 3x/250 1", 0, false},
		{"0.61 0.43 0.40 3", 0, false},
		{"0.61 0.43", 0, false},
		{"", 0, false},
		{"0.61 0.43 0.40 99999999999999/250 1", 0, false},
	} {
		n, ok := parseRunnable([]byte(tc.in))
		if n != tc.n || ok != tc.okay {
			t.Errorf("parseRunnable(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.okay)
		}
	}
}

// TestBusyPoller drives the poller over a socket pair with a stand-in for
// /proc/loadavg.
func TestBusyPoller(t *testing.T) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(epfd)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fds[0], &syscall.EpollEvent{Events: syscall.EPOLLIN}); err != nil {
		t.Fatal(err)
	}

	load := filepath.Join(t.TempDir(), "loadavg")
	poller := func(loadavg string) *busyPoller {
		if err := os.WriteFile(load, []byte(loadavg), 0o600); err != nil {
			t.Fatal(err)
		}
		fd, err := syscall.Open(load, syscall.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		return &busyPoller{loadavg: fd, cpus: 2, hits: prometheus.NewCounter(prometheus.CounterOpts{Name: "h"}), misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "m"})}
	}
	events := make([]syscall.EpollEvent, 4)
	const window = 50 * time.Millisecond

	b := poller("0.10 0.10 0.10 1/100 1\n")
	defer b.close()
	if n, _ := b.poll(epfd, events, window, waitAnswer); n != 0 || testutil.ToFloat64(b.hits)+testutil.ToFloat64(b.misses) != 0 {
		t.Fatalf("polled before any sleep proved short: n=%d", n)
	}
	b.slept(window+time.Millisecond, 1, window, waitAnswer)
	if n, _ := b.poll(epfd, events, window, waitAnswer); n != 0 || testutil.ToFloat64(b.misses) != 0 {
		t.Fatal("polled after a long sleep")
	}
	b.slept(time.Microsecond, 1, window, waitAnswer)
	go func() {
		time.Sleep(2 * time.Millisecond)
		syscall.Write(fds[1], []byte("x"))
	}()
	if n, err := b.poll(epfd, events, window, waitAnswer); n != 1 || err != nil || testutil.ToFloat64(b.hits) != 1 {
		t.Fatalf("poll = %d, %v; hits %v: want the socket that became ready while polling", n, err, testutil.ToFloat64(b.hits))
	}
	var buf [1]byte
	syscall.Read(fds[0], buf[:])
	if n, _ := b.poll(epfd, events, time.Millisecond, waitAnswer); n != 0 || testutil.ToFloat64(b.misses) != 1 {
		t.Fatalf("poll with nothing ready = %d, misses %v", n, testutil.ToFloat64(b.misses))
	}
	if n, _ := b.poll(epfd, events, window, waitAnswer); n != 0 || testutil.ToFloat64(b.misses) != 1 {
		t.Fatal("polled again after a poll ran out")
	}

	// Waits for clients are judged apart from waits for answers: a long
	// wait for a client turns polling off for clients only.
	b.slept(time.Microsecond, 1, window, waitAnswer)
	b.slept(window+time.Millisecond, 1, window, waitClients)
	if n, _ := b.poll(epfd, events, window, waitClients); n != 0 || testutil.ToFloat64(b.misses) != 1 {
		t.Fatal("polled for a client after a long wait for clients")
	}
	syscall.Write(fds[1], []byte("x"))
	if n, _ := b.poll(epfd, events, window, waitAnswer); n != 1 || testutil.ToFloat64(b.hits) != 2 {
		t.Fatal("a long wait for clients turned off polling for answers")
	}
	syscall.Read(fds[0], buf[:])
	if n, _ := b.poll(epfd, events, time.Millisecond, waitAnswer); n != 0 || testutil.ToFloat64(b.misses) != 2 {
		t.Fatal("poll for an answer with nothing ready")
	}
	b.slept(time.Microsecond, 1, window, waitClients)
	syscall.Write(fds[1], []byte("x"))
	if n, _ := b.poll(epfd, events, window, waitClients); n != 1 || testutil.ToFloat64(b.hits) != 3 {
		t.Fatal("a poll for an answer that ran out turned off polling for clients")
	}
	syscall.Read(fds[0], buf[:])

	// A busy machine: more runnable tasks than CPUs.
	busy := poller("9.00 9.00 9.00 999/1000 1\n")
	defer busy.close()
	busy.slept(time.Microsecond, 1, window, waitAnswer)
	syscall.Write(fds[1], []byte("x"))
	if n, _ := busy.poll(epfd, events, window, waitAnswer); n != 0 || testutil.ToFloat64(busy.hits) != 0 {
		t.Fatal("polled on a machine with no CPU to spare")
	}
	if n, _ := b.poll(epfd, events, 0, waitAnswer); n != 0 {
		t.Fatal("polled with busy_poll = 0")
	}

	// One CPU for the proxy: never.
	one := poller("0.10 0.10 0.10 1/100 1\n")
	defer one.close()
	one.cpus = 1
	one.slept(time.Microsecond, 1, window, waitAnswer)
	if n, _ := one.poll(epfd, events, window, waitAnswer); n != 0 || testutil.ToFloat64(one.hits) != 0 {
		t.Fatal("polled with one CPU")
	}
}
