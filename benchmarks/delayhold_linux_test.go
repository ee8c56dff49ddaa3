package benchmarks

import (
	"runtime"
	"syscall"
	"time"
)

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK (linux/prctl.h).
const prSetTimerSlack = 29

// holdThread prepares the calling goroutine for holdUntil: it keeps it on
// its OS thread for the rest of its life (the thread ends with it) and
// sets that thread's timer slack to 1 ns, so that a nanosleep wakes up
// when asked rather than up to 50 µs later (the default slack).
func holdThread() {
	runtime.LockOSThread()
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
}

// holdUntil blocks the calling thread until deadline with nanosleep, a
// blocking system call the Go scheduler hands the thread's P away from.
// Unlike time.Sleep, whose wake-up rides the runtime's millisecond-grained
// poller when the machine is idle, it is late by tens of µs, not ~0.6 ms.
// Interrupted sleeps (the runtime's preemption signals) resume.
func holdUntil(deadline time.Time) {
	for {
		d := time.Until(deadline)
		if d <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		_ = syscall.Nanosleep(&ts, nil)
	}
}
