//go:build !unix

package upstash_test

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
