package limiter

import "time"

// denyCache answers repeated denials without calling the shared store.
//
// It remembers, per bucket key, the bucket's state as the shared store last
// reported it: every bucket of a request that could not pass again (denied,
// or allowed with the last tokens); after any decision, fresher states of
// the buckets it already remembers. A remembered state is an
// upper bound on the real bucket: from then on the real bucket gains exactly
// the refill the cache computes and loses whatever other containers take.
// So when the remembered states, refilled to now, cannot pay a request, the
// shared store would refuse it too — the cache never denies what the real
// bucket would allow — and a cheaper request they could pay goes to the
// store. The cache answers only when it remembers every bucket of the
// request, so its RetryAfter
// and Remaining are what the store would report if nothing else drew from
// the buckets.
//
// Bounded like the memory store; entries drain away once their bucket would
// be full. Safe for concurrent use.
type denyCache struct {
	t    *table
	skew int64
}

func newDenyCache(maxKeys int, skew time.Duration) *denyCache {
	return &denyCache{t: newTable(16, maxKeys), skew: skew.Milliseconds()}
}

// check returns a denial with Source SourceCache when the remembered
// states of req's buckets, refilled to now (ms), cannot pay req.Cost.
func (c *denyCache) check(req Request, now int64) (Result, bool) {
	n := len(req.Buckets)
	cost := req.Cost * unitsPerToken
	var (
		st [MaxBuckets]state
		ps [MaxBuckets]params
	)
	refuse := false
	for i, b := range req.Buckets {
		r := c.t.ref(b.Key)
		mu := &c.t.shards[r.shard].mu
		mu.Lock()
		var e entry
		p := c.t.findLocked(r, b.Key)
		if p >= 0 {
			e = *c.t.atLocked(r, p)
		}
		mu.Unlock()
		if p < 0 {
			return Result{}, false // the store knows more
		}
		ps[i] = b.Limit.params()
		st[i], _ = refill(e.state, true, ps[i], now, c.skew)
		if st[i].units < cost {
			refuse = true
		}
	}
	if !refuse {
		return Result{}, false
	}
	r, _ := report(req, ps[:n], st[:n], false, now)
	r.Source = SourceCache
	return r, true
}

// remember records the states the shared store reported for req's buckets
// at now (ms). All of them when the decision leaves the request unable to
// pass again — it was denied, or it was allowed and took the last tokens
// some bucket had for that cost (so the next such request is answered here,
// not by a second call) — and otherwise fresher states of the buckets
// already remembered, so that they stay exact.
func (c *denyCache) remember(req Request, st []state, allowed bool, now int64) {
	cost := req.Cost * unitsPerToken
	all := !allowed
	for i := range req.Buckets {
		if st[i].units < cost {
			all = true
		}
	}
	for i, b := range req.Buckets {
		p := b.Limit.params()
		r := c.t.ref(b.Key)
		e := entry{state: st[i], fullAt: now + untilFull(st[i], p, now)}
		mu := &c.t.shards[r.shard].mu
		mu.Lock()
		if pos := c.t.findLocked(r, b.Key); pos >= 0 {
			*c.t.atLocked(r, pos) = e
		} else if all {
			c.t.insertLocked(r, b.Key, e, now)
		}
		c.t.tickLocked(r, now)
		mu.Unlock()
	}
}

// len returns the number of cached buckets.
func (c *denyCache) len() int { return c.t.len() }
