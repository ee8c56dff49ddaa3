package limiter

import (
	"hash/maphash"
	"strings"
	"sync"
)

// table is a bounded, sharded map from bucket key to bucket state, shared
// by the memory store and the deny cache. Each shard has its own mutex; a
// caller locks the shards it needs (lockShards) and then uses the *Locked
// methods.
//
// A shard keeps its entries in a dense slice (slots) with a map from key to
// position (index): a decision finds its bucket with one map lookup and
// updates it in place, and eviction can sample uniformly at random.
//
// Bounded: a shard holds at most perShard entries. Making room evicts, in
// this order: entries that are full by now (they carry no information, so
// dropping them is exact), then, among a small random sample, the entry
// that becomes full soonest. Evicting a bucket that is not full resets it to
// full: that can over-admit by at most its deficit (capacity minus tokens
// held) — the price of the bound.
//
// Sweeping is lazy, inside calls: every sweepEvery operations a shard drops
// the full entries among a few random ones, so idle keys drain away without
// a background goroutine.
type table struct {
	seed     maphash.Seed
	mask     uint64
	perShard int
	shards   []shard
}

type shard struct {
	mu    sync.Mutex
	index map[string]int32 // key → position in slots
	slots []slot
	ops   uint32 // operations since creation, for lazy sweeps
	rnd   uint32 // xorshift state for sampling
	_     [16]byte // keep neighbouring shards' mutexes off one cache line
}

type slot struct {
	key string
	entry
}

// entry is a stored bucket: its state and the instant (ms) it will be full,
// which orders evictions without knowing the bucket's limit.
type entry struct {
	state
	fullAt int64
}

const (
	sweepEvery  = 64 // operations per shard between lazy sweeps
	sweepSample = 8  // entries a lazy sweep looks at
	evictSample = 16 // entries looked at to make room
)

// newTable makes a table of nShards (rounded up to a power of two) holding
// at most maxKeys entries in all (at least one per shard).
func newTable(nShards, maxKeys int) *table {
	n := 1
	for n < nShards {
		n <<= 1
	}
	t := &table{
		seed:     maphash.MakeSeed(),
		mask:     uint64(n - 1),
		perShard: max(1, maxKeys/n),
		shards:   make([]shard, n),
	}
	for i := range t.shards {
		t.shards[i].index = make(map[string]int32)
		t.shards[i].rnd = uint32(i)*2654435761 | 1
	}
	return t
}

// shardOf returns the shard index for key.
func (t *table) shardOf(key string) int {
	return int(maphash.String(t.seed, key) & t.mask)
}

// lockShards locks the distinct shards in idx (at most MaxBuckets), in
// ascending order so that concurrent multi-bucket calls cannot deadlock. It
// returns the sorted distinct indices and their count, for unlockShards.
func (t *table) lockShards(idx []int) ([MaxBuckets]int, int) {
	var u [MaxBuckets]int
	if len(idx) == 1 {
		u[0] = idx[0]
		t.shards[u[0]].mu.Lock()
		return u, 1
	}
	n := 0
	for _, x := range idx {
		// insertion into the sorted, distinct prefix u[:n]
		j := n
		dup := false
		for j > 0 && u[j-1] >= x {
			if u[j-1] == x {
				dup = true
				break
			}
			j--
		}
		if dup {
			continue
		}
		copy(u[j+1:n+1], u[j:n])
		u[j] = x
		n++
	}
	for i := 0; i < n; i++ {
		t.shards[u[i]].mu.Lock()
	}
	return u, n
}

func (t *table) unlockShards(u [MaxBuckets]int, n int) {
	for i := n - 1; i >= 0; i-- {
		t.shards[u[i]].mu.Unlock()
	}
}

// findLocked returns the position of key in shard s, or -1.
func (t *table) findLocked(s int, key string) int {
	if p, ok := t.shards[s].index[key]; ok {
		return int(p)
	}
	return -1
}

// atLocked returns the entry at position p of shard s, to read or update in
// place. Positions stay valid until the next insert or removal in the shard.
func (t *table) atLocked(s, p int) *entry {
	return &t.shards[s].slots[p].entry
}

// insertLocked adds key (not present) to shard s, making room when the
// shard is full. now is in ms.
func (t *table) insertLocked(s int, key string, e entry, now int64) {
	sh := &t.shards[s]
	if len(sh.slots) >= t.perShard {
		sh.makeRoom(now)
	}
	// The key is cloned so that the table never pins a caller's larger
	// buffer (e.g. a request body the key was sliced from).
	key = strings.Clone(key)
	sh.index[key] = int32(len(sh.slots))
	sh.slots = append(sh.slots, slot{key: key, entry: e})
}

// tickLocked counts an operation on shard s and runs a lazy sweep every
// sweepEvery operations.
func (t *table) tickLocked(s int, now int64) {
	sh := &t.shards[s]
	sh.ops++
	if sh.ops%sweepEvery == 0 {
		sh.scan(now, sweepSample, false)
	}
}

// makeRoom frees at least one slot: every full entry among those scanned,
// else the scanned entry that will be full soonest.
func (sh *shard) makeRoom(now int64) { sh.scan(now, evictSample, true) }

// scan looks at n entries — all of them when there are at most n, else n
// consecutive ones from a random position — and removes those full by now.
// With evict, when none was full it removes the scanned entry that will be
// full soonest.
func (sh *shard) scan(now int64, n int, evict bool) {
	freed := false
	victim, victimFull := "", int64(0)
	look := func(p int) bool { // reports whether p was removed
		e := &sh.slots[p]
		if e.fullAt <= now {
			sh.remove(p)
			freed = true
			return true
		}
		if victim == "" || e.fullAt < victimFull {
			victim, victimFull = e.key, e.fullAt
		}
		return false
	}
	if len(sh.slots) <= n {
		// Backwards: a removal moves the (already seen) last entry into p.
		for p := len(sh.slots) - 1; p >= 0; p-- {
			look(p)
		}
	} else {
		p := sh.random()
		for i := 0; i < n && len(sh.slots) > 0; i++ {
			if p >= len(sh.slots) {
				p = 0
			}
			if !look(p) {
				p++ // else p now holds the former last entry: look at it next
			}
		}
	}
	if evict && !freed && victim != "" {
		sh.remove(int(sh.index[victim]))
	}
}

// random returns a uniformly random position (len(slots) > 0).
func (sh *shard) random() int {
	x := sh.rnd
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	sh.rnd = x
	return int(uint64(x) * uint64(len(sh.slots)) >> 32)
}

// remove deletes the entry at position p, moving the last entry into its
// place.
func (sh *shard) remove(p int) {
	last := len(sh.slots) - 1
	delete(sh.index, sh.slots[p].key)
	if p != last {
		sh.slots[p] = sh.slots[last]
		sh.index[sh.slots[p].key] = int32(p)
	}
	sh.slots[last] = slot{} // release the key string
	sh.slots = sh.slots[:last]
}

// len returns the number of entries (for tests and metrics).
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.slots)
		sh.mu.Unlock()
	}
	return n
}
