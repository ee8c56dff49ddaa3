package soak_test

import (
	"fmt"
	"sort"
	"time"
)

// bucketSpec is a token bucket in the units the check uses.
type bucketSpec struct {
	Burst float64 // tokens
	Rate  float64 // tokens per second
}

// vbucket replays admissions against a token bucket of capacity cap that
// refills at rate and starts full. It goes negative exactly when some
// interval [s, t] between admissions admitted more than cap + rate·(t−s):
// checking every interval in one pass.
type vbucket struct {
	cap, rate float64
	level     float64
	at        time.Time
	started   bool
}

// take admits cost at t (t never before the previous call) and returns by
// how much the bound was exceeded (0: within it).
func (b *vbucket) take(t time.Time, cost float64) float64 {
	if !b.started {
		b.level, b.at, b.started = b.cap, t, true
	}
	if t.After(b.at) {
		b.level = min(b.cap, b.level+b.rate*t.Sub(b.at).Seconds())
		b.at = t
	}
	b.level -= cost
	if b.level < -1e-9 {
		over := -b.level
		b.level = 0 // count each excess once
		return over
	}
	return 0
}

// refill makes the bucket full again at t: an allowance (data lost).
func (b *vbucket) refill(t time.Time) {
	b.level, b.at, b.started = b.cap, t, true
}

// admission is one admitted request on a bucket.
type admission struct {
	At      time.Time     // the decision's end
	Latency time.Duration // it read its clock at most this long before At
	Cost    float64
	Shared  bool // decided on the shared bucket (Upstash), else on a process's memory
	PID     int
}

// overAdmission is a violation of a bucket's bound.
type overAdmission struct {
	Caller string
	At     time.Time
	Excess float64 // tokens beyond the bound
	Where  string  // "shared" or "memory pid N"
}

// allowances are what the bound adds to burst + rate × elapsed, each
// documented in docs/RELIABILITY.md.
type allowances struct {
	// Skew is the largest difference between two processes' clocks: a
	// bucket's clock is the latest writer's, so the shared bucket may
	// refill up to rate × Skew ahead of the real clock.
	Skew time.Duration
	// DataLoss are the instants the shared store lost its data
	// (redis-server restarted without persistence): every bucket starts
	// full again.
	DataLoss []time.Time
}

// checkAdmissions checks one caller's admissions against spec: those
// decided on Upstash against one shared bucket, those decided from a
// process's memory (the fallback) against one bucket per process, each
// starting full when first used. Each bucket's capacity is burst + rate ×
// (the skew allowance for the shared one + the longest decision, since a
// decision reads its clock before it logs its end).
func checkAdmissions(caller string, spec bucketSpec, adm []admission, allow allowances) []overAdmission {
	sort.SliceStable(adm, func(i, j int) bool { return adm[i].At.Before(adm[j].At) })
	var longest time.Duration
	for _, a := range adm {
		longest = max(longest, a.Latency)
	}
	slack := longest + 2*time.Millisecond // + the script's whole-millisecond clock
	shared := &vbucket{cap: spec.Burst + spec.Rate*(allow.Skew+slack).Seconds(), rate: spec.Rate}
	memory := map[int]*vbucket{}
	loss := append([]time.Time(nil), allow.DataLoss...)
	sort.Slice(loss, func(i, j int) bool { return loss[i].Before(loss[j]) })
	var out []overAdmission
	for _, a := range adm {
		if a.Shared {
			for len(loss) > 0 && !loss[0].After(a.At) {
				shared.refill(loss[0])
				loss = loss[1:]
			}
			if x := shared.take(a.At, a.Cost); x > 0 {
				out = append(out, overAdmission{Caller: caller, At: a.At, Excess: x, Where: "shared"})
			}
			continue
		}
		m := memory[a.PID]
		if m == nil {
			m = &vbucket{cap: spec.Burst + spec.Rate*slack.Seconds(), rate: spec.Rate}
			memory[a.PID] = m
		}
		if x := m.take(a.At, a.Cost); x > 0 {
			out = append(out, overAdmission{Caller: caller, At: a.At, Excess: x, Where: fmt.Sprintf("memory pid %d", a.PID)})
		}
	}
	return out
}

// window is a fault's span; an instantaneous event has Start == End.
type window struct {
	Kind       string
	Start, End time.Time
	Upstash    bool // decisions may fall back while it lasts
	KeyStore   bool // unseen keys may get 503 while it lasts
}

// recoveryBound is the promise: decisions back on Upstash within 10 s of a
// fault's end.
const recoveryBound = 10 * time.Second

// span is when a decision ran: it read its clock, and called Upstash,
// between Start and End.
type span struct{ Start, End time.Time }

// lateFallbacks returns the fallback decisions (by start time) that no
// Upstash fault explains: none was under way while they ran, nor had ended
// within recoveryBound before they began. (A decision that began just
// before a fault and met it in flight is explained.)
func lateFallbacks(decisions []span, faults []window) []time.Time {
	var out []time.Time
	for _, d := range decisions {
		explained := false
		for _, f := range faults {
			if f.Upstash && !d.End.Before(f.Start) && !d.Start.After(f.End.Add(recoveryBound)) {
				explained = true
				break
			}
		}
		if !explained {
			out = append(out, d.Start)
		}
	}
	return out
}

// recoveries returns, for each stretch of overlapping Upstash faults, how
// long after its end the last fallback decision began, among those that
// ended before the next stretch started (0: none after its end).
func recoveries(decisions []span, faults []window) []time.Duration {
	var ups []window
	for _, f := range faults {
		if f.Upstash {
			ups = append(ups, f)
		}
	}
	sort.Slice(ups, func(i, j int) bool { return ups[i].Start.Before(ups[j].Start) })
	var merged []window
	for _, f := range ups {
		if n := len(merged); n > 0 && !f.Start.After(merged[n-1].End) {
			if f.End.After(merged[n-1].End) {
				merged[n-1].End = f.End
			}
			continue
		}
		merged = append(merged, f)
	}
	out := make([]time.Duration, len(merged))
	for i, f := range merged {
		for _, d := range decisions {
			if d.Start.After(f.End) && (i+1 == len(merged) || d.End.Before(merged[i+1].Start)) {
				out[i] = max(out[i], d.Start.Sub(f.End))
			}
		}
	}
	return out
}
