package limiter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/upstash"
)

// A day quota of 5 and a bucket of 3 per minute (1 token per 20 s, window
// 60 s), for the policy cases.
var (
	quota5 = Quota{Limit: 5, Period: QuotaDay}
	per20  = Limit{Rate: 3, Period: time.Minute, Burst: 3}
)

// TestPolicyBehaviour runs the multi-policy cases (a bucket with its quota,
// route and global buckets) on every store and checks every bucket of
// every Result.
func TestPolicyBehaviour(t *testing.T) {
	// t0 is 2023-11-14T22:13:20Z: the day ends 1h46m40s later.
	_, dayEnd := QuotaDay.Window(t0)
	toMidnight := dayEnd.Sub(t0)
	bs := func(l Limit, remaining int64, reset time.Duration) BucketState {
		return BucketState{Limit: l.Burst, Remaining: remaining, ResetAfter: reset, Window: l.Window()}
	}
	qs := func(remaining int64, reset time.Duration) BucketState {
		return BucketState{Limit: quota5.Limit, Remaining: remaining, ResetAfter: reset, Window: 24 * time.Hour}
	}
	type step struct {
		at          time.Duration
		cost        int64
		wantAllowed bool
		wantRetry   time.Duration
		wantReason  Reason
		reported    int
		want        []BucketState
	}
	tests := []struct {
		name    string
		buckets []Bucket
		steps   []step
	}{
		{
			name:    "quota with its bucket",
			buckets: []Bucket{{Key: "caller", Limit: per20}, {Key: "q:caller", Quota: quota5}},
			steps: []step{
				{at: 0, cost: 3, wantAllowed: true, reported: 0, want: []BucketState{bs(per20, 0, 60*sec), qs(2, toMidnight)}},
				{at: 0, cost: 1, wantRetry: 20 * sec, wantReason: ReasonOverLimit, reported: 0, want: []BucketState{bs(per20, 0, 60*sec), qs(2, toMidnight)}},
				{at: 60 * sec, cost: 2, wantAllowed: true, reported: 1, want: []BucketState{bs(per20, 1, 40*sec), qs(0, toMidnight-60*sec)}},
				// The bucket has tokens; the quota refuses until midnight, and
				// nothing is charged.
				{at: 120 * sec, cost: 1, wantRetry: toMidnight - 120*sec, wantReason: ReasonOverLimit, reported: 1,
					want: []BucketState{bs(per20, 3, 0), qs(0, toMidnight-120*sec)}},
				{at: toMidnight - time.Millisecond, cost: 1, wantRetry: time.Millisecond, wantReason: ReasonOverLimit, reported: 1,
					want: []BucketState{bs(per20, 3, 0), qs(0, time.Millisecond)}},
				// A new day: the quota is whole again.
				{at: toMidnight, cost: 1, wantAllowed: true, reported: 0, want: []BucketState{bs(per20, 2, 20*sec), qs(4, 24*time.Hour)}},
			},
		},
		{
			name:    "a cost above the quota never passes",
			buckets: []Bucket{{Key: "big", Limit: PerMinute(100)}, {Key: "q:big", Quota: quota5}},
			steps: []step{
				{at: 0, cost: 6, wantRetry: toMidnight, wantReason: ReasonCostExceedsBurst, reported: 1,
					want: []BucketState{bs(PerMinute(100), 100, 0), qs(5, 0)}},
			},
		},
		{
			name: "route and global buckets: all or nothing, the fewest left reported",
			buckets: []Bucket{
				{Key: "c2", Limit: perTen, Scope: ScopeTier},
				{Key: "r:POST /predict:c2", Limit: per20, Scope: ScopeTier},
				{Key: "global", Limit: PerMinute(6).WithBurst(4), Scope: ScopeAll},
			},
			steps: []step{
				{at: 0, cost: 2, wantAllowed: true, reported: 1,
					want: []BucketState{bs(perTen, 8, 20*sec), bs(per20, 1, 40*sec), bs(PerMinute(6).WithBurst(4), 2, 20*sec)}},
				// The route bucket refuses; the global one could pay; none is charged.
				{at: 0, cost: 2, wantRetry: 20 * sec, wantReason: ReasonOverLimit, reported: 1,
					want: []BucketState{bs(perTen, 8, 20*sec), bs(per20, 1, 40*sec), bs(PerMinute(6).WithBurst(4), 2, 20*sec)}},
				{at: 0, cost: 1, wantAllowed: true, reported: 1,
					want: []BucketState{bs(perTen, 7, 30*sec), bs(per20, 0, 60*sec), bs(PerMinute(6).WithBurst(4), 1, 30*sec)}},
			},
		},
	}
	for _, kind := range storeKinds() {
		t.Run(kind.name, func(t *testing.T) {
			s := kind.new(t)
			for ci, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					req := Request{Tier: "anonymous"}
					for _, b := range tc.buckets {
						b.Key = fmt.Sprintf("pcase%d:%s", ci, b.Key)
						req.Buckets = append(req.Buckets, b)
					}
					for i, st := range tc.steps {
						req.Cost = st.cost
						got, err := s.Allow(context.Background(), req, t0.Add(st.at))
						if err != nil {
							t.Fatal(err)
						}
						if got.Allowed != st.wantAllowed || got.RetryAfter != st.wantRetry || got.Reason != st.wantReason ||
							got.Reported != st.reported || got.N != len(req.Buckets) || got.Source != kind.source {
							t.Fatalf("step %d: allowed %v retry %v reason %q reported %d n %d source %v; want %v %v %q %d %d %v",
								i, got.Allowed, got.RetryAfter, got.Reason, got.Reported, got.N, got.Source,
								st.wantAllowed, st.wantRetry, st.wantReason, st.reported, len(req.Buckets), kind.source)
						}
						if diff := cmp.Diff(st.want, got.Buckets[:got.N]); diff != "" {
							t.Fatalf("step %d: buckets (-want +got):\n%s", i, diff)
						}
						if r := got.Buckets[got.Reported]; got.Limit != r.Limit || got.Remaining != r.Remaining || got.Window != r.Window {
							t.Fatalf("step %d: top-level numbers %+v are not the reported bucket's %+v", i, got, r)
						}
					}
				})
			}
		})
	}
}

// TestStoresAgreeWithPolicies feeds one random sequence — token buckets of
// every scope, a quota, live factors changing, a warm-up ramp, clocks
// crossing midnight — to the Upstash store (which reads the factors from
// Redis itself) and to the memory store given the same factors, and wants
// identical results: the Lua and the Go arithmetic are one, factors
// included.
func TestStoresAgreeWithPolicies(t *testing.T) {
	mem, err := NewMemoryStore(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// A settings TTL below a millisecond: every decision reads them.
	ups, env := newTestUpstash(t, UpstashConfig{SettingsTTL: time.Nanosecond})
	warm := Warmup{Factor: 0.25, Duration: 40 * time.Second, Version: "v1"}
	ups.warm = warm
	settings, _ := newStoreOn(t, env, UpstashConfig{})
	buckets := map[string]Bucket{
		"a": {Key: "a", Limit: perTen, Scope: ScopeTier},
		"b": {Key: "b", Limit: global3, Scope: ScopeAll},
		"c": {Key: "c", Limit: oddRate},
		"d": {Key: "d", Limit: odd7, Scope: ScopeTier},
		"q": {Key: "q", Quota: Quota{Limit: 12, Period: QuotaDay}},
		"w": {Key: "w", Quota: Quota{Limit: 40, Period: QuotaWeek}},
	}
	names := []string{"a", "b", "c", "d", "q", "w"}
	tiers := []string{"anonymous", "premium"}
	rng := rand.New(rand.NewPCG(5, 6))
	_, dayEnd := QuotaDay.Window(t0)
	now := dayEnd.Add(-time.Minute) // midnight comes during the run
	var scales []Scale
	for i := 0; i < 500; i++ {
		switch x := rng.IntN(10); {
		case x < 5:
			now = now.Add(time.Duration(rng.IntN(15000)) * time.Millisecond)
		case x == 5:
			now = now.Add(-time.Duration(rng.IntN(5000)) * time.Millisecond)
		}
		if rng.IntN(25) == 0 { // an operator changes the limits
			// Keys expire when their bucket would be full under the factors
			// they were written with: Redis in real time, the memory store
			// in this test's time. Lower factors would make a key live too
			// short under the new ones, so the two stores would see
			// different keys; let every bucket fill up first (10 minutes
			// is longer than any window here), and only raise factors after
			// (a ramp back to 1 from below, an expiry). Factors above 1 have
			// their own case (TestLiveFactorsAboveOne).
			now = now.Add(10 * time.Minute)
			s := Scale{Factor: []float64{0.2, 0.5, 0.75, 0.013}[rng.IntN(4)], Start: now.Add(-time.Duration(rng.IntN(5000)) * time.Millisecond)}
			if rng.IntN(2) == 0 {
				s.Tier = tiers[rng.IntN(2)]
			}
			if rng.IntN(2) == 0 {
				s.Ramp = time.Duration(1+rng.IntN(60)) * time.Second
			}
			if rng.IntN(3) == 0 {
				s.Expires = s.Start.Add(time.Duration(1+rng.IntN(90)) * time.Second)
			}
			scales = append(scales, s)
			raw := FormatScales(scales)
			scales = ParseScales(raw)
			setKey(t, settings.client, DefaultPrefix+settingsKeySuffix, raw)
		}
		perm := rng.Perm(len(names))[:1+rng.IntN(3)]
		req := Request{Cost: 1 + rng.Int64N(4), Tier: tiers[rng.IntN(2)]}
		if rng.IntN(20) == 0 {
			req.Cost = 11
		}
		for _, p := range perm {
			req.Buckets = append(req.Buckets, buckets[names[p]])
		}
		got, err := ups.Allow(context.Background(), req, now)
		if err != nil {
			t.Fatal(err)
		}
		start := ups.warmStart
		if start == 0 {
			t.Fatal("the warm-up start was not read")
		}
		var ps [MaxBuckets]params
		resolve(req, liveFactors(scales, req.Tier, warm.ppmAt(start, now.UnixMilli()), now.UnixMilli()), now, ps[:len(req.Buckets)])
		want := mem.decide(req, ps[:len(req.Buckets)], now.UnixMilli())
		want.Source, got.UpstashLatency = SourceUpstash, 0
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("step %d (now %v, tier %s, cost %d, buckets %v, settings %q): upstash differs from memory (-memory +upstash):\n%s",
				i, now.Sub(t0), req.Tier, req.Cost, perm, FormatScales(scales), diff)
		}
	}
}

// TestDenyCacheExactWithPolicies runs one random sequence — quotas, several
// buckets, live factors changing — through a Limiter (its store remembers
// buckets and answers denials itself) and straight into a store's Allow
// (which always runs the script), each on its own keys of one Redis with
// the same settings. Every decision must match: the cache may only save requests,
// never change an answer. A settings change reaches the Limiter within its
// SettingsTTL, so the clock moves at least that far after each change.
func TestDenyCacheExactWithPolicies(t *testing.T) {
	h := newHarnessWith(t, Config{}, UpstashConfig{Prefix: "lim:"})
	bare, _ := newStoreOn(t, h.env, UpstashConfig{Prefix: "bare:", SettingsTTL: time.Nanosecond})
	buckets := map[string]Bucket{
		"a": {Key: "a", Limit: perTen, Scope: ScopeTier},
		"b": {Key: "b", Limit: global3, Scope: ScopeAll},
		"c": {Key: "c", Limit: oddRate},
		"q": {Key: "q", Quota: Quota{Limit: 30, Period: QuotaDay}},
	}
	names := []string{"a", "b", "c", "q"}
	rng := rand.New(rand.NewPCG(7, 8))
	var scales []Scale
	hits := 0
	for i := 0; i < 2000; i++ {
		if rng.IntN(3) == 0 {
			h.clock.Advance(time.Duration(rng.IntN(8000)) * time.Millisecond)
		}
		if rng.IntN(60) == 0 {
			now := h.clock.Now()
			s := Scale{Factor: []float64{0.3, 2, 0.5, 1.5}[rng.IntN(4)], Start: now}
			if rng.IntN(2) == 0 {
				s.Tier = "premium"
			}
			if rng.IntN(2) == 0 {
				s.Ramp = time.Duration(1+rng.IntN(30)) * time.Second
			}
			scales = append(scales, s)
			raw := FormatScales(scales)
			for _, prefix := range []string{"lim:", "bare:"} {
				setKey(t, bare.client, prefix+settingsKeySuffix, raw)
			}
			h.clock.Advance(DefaultSettingsTTL)
		}
		perm := rng.Perm(len(names))[:1+rng.IntN(2)]
		req := Request{Cost: 1 + rng.Int64N(4), Tier: []string{"premium", "anonymous"}[rng.IntN(2)]}
		for _, p := range perm {
			req.Buckets = append(req.Buckets, buckets[names[p]])
		}
		got, err := h.l.Allow(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		want, err := bare.Allow(context.Background(), req, h.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got.Source == SourceCache {
			hits++
		}
		want.Source, want.UpstashLatency, got.UpstashLatency = got.Source, 0, 0
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("step %d (tier %s, cost %d, buckets %v): limiter differs from the bare store (-store +limiter):\n%s", i, req.Tier, req.Cost, perm, diff)
		}
	}
	if hits < 100 {
		t.Errorf("only %d decisions answered from memory: the sequence proves little", hits)
	}
	t.Logf("%d of 2000 decisions answered from memory", hits)
}

// setKey sets a Redis key through the client (as cmd/limits would).
func setKey(t testing.TB, c *upstash.Client, key, value string) {
	t.Helper()
	if err := c.Do(context.Background(), nil, "SET", key, value); err != nil {
		t.Fatal(err)
	}
}

// TestLiveFactorsAboveOne: a factor of 2 for one tier doubles its buckets'
// burst and rate, on both stores alike; other tiers and unscaled buckets
// keep theirs.
func TestLiveFactorsAboveOne(t *testing.T) {
	ups, env := newTestUpstash(t, UpstashConfig{})
	setter, _ := newStoreOn(t, env, UpstashConfig{})
	scales := []Scale{{Tier: "premium", Factor: 2, Start: t0.Add(-time.Minute)}}
	setKey(t, setter.client, DefaultPrefix+settingsKeySuffix, FormatScales(scales))
	mem, err := NewMemoryStore(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tier      string
		scope     Scope
		wantLimit int64
		wantLeft  int64
	}{
		{"premium", ScopeTier, 20, 19},  // doubled
		{"premium", ScopeNone, 10, 9},   // a bucket live factors never touch
		{"anonymous", ScopeTier, 10, 9}, // another tier
	}
	for i, tt := range tests {
		req := Request{Tier: tt.tier, Cost: 1, Buckets: []Bucket{{Key: fmt.Sprintf("f%d", i), Limit: perTen, Scope: tt.scope}}}
		got := mustDecide(t, ups, req, t0)
		var ps [1]params
		resolve(req, liveFactors(scales, tt.tier, ppmOne, t0.UnixMilli()), t0, ps[:])
		want := mem.decide(req, ps[:], t0.UnixMilli())
		want.Source, got.UpstashLatency = SourceUpstash, 0
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s %v: upstash differs from memory (-memory +upstash):\n%s", tt.tier, tt.scope, diff)
		}
		if got.Limit != tt.wantLimit || got.Remaining != tt.wantLeft || got.Window != perTen.Window() {
			t.Errorf("%s %v: limit %d remaining %d window %v, want %d %d %v", tt.tier, tt.scope, got.Limit, got.Remaining, got.Window, tt.wantLimit, tt.wantLeft, perTen.Window())
		}
	}
}
