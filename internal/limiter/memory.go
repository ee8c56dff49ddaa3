package limiter

import (
	"context"
	"fmt"
	"time"
)

// MemoryConfig configures a MemoryStore. The zero value is usable.
type MemoryConfig struct {
	// MaxKeys bounds the number of buckets held; 0 means DefaultMaxKeys.
	// When full, buckets that are full by now are dropped first (exact), then
	// the sampled bucket closest to full (which may over-admit by that
	// bucket's deficit). An idle bucket costs about 80 bytes of heap with
	// a 24-byte key (measured at 1M keys; key copy included).
	MaxKeys int
	// Shards is the number of independently locked shards, rounded up to a
	// power of two; 0 means 64.
	Shards int
	// MaxClockSkew: see DefaultMaxClockSkew (0 means that default). In a
	// single process it only matters when the clock goes backwards: a
	// bucket is then read as of its stored instant, at most MaxClockSkew
	// ahead.
	MaxClockSkew time.Duration
}

// DefaultMaxKeys is MemoryConfig.MaxKeys' default.
const DefaultMaxKeys = 100_000

// MemoryStore is a Store of token buckets in this process's memory, with
// the same arithmetic as the Lua script (bucket.go), so a bucket behaves the
// same whichever store holds it. It is the per-container fallback.
//
// Safe for concurrent use. Allow takes no allocation for a bucket it already
// holds, and starts no goroutine: full buckets are swept lazily inside calls.
type MemoryStore struct {
	t    *table
	skew int64
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.MaxKeys < 0 || cfg.Shards < 0 || cfg.MaxClockSkew < 0 {
		return nil, invalid("memory store: MaxKeys, Shards and MaxClockSkew must not be negative")
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Shards == 0 {
		cfg.Shards = 64
	}
	if cfg.Shards > 1<<16 {
		return nil, invalid("memory store: %d shards is too many (at most 65536)", cfg.Shards)
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	return &MemoryStore{t: newTable(cfg.Shards, cfg.MaxKeys), skew: cfg.MaxClockSkew.Milliseconds()}, nil
}

// Allow decides req at now on this process's buckets, atomically across
// its buckets. ctx is not used (the call never blocks on I/O). The Result's
// Source is SourceMemory. An error (only for an invalid request) wraps
// ErrInvalidRequest.
func (m *MemoryStore) Allow(ctx context.Context, req Request, now time.Time) (Result, error) {
	if len(req.Buckets) == 1 { // the common case, without a layer of copies
		if err := req.Validate(); err != nil {
			return Result{}, err
		}
		r, _ := m.allowOne(req, now.UnixMilli())
		return r, nil
	}
	var st [MaxBuckets]state
	return m.allowState(ctx, req, now, st[:])
}

// allowState is Allow that also fills st[:len(req.Buckets)] with the
// buckets' states after the decision.
func (m *MemoryStore) allowState(_ context.Context, req Request, now time.Time, st []state) (Result, error) {
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	nowMs := now.UnixMilli()
	n := len(req.Buckets)
	if n == 1 {
		r, s := m.allowOne(req, nowMs)
		st[0] = s
		return r, nil
	}
	var (
		refs  [MaxBuckets]ref
		pos   [MaxBuckets]int
		found [MaxBuckets]bool
		write [MaxBuckets]bool
		ps    [MaxBuckets]params
	)
	for i, b := range req.Buckets {
		refs[i] = m.t.ref(b.Key)
		ps[i] = b.Limit.params()
	}
	locked, nl := m.t.lockShards(refs[:n])
	for i, b := range req.Buckets {
		if pos[i] = m.t.findLocked(refs[i], b.Key); pos[i] >= 0 {
			found[i], st[i] = true, m.t.atLocked(refs[i], pos[i]).state
		}
	}
	allowed := decide(st[:n], found[:n], ps[:n], req.Cost*unitsPerToken, nowMs, m.skew, write[:n])
	r, best := report(req, ps[:n], st[:n], allowed, nowMs)
	// Update known buckets in place first: inserting can move entries.
	for pass := 0; pass < 2; pass++ {
		for i, b := range req.Buckets {
			if !write[i] || found[i] != (pass == 0) {
				continue
			}
			until := r.ResetAfter.Milliseconds() // computed once for the reported bucket
			if i != best || until >= maxDurationMs {
				until = untilFull(st[i], ps[i], nowMs)
			}
			e := entry{state: st[i], fullAt: nowMs + until}
			if found[i] {
				*m.t.atLocked(refs[i], pos[i]) = e
			} else {
				m.t.insertLocked(refs[i], b.Key, e, nowMs)
			}
		}
	}
	for i := range n {
		m.t.tickLocked(refs[i], nowMs)
	}
	m.t.unlockShards(locked, nl)
	r.Source = SourceMemory
	return r, nil
}

// allowOne is allowState for a single bucket, the common case: the same
// steps without the bookkeeping for several shards (TestStoresAgree and the
// behaviour table hold both paths to the Lua script's answers).
func (m *MemoryStore) allowOne(req Request, now int64) (Result, state) {
	b := req.Buckets[0]
	p := b.Limit.params()
	cost := req.Cost * unitsPerToken
	ref := m.t.ref(b.Key)
	sh := &m.t.shards[ref.shard]
	sh.mu.Lock()
	pos := m.t.findLocked(ref, b.Key)
	var cur state
	if pos >= 0 {
		cur = sh.slots[pos].state
	}
	next, write := refill(cur, pos >= 0, p, now, m.skew)
	allowed := next.units >= cost
	if allowed {
		next.units -= cost
		write = true
	}
	until := untilFull(next, p, now)
	if write {
		e := entry{state: next, fullAt: now + until}
		if pos >= 0 {
			sh.slots[pos].entry = e
		} else {
			m.t.insertLocked(ref, b.Key, e, now)
		}
	}
	m.t.tickLocked(ref, now)
	sh.mu.Unlock()
	r := Result{
		Allowed:    allowed,
		Limit:      b.Limit.Burst,
		Remaining:  next.units / unitsPerToken,
		ResetAfter: msDuration(until),
		Window:     msDuration(ceilDiv(p.cap, p.perMs)),
		Source:     SourceMemory,
	}
	if !allowed {
		if cost > p.cap {
			r.RetryAfter, r.Reason = r.Window, ReasonCostExceedsBurst
		} else {
			r.RetryAfter, r.Reason = msDuration(next.at-now+ceilDiv(cost-next.units, p.perMs)), ReasonOverLimit
		}
	}
	return r, next
}

// Len returns the number of buckets held. It locks every shard in turn; use
// it for metrics, not on the hot path.
func (m *MemoryStore) Len() int { return m.t.len() }

// String describes the store for logs.
func (m *MemoryStore) String() string {
	return fmt.Sprintf("memory store (%d shards, up to %d keys)", len(m.t.shards), m.t.perShard*len(m.t.shards))
}
