package limiter

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newMemory(t testing.TB, cfg MemoryConfig) *MemoryStore {
	t.Helper()
	m, err := NewMemoryStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustAllow(t testing.TB, s store, key string, l Limit, cost int64, now time.Time) Result {
	t.Helper()
	r, err := s.Allow(context.Background(), Request{Buckets: []Bucket{{Key: key, Limit: l}}, Cost: cost}, now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMemoryStoreConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     MemoryConfig
		wantErr bool
	}{
		{name: "zero value", cfg: MemoryConfig{}},
		{name: "negative keys", cfg: MemoryConfig{MaxKeys: -1}, wantErr: true},
		{name: "negative shards", cfg: MemoryConfig{Shards: -1}, wantErr: true},
		{name: "too many shards", cfg: MemoryConfig{Shards: 1 << 20}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMemoryStore(tt.cfg)
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("NewMemoryStore error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v is not ErrInvalidConfig", err)
			}
		})
	}
}

func TestMemoryStoreRejectsInvalidRequests(t *testing.T) {
	m := newMemory(t, MemoryConfig{})
	_, err := m.Allow(Request{Cost: 1}, t0)
	if !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("error = %v, want ErrInvalidRequest", err)
	}
}

// TestMemoryStoreEviction: with the store full, a full bucket is dropped
// first (exact); failing that, the bucket closest to full.
func TestMemoryStoreEviction(t *testing.T) {
	tests := []struct {
		name string
		// setup charges keys "k0".."k3" at t0 with these costs (perTen), then
		// inserts "new" at t0+at.
		costs       []int64
		at          time.Duration
		wantEvicted string
	}{
		{name: "a full bucket goes first", costs: []int64{5, 1, 4, 3}, at: 15 * time.Second, wantEvicted: "k1"},
		{name: "else the one closest to full", costs: []int64{5, 2, 4, 3}, at: 5 * time.Second, wantEvicted: "k1"},
		{name: "closest to full, elsewhere in the map", costs: []int64{5, 6, 4, 3}, at: 0, wantEvicted: "k3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMemory(t, MemoryConfig{MaxKeys: 4, Shards: 1})
			for i, c := range tt.costs {
				mustAllow(t, memStore{m}, "k"+strconv.Itoa(i), perTen, c, t0)
			}
			mustAllow(t, memStore{m}, "new", perTen, 1, t0.Add(tt.at))
			if got := m.Len(); got != 4 {
				t.Fatalf("Len() = %d, want 4 (bounded)", got)
			}
			for i, c := range tt.costs {
				key := "k" + strconv.Itoa(i)
				found := m.t.findLocked(m.t.ref(key), key) >= 0
				if want := key != tt.wantEvicted; found != want {
					t.Errorf("%s (cost %d) present = %v, want %v", key, c, found, want)
				}
			}
		})
	}
}

// TestMemoryStoreEvictionSparesDrainedBuckets: under churn at the bound,
// eviction picks among random entries the one closest to full, so callers
// who drained their buckets — inserted together, side by side — keep their
// state while one-request buckets make room.
func TestMemoryStoreEvictionSparesDrainedBuckets(t *testing.T) {
	const maxKeys, drained = 2000, 100
	m := newMemory(t, MemoryConfig{MaxKeys: maxKeys, Shards: 4})
	for i := 0; i < drained; i++ {
		mustAllow(t, memStore{m}, "drained"+strconv.Itoa(i), perTen, 10, t0)
	}
	for i := 0; i < 3*maxKeys; i++ { // fills the store, then churns it twice over
		mustAllow(t, memStore{m}, "churn"+strconv.Itoa(i), perTen, 1, t0)
	}
	if got := m.Len(); got > maxKeys {
		t.Fatalf("Len() = %d, want ≤ %d", got, maxKeys)
	}
	kept := 0
	for i := 0; i < drained; i++ {
		if r := mustAllow(t, memStore{m}, "drained"+strconv.Itoa(i), perTen, 1, t0); !r.Allowed {
			kept++
		}
	}
	if kept != drained {
		t.Errorf("%d of %d drained callers kept their state, want all", kept, drained)
	}
}

// TestMemoryStoreEvictionCost: an evicted bucket that was not full comes
// back full — over-admission bounded by its deficit, as documented.
func TestMemoryStoreEvictionCost(t *testing.T) {
	m := newMemory(t, MemoryConfig{MaxKeys: 1, Shards: 1})
	mustAllow(t, memStore{m}, "a", perTen, 10, t0) // a is empty: deficit 10
	mustAllow(t, memStore{m}, "b", perTen, 1, t0)  // evicts a
	if r := mustAllow(t, memStore{m}, "a", perTen, 10, t0); !r.Allowed {
		t.Fatalf("evicted bucket did not come back full: %+v", r)
	}
}

// TestMemoryStoreSweepsLazily: idle buckets that are full again are dropped
// inside later calls, with no goroutine.
func TestMemoryStoreSweepsLazily(t *testing.T) {
	m := newMemory(t, MemoryConfig{Shards: 1})
	for i := 0; i < 5; i++ {
		mustAllow(t, memStore{m}, "idle"+strconv.Itoa(i), perTen, 1, t0)
	}
	later := t0.Add(time.Minute) // every idle bucket is full again
	for i := 0; i < sweepEvery; i++ {
		mustAllow(t, memStore{m}, "busy", PerSecond(1000), 1, later)
	}
	if got := m.Len(); got != 1 {
		t.Errorf("Len() after a sweep = %d, want 1 (only the busy bucket)", got)
	}
}

// TestMemoryStoreDeniedNewBucketStoresNothing: a refused request on an
// unknown bucket (cost above burst) leaves no entry behind.
func TestMemoryStoreDeniedNewBucketStoresNothing(t *testing.T) {
	m := newMemory(t, MemoryConfig{})
	if r := mustAllow(t, memStore{m}, "x", perTen, 11, t0); r.Allowed {
		t.Fatal("cost above burst allowed")
	}
	if got := m.Len(); got != 0 {
		t.Errorf("Len() = %d, want 0", got)
	}
}

func TestMemoryStoreZeroAllocs(t *testing.T) {
	m := newMemory(t, MemoryConfig{})
	tests := []struct {
		name string
		req  Request
	}{
		{name: "one bucket", req: Request{Buckets: []Bucket{{Key: "caller:203.0.113.7", Limit: PerSecond(1_000_000)}}, Cost: 1}},
		{name: "two buckets", req: Request{Buckets: []Bucket{{Key: "caller:k_1", Limit: PerSecond(1_000_000)}, {Key: "global", Limit: PerSecond(1_000_000)}}, Cost: 1}},
		{name: "denied", req: Request{Buckets: []Bucket{{Key: "caller:k_2", Limit: PerMinute(1)}}, Cost: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Allow(tt.req, t0); err != nil { // insert once
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(1000, func() {
				_, _ = m.Allow(tt.req, t0)
			})
			if allocs != 0 {
				t.Errorf("Allow allocates %.1f times per call, want 0", allocs)
			}
			var r Result
			allocs = testing.AllocsPerRun(1000, func() {
				_ = m.AllowNow(tt.req, &r)
			})
			if allocs != 0 {
				t.Errorf("AllowNow allocates %.1f times per call, want 0", allocs)
			}
		})
	}
}

// TestMemoryStoreAllowNowReadsItsClock: AllowNow decides as Allow does at
// the instant MemoryConfig.Now gives.
func TestMemoryStoreAllowNowReadsItsClock(t *testing.T) {
	tests := []struct {
		name string
		req  Request
	}{
		{name: "token bucket", req: Request{Buckets: []Bucket{{Key: "caller", Limit: perTen}}, Cost: 3}},
		{name: "quota", req: Request{Buckets: []Bucket{{Key: "caller:q", Quota: Quota{Limit: 5, Period: QuotaDay}}}, Cost: 2}},
		{name: "two buckets", req: Request{Buckets: []Bucket{{Key: "caller", Limit: perTen}, {Key: "global", Limit: PerSecond(4)}}, Cost: 1}},
	}
	// Steps in ms: within a second, across a refill, back in time, and
	// across midnight UTC for the quota.
	steps := []int64{0, 1, 250, 999, 1000, 7_000, 6_000, 86_400_000}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var now time.Time
			clocked := newMemory(t, MemoryConfig{Now: func() time.Time { return now }})
			told := newMemory(t, MemoryConfig{})
			for _, ms := range steps {
				now = t0.Add(time.Duration(ms) * time.Millisecond)
				got := Result{Reason: ReasonUnavailable, N: 7} // left over: AllowNow overwrites it whole
				if err := clocked.AllowNow(tt.req, &got); err != nil {
					t.Fatal(err)
				}
				want, err := told.Allow(tt.req, now)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("at +%d ms: AllowNow differs from Allow (-want +got):\n%s", ms, diff)
				}
			}
		})
	}
}

// TestProcessNow: ProcessNow lies between two readings of time.Now taken
// around it, within the rounding of one anchor (the two clocks of an
// anchor are read microseconds apart).
func TestProcessNow(t *testing.T) {
	const slack = time.Millisecond
	for range 1000 {
		before := time.Now()
		got := ProcessNow()
		after := time.Now()
		if got.Before(before.Add(-slack)) || got.After(after.Add(slack)) {
			t.Fatalf("ProcessNow() = %s, want within %s of [%s, %s]", got, slack, before, after)
		}
		if got.Location() != time.Local {
			t.Fatalf("ProcessNow() is in %s, want Local as time.Now", got.Location())
		}
	}
}

// TestMonoClockAnchors: a clock anchors when its anchor is due, and between
// anchors follows the monotonic clock, never going backwards.
func TestMonoClockAnchors(t *testing.T) {
	c := newMonoClock()
	first := c.next.Load()
	if since := time.Since(c.base); first < int64(anchorEvery) || first > int64(anchorEvery+since) {
		t.Fatalf("after the first anchor, next = %d ns, want within [%d, %d]", first, anchorEvery, anchorEvery+since)
	}
	c.next.Store(0) // due
	before := time.Now().UnixNano()
	got := c.nowNs()
	if got < before {
		t.Errorf("anchoring read %d, before time.Now's %d", got, before)
	}
	if next := c.next.Load(); next <= first {
		t.Errorf("anchoring left next at %d, want later than the first anchor's %d", next, first)
	}
	prev := got
	for range 10_000 {
		c.next.Store(1 << 62) // never due: the monotonic clock alone
		now := c.nowNs()
		if now < prev {
			t.Fatalf("clock went back from %d to %d between anchors", prev, now)
		}
		prev = now
	}
}

// TestMemoryStoreBytesPerIdleKey measures the heap an idle bucket costs,
// the key string it keeps included (budget: ≤ 200 bytes, docs/BENCHMARKS.md).
func TestMemoryStoreBytesPerIdleKey(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200k buckets")
	}
	const n = 200_000
	per := bytesPerKey(t, n)
	t.Logf("%.0f bytes per idle key (%d keys such as %q)", per, n, benchKey(n-1))
	if per > 200 {
		t.Errorf("%.0f bytes per idle key, want ≤ 200", per)
	}
}

// bytesPerKey returns the heap growth per bucket of a store holding n
// buckets, keyed benchKey(0..n-1). Each key is built for its request and
// dropped by the caller, as the authorizer's are, so the store is charged
// for the strings it keeps.
func bytesPerKey(t testing.TB, n int) float64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := newMemory(t, MemoryConfig{MaxKeys: 2 * n})
	var buckets [1]Bucket
	req := Request{Buckets: buckets[:], Cost: 1}
	for i := range n {
		buckets[0] = Bucket{Key: benchKey(i), Limit: perTen}
		if _, err := m.Allow(req, t0); err != nil {
			t.Fatal(err)
		}
	}
	buckets[0] = Bucket{}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := m.Len(); got != n {
		t.Fatalf("store holds %d of %d keys", got, n)
	}
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	runtime.KeepAlive(m)
	return per
}

// FuzzPlainParams: the memory store's one-step path agrees with Validate
// and resolve. When it takes a request, Validate accepts it and resolve
// gives the same params; it declines a token bucket that Validate accepts
// only for a rate above MaxBurst (which the general path takes).
func FuzzPlainParams(f *testing.F) {
	for _, c := range []struct {
		keyLen             int
		rate, burst, cost  int64
		periodMs           int64
		quotaLimit, quotaP int64
	}{
		{keyLen: 20, rate: 100, burst: 100, cost: 1, periodMs: 1000},
		{keyLen: 1, rate: 1, burst: MaxBurst, cost: MaxCost, periodMs: 86_400_000},
		{keyLen: 0, rate: 6, burst: 10, cost: 1, periodMs: 60_000},
		{keyLen: MaxKeyLen, rate: 6, burst: 10, cost: 1, periodMs: 3_600_000},
		{keyLen: MaxKeyLen + 1, rate: 6, burst: 10, cost: 1, periodMs: 60_000},
		{keyLen: 5, rate: 6, burst: 10, cost: 0, periodMs: 60_000},
		{keyLen: 5, rate: 6, burst: 0, cost: 1, periodMs: 60_000},
		{keyLen: 5, rate: 0, burst: 6, cost: 1, periodMs: 60_000},
		{keyLen: 5, rate: MaxBurst + 1, burst: 6, cost: 1, periodMs: 86_400_000},
		{keyLen: 5, rate: 6, burst: 10, cost: MaxCost + 1, periodMs: 60_000},
		{keyLen: 5, rate: 6, burst: 10, cost: 1, periodMs: 100},
		{keyLen: 5, rate: 6, burst: 10, cost: 1, periodMs: 60_000, quotaLimit: 5, quotaP: int64(QuotaDay)},
		{keyLen: 5, rate: 6, burst: 10, cost: 1, periodMs: 60_000, quotaLimit: 5, quotaP: 9},
	} {
		f.Add(c.keyLen, c.rate, c.burst, c.cost, c.periodMs, c.quotaLimit, c.quotaP)
	}
	f.Fuzz(func(t *testing.T, keyLen int, rate, burst, cost, periodMs, quotaLimit, quotaP int64) {
		if keyLen < 0 || keyLen > 2*MaxKeyLen {
			return
		}
		b := Bucket{
			Key:   string(make([]byte, keyLen)),
			Limit: Limit{Rate: rate, Burst: burst, Period: time.Duration(periodMs) * time.Millisecond},
			Quota: Quota{Limit: quotaLimit, Period: QuotaPeriod(quotaP)},
		}
		req := Request{Buckets: []Bucket{b}, Cost: cost}
		valid := req.Validate() == nil
		p, ok := plainParams(&b, cost)
		if ok {
			if !valid {
				t.Fatalf("plainParams takes %+v (cost %d), which Validate refuses: %v", b.Limit, cost, req.Validate())
			}
			var want [1]params
			resolve(req, unscaled, time.Unix(0, 0), want[:])
			if diff := cmp.Diff(want[0], p, cmp.AllowUnexported(params{})); diff != "" {
				t.Fatalf("plainParams differs from resolve (-want +got):\n%s", diff)
			}
			return
		}
		if valid && b.Quota.IsZero() && rate <= MaxBurst {
			t.Fatalf("plainParams declines %+v (cost %d), a plain bucket Validate accepts", b.Limit, cost)
		}
	})
}
