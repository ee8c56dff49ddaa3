package limiter

import (
	"fmt"
	"time"
)

// MemoryConfig configures a MemoryStore. The zero value is usable.
type MemoryConfig struct {
	// MaxKeys bounds the number of buckets held; 0 means DefaultMaxKeys.
	// When full, buckets that are full by now are dropped first (exact), then
	// the sampled bucket closest to full (which may over-admit by that
	// bucket's deficit).
	MaxKeys int
	// Shards is the number of independently locked shards, rounded up to a
	// power of two; 0 means 64.
	Shards int
}

// DefaultMaxKeys is MemoryConfig.MaxKeys' default.
const DefaultMaxKeys = 100_000

// MemoryStore holds buckets in this process's memory, with the same
// arithmetic as the Lua script (bucket.go), so a bucket behaves the same
// whichever store holds it. It is the per-container fallback: its limits
// hold per container, quotas included.
//
// Safe for concurrent use. Allow takes no allocation for a bucket it already
// holds, and starts no goroutine: full buckets are swept lazily inside calls.
type MemoryStore struct {
	t *table
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.MaxKeys < 0 || cfg.Shards < 0 || cfg.Shards > 1<<16 {
		return nil, invalid("memory store: MaxKeys must not be negative, Shards must be within 0..65536")
	}
	return &MemoryStore{t: newTable(orDefault(cfg.Shards, 64), orDefault(cfg.MaxKeys, DefaultMaxKeys))}, nil
}

// Allow decides req at now (the caller's clock) on this process's buckets,
// atomically across them, without live factors. The Result's Source is
// SourceMemory. The error (only for an invalid request) wraps
// ErrInvalidRequest.
func (m *MemoryStore) Allow(req Request, now time.Time) (Result, error) {
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	var ps [MaxBuckets]params
	resolve(req, unscaled, now, ps[:len(req.Buckets)])
	return m.decide(req, ps[:len(req.Buckets)], now.UnixMilli()), nil
}

// decide is Allow for a valid request resolved into ps.
func (m *MemoryStore) decide(req Request, ps []params, now int64) Result {
	n := len(req.Buckets)
	var (
		refs  [MaxBuckets]ref
		pos   [MaxBuckets]int
		st    [MaxBuckets]state
		found [MaxBuckets]bool
		write [MaxBuckets]bool
	)
	for i, b := range req.Buckets {
		refs[i] = m.t.ref(b.Key)
	}
	locked, nl := m.t.lockShards(refs[:n])
	for i, b := range req.Buckets {
		if pos[i] = m.t.findLocked(refs[i], b.Key); pos[i] >= 0 {
			found[i], st[i] = true, m.t.atLocked(refs[i], pos[i]).state
		}
	}
	allowed := decide(st[:n], found[:n], ps, req.Cost, now, write[:n])
	r := report(n, ps, st[:n], allowed, req.Cost, now)
	// Update known buckets in place first: inserting can move entries.
	for pass := 0; pass < 2; pass++ {
		for i, b := range req.Buckets {
			if !write[i] || (pos[i] >= 0) != (pass == 0) {
				continue
			}
			e := entry{state: st[i], fullAt: expiresAt(st[i], ps[i])}
			if pos[i] >= 0 {
				*m.t.atLocked(refs[i], pos[i]) = e
			} else {
				m.t.insertLocked(refs[i], b.Key, e, now)
			}
		}
	}
	for i := range n {
		m.t.tickLocked(refs[i], now)
	}
	m.t.unlockShards(locked, nl)
	r.Source = SourceMemory
	return r
}

// peek is decide without charging or storing anything: ok is true when
// some bucket cannot pay req's cost at now, r being that denial.
func (m *MemoryStore) peek(req Request, ps []params, now int64) (r Result, ok bool) {
	n := len(req.Buckets)
	var st [MaxBuckets]state
	refuse := false
	for i, b := range req.Buckets {
		ref := m.t.ref(b.Key)
		mu := &m.t.shards[ref.shard].mu
		mu.Lock()
		p := m.t.findLocked(ref, b.Key)
		found := p >= 0
		if found {
			st[i] = m.t.atLocked(ref, p).state
		}
		mu.Unlock()
		st[i], _ = current(st[i], found, ps[i], now)
		if !passes(st[i], ps[i], req.Cost) {
			refuse = true
		}
	}
	if !refuse {
		return Result{}, false
	}
	r = report(n, ps, st[:n], false, req.Cost, now)
	r.Source = SourceMemory
	return r, true
}

// Len returns the number of buckets held. It locks every shard in turn; use
// it for metrics, not on the hot path.
func (m *MemoryStore) Len() int { return m.t.len() }

// String describes the store for logs.
func (m *MemoryStore) String() string {
	return fmt.Sprintf("memory store (%d shards, up to %d keys)", len(m.t.shards), m.t.perShard*len(m.t.shards))
}
