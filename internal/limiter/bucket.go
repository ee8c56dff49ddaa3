package limiter

import (
	"math"
	"math/bits"
	"time"
)

// The arithmetic shared by both stores. decide.lua mirrors refill, decide
// and scale line by line; the behaviour table and TestStoresAgree keep them
// in step.
//
// Exactness: a token bucket holds an integer number of token units,
// unitsPerToken per token. unitsPerToken is the number of milliseconds in a
// day, so a limit of Rate tokens per Period adds Rate*(day/Period) units
// every millisecond, a whole number for every period that divides a day.
// Everything stays an integer below maxUnits = 2^52, which Lua's doubles
// hold exactly (and whose sums stay below 2^53). Because the unit does not
// depend on the limit, a bucket's stored state stays meaningful when its
// Limit (or a live factor) changes. A quota counts whole tokens.
const (
	unitsPerToken int64 = 86_400_000 // token units in one token (= ms per day)
	maxUnits      int64 = 1 << 52    // bound on capacity, cost and refill rate in units
)

// MaxClockSkew is how far ahead of a caller's clock a bucket's stored
// timestamp is believed (see the package documentation, "Clock").
const MaxClockSkew = 2 * time.Second

// skewMs is MaxClockSkew in ms (a variable only so that tests about
// atomicity can lift it).
var skewMs = int64(MaxClockSkew / time.Millisecond)

// params is one bucket of a decision, resolved: live factors applied,
// quota window placed.
type params struct {
	quota bool
	cap   int64 // token bucket: capacity, units; quota: tokens per window
	perMs int64 // token bucket: units added per ms; quota: end of the window, ms since the epoch
	win   int64 // quota: length of the window, ms
}

// tokenParams converts a valid Limit into units, scaled by ppm millionths.
func tokenParams(l Limit, ppm int64) params {
	return params{
		cap:   scale(l.Burst*unitsPerToken, ppm),
		perMs: scale(l.Rate*unitsPerMs(l.Period), ppm),
	}
}

// quotaParams places q's window around now.
func quotaParams(q Quota, now time.Time) params {
	start, end := q.Period.Window(now)
	return params{quota: true, cap: q.Limit, perMs: end.UnixMilli(), win: end.Sub(start).Milliseconds()}
}

// state is a bucket at an instant. Token bucket: units held at time at (ms
// since the Unix epoch, on the clock of the caller that wrote it). Quota:
// units is the tokens spent in the window that ends at at.
type state struct {
	units int64
	at    int64
}

// refill returns a token bucket's state as seen by a caller whose clock
// reads now (ms): the stored state s (or a full bucket when !found)
// refilled up to t = max(now, s.at). Time never moves a bucket backwards: a
// caller whose clock lags reads the bucket as of the stored instant and
// cannot mint tokens. But a stored instant more than skewMs ahead of now is
// not believed: the state is rebased to now+skewMs with no refill (rebased
// is true; the caller must store the rebased state even when it charges
// nothing, or the bucket would stay frozen until the caller's clock reached
// s.at). Stored units are clamped to [0, cap] (the limit may have shrunk).
func refill(s state, found bool, p params, now int64) (r state, rebased bool) {
	if !found {
		return state{units: p.cap, at: now}, false
	}
	units := min(max(s.units, 0), p.cap)
	if s.at > now+skewMs {
		return state{units: units, at: now + skewMs}, true
	}
	t := max(now, s.at)
	if elapsed := t - s.at; elapsed > 0 && units < p.cap {
		// elapsed·perMs ≥ cap-units, computed without overflow (the Lua's
		// doubles get the same answer: rounding is monotonic and cap-units
		// is exact).
		if hi, lo := bits.Mul64(uint64(elapsed), uint64(p.perMs)); hi != 0 || lo >= uint64(p.cap-units) {
			units = p.cap
		} else {
			units += int64(lo)
		}
	}
	return state{units: units, at: t}, false
}

// current is refill for either kind. A quota's state is the tokens spent
// in the window ending at p.perMs (its at), clamped at 0; a missing key, or
// one of another window, spent nothing.
func current(s state, found bool, p params, now int64) (state, bool) {
	if p.quota {
		if !found || s.at != p.perMs {
			return state{at: p.perMs}, false
		}
		return state{units: max(s.units, 0), at: p.perMs}, false
	}
	return refill(s, found, p, now)
}

// passes reports whether a bucket in state s can pay cost tokens.
func passes(s state, p params, cost int64) bool {
	if p.quota {
		return s.units <= p.cap-cost
	}
	return s.units >= cost*unitsPerToken
}

// charge takes cost tokens from a bucket in state s.
func charge(s state, p params, cost int64) state {
	if p.quota {
		s.units += cost
	} else {
		s.units -= cost * unitsPerToken
	}
	return s
}

// expiresAt is when the key of a bucket in state s expires (ms): a token
// bucket when it is full again, a quota when its window ends. It is the TTL
// the script sets, as an instant.
func expiresAt(s state, p params) int64 {
	if p.quota {
		return p.perMs + skewMs
	}
	if s.units >= p.cap {
		return s.at
	}
	return s.at + ceilDiv(p.cap-s.units, p.perMs)
}

// ceilDiv is ⌈a/b⌉ for a ≥ 0, b > 0.
func ceilDiv(a, b int64) int64 {
	return (a + b - 1) / b
}

// decide brings every bucket (st[i] stored, found[i] whether it existed) to
// now and, when each can pay cost, charges all of them. It overwrites st
// with the resulting states, to report, and sets write[i] for the states to
// store: all when it returns true (allowed), only rebased ones otherwise.
func decide(st []state, found []bool, ps []params, cost, now int64, write []bool) bool {
	ok := true
	for i := range st {
		st[i], write[i] = current(st[i], found[i], ps[i], now)
		if !passes(st[i], ps[i], cost) {
			ok = false
		}
	}
	if ok {
		for i := range st {
			st[i] = charge(st[i], ps[i], cost)
			write[i] = true
		}
	}
	return ok
}

// BucketState is one bucket after a decision, in the units clients see.
type BucketState struct {
	// Limit is the bucket's capacity (Burst, after live factors) or the
	// quota's tokens per window.
	Limit int64
	// Remaining is the whole tokens left (fractions rounded down).
	Remaining int64
	// ResetAfter is how long until the bucket is full again if nothing
	// draws from it (a quota: until its window ends, 0 if nothing was
	// spent).
	ResetAfter time.Duration
	// Window is how long the bucket takes to refill from empty, or the
	// quota's window length: the w of the RateLimit-Policy header.
	Window time.Duration
}

// bucketState reports a bucket in state s at now.
func bucketState(s state, p params, now int64) BucketState {
	if p.quota {
		b := BucketState{Limit: p.cap, Remaining: max(p.cap-s.units, 0), Window: msDuration(p.win)}
		if s.units > 0 {
			b.ResetAfter = msDuration(p.perMs - now)
		}
		return b
	}
	b := BucketState{
		Limit:     p.cap / unitsPerToken,
		Remaining: s.units / unitsPerToken,
		Window:    msDuration(ceilDiv(p.cap, p.perMs)),
	}
	if s.units < p.cap {
		b.ResetAfter = msDuration(s.at - now + ceilDiv(p.cap-s.units, p.perMs))
	}
	return b
}

// wait is how long after now a bucket in state s can pay cost, and whether
// it never can (cost above its capacity). A token bucket that never can
// reports its Window; a quota its window's end.
func wait(s state, p params, cost, now int64) (ms int64, never bool) {
	if p.quota {
		return p.perMs - now, cost > p.cap
	}
	c := cost * unitsPerToken
	if c > p.cap {
		return ceilDiv(p.cap, p.perMs), true
	}
	return s.at - now + ceilDiv(c-s.units, p.perMs), false
}

// report turns decided states into a Result (Source left unset). See Result
// for which bucket is reported.
func report(n int, ps []params, st []state, allowed bool, cost, now int64) Result {
	var r Result
	reportTo(&r, n, ps, st, allowed, cost, now)
	return r
}

// reportTo is report into *r, which must be the zero Result: the memory
// store's hot path fills its caller's Result in place rather than copying
// one (about 350 bytes) at every return.
func reportTo(r *Result, n int, ps []params, st []state, allowed bool, cost, now int64) {
	if n == 1 {
		reportOne(r, ps[0], st[0], allowed, cost, now)
		return
	}
	r.Allowed, r.N, r.Reported = allowed, n, -1
	var bestVal int64
	bestNever := false
	for i := 0; i < n; i++ {
		r.Buckets[i] = bucketState(st[i], ps[i], now)
		if allowed {
			// The fewest whole tokens left wins; first on a tie.
			if v := r.Buckets[i].Remaining; r.Reported < 0 || v < bestVal {
				r.Reported, bestVal = i, v
			}
			continue
		}
		if passes(st[i], ps[i], cost) {
			continue // this bucket would have passed
		}
		// A bucket the cost can never pass outranks one that only needs time.
		w, never := wait(st[i], ps[i], cost, now)
		if r.Reported < 0 || (never && !bestNever) || (never == bestNever && w > bestVal) {
			r.Reported, bestVal, bestNever = i, w, never
		}
	}
	if r.Reported < 0 { // not reachable for states produced by decide; be safe
		r.Reported = 0
	}
	b := r.Buckets[r.Reported]
	r.Limit, r.Remaining, r.ResetAfter, r.Window = b.Limit, b.Remaining, b.ResetAfter, b.Window
	if !allowed {
		r.RetryAfter = msDuration(max(bestVal, 1))
		r.Reason = ReasonOverLimit
		if bestNever {
			r.Reason = ReasonCostExceedsBurst
		}
	}
}

// reportOne is reportTo for one bucket, without its loop and slices (the
// memory store's common case).
func reportOne(r *Result, p params, s state, allowed bool, cost, now int64) {
	b := bucketState(s, p, now)
	r.Allowed, r.N, r.Reported, r.Buckets[0] = allowed, 1, 0, b
	r.Limit, r.Remaining, r.ResetAfter, r.Window = b.Limit, b.Remaining, b.ResetAfter, b.Window
	if !allowed {
		w, never := wait(s, p, cost, now)
		r.RetryAfter = msDuration(max(w, 1))
		r.Reason = ReasonOverLimit
		if never {
			r.Reason = ReasonCostExceedsBurst
		}
	}
}

// msDuration converts ms to a Duration, clamped to [0, the longest
// Duration] (about 292 years: a window of 52 million tokens at one a day
// is longer).
func msDuration(ms int64) time.Duration {
	return time.Duration(min(max(ms, 0), maxDurationMs)) * time.Millisecond
}

// maxDurationMs is the longest Duration in whole milliseconds.
const maxDurationMs = int64(math.MaxInt64 / time.Millisecond)
