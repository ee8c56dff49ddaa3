package limiter

import (
	"sync"
	"time"
)

// breaker is a circuit breaker around the shared store.
//
//   - closed: every call goes through; threshold consecutive failures open it.
//   - open: no call goes through (no latency cost) until cooldown has passed
//     since it opened; then the next caller becomes the one probe.
//   - half-open (open, probe in flight): other callers still skip the store.
//     The probe's success closes the breaker; its failure reopens it for
//     another cooldown.
//
// It reads no clock: callers pass now. Safe for concurrent use.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	fails    int       // consecutive failures while closed
	open     bool      // open or half-open
	openedAt time.Time // when it last opened
	probing  bool      // a probe is in flight
}

// allow reports whether a call may go to the store, and whether that call
// is the half-open probe (whose outcome must be reported with probe=true).
func (b *breaker) allow(now time.Time) (probe, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return false, true
	}
	if b.probing || now.Sub(b.openedAt) < b.cooldown {
		return false, false
	}
	b.probing = true
	return true, true
}

// success records a successful call and reports whether it closed the
// breaker.
func (b *breaker) success(probe bool) (closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails = 0
	if probe || b.open {
		closed = b.open
		b.open, b.probing = false, false
	}
	return closed
}

// failure records a failed call and reports whether it opened the breaker.
func (b *breaker) failure(now time.Time, probe bool) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
		b.openedAt = now // another cooldown
		return false
	}
	if b.open {
		return false // a call that started before the breaker opened
	}
	b.fails++
	if b.fails >= b.threshold {
		b.open, b.openedAt, b.fails = true, now, 0
		return true
	}
	return false
}

// trip opens the breaker now, whatever the count: for a failure that says
// the next calls would wait out their timeout too.
func (b *breaker) trip(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		b.open, b.openedAt, b.fails = true, now, 0
	}
}

// abandon records a call whose outcome says nothing about the store (the
// caller's context ended first). A probe's slot is freed for the next caller.
func (b *breaker) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// skipping reports whether a call at now would skip the store: the
// breaker is open and its cooldown has not passed, or its probe is in
// flight. Unlike allow, it changes nothing.
func (b *breaker) skipping(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open && (b.probing || now.Sub(b.openedAt) < b.cooldown)
}

func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// event is what the Limiter logs and throttles: why a decision did not come
// from the shared store, or a breaker transition.
type event int

const (
	failTimeout        event = iota // the shared store did not answer within the timeout
	failAuth                        // the shared store refused the token (HTTP 401)
	failError                       // any other failure of the shared store
	failCanceled                    // the caller's context was canceled
	failCircuitOpen                 // the breaker is open: the store was not asked
	eventBreakerOpened              // the breaker opened
	eventBreakerClosed              // the breaker closed
	numEvents
)

var eventNames = [numEvents]string{"timeout", "auth", "error", "canceled", "circuit_open", "breaker_opened", "breaker_closed"}

func (e event) String() string { return eventNames[e] }

// logGate lets through at most one log line per event kind per interval and
// counts the ones it holds back. It reads no clock: callers pass now.
type logGate struct {
	every time.Duration

	mu         sync.Mutex
	last       [numEvents]time.Time
	seen       [numEvents]bool
	suppressed [numEvents]uint64
}

// take reports whether a line for ev may be logged now and, if so, how many
// were suppressed since the previous one (the count is then reset).
func (g *logGate) take(ev event, now time.Time) (ok bool, suppressed uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	// Concurrent decisions read the clock before they get here, so now may
	// be a little before last: that is the same burst, not a new one. Only
	// a clock stepped back by a whole interval or more logs again.
	if d := now.Sub(g.last[ev]); g.seen[ev] && d < g.every && d > -g.every {
		g.suppressed[ev]++
		return false, 0
	}
	suppressed = g.suppressed[ev]
	g.seen[ev], g.last[ev], g.suppressed[ev] = true, now, 0
	return true, suppressed
}
