package apikey_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
)

var errDown = errors.New("fake backend: down")

// fakeStore is a Store whose failures the test controls. It counts the
// lookups that reach it.
type fakeStore struct {
	mu    sync.Mutex
	recs  map[string]apikey.Record // by hash
	err   error
	calls int
}

func newFakeStore(recs ...apikey.Record) *fakeStore {
	f := &fakeStore{recs: map[string]apikey.Record{}}
	for _, r := range recs {
		f.recs[r.Hash] = r
	}
	return f
}

func (f *fakeStore) Lookup(_ context.Context, key string) (apikey.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return apikey.Record{}, fmt.Errorf("lookup: %w", f.err)
	}
	r, ok := f.recs[apikey.Hash(key)]
	if !ok || r.Revoked {
		return apikey.Record{}, apikey.ErrNotFound
	}
	return r, nil
}

func (f *fakeStore) set(fn func(f *fakeStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// cacheStep is one action in a cache scenario: move the clock, change the
// backend, look a key up, and check the answer and the backend calls made.
type cacheStep struct {
	advance   time.Duration
	backend   func(f *fakeStore, k keys) // change the backend before the lookup
	key       string                     // "alice", "bob", "unknown" or "malformed"
	wantID    string                     // record expected ("" when an error is)
	wantLimit string                     // its Limit's String form ("" for none)
	wantErr   error                      // ErrNotFound or errDown
	wantCalls int                        // backend calls this step makes
}

type keys map[string]issued

func down(f *fakeStore, _ keys) { f.err = errDown }
func up(f *fakeStore, _ keys)   { f.err = nil }
func revokeAlice(f *fakeStore, k keys) {
	r := k["alice"].rec
	r.Revoked, r.RevokedAt = true, time.Now()
	f.recs[r.Hash] = r
}
func addUnknown(f *fakeStore, k keys) { f.recs[k["unknown"].rec.Hash] = k["unknown"].rec }

// aliceLimit is the limit setAliceLimit gives alice in the backend.
var aliceLimit = limiter.Policy{Limit: limiter.PerSecond(7)}

func setAliceLimit(f *fakeStore, k keys) {
	r := k["alice"].rec
	r.Limit = aliceLimit
	f.recs[r.Hash] = r
}

// aliceExpiresIn returns a setup that makes alice's key expire d after the
// test clock's start. The fake backend does not check expiry: it stands for
// a store whose clock lags the cache's, so every refusal is the cache's.
func aliceExpiresIn(d time.Duration) func(keys) {
	return func(k keys) {
		is := k["alice"]
		is.rec.ExpiresAt = is.rec.CreatedAt.Add(d)
		k["alice"] = is
	}
}

func TestCache(t *testing.T) {
	const (
		hit   = apikey.DefaultHitTTL   // 60 s
		miss  = apikey.DefaultMissTTL  // 10 s
		stale = apikey.DefaultMaxStale // 15 min
		back  = apikey.DefaultErrorBackoff
	)
	tests := []struct {
		name  string
		cfg   apikey.CacheConfig // Now is set by the test
		setup func(keys)         // changes records before the backend holds them
		steps []cacheStep
	}{
		{
			name: "hit served for the hit TTL, then refreshed",
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{advance: hit - time.Nanosecond, key: "alice", wantID: "alice"},
				{key: "bob", wantID: "bob", wantCalls: 1},
				{advance: time.Nanosecond, key: "alice", wantID: "alice", wantCalls: 1},
				{advance: hit - time.Nanosecond, key: "alice", wantID: "alice"},
			},
		},
		{
			name: "miss cached for the miss TTL; a key created meanwhile works after it",
			steps: []cacheStep{
				{key: "unknown", wantErr: apikey.ErrNotFound, wantCalls: 1},
				{advance: miss - time.Nanosecond, backend: addUnknown, key: "unknown", wantErr: apikey.ErrNotFound},
				{advance: time.Nanosecond, key: "unknown", wantID: "unknown", wantCalls: 1},
			},
		},
		{
			name: "revocation is visible after the hit TTL and then cached as a miss",
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{advance: hit / 2, backend: revokeAlice, key: "alice", wantID: "alice"},
				{advance: hit / 2, key: "alice", wantErr: apikey.ErrNotFound, wantCalls: 1},
				{advance: miss - time.Nanosecond, key: "alice", wantErr: apikey.ErrNotFound},
			},
		},
		{
			name: "backend down: a known key is served stale, with backoff, until it recovers",
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{advance: hit, backend: down, key: "alice", wantID: "alice", wantCalls: 1},
				{advance: back - time.Nanosecond, key: "alice", wantID: "alice"},
				{advance: time.Nanosecond, key: "alice", wantID: "alice", wantCalls: 1},
				{backend: up, key: "alice", wantID: "alice"}, // still backing off
				{advance: back, key: "alice", wantID: "alice", wantCalls: 1},
				{advance: hit - time.Nanosecond, key: "alice", wantID: "alice"}, // fresh again
			},
		},
		{
			name: "backend down: stale service ends after the hit TTL plus max staleness",
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{advance: hit + stale - time.Nanosecond, backend: down, key: "alice", wantID: "alice", wantCalls: 1},
				{advance: time.Nanosecond, key: "alice", wantErr: errDown, wantCalls: 1},
				{key: "alice", wantErr: errDown, wantCalls: 1},
			},
		},
		{
			name: "backend down: an unknown key gets the backend error, never a cached miss",
			steps: []cacheStep{
				{backend: down, key: "unknown", wantErr: errDown, wantCalls: 1},
				{key: "unknown", wantErr: errDown, wantCalls: 1},
				{backend: up, key: "unknown", wantErr: apikey.ErrNotFound, wantCalls: 1},
			},
		},
		{
			name: "backend down: an expired miss gets the backend error",
			steps: []cacheStep{
				{key: "unknown", wantErr: apikey.ErrNotFound, wantCalls: 1},
				{advance: miss, backend: down, key: "unknown", wantErr: errDown, wantCalls: 1},
			},
		},
		{
			name: "malformed keys never reach the backend",
			steps: []cacheStep{
				{key: "malformed", wantErr: apikey.ErrNotFound},
				{backend: down, key: "malformed", wantErr: apikey.ErrNotFound},
			},
		},
		{
			name: "negative max staleness: no stale service",
			cfg:  apikey.CacheConfig{MaxStale: -1},
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{advance: hit, backend: down, key: "alice", wantErr: errDown, wantCalls: 1},
			},
		},
		{
			name: "negative miss TTL: misses are not cached",
			cfg:  apikey.CacheConfig{MissTTL: -1},
			steps: []cacheStep{
				{key: "unknown", wantErr: apikey.ErrNotFound, wantCalls: 1},
				{key: "unknown", wantErr: apikey.ErrNotFound, wantCalls: 1},
			},
		},
		{
			name:  "expiry crossed while cached: refused at once, then cached as a miss",
			setup: aliceExpiresIn(30 * time.Second),
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{advance: 30*time.Second - time.Nanosecond, key: "alice", wantID: "alice"},
				{advance: time.Nanosecond, key: "alice", wantErr: apikey.ErrNotFound},
				{advance: miss - time.Nanosecond, key: "alice", wantErr: apikey.ErrNotFound},
				{advance: time.Nanosecond, key: "alice", wantErr: apikey.ErrNotFound, wantCalls: 1},
				{key: "bob", wantID: "bob", wantCalls: 1},
			},
		},
		{
			name:  "expiry ignores a long hit TTL",
			cfg:   apikey.CacheConfig{HitTTL: 24 * time.Hour},
			setup: aliceExpiresIn(time.Minute),
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{advance: time.Minute, key: "alice", wantErr: apikey.ErrNotFound},
			},
		},
		{
			name:  "an expired record is not served stale while the backend is down",
			setup: aliceExpiresIn(hit + 10*time.Second),
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{advance: hit, backend: down, key: "alice", wantID: "alice", wantCalls: 1},
				{advance: 10 * time.Second, key: "alice", wantErr: apikey.ErrNotFound},
			},
		},
		{
			name:  "an expired record from the backend is refused",
			setup: aliceExpiresIn(time.Second),
			steps: []cacheStep{
				{advance: time.Second, key: "alice", wantErr: apikey.ErrNotFound, wantCalls: 1},
				{key: "alice", wantErr: apikey.ErrNotFound},
			},
		},
		{
			name: "a new limit is served after the hit TTL",
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{advance: hit / 2, backend: setAliceLimit, key: "alice", wantID: "alice"},
				{advance: hit/2 - time.Nanosecond, key: "alice", wantID: "alice"},
				{advance: time.Nanosecond, key: "alice", wantID: "alice", wantLimit: aliceLimit.String(), wantCalls: 1},
			},
		},
		{
			name: "custom TTLs",
			cfg:  apikey.CacheConfig{HitTTL: time.Second, MissTTL: time.Millisecond},
			steps: []cacheStep{
				{key: "alice", wantID: "alice", wantCalls: 1},
				{key: "unknown", wantErr: apikey.ErrNotFound, wantCalls: 1},
				{advance: time.Millisecond, key: "unknown", wantErr: apikey.ErrNotFound, wantCalls: 1},
				{advance: time.Second, key: "alice", wantID: "alice", wantCalls: 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			k := keys{
				"alice":   issue(t, "alice", "premium", clk.Now()),
				"bob":     issue(t, "bob", "authenticated", clk.Now()),
				"unknown": issue(t, "later", "authenticated", clk.Now()),
			}
			if tt.setup != nil {
				tt.setup(k)
			}
			k["malformed"] = issued{key: k["alice"].key[:20]}
			names := map[string]string{}
			for name, is := range k {
				names[is.rec.ID] = name
			}
			backend := newFakeStore(k["alice"].rec, k["bob"].rec)
			cfg := tt.cfg
			cfg.Now = clk.Now
			c := apikey.NewCache(backend, cfg)
			kc := &keyChecker{}
			for _, is := range k {
				kc.keys = append(kc.keys, is.key)
			}

			for i, st := range tt.steps {
				clk.Advance(st.advance)
				if st.backend != nil {
					backend.set(func(f *fakeStore) { st.backend(f, k) })
				}
				before := backend.count()
				got, err := c.Lookup(context.Background(), k[st.key].key)
				kc.add(err)
				calls := backend.count() - before
				if st.wantErr != nil {
					if !errors.Is(err, st.wantErr) {
						t.Fatalf("step %d (%s): err = %v, want %v", i, st.key, err, st.wantErr)
					}
				} else if err != nil || names[got.ID] != st.wantID {
					t.Fatalf("step %d (%s): got %q, %v; want %q", i, st.key, names[got.ID], err, st.wantID)
				}
				if st.wantErr == nil {
					if got.Limit.String() != st.wantLimit {
						t.Errorf("step %d: limit %q, want %q", i, got.Limit.String(), st.wantLimit)
					}
					want := k[st.wantID].rec
					want.Limit = got.Limit
					if got != want {
						t.Errorf("step %d: record differs from the stored one:\n%s", i, cmp.Diff(want, got))
					}
				}
				if calls != st.wantCalls {
					t.Errorf("step %d (%s): backend calls = %d, want %d", i, st.key, calls, st.wantCalls)
				}
			}
			if len(kc.errs) > 0 {
				kc.check(t)
			}
		})
	}
}

func TestCacheStats(t *testing.T) {
	clk := newClock()
	alice := issue(t, "alice", "premium", clk.Now())
	unknown := wellFormedUnknownKey(t)
	backend := newFakeStore(alice.rec)
	c := apikey.NewCache(backend, apikey.CacheConfig{Now: clk.Now})
	ctx := context.Background()
	for _, key := range []string{alice.key, alice.key, unknown, unknown, "bg_short"} {
		_, _ = c.Lookup(ctx, key)
	}
	clk.Advance(apikey.DefaultHitTTL)
	backend.set(func(f *fakeStore) { f.err = errDown })
	_, _ = c.Lookup(ctx, alice.key) // stale after a failed refresh
	_, _ = c.Lookup(ctx, alice.key) // stale while backing off
	_, _ = c.Lookup(ctx, unknown)   // backend error
	backend.set(func(f *fakeStore) { f.err = nil })
	expiring := issue(t, "expiring", "premium", clk.Now())
	expiring.rec.ExpiresAt = clk.Now().Add(time.Second)
	backend.set(func(f *fakeStore) { f.recs[expiring.rec.Hash] = expiring.rec })
	_, _ = c.Lookup(ctx, expiring.key) // a backend call, then cached
	clk.Advance(time.Second)
	_, _ = c.Lookup(ctx, expiring.key) // expired while cached
	want := apikey.CacheStats{
		Hits: 1, Misses: 1, Malformed: 1, BackendCalls: 5, BackendErrors: 2, Stale: 2, Expired: 1,
		HitEntries: 1, MissEntries: 2,
	}
	if diff := cmp.Diff(want, c.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// TestCacheBounds: the cache never holds more than its bounds, and a flood
// of made-up keys evicts only misses, never the records of real keys.
func TestCacheBounds(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	var real []issued
	for i := 0; i < 25; i++ {
		real = append(real, issue(t, fmt.Sprint("k", i), "authenticated", clk.Now()))
	}
	var recs []apikey.Record
	for _, r := range real {
		recs = append(recs, r.rec)
	}
	backend := newFakeStore(recs...)
	c := apikey.NewCache(backend, apikey.CacheConfig{MaxHits: 10, MaxMisses: 10, Now: clk.Now})

	for _, r := range real[:10] {
		if _, err := c.Lookup(ctx, r.key); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		if _, err := c.Lookup(ctx, wellFormedUnknownKey(t)); !errors.Is(err, apikey.ErrNotFound) {
			t.Fatal(err)
		}
		if s := c.Stats(); s.MissEntries > 10 {
			t.Fatalf("after %d unknown keys: %d misses cached, want <= 10", i+1, s.MissEntries)
		}
	}
	before := backend.count()
	for _, r := range real[:10] {
		if _, err := c.Lookup(ctx, r.key); err != nil {
			t.Fatal(err)
		}
	}
	if got := backend.count() - before; got != 0 {
		t.Errorf("after a flood of unknown keys, looking up the 10 cached keys made %d backend calls, want 0", got)
	}

	for _, r := range real {
		if _, err := c.Lookup(ctx, r.key); err != nil {
			t.Fatal(err)
		}
		if s := c.Stats(); s.HitEntries > 10 {
			t.Fatalf("%d records cached, want <= 10", s.HitEntries)
		}
	}
}

// TestCacheSweepsBeforeEvicting: when the record bound is reached, records
// too old even for stale service go first, and fresh ones stay.
func TestCacheSweepsBeforeEvicting(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	var real []issued
	var recs []apikey.Record
	for i := 0; i < 11; i++ {
		r := issue(t, fmt.Sprint("k", i), "authenticated", clk.Now())
		real, recs = append(real, r), append(recs, r.rec)
	}
	backend := newFakeStore(recs...)
	c := apikey.NewCache(backend, apikey.CacheConfig{MaxHits: 10, Now: clk.Now})
	lookupAll := func(keys []issued) {
		t.Helper()
		for _, r := range keys {
			if _, err := c.Lookup(ctx, r.key); err != nil {
				t.Fatal(err)
			}
		}
	}
	lookupAll(real[:5])
	clk.Advance(apikey.DefaultHitTTL + apikey.DefaultMaxStale)
	lookupAll(real[5:10]) // now full: 5 dead records, 5 fresh ones
	lookupAll(real[10:])  // sweeps the 5 dead ones
	if got, want := c.Stats().HitEntries, 6; got != want {
		t.Errorf("records cached = %d, want %d", got, want)
	}
	before := backend.count()
	lookupAll(real[5:])
	if got := backend.count() - before; got != 0 {
		t.Errorf("fresh records were evicted: %d backend calls, want 0", got)
	}
}

// TestCacheConcurrent runs lookups, clock moves and backend failures from
// many goroutines; under -race it checks the locking, and every answer must
// still be right.
func TestCacheConcurrent(t *testing.T) {
	clk := newClock()
	alice := issue(t, "alice", "premium", clk.Now())
	unknown := wellFormedUnknownKey(t)
	backend := newFakeStore(alice.rec)
	c := apikey.NewCache(backend, apikey.CacheConfig{MaxHits: 4, MaxMisses: 4, Now: clk.Now})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				switch i % 4 {
				case 0:
					clk.Advance(7 * time.Second)
				case 1:
					backend.set(func(f *fakeStore) {
						if f.err == nil {
							f.err = errDown
						} else {
							f.err = nil
						}
					})
				}
				rec, err := c.Lookup(context.Background(), alice.key)
				if err != nil && !errors.Is(err, errDown) || err == nil && rec != alice.rec {
					errs <- fmt.Errorf("alice: %+v, %v", rec, err)
					return
				}
				if _, err := c.Lookup(context.Background(), unknown); err == nil {
					errs <- errors.New("unknown key found")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCacheKnown: Known says whether a key is cached as valid, for as long
// as Lookup could serve its record (fresh or stale), never after a refresh
// found it revoked or after it expired, and without calling the backend.
func TestCacheKnown(t *testing.T) {
	const (
		hit   = apikey.DefaultHitTTL
		stale = apikey.DefaultMaxStale
	)
	type step struct {
		advance   time.Duration
		backend   func(f *fakeStore, alice issued)
		lookup    bool // look alice up first
		wantKnown bool
	}
	revoke := func(f *fakeStore, a issued) {
		r := a.rec
		r.Revoked, r.RevokedAt = true, time.Now()
		f.recs[r.Hash] = r
	}
	tests := []struct {
		name    string
		expires time.Duration // alice's key expires this long after the start; 0: never
		steps   []step
	}{
		{name: "never looked up", steps: []step{{wantKnown: false}}},
		{name: "found, then for the hit TTL and the stale window", steps: []step{
			{lookup: true, wantKnown: true},
			{advance: hit, wantKnown: true},
			{advance: stale - time.Nanosecond, wantKnown: true},
			{advance: time.Nanosecond, wantKnown: false},
		}},
		{name: "a refresh that finds it revoked forgets it", steps: []step{
			{lookup: true, wantKnown: true},
			{advance: hit, backend: revoke, wantKnown: true},
			{lookup: true, wantKnown: false},
		}},
		{name: "expired by the cache's clock", expires: time.Minute / 2, steps: []step{
			{lookup: true, wantKnown: true},
			{advance: time.Minute/2 - time.Nanosecond, wantKnown: true},
			{advance: time.Nanosecond, wantKnown: false},
		}},
		{name: "the backend down keeps a known key known", steps: []step{
			{lookup: true, wantKnown: true},
			{advance: hit, backend: func(f *fakeStore, _ issued) { f.err = errDown }, lookup: true, wantKnown: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			alice := issue(t, "alice", "premium", clk.Now())
			if tt.expires > 0 {
				alice.rec.ExpiresAt = alice.rec.CreatedAt.Add(tt.expires)
			}
			backend := newFakeStore(alice.rec)
			c := apikey.NewCache(backend, apikey.CacheConfig{Now: clk.Now})
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				if s.backend != nil {
					backend.set(func(f *fakeStore) { s.backend(f, alice) })
				}
				if s.lookup {
					_, _ = c.Lookup(context.Background(), alice.key)
				}
				before := backend.count()
				if got := c.Known(alice.key); got != s.wantKnown {
					t.Errorf("step %d: Known = %v, want %v", i, got, s.wantKnown)
				}
				if calls := backend.count() - before; calls != 0 {
					t.Errorf("step %d: Known called the backend %d times", i, calls)
				}
			}
			for _, k := range []string{"", "not-a-key", wellFormedUnknownKey(t)} {
				if c.Known(k) {
					t.Errorf("Known(%q) = true for a key never found", k)
				}
			}
		})
	}
}
