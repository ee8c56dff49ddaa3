package apikey

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Cache defaults.
const (
	DefaultHitTTL       = 60 * time.Second
	DefaultMissTTL      = 10 * time.Second
	DefaultMaxStale     = 15 * time.Minute
	DefaultErrorBackoff = 5 * time.Second
	DefaultMaxHits      = 10000
	DefaultMaxMisses    = 10000
)

// CacheConfig configures a Cache. Zero values select the defaults.
type CacheConfig struct {
	// HitTTL is how long a found record is served without asking the
	// backend. It is the revocation delay: a key revoked in the backend
	// keeps working in a container for up to HitTTL (longer while the
	// backend is down; see MaxStale). It is also the delay of a limit
	// change: the record is cached whole, its Limit included, so a new
	// limit (apikeys set-limit) applies within HitTTL. Expiry has no such
	// delay (see Cache). 0: DefaultHitTTL (60 s).
	HitTTL time.Duration
	// MissTTL is how long an unknown, revoked or expired key is answered
	// ErrNotFound without asking the backend; a key created meanwhile
	// starts working after it. 0: DefaultMissTTL (10 s); negative: misses
	// are not cached.
	MissTTL time.Duration
	// MaxStale is how long past HitTTL an expired hit may still be served
	// when the backend fails (errors or times out): keys already seen keep
	// working through an outage of the key store for this long. 0:
	// DefaultMaxStale (15 min); negative: never serve stale.
	MaxStale time.Duration
	// ErrorBackoff is how long a stale hit is served without trying the
	// backend again after a failed refresh, so an outage does not add the
	// backend's timeout to every request. 0: DefaultErrorBackoff (5 s);
	// negative: retry on every call.
	ErrorBackoff time.Duration
	// MaxHits bounds the number of cached records; MaxMisses the number of
	// cached misses. They are separate so that a flood of made-up keys
	// evicts only other misses, never the records of real keys. When a
	// bound is reached, expired entries are swept, then arbitrary ones
	// until 10% is free. 0: DefaultMaxHits / DefaultMaxMisses (10,000).
	MaxHits, MaxMisses int
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// CacheStats counts what a Cache did since it was made.
type CacheStats struct {
	Hits          uint64 // lookups answered from a fresh cached record
	Misses        uint64 // lookups answered ErrNotFound from a cached miss
	Malformed     uint64 // lookups of malformed keys (answered ErrNotFound at once)
	BackendCalls  uint64 // lookups passed to the backend store
	BackendErrors uint64 // backend calls that failed (neither a record nor ErrNotFound)
	Stale         uint64 // lookups answered with a stale record because the backend failed or was backing off
	Expired       uint64 // lookups answered ErrNotFound because the record, cached or just fetched, had expired
	HitEntries    int    // records cached now
	MissEntries   int    // misses cached now
}

// Cache is a per-container Store in front of another Store. Entries are
// indexed by key hash; the plaintext key is never kept.
//
// Policy:
//   - a malformed key is ErrNotFound without a backend call;
//   - a record is served for HitTTL, a miss (unknown, revoked or expired
//     key) for MissTTL;
//   - a record past its ExpiresAt by the cache's clock is never served,
//     fresh or stale, whatever the TTLs: expiry is checked on every
//     Lookup, and the key is then answered ErrNotFound and cached as a
//     miss;
//   - when the backend fails, a record fetched within HitTTL+MaxStale is
//     served (stale) and the backend is left alone for ErrorBackoff; an
//     unknown key, or one whose record is older than that, gets the backend
//     error, which is never cached as a miss, so callers can answer "service
//     unavailable" rather than 401.
//
// Concurrent lookups of the same uncached key each call the backend (the
// authorizer handles one request per container at a time). There are no
// background goroutines: expiry is checked, and sweeping done, inside
// Lookup. A Cache is safe for concurrent use.
type Cache struct {
	store Store
	cfg   CacheConfig

	mu     sync.Mutex
	hits   map[string]*hitEntry
	misses map[string]time.Time // hash -> expiry
	stats  CacheStats
}

type hitEntry struct {
	rec       Record
	fetchedAt time.Time
	retryAt   time.Time // no backend call before this, after a failed refresh
}

var _ Store = (*Cache)(nil)

// NewCache returns a Cache in front of store, with defaults applied to cfg.
func NewCache(store Store, cfg CacheConfig) *Cache {
	if cfg.HitTTL <= 0 {
		cfg.HitTTL = DefaultHitTTL
	}
	if cfg.MissTTL == 0 {
		cfg.MissTTL = DefaultMissTTL
	}
	switch {
	case cfg.MaxStale == 0:
		cfg.MaxStale = DefaultMaxStale
	case cfg.MaxStale < 0:
		cfg.MaxStale = 0
	}
	switch {
	case cfg.ErrorBackoff == 0:
		cfg.ErrorBackoff = DefaultErrorBackoff
	case cfg.ErrorBackoff < 0:
		cfg.ErrorBackoff = 0
	}
	if cfg.MaxHits <= 0 {
		cfg.MaxHits = DefaultMaxHits
	}
	if cfg.MaxMisses <= 0 {
		cfg.MaxMisses = DefaultMaxMisses
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cache{store: store, cfg: cfg, hits: map[string]*hitEntry{}, misses: map[string]time.Time{}}
}

// Lookup implements Store with the policy described on Cache.
func (c *Cache) Lookup(ctx context.Context, key string) (Record, error) {
	if !ValidFormat(key) {
		c.mu.Lock()
		c.stats.Malformed++
		c.mu.Unlock()
		return Record{}, ErrNotFound
	}
	hash := Hash(key)

	c.mu.Lock()
	now := c.cfg.Now()
	if e, ok := c.hits[hash]; ok {
		if e.rec.Expired(now) {
			c.stats.Expired++
			c.missLocked(hash, now)
			c.mu.Unlock()
			return Record{}, ErrNotFound
		}
		if now.Before(e.fetchedAt.Add(c.cfg.HitTTL)) {
			c.stats.Hits++
			c.mu.Unlock()
			return e.rec, nil
		}
		if now.Before(e.retryAt) && c.staleOK(e, now) {
			c.stats.Stale++
			c.mu.Unlock()
			return e.rec, nil
		}
	}
	if exp, ok := c.misses[hash]; ok && now.Before(exp) {
		c.stats.Misses++
		c.mu.Unlock()
		return Record{}, ErrNotFound
	}
	c.stats.BackendCalls++
	c.mu.Unlock()

	rec, err := c.store.Lookup(ctx, key)

	c.mu.Lock()
	defer c.mu.Unlock()
	now = c.cfg.Now()
	if err == nil && rec.Expired(now) { // the backend's clock may lag the cache's
		c.stats.Expired++
		rec, err = Record{}, ErrNotFound
	}
	switch {
	case err == nil:
		delete(c.misses, hash)
		if _, ok := c.hits[hash]; !ok && len(c.hits) >= c.cfg.MaxHits {
			c.evictHits(now)
		}
		c.hits[hash] = &hitEntry{rec: rec, fetchedAt: now}
		return rec, nil
	case errors.Is(err, ErrNotFound):
		c.missLocked(hash, now)
		return Record{}, ErrNotFound
	default:
		c.stats.BackendErrors++
		if e, ok := c.hits[hash]; ok && c.staleOK(e, now) && !e.rec.Expired(now) {
			e.retryAt = now.Add(c.cfg.ErrorBackoff)
			c.stats.Stale++
			return e.rec, nil
		}
		return Record{}, err
	}
}

// Known reports whether key is cached as a valid key: a lookup found its
// record within HitTTL+MaxStale (the longest a record may be served, stale
// while the backend fails), no refresh since found it unknown or revoked,
// and it has not expired by the cache's clock. It never calls the backend
// and counts nothing. The authorizer asks it before a lookup, to tell a
// key it has seen work from an attempt with a made-up one.
func (c *Cache) Known(key string) bool {
	if !ValidFormat(key) {
		return false
	}
	hash := Hash(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.hits[hash]
	now := c.cfg.Now()
	return ok && !e.rec.Expired(now) && c.staleOK(e, now)
}

// Stats returns the counters and current sizes.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.HitEntries, s.MissEntries = len(c.hits), len(c.misses)
	return s
}

// missLocked forgets any record of hash (revoked or expired: stop serving
// it, even stale) and caches a miss for MissTTL.
func (c *Cache) missLocked(hash string, now time.Time) {
	delete(c.hits, hash)
	if c.cfg.MissTTL <= 0 {
		return
	}
	if _, ok := c.misses[hash]; !ok && len(c.misses) >= c.cfg.MaxMisses {
		c.evictMisses(now)
	}
	c.misses[hash] = now.Add(c.cfg.MissTTL)
}

func (c *Cache) staleOK(e *hitEntry, now time.Time) bool {
	return now.Before(e.fetchedAt.Add(c.cfg.HitTTL + c.cfg.MaxStale))
}

// evictHits drops records too old to be served even stale, then, if still
// full, arbitrary ones until 10% of MaxHits is free.
func (c *Cache) evictHits(now time.Time) {
	for h, e := range c.hits {
		if !c.staleOK(e, now) {
			delete(c.hits, h)
		}
	}
	if len(c.hits) < c.cfg.MaxHits {
		return
	}
	target := c.cfg.MaxHits - max(c.cfg.MaxHits/10, 1)
	for h := range c.hits {
		if len(c.hits) <= target {
			break
		}
		delete(c.hits, h)
	}
}

// evictMisses drops expired misses, then, if still full, arbitrary
// ones until 10% of MaxMisses is free.
func (c *Cache) evictMisses(now time.Time) {
	for h, exp := range c.misses {
		if !now.Before(exp) {
			delete(c.misses, h)
		}
	}
	if len(c.misses) < c.cfg.MaxMisses {
		return
	}
	target := c.cfg.MaxMisses - max(c.cfg.MaxMisses/10, 1)
	for h := range c.misses {
		if len(c.misses) <= target {
			break
		}
		delete(c.misses, h)
	}
}
