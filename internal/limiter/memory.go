package limiter

import (
	"fmt"
	"sync/atomic"
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
	// Now is the clock AllowNow reads; nil means ProcessNow.
	Now func() time.Time
}

// DefaultMaxKeys is MemoryConfig.MaxKeys' default.
const DefaultMaxKeys = 100_000

// MemoryStore holds buckets in this process's memory, with the same
// arithmetic as the Lua script (bucket.go), so a bucket behaves the same
// whichever store holds it. It is the per-container fallback: its limits
// hold per container, quotas included.
//
// Safe for concurrent use. A decision takes no allocation (a new bucket
// only the table's amortised growth) and starts no goroutine: full buckets
// are swept lazily inside calls. A bucket's key string is kept as given, as
// a Go map keeps its keys.
type MemoryStore struct {
	t   *table
	now func() time.Time
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.MaxKeys < 0 || cfg.Shards < 0 || cfg.Shards > 1<<16 {
		return nil, invalid("memory store: MaxKeys must not be negative, Shards must be within 0..65536")
	}
	m := &MemoryStore{t: newTable(orDefault(cfg.Shards, 64), orDefault(cfg.MaxKeys, DefaultMaxKeys)), now: cfg.Now}
	return m, nil
}

// AllowNow is Allow at the store's clock (MemoryConfig.Now, by default
// ProcessNow: one read of the monotonic clock), into *r, which it
// overwrites whole (zeroed on error). It fills its caller's Result in
// place: returning one (about 350 bytes) would copy it, a tenth of a
// decision this cheap (bench/).
func (m *MemoryStore) AllowNow(req Request, r *Result) error {
	*r = Result{}
	if m.now != nil {
		return m.allowTo(r, req, m.now().UnixMilli())
	}
	return m.allowTo(r, req, processClock.nowNs()/1e6)
}

// Allow decides req at now (the caller's clock) on this process's buckets,
// atomically across them, without live factors. The Result's Source is
// SourceMemory. The error (only for an invalid request) wraps
// ErrInvalidRequest.
func (m *MemoryStore) Allow(req Request, now time.Time) (r Result, err error) {
	err = m.allowTo(&r, req, now.UnixMilli())
	return r, err
}

// allowTo is Allow into *r, which must be the zero Result (and stays zero
// on error). now is in ms.
func (m *MemoryStore) allowTo(r *Result, req Request, now int64) error {
	if len(req.Buckets) == 1 { // the common case, without Validate's and decideTo's loops
		b := &req.Buckets[0]
		if p, ok := plainParams(b, req.Cost); ok {
			m.decideOne(r, b.Key, p, req.Cost, now)
			return nil
		}
	}
	if err := req.Validate(); err != nil {
		return err
	}
	var ps [MaxBuckets]params
	resolve(req, unscaled, time.UnixMilli(now), ps[:len(req.Buckets)])
	m.decideTo(r, req, ps[:len(req.Buckets)], now)
	return nil
}

// decide is Allow for a valid request resolved into ps.
func (m *MemoryStore) decide(req Request, ps []params, now int64) (r Result) {
	m.decideTo(&r, req, ps, now)
	return r
}

// decideTo is decide into *r, which must be the zero Result.
func (m *MemoryStore) decideTo(r *Result, req Request, ps []params, now int64) {
	if len(req.Buckets) == 1 {
		m.decideOne(r, req.Buckets[0].Key, ps[0], req.Cost, now)
		return
	}
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
		pos[i] = m.t.findLocked(refs[i], b.Key)
		st[i], found[i] = m.held(refs[i], pos[i])
	}
	allowed := decide(st[:n], found[:n], ps, req.Cost, now, write[:n])
	// Held buckets first: inserting can move entries.
	for pass := range 2 {
		for i, b := range req.Buckets {
			if write[i] && (pos[i] >= 0) == (pass == 0) {
				m.store(refs[i], pos[i], b.Key, st[i], ps[i], now)
			}
		}
	}
	for i := range n {
		m.t.tickLocked(refs[i], now)
	}
	m.t.unlockShards(locked, nl)
	reportTo(r, n, ps, st[:n], allowed, req.Cost, now)
	r.Source = SourceMemory
}

// decideOne is decideTo for a request of one bucket: decide's steps for
// n = 1, spelled out.
func (m *MemoryStore) decideOne(r *Result, key string, p params, cost, now int64) {
	rf := m.t.ref(key)
	mu := &m.t.shards[rf.shard].mu
	mu.Lock()
	pos := m.t.findLocked(rf, key)
	s, found := m.held(rf, pos)
	s, write := current(s, found, p, now)
	allowed := passes(s, p, cost)
	if allowed {
		s, write = charge(s, p, cost), true
	}
	if write {
		e := entry{state: s, fullAt: expiresAt(s, p)}
		if pos >= 0 {
			*m.t.atLocked(rf, pos) = e
		} else {
			m.t.insertLocked(rf, key, e, now)
		}
	}
	m.t.tickLocked(rf, now)
	mu.Unlock()
	reportOne(r, p, s, allowed, cost, now)
	r.Source = SourceMemory
}

// held returns the state of the bucket at pos (-1: none) and whether there
// is one.
func (m *MemoryStore) held(rf ref, pos int) (state, bool) {
	if pos < 0 {
		return state{}, false
	}
	return m.t.atLocked(rf, pos).state, true
}

// store writes a bucket's new state at pos, or inserts it when pos is -1.
func (m *MemoryStore) store(rf ref, pos int, key string, s state, p params, now int64) {
	e := entry{state: s, fullAt: expiresAt(s, p)}
	if pos >= 0 {
		*m.t.atLocked(rf, pos) = e
	} else {
		m.t.insertLocked(rf, key, e, now)
	}
}

// peek is decide without charging or storing anything: ok is true when
// some bucket cannot pay req's cost at now, r being that denial.
func (m *MemoryStore) peek(req Request, ps []params, now int64) (r Result, ok bool) {
	n := len(req.Buckets)
	var st [MaxBuckets]state
	refuse := false
	for i, b := range req.Buckets {
		rf := m.t.ref(b.Key)
		mu := &m.t.shards[rf.shard].mu
		mu.Lock()
		s, found := m.held(rf, m.t.findLocked(rf, b.Key))
		mu.Unlock()
		st[i], _ = current(s, found, ps[i], now)
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

// ProcessNow returns the current time, as time.Now does, with one read of
// the monotonic clock where time.Now reads the wall clock too (on Linux,
// two vDSO calls): it adds the monotonic time elapsed since an anchor, a
// pairing of both clocks by time.Now taken at most anchorEvery earlier.
//
// Between anchors the result follows the monotonic clock. NTP slews both
// clocks alike; a step of the wall clock, or a pause that the monotonic
// clock does not count, shows up at the next anchor, at most anchorEvery
// later, and may then move the result (backwards too, which the bucket
// arithmetic tolerates). The result carries no monotonic reading. Safe for
// concurrent use; it does not allocate.
func ProcessNow() time.Time { return time.Unix(0, processClock.nowNs()) }

// anchorEvery bounds how long ProcessNow follows the monotonic clock alone.
const anchorEvery = time.Second

var processClock = newMonoClock()

// monoClock is ProcessNow's state. base carries a monotonic reading; offset
// and next change together at each anchor, but a reader that sees one
// without the other still gets a valid anchor (the previous one or the
// next).
type monoClock struct {
	base   time.Time
	offset atomic.Int64 // wall ns since the Unix epoch minus monotonic ns since base, at the last anchor
	next   atomic.Int64 // monotonic ns since base at which to anchor again
}

func newMonoClock() *monoClock {
	c := &monoClock{base: time.Now()}
	c.anchor()
	return c
}

// nowNs is ProcessNow in ns since the Unix epoch.
func (c *monoClock) nowNs() int64 {
	d := int64(time.Since(c.base))
	if d >= c.next.Load() {
		return c.anchor()
	}
	return c.offset.Load() + d
}

// anchor pairs the two clocks afresh and returns the time it read, in ns
// since the Unix epoch.
func (c *monoClock) anchor() int64 {
	t := time.Now()
	d := int64(t.Sub(c.base))
	c.offset.Store(t.UnixNano() - d)
	c.next.Store(d + int64(anchorEvery))
	return t.UnixNano()
}
