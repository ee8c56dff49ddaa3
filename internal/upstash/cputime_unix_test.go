//go:build unix

package upstash_test

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time this process has used. The
// benchmarks report it per operation: on a shared machine it varies far
// less than wall time, since other processes' load does not add to it.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
