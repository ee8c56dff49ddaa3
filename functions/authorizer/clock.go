//go:build !soak

package main

import (
	"log/slog"
	"time"
)

// testClock is the production build's: the real clock, the logger as is.
func testClock(log *slog.Logger) (func() time.Time, *slog.Logger) { return nil, log }
