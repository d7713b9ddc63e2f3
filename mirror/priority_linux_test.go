//go:build linux

package mirror

import (
	"runtime"
	"syscall"
	"testing"
)

// The applier's thread runs at applierNice; the test's own threads keep
// their priority. A process already nicer than applierNice stays as nice:
// raising a priority needs a privilege the applier does not ask for.
func TestLowerPriority(t *testing.T) {
	type prio struct {
		before, after int
		err           error
	}
	// The raw system call returns 20 - nice.
	nice := func(tid int) (int, error) {
		p, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		return 20 - p, err
	}
	res := make(chan prio, 1)
	go func() {
		// Locked first, so that tid stays this goroutine's thread.
		runtime.LockOSThread()
		var p prio
		tid := syscall.Gettid()
		if p.before, p.err = nice(tid); p.err != nil {
			res <- p
			return
		}
		lowerPriority() // the thread ends with this goroutine, locked
		p.after, p.err = nice(tid)
		res <- p
	}()
	p := <-res
	if p.err != nil {
		t.Fatal(p.err)
	}
	want := max(applierNice, p.before)
	if p.after != want {
		t.Errorf("applier thread nice %d (was %d), want %d", p.after, p.before, want)
	}
	other, err := nice(syscall.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	if other != p.before {
		t.Errorf("another thread's nice is %d, want it unchanged at %d", other, p.before)
	}
}
