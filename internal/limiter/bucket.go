package limiter

import (
	"math"
	"math/bits"
	"time"
)

// The token arithmetic shared by both stores. tokenbucket.lua is a line-by-line
// mirror of refill and decide; the shared behaviour tests and the
// differential test (TestStoresAgree) keep the two in step.
//
// Exactness: a bucket holds an integer number of token units, unitsPerToken
// per token. unitsPerToken is the number of milliseconds in a day, so a limit
// of Rate tokens per Period adds Rate*(day/Period) units every millisecond, a
// whole number for every period that divides a day. Everything stays an
// integer below maxUnits = 2^52, which Lua's doubles hold exactly (and whose
// sums and products in refill stay below 2^53). Because the unit does not
// depend on the limit, a bucket's stored state stays meaningful when its
// Limit changes.
const (
	unitsPerToken int64 = 86_400_000 // token units in one token (= ms per day)
	maxUnits      int64 = 1 << 52    // bound on capacity, cost and refill rate in units
)

// DefaultMaxClockSkew is how far ahead of a caller's clock a bucket's stored
// timestamp is believed (see the package documentation, "Clock").
const DefaultMaxClockSkew = 2 * time.Second

// params is a Limit in units.
type params struct {
	cap   int64 // capacity, units
	perMs int64 // units added per millisecond
}

// params converts a valid Limit into units.
func (l Limit) params() params {
	return params{
		cap:   l.Burst * unitsPerToken,
		perMs: l.Rate * unitsPerMs(l.Period),
	}
}

// state is a bucket at an instant: units held at time at (ms since the Unix
// epoch, on the clock of the caller that wrote it).
type state struct {
	units int64
	at    int64
}

// refill returns the bucket's state as seen by a caller whose clock reads
// now (ms): the stored state s (or a full bucket when !found) refilled up to
// t = max(now, s.at). Time never moves a bucket backwards: a caller whose
// clock lags reads the bucket as of the stored instant and cannot mint
// tokens. But a stored instant more than skew ahead of now is not believed:
// the state is rebased to now+skew with no refill (rebased is true; the
// caller must store the rebased state even when it charges nothing, or the
// bucket would stay frozen until the caller's clock reached s.at). Stored
// units are clamped to [0, cap] (the limit may have shrunk).
func refill(s state, found bool, p params, now, skew int64) (r state, rebased bool) {
	if !found {
		return state{units: p.cap, at: now}, false
	}
	units := min(max(s.units, 0), p.cap)
	if s.at > now+skew {
		return state{units: units, at: now + skew}, true
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

// untilFull is how many ms after now the bucket in state s is full; 0 when
// it is full already.
func untilFull(s state, p params, now int64) int64 {
	if s.units >= p.cap {
		return 0
	}
	return s.at - now + ceilDiv(p.cap-s.units, p.perMs)
}

// ceilDiv is ⌈a/b⌉ for a ≥ 0, b > 0.
func ceilDiv(a, b int64) int64 {
	return (a + b - 1) / b
}

// decide refills every bucket (st[i] stored, found[i] whether it existed)
// to now and, when each holds at least cost units, takes cost units from all
// of them. It overwrites st with the resulting states, to report, and sets
// write[i] for the states to store: all when it returns true (allowed), only
// rebased ones otherwise.
func decide(st []state, found []bool, ps []params, cost, now, skew int64, write []bool) bool {
	ok := true
	for i := range st {
		st[i], write[i] = refill(st[i], found[i], ps[i], now, skew)
		if st[i].units < cost {
			ok = false
		}
	}
	if ok {
		for i := range st {
			st[i].units -= cost
			write[i] = true
		}
	}
	return ok
}

// report turns decided states into a Result (Source left unset) and
// returns the index of the reported bucket; ps[i] are the params of
// req.Buckets[i]. See Result for which bucket is reported.
func report(req Request, ps []params, st []state, allowed bool, now int64) (Result, int) {
	cost := req.Cost * unitsPerToken
	best, bestVal, bestExceeds := -1, int64(0), false
	for i := range req.Buckets {
		p := ps[i]
		if allowed {
			// The fewest whole tokens left wins; first on a tie.
			if v := st[i].units / unitsPerToken; best < 0 || v < bestVal {
				best, bestVal = i, v
			}
			continue
		}
		if st[i].units >= cost {
			continue // this bucket would have passed
		}
		// A bucket the cost can never pass outranks one that only needs time.
		exceeds := cost > p.cap
		var wait int64
		if exceeds {
			wait = ceilDiv(p.cap, p.perMs)
		} else {
			wait = st[i].at - now + ceilDiv(cost-st[i].units, p.perMs)
		}
		if best < 0 || (exceeds && !bestExceeds) || (exceeds == bestExceeds && wait > bestVal) {
			best, bestVal, bestExceeds = i, wait, exceeds
		}
	}
	if best < 0 { // not reachable for states produced by decide; be safe
		best = 0
	}
	b, p := req.Buckets[best], ps[best]
	r := Result{
		Allowed:    allowed,
		Limit:      b.Limit.Burst,
		Remaining:  st[best].units / unitsPerToken,
		ResetAfter: msDuration(untilFull(st[best], p, now)),
		Window:     msDuration(ceilDiv(p.cap, p.perMs)),
	}
	if !allowed {
		r.RetryAfter = msDuration(max(bestVal, 1))
		r.Reason = ReasonOverLimit
		if bestExceeds {
			r.Reason = ReasonCostExceedsBurst
		}
	}
	return r, best
}

// msDuration converts ms to a Duration, clamped to [0, the longest
// Duration] (about 292 years: a window of 52 million tokens at one a day
// is longer).
func msDuration(ms int64) time.Duration {
	return time.Duration(min(max(ms, 0), maxDurationMs)) * time.Millisecond
}

// maxDurationMs is the longest Duration in whole milliseconds.
const maxDurationMs = int64(math.MaxInt64 / time.Millisecond)
