package sender

import (
	"syscall"
	"time"
)

// sleepFine sleeps for about d in the kernel (nanosleep), blocking this
// goroutine's thread. It may return early, when a signal arrives; callers
// check the time again.
func sleepFine(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil)
}
