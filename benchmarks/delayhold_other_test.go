//go:build !linux

package benchmarks

import "time"

// holdThread does nothing off Linux.
func holdThread() {}

// holdUntil sleeps until deadline (coarser than the Linux version).
func holdUntil(deadline time.Time) { time.Sleep(time.Until(deadline)) }
