//go:build linux

package proxy

import (
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// busyPoller decides when the event loop polls its sockets instead of
// sleeping in epoll_wait, and does the polling (loop.busy_poll).
//
// A loop that sleeps between a request and its answer is woken by the
// kernel when the answer comes, which on a virtual machine costs tens of
// microseconds per round trip; at one client that is most of what a proxy
// adds. Polling for a short while instead catches an answer that comes
// soon without that wake-up. It costs CPU, so the loop polls only when it
// is likely to pay and to cost nobody else anything:
//   - after a sleep of the same kind that ended within the window (answers
//     come that soon), until a poll runs out without anything becoming
//     ready. Waits come in two kinds, told apart by whether some session
//     has a request the old database has not answered yet: a wait for an
//     answer, which on a nearby database comes within the window, and a
//     wait for clients, which an application that thinks between requests
//     makes long. Judging them apart keeps a slow client from turning
//     polling off for the answers, and the answers from turning it on for
//     every wait for the client (a poll that runs out on each request);
//   - when the machine has a CPU to spare: no more tasks are runnable than
//     there are CPUs, as /proc/loadavg said at most a millisecond ago;
//   - never with fewer than two CPUs for the proxy (GOMAXPROCS, which
//     follows a container's CPU limit): polling would spend the quota the
//     sessions need;
//   - yielding the CPU between polls, so that a task woken on this CPU
//     runs at once.
//
// It is used by the loop goroutine only.
type busyPoller struct {
	loadavg int     // /proc/loadavg, or -1 when it cannot be read
	cpus    int     // CPUs the proxy may use
	useful  [2]bool // by waitKind: the last wait of that kind ended soon
	spare   bool
	lookAt  int64 // when to look at the machine's load again, unix ns

	hits, misses prometheus.Counter
}

// waitKind is what a wait of the loop is for.
type waitKind int

const (
	waitClients waitKind = iota // no session has a request upstream
	waitAnswer                  // some session waits for the old database
)

func newBusyPoller(hits, misses prometheus.Counter) *busyPoller {
	fd, err := syscall.Open("/proc/loadavg", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	return &busyPoller{loadavg: fd, cpus: min(runtime.NumCPU(), runtime.GOMAXPROCS(0)), hits: hits, misses: misses}
}

func (b *busyPoller) close() {
	if b.loadavg >= 0 {
		syscall.Close(b.loadavg)
		b.loadavg = -1
	}
}

// poll polls epfd for up to window when that is worth it for a wait of
// kind k (see busyPoller), and returns what epoll_wait found; 0 when the
// caller should sleep.
func (b *busyPoller) poll(epfd int, events []syscall.EpollEvent, window time.Duration, k waitKind) (int, error) {
	if window <= 0 || !b.useful[k] || b.loadavg < 0 || b.cpus < 2 {
		return 0, nil
	}
	now := time.Now()
	if now.UnixNano() >= b.lookAt {
		b.lookAt = now.Add(time.Millisecond).UnixNano()
		n, ok := b.runnable()
		// The loop itself is one of the runnable tasks.
		b.spare = ok && n <= b.cpus
	}
	if !b.spare {
		return 0, nil
	}
	deadline := now.Add(window)
	for {
		syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
		n, err := epollPoll(epfd, events)
		if n != 0 || err != nil {
			b.hits.Inc()
			return n, err
		}
		if time.Now().After(deadline) {
			b.useful[k] = false
			b.misses.Inc()
			return 0, nil
		}
	}
}

// slept records how a sleep of kind k in epoll_wait went: it took d and
// found n sockets ready.
func (b *busyPoller) slept(d time.Duration, n int, window time.Duration, k waitKind) {
	b.useful[k] = n > 0 && d < window
}

// runnable returns the number of tasks runnable on the machine now.
func (b *busyPoller) runnable() (int, bool) {
	var buf [128]byte
	n, err := syscall.Pread(b.loadavg, buf[:], 0)
	if err != nil {
		return 0, false
	}
	return parseRunnable(buf[:n])
}

// parseRunnable reads the runnable task count from /proc/loadavg's text,
// "0.61 0.43 0.40 3/250 12345": the number before the slash of the fourth
// field.
func parseRunnable(b []byte) (int, bool) {
	field, n, digits := 0, 0, 0
	for _, c := range b {
		switch {
		case c == ' ':
			field++
			if field > 3 {
				return 0, false
			}
		case field < 3:
		case c == '/':
			return n, digits > 0
		case c >= '0' && c <= '9' && digits < 9:
			n = n*10 + int(c-'0')
			digits++
		default:
			return 0, false
		}
	}
	return 0, false
}
