//go:build soak

package main

import (
	"log/slog"
	"os"
	"time"
)

// clockSkew is how far the soak build's clocks run from the real one; set
// at build time (go build -tags soak -ldflags "-X main.clockSkew=1s").
var clockSkew = "1s"

// testClock, in the soak build only (reliability/soak), skews the clock
// of the handler and the limiter by -clockSkew, 0 or +clockSkew, chosen by
// the process ID, so that processes started and restarted during a soak
// run disagree on the time as containers may; and it tags every log line
// with the process ID and the offset, so that the soak can tell processes
// apart. The logger's own timestamps stay on the real clock.
func testClock(log *slog.Logger) (func() time.Time, *slog.Logger) {
	skew, err := time.ParseDuration(clockSkew)
	if err != nil {
		log.Error("soak build: bad clock skew", "clockSkew", clockSkew)
		os.Exit(1)
	}
	pid := os.Getpid()
	offset := time.Duration(pid%3-1) * skew
	log = log.With("pid", pid, "clockOffsetMs", offset.Milliseconds())
	log.Info("soak build: clock skewed", "offsetMs", offset.Milliseconds())
	return func() time.Time { return time.Now().Add(offset) }, log
}
