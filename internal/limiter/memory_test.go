package limiter

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
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
		})
	}
}

// TestMemoryStoreBytesPerIdleKey measures the heap an idle bucket costs,
// its key string included (budget: ≤ 200 bytes, docs/BENCHMARKS.md).
func TestMemoryStoreBytesPerIdleKey(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200k buckets")
	}
	const n = 200_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	per := bytesPerKey(t, keys)
	t.Logf("%.0f bytes per idle key (%d keys, key strings of ~%d bytes included)", per, n, len(keys[n-1]))
	if per > 200 {
		t.Errorf("%.0f bytes per idle key, want ≤ 200", per)
	}
}

// bytesPerKey returns the heap growth per bucket of a store holding one
// bucket per key.
func bytesPerKey(t testing.TB, keys []string) float64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := newMemory(t, MemoryConfig{MaxKeys: 2 * len(keys)})
	req := Request{Buckets: []Bucket{{Limit: perTen}}, Cost: 1}
	for _, k := range keys {
		req.Buckets[0].Key = k
		if _, err := m.Allow(req, t0); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := m.Len(); got != len(keys) {
		t.Fatalf("store holds %d of %d keys", got, len(keys))
	}
	per := float64(after.HeapAlloc-before.HeapAlloc) / float64(m.Len())
	runtime.KeepAlive(m)
	return per
}
