package reliability_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// sharedLimit is the bucket the concurrency scenarios share: a refill fast
// enough that the measured interval's refill dominates the burst.
const (
	sharedRate   = 200 // tokens per second
	sharedBurst  = 50
	sharedTiers  = "anonymous=200/second:burst=50,authenticated=30/minute:burst=50,premium=120/minute:burst=200"
	loadDuration = 3 * time.Second
)

// admission is the outcome of hammering one bucket.
type admission struct {
	attempts, allowed int64
	start, stop, end  time.Time // load began; no request was sent after stop; every reply was in by end
}

// bounds returns the most the bucket can have admitted by end (burst +
// rate × elapsed + one cost: a decision in flight at end) and the least it
// should have admitted by stop (99 % of burst + rate × elapsed).
func (a admission) bounds(rate, burst float64) (upper, lower float64) {
	upper = burst + rate*a.end.Sub(a.start).Seconds() + 1
	lower = 0.99 * (burst + rate*a.stop.Sub(a.start).Seconds())
	return upper, lower
}

func (a admission) check(t *testing.T, what string, rate, burst float64) {
	t.Helper()
	upper, lower := a.bounds(rate, burst)
	if float64(a.allowed) > upper {
		t.Errorf("%s: %d allowed, more than burst + rate × elapsed + 1 = %.1f (over-admission)", what, a.allowed, upper)
	}
	if float64(a.allowed) < lower {
		t.Errorf("%s: %d allowed, less than 99%% of burst + rate × elapsed = %.1f (under-admission)", what, a.allowed, lower)
	}
	if float64(a.attempts) < 2*upper {
		t.Errorf("%s: only %d attempts for a bound of %.0f: the load did not saturate the bucket, the lower bound proves nothing", what, a.attempts, upper)
	}
}

// TestSharedBucketAcrossContainers: several independent containers (each
// its own Upstash client, limiter, deny cache and key cache), with several
// goroutines each, draw from one caller's bucket on one real redis-server.
// Over the measured interval the bucket admits no more than burst + rate ×
// elapsed (+ one cost) and at least 99 % of it.
func TestSharedBucketAcrossContainers(t *testing.T) {
	env := upstashtest.Start(t)
	keys := newKeySet(t)
	const containers, goroutines = 4, 4
	stacks := make([]*stack, containers)
	for i := range stacks {
		// A generous LIMITER_TIMEOUT: this test is about the shared bucket's
		// accuracy; on a loaded machine a 150 ms budget would turn it into a
		// fallback test (per-container memory buckets over-admit by design).
		stacks[i] = newStack(t, upstashEnv(env.URL, env.Token, keys, "TIER_LIMITS", sharedTiers, "LIMITER_TIMEOUT", "2s"))
	}
	ip := freshIP()
	var a admission
	var attempts, allowed atomic.Int64
	var ta tally
	a.start = time.Now()
	a.stop = a.start.Add(loadDuration)
	var wg sync.WaitGroup
	for _, st := range stacks {
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(a.stop) {
					d := st.decide(authEvent(ip, nil))
					attempts.Add(1)
					if d.Effect == "Allow" {
						allowed.Add(1)
					}
					ta.add(d)
					time.Sleep(time.Millisecond) // pacing: ~16 callers × 1 kHz, far above the refill
				}
			}()
		}
	}
	wg.Wait()
	a.end = time.Now()
	a.attempts, a.allowed = attempts.Load(), allowed.Load()
	ta.check(t, "shared bucket", stacks[0].timeout+margin)
	a.check(t, "4 containers × 4 goroutines", sharedRate, sharedBurst)
	if n := ta.bySource["memory"]; n != 0 {
		t.Errorf("%d decisions fell back to memory with a healthy Upstash", n)
	}
	upper, lower := a.bounds(sharedRate, sharedBurst)
	t.Logf("MEASURED concurrency=goroutines containers=%d goroutines=%d interval=%s attempts=%d allowed=%d bound=%.1f (+1 cost) admitted/bound=%.4f lower_bound=%.1f sources=[%s] upstash_requests=%d (%.3f per decision)",
		containers, containers*goroutines, a.end.Sub(a.start).Round(time.Millisecond), a.attempts, a.allowed, upper-1,
		float64(a.allowed)/(upper-1), lower, ta.sources(), env.Server.Requests(), float64(env.Server.Requests())/float64(a.attempts))
}
