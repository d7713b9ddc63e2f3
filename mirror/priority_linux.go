//go:build linux

package mirror

import (
	"runtime"
	"syscall"
)

// applierNice is the scheduling priority (nice value) of the applier's
// thread, below the proxy's default 0.
const applierNice = 10

// lowerPriority puts the calling goroutine on a thread of its own and lowers
// that thread's CPU priority (setpriority on a thread id affects that
// thread only on Linux). The applier's work is decoding spooled batches and
// encoding them for the new database: when it competes for a CPU with the
// proxy's event loop or the old database's backends on the same machine,
// the clients' requests should win, and a backlog wait. It is best effort:
// without the permission, the thread keeps its priority.
func lowerPriority() {
	runtime.LockOSThread()
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), applierNice)
}
