package limiter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// t0 is the tests' fixed "now": the stores read no clock, every call gets
// its instant from the test.
var t0 = time.UnixMilli(1_700_000_000_000)

// store is what the behaviour tests call: both stores, one signature.
type store interface {
	Allow(ctx context.Context, req Request, now time.Time) (Result, error)
}

// memStore adapts a MemoryStore to store.
type memStore struct{ *MemoryStore }

func (m memStore) Allow(_ context.Context, req Request, now time.Time) (Result, error) {
	return m.MemoryStore.Allow(req, now)
}

// storeKind builds a fresh, empty store of one kind for a test.
type storeKind struct {
	name   string
	source Source
	new    func(t *testing.T) store
}

// storeKinds are the stores every behaviour test runs against, so that the
// Lua script and the Go arithmetic cannot drift apart. The Upstash store
// runs twice: remembering what it saw (its guesses are mostly right, so the
// script takes its write-first path) and remembering nothing (every guess
// is "absent", so the script repairs wrong guesses or reads first).
func storeKinds() []storeKind {
	return []storeKind{
		{name: "memory", source: SourceMemory, new: func(t *testing.T) store {
			t.Helper()
			m, err := NewMemoryStore(MemoryConfig{})
			if err != nil {
				t.Fatal(err)
			}
			return memStore{m}
		}},
		{name: "upstash", source: SourceUpstash, new: func(t *testing.T) store {
			t.Helper()
			s, _ := newTestUpstash(t, UpstashConfig{})
			return s
		}},
		{name: "upstash-no-guesses", source: SourceUpstash, new: func(t *testing.T) store {
			t.Helper()
			s, _ := newTestUpstash(t, UpstashConfig{KnownKeys: -1})
			return s
		}},
	}
}

// newTestUpstash starts redis-server (or, without it and outside
// integration runs, the embedded store) behind the Upstash-compatible
// server and returns a store talking to it.
func newTestUpstash(t testing.TB, cfg UpstashConfig) (*UpstashStore, *upstashtest.Env) {
	t.Helper()
	env := upstashtest.Start(t)
	c, err := upstash.New(upstash.Config{URL: env.URL, Token: env.Token})
	if err != nil {
		t.Fatalf("upstash.New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	cfg.Client = c
	s, err := NewUpstashStore(cfg)
	if err != nil {
		t.Fatalf("NewUpstashStore: %v", err)
	}
	return s, env
}

// withSkew sets the clock-skew allowance for one test.
func withSkew(t testing.TB, d time.Duration) {
	old := skewMs
	skewMs = d.Milliseconds()
	t.Cleanup(func() { skewMs = old })
}

// view is the part of a Result the behaviour table states: the reported
// bucket (Buckets are checked by the policy cases).
type view struct {
	Allowed                        bool
	Limit, Remaining               int64
	ResetAfter, RetryAfter, Window time.Duration
	Source                         Source
	Reason                         Reason
}

func viewOf(r Result) view {
	return view{r.Allowed, r.Limit, r.Remaining, r.ResetAfter, r.RetryAfter, r.Window, r.Source, r.Reason}
}

// Limits used by the behaviour table.
var (
	perTen  = Limit{Rate: 6, Period: time.Minute, Burst: 10} // 1 token per 10 s, window 100 s
	global3 = Limit{Rate: 3, Period: time.Minute, Burst: 3}  // 1 token per 20 s, window 60 s
	oddRate = Limit{Rate: 7, Period: time.Hour, Burst: 1}    // 1 token per 514285.714... ms
	fast    = Limit{Rate: 6, Period: time.Second, Burst: 10} // 1 token per 166.67 ms
	// odd7 refills a fraction of a token per ms like fast, but its keys live
	// for seconds: the comparisons on a fake clock against Redis, which
	// expires keys in real time, must not see a key expire while the fake
	// clock stands still.
	odd7     = Limit{Rate: 7, Period: time.Minute, Burst: 9} // 1 token per 8571.43 ms
	ms       = time.Millisecond
	sec      = time.Second
	windowOf = func(l Limit) time.Duration { return l.Window() }
)

// step is one call in a behaviour case: at t0+at (the caller's clock), cost
// tokens from the named buckets.
type step struct {
	who  string // which caller (for reading the table; e.g. two containers)
	at   time.Duration
	keys []string
	cost int64
	want view // Source is filled in per store
}

func ok(l Limit, remaining int64, reset time.Duration) view {
	return view{Allowed: true, Limit: l.Burst, Remaining: remaining, ResetAfter: reset, Window: windowOf(l)}
}

func denied(l Limit, remaining int64, reset, retry time.Duration) view {
	return view{Limit: l.Burst, Remaining: remaining, ResetAfter: reset, RetryAfter: retry, Window: windowOf(l), Reason: ReasonOverLimit}
}

func tooBig(l Limit, remaining int64, reset time.Duration) view {
	r := denied(l, remaining, reset, windowOf(l))
	r.Reason = ReasonCostExceedsBurst
	return r
}

// drain returns n steps at the same instant taking one token each from a
// full perTen bucket.
func drain(key string, at time.Duration, n int) []step {
	var s []step
	for i := 1; i <= n; i++ {
		s = append(s, step{at: at, keys: []string{key}, cost: 1, want: ok(perTen, int64(10-i), time.Duration(i)*10*sec)})
	}
	return s
}

func concat(parts ...[]step) []step {
	var all []step
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// behaviourCases is the one table both stores must pass.
func behaviourCases() []struct {
	name   string
	limits map[string]Limit
	steps  []step
} {
	return []struct {
		name   string
		limits map[string]Limit
		steps  []step
	}{
		{
			name:   "burst then refill",
			limits: map[string]Limit{"a": perTen},
			steps: concat(drain("a", 0, 10), []step{
				{at: 0, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 100*sec, 10*sec)},
				{at: 10 * sec, keys: []string{"a"}, cost: 1, want: ok(perTen, 0, 100*sec)},
				{at: 15 * sec, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 95*sec, 5*sec)},
				{at: 20 * sec, keys: []string{"a"}, cost: 1, want: ok(perTen, 0, 100*sec)},
				{at: 200 * sec, keys: []string{"a"}, cost: 1, want: ok(perTen, 9, 10*sec)},
			}),
		},
		{
			name:   "cost above one",
			limits: map[string]Limit{"a": perTen},
			steps: []step{
				{at: 0, keys: []string{"a"}, cost: 4, want: ok(perTen, 6, 40*sec)},
				{at: 0, keys: []string{"a"}, cost: 4, want: ok(perTen, 2, 80*sec)},
				{at: 0, keys: []string{"a"}, cost: 4, want: denied(perTen, 2, 80*sec, 20*sec)},
				{at: 19999 * ms, keys: []string{"a"}, cost: 4, want: denied(perTen, 3, 60001*ms, 1*ms)},
				{at: 20 * sec, keys: []string{"a"}, cost: 4, want: ok(perTen, 0, 100*sec)},
			},
		},
		{
			name:   "cost exceeds burst never passes and charges nothing",
			limits: map[string]Limit{"a": perTen},
			steps: []step{
				{at: 0, keys: []string{"a"}, cost: 11, want: tooBig(perTen, 10, 0)},
				{at: 0, keys: []string{"a"}, cost: 1, want: ok(perTen, 9, 10*sec)},
				{at: 0, keys: []string{"a"}, cost: 11, want: tooBig(perTen, 9, 10*sec)},
				{at: 500 * sec, keys: []string{"a"}, cost: 11, want: tooBig(perTen, 10, 0)},
			},
		},
		{
			name:   "fractions of a token are kept exactly",
			limits: map[string]Limit{"a": oddRate},
			steps: []step{
				{at: 0, keys: []string{"a"}, cost: 1, want: ok(oddRate, 0, 514286*ms)},
				{at: 514285 * ms, keys: []string{"a"}, cost: 1, want: denied(oddRate, 0, 1*ms, 1*ms)},
				{at: 514286 * ms, keys: []string{"a"}, cost: 1, want: ok(oddRate, 0, 514286*ms)},
				// A denial writes nothing: refill counts on from the last charge.
				{at: 514287 * ms, keys: []string{"a"}, cost: 1, want: denied(oddRate, 0, 514285*ms, 514285*ms)},
				{at: 514289 * ms, keys: []string{"a"}, cost: 1, want: denied(oddRate, 0, 514283*ms, 514283*ms)},
			},
		},
		{
			name:   "denied requests charge nothing",
			limits: map[string]Limit{"a": perTen},
			steps: concat(drain("a", 0, 10), []step{
				{at: 1 * sec, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 99*sec, 9*sec)},
				{at: 2 * sec, keys: []string{"a"}, cost: 3, want: denied(perTen, 0, 98*sec, 28*sec)},
				{at: 9 * sec, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 91*sec, 1*sec)},
				{at: 10 * sec, keys: []string{"a"}, cost: 1, want: ok(perTen, 0, 100*sec)},
				{at: 10 * sec, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 100*sec, 10*sec)},
			}),
		},
		{
			name:   "several buckets are charged all or nothing",
			limits: map[string]Limit{"a": perTen, "g": global3},
			steps: []step{
				// The reported bucket is the one with the fewest tokens left: g.
				{at: 0, keys: []string{"a", "g"}, cost: 1, want: ok(global3, 2, 20*sec)},
				{at: 0, keys: []string{"a", "g"}, cost: 1, want: ok(global3, 1, 40*sec)},
				{at: 0, keys: []string{"a", "g"}, cost: 1, want: ok(global3, 0, 60*sec)},
				// g refuses: neither is charged; the refusing bucket is reported.
				{at: 0, keys: []string{"a", "g"}, cost: 1, want: denied(global3, 0, 60*sec, 20*sec)},
				{at: 0, keys: []string{"g", "a"}, cost: 2, want: denied(global3, 0, 60*sec, 40*sec)},
				{at: 0, keys: []string{"a"}, cost: 1, want: ok(perTen, 6, 40*sec)},
				{at: 0, keys: []string{"g"}, cost: 1, want: denied(global3, 0, 60*sec, 20*sec)},
				// When both refuse, RetryAfter is the longer wait, so it holds for both.
				{at: 0, keys: []string{"a"}, cost: 6, want: ok(perTen, 0, 100*sec)},
				{at: 10 * sec, keys: []string{"a", "g"}, cost: 2, want: denied(global3, 0, 50*sec, 30*sec)},
				{at: 10 * sec, keys: []string{"g", "a"}, cost: 1, want: denied(global3, 0, 50*sec, 10*sec)},
				{at: 20 * sec, keys: []string{"g", "a"}, cost: 1, want: ok(global3, 0, 60*sec)},
				{at: 20 * sec, keys: []string{"a"}, cost: 1, want: ok(perTen, 0, 100*sec)},
			},
		},
		{
			name:   "a bucket that can never pass outranks one that can wait",
			limits: map[string]Limit{"a": perTen, "g": global3},
			steps: []step{
				{at: 0, keys: []string{"a"}, cost: 10, want: ok(perTen, 0, 100*sec)},
				{at: 0, keys: []string{"a", "g"}, cost: 4, want: tooBig(global3, 3, 0)},
			},
		},
		{
			name:   "a lagging caller cannot mint tokens",
			limits: map[string]Limit{"a": perTen},
			steps: []step{
				// Container B's clock runs 1 s ahead of container A's.
				{who: "B", at: 1 * sec, keys: []string{"a"}, cost: 10, want: ok(perTen, 0, 100*sec)},
				// A reads the bucket as of B's write: no refill yet, and an
				// honest wait measured on A's clock.
				{who: "A", at: 0, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 101*sec, 11*sec)},
				{who: "A", at: 999 * ms, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 100001*ms, 10001*ms)},
				{who: "A", at: 10 * sec, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 91*sec, 1*sec)},
				{who: "A", at: 11 * sec, keys: []string{"a"}, cost: 1, want: ok(perTen, 0, 100*sec)},
			},
		},
		{
			name:   "a leading caller gains at most rate times its lead, once",
			limits: map[string]Limit{"a": fast},
			steps: []step{
				// A empties the bucket; B, 1 s ahead, finds 1 s of refill (6 tokens) at once.
				{who: "A", at: 0, keys: []string{"a"}, cost: 10, want: ok(fast, 0, 1667*ms)},
				{who: "B", at: 1 * sec, keys: []string{"a"}, cost: 6, want: ok(fast, 0, 1667*ms)},
				{who: "B", at: 1 * sec, keys: []string{"a"}, cost: 1, want: denied(fast, 0, 1667*ms, 167*ms)},
				// A, still at its own 0.5 s, cannot take any of it again.
				{who: "A", at: 500 * ms, keys: []string{"a"}, cost: 1, want: denied(fast, 0, 2167*ms, 667*ms)},
				{who: "A", at: 1167 * ms, keys: []string{"a"}, cost: 1, want: ok(fast, 0, 1667*ms)},
			},
		},
		{
			name:   "time going backwards mints nothing",
			limits: map[string]Limit{"a": perTen},
			steps: []step{
				{at: 0, keys: []string{"a"}, cost: 10, want: ok(perTen, 0, 100*sec)},
				// Within MaxClockSkew: the bucket is read as of its stored instant.
				{at: -1 * sec, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 101*sec, 11*sec)},
				// Beyond it (the clock stepped back an hour): rebased to
				// now+2s with no refill, and stored so the bucket refills again.
				{at: -time.Hour, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 102*sec, 12*sec)},
				{at: -time.Hour + 11*sec, keys: []string{"a"}, cost: 1, want: denied(perTen, 0, 91*sec, 1*sec)},
				{at: -time.Hour + 12*sec, keys: []string{"a"}, cost: 1, want: ok(perTen, 0, 100*sec)},
			},
		},
		{
			// "a@big" is key "a" with another limit: the state carries over,
			// clamped to the new capacity.
			name:   "a key's limit can change",
			limits: map[string]Limit{"a": perTen, "a@big": perTen.WithBurst(20), "a@small": perTen.WithBurst(5), "a@faster": PerSecond(1).WithBurst(10)},
			steps: []step{
				{at: 0, keys: []string{"a"}, cost: 4, want: ok(perTen, 6, 40*sec)},
				{at: 0, keys: []string{"a@big"}, cost: 1, want: ok(perTen.WithBurst(20), 5, 150*sec)},
				{at: 0, keys: []string{"a@small"}, cost: 1, want: ok(perTen.WithBurst(5), 4, 10*sec)},
				{at: 0, keys: []string{"a"}, cost: 1, want: ok(perTen, 3, 70*sec)},
				{at: 3 * sec, keys: []string{"a@faster"}, cost: 1, want: ok(PerSecond(1).WithBurst(10), 5, 5*sec)},
			},
		},
	}
}

func TestStoreBehaviour(t *testing.T) {
	for _, kind := range storeKinds() {
		t.Run(kind.name, func(t *testing.T) {
			store := kind.new(t)
			for ci, tc := range behaviourCases() {
				t.Run(tc.name, func(t *testing.T) {
					// Each case gets its own keys in the shared store.
					prefix := fmt.Sprintf("case%d:", ci)
					for i, s := range tc.steps {
						req := Request{Cost: s.cost}
						for _, k := range s.keys {
							key, _, _ := strings.Cut(k, "@")
							req.Buckets = append(req.Buckets, Bucket{Key: prefix + key, Limit: tc.limits[k]})
						}
						got, err := store.Allow(context.Background(), req, t0.Add(s.at))
						if err != nil {
							t.Fatalf("step %d (%s at %v): %v", i, s.who, s.at, err)
						}
						want := s.want
						want.Source = kind.source
						if diff := cmp.Diff(want, viewOf(got)); diff != "" {
							t.Fatalf("step %d (%s at %v, %v cost %d) mismatch (-want +got):\n%s", i, s.who, s.at, s.keys, s.cost, diff)
						}
					}
				})
			}
		})
	}
}

// TestRetryAfterIsHonest checks README's promise: repeating a denied request
// after Retry-After (whole seconds, rounded up, as the HTTP layer sends it)
// succeeds when nothing else drew from the bucket — and not a millisecond
// before the exact RetryAfter.
func TestRetryAfterIsHonest(t *testing.T) {
	limits := []Limit{perTen, global3, oddRate, fast, PerSecond(1), Limit{Rate: 120, Period: time.Minute, Burst: 200}}
	costs := []int64{1, 3, 7}
	for _, kind := range storeKinds() {
		t.Run(kind.name, func(t *testing.T) {
			store := kind.new(t)
			for li, l := range limits {
				for _, cost := range costs {
					if cost > l.Burst {
						continue
					}
					t.Run(fmt.Sprintf("%s cost %d", l, cost), func(t *testing.T) {
						key := fmt.Sprintf("honest:%d:%d", li, cost)
						req := Request{Buckets: []Bucket{{Key: key, Limit: l}}, Cost: cost}
						now := t0
						// Drain until denied.
						var r Result
						for i := 0; ; i++ {
							var err error
							if r, err = store.Allow(context.Background(), req, now); err != nil {
								t.Fatal(err)
							}
							if !r.Allowed {
								break
							}
							if i > int(l.Burst) {
								t.Fatalf("still allowed after %d requests", i)
							}
						}
						exact := now.Add(r.RetryAfter)
						before, err := store.Allow(context.Background(), req, exact.Add(-time.Millisecond))
						if err != nil {
							t.Fatal(err)
						}
						if before.Allowed {
							t.Errorf("allowed 1ms before RetryAfter %v", r.RetryAfter)
						}
						header := (r.RetryAfter + time.Second - 1) / time.Second * time.Second
						after, err := store.Allow(context.Background(), req, now.Add(header))
						if err != nil {
							t.Fatal(err)
						}
						if !after.Allowed {
							t.Errorf("denied after Retry-After %v (RetryAfter %v): %+v", header, r.RetryAfter, after)
						}
					})
				}
			}
		})
	}
}

// TestStoresAgree feeds one random sequence of requests (several buckets,
// costs, clocks jumping forwards and sometimes back) to both stores and
// wants identical results: the Go arithmetic and the Lua script are one.
func TestStoresAgree(t *testing.T) {
	mem, err := NewMemoryStore(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ups, _ := newTestUpstash(t, UpstashConfig{})
	limits := map[string]Limit{"a": perTen, "b": global3, "c": oddRate, "d": odd7, "e": PerDay(1000).WithBurst(3)}
	names := []string{"a", "b", "c", "d", "e"}
	rng := rand.New(rand.NewPCG(1, 2))
	now := t0
	for i := 0; i < 400; i++ {
		switch x := rng.IntN(10); {
		case x < 5:
			now = now.Add(time.Duration(rng.IntN(15000)) * time.Millisecond)
		case x == 5:
			now = now.Add(-time.Duration(rng.IntN(5000)) * time.Millisecond)
		}
		perm := rng.Perm(len(names))[:1+rng.IntN(3)]
		req := Request{Cost: 1 + rng.Int64N(4)}
		if rng.IntN(20) == 0 {
			req.Cost = 11
		}
		for _, p := range perm {
			req.Buckets = append(req.Buckets, Bucket{Key: names[p], Limit: limits[names[p]]})
		}
		want, err := mem.Allow(req, now)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ups.Allow(context.Background(), req, now)
		if err != nil {
			t.Fatal(err)
		}
		want.Source, got.UpstashLatency = SourceUpstash, 0
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("step %d (now %v, cost %d, buckets %v): upstash differs from memory (-memory +upstash):\n%s",
				i, now.Sub(t0), req.Cost, perm, diff)
		}
	}
}

// TestConcurrentCallersNeverOverAdmit hammers one bucket from many
// goroutines. With a frozen clock exactly Burst pass; with a clock that
// advances, never more than Burst + Rate×elapsed (+ one cost).
//
// Redis expires a key after its time to full in real time while these
// clocks are fake, so the fake clocks must never run slower than real time
// (else keys would expire "early" and the bound would not hold): the frozen
// clock uses a bucket that takes a minute to refill, the advancing one moves
// 25 ms per call. A goroutine descheduled for many calls looks like a clock
// lagging far behind the others, so MaxClockSkew is an hour here: this test
// is about atomicity, the skew rules have their own cases.
func TestConcurrentCallersNeverOverAdmit(t *testing.T) {
	const workers, perWorker = 8, 60
	tests := []struct {
		name  string
		limit Limit
		// clock returns the caller's now for the k-th call overall.
		clock   func(k int64) time.Time
		elapsed time.Duration // how far the clock can move in all
		exact   bool          // allowed must equal the bound
	}{
		{name: "frozen clock", limit: PerMinute(50), clock: func(int64) time.Time { return t0 }, exact: true},
		{name: "advancing clock", limit: PerSecond(10).WithBurst(50), // 1 token per 100 ms
			clock:   func(k int64) time.Time { return t0.Add(time.Duration(k) * 25 * time.Millisecond) },
			elapsed: workers * perWorker * 25 * time.Millisecond},
	}
	for _, kind := range storeKinds() {
		t.Run(kind.name, func(t *testing.T) {
			withSkew(t, time.Hour)
			store := kind.new(t)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					l := tt.limit
					req := Request{Buckets: []Bucket{{Key: "hammer:" + tt.name, Limit: l}}, Cost: 1}
					var calls, allowed atomic.Int64
					var wg sync.WaitGroup
					errs := make(chan error, workers)
					for w := 0; w < workers; w++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for i := 0; i < perWorker; i++ {
								r, err := store.Allow(context.Background(), req, tt.clock(calls.Add(1)))
								if err != nil {
									errs <- err
									return
								}
								if r.Allowed {
									allowed.Add(1)
								}
							}
						}()
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						t.Fatal(err)
					}
					bound := l.Burst + int64(tt.elapsed/l.Period)*l.Rate + req.Cost
					if tt.exact {
						bound = l.Burst
					}
					got := allowed.Load()
					if got > bound || (tt.exact && got != bound) || got < l.Burst {
						t.Errorf("allowed %d of %d calls, want %d..%d", got, calls.Load(), l.Burst, bound)
					}
				})
			}
		})
	}
}
