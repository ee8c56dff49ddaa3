package limiter

import (
	"hash/maphash"
	"math"
	"sync"
)

// table is a bounded, sharded map from bucket key to bucket state, shared
// by the memory store and the deny cache. Each shard has its own mutex; a
// caller locks the shards it needs (lockShards) and then uses the *Locked
// methods.
//
// A key is hashed once (maphash): the low bits pick the shard, the high
// 32 its place in the shard's open-addressing index, whose entries carry
// them as a tag, so a probe passes other keys without reading their slots.
// A shard keeps its entries in a dense slice (slots), so a decision finds
// its bucket with one hash and a short probe and updates it in place, idle
// entries cost little memory, and eviction can sample at random.
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
	slots []slot   // the entries, densely
	index []uint64 // open addressing, linear probing: the hash's high 32 bits (tag), then 1 + position in slots; 0 = empty; len is a power of two
	ops   uint32   // operations, for lazy sweeps
	rnd   uint32   // xorshift state for sampling
	// The fields above fill one cache line; this pads a shard to two.
	// x86 prefetches lines in pairs, so a neighbour sharing the pair would
	// share its traffic between cores (measured: 2-5 % of a decision on
	// two cores, bench/).
	_ [64]byte
}

// tagMask keeps an index entry's tag (a hash's high 32 bits).
const tagMask = uint64(math.MaxUint32) << 32

type slot struct {
	key  string
	hash uint64
	entry
}

// entry is a stored bucket: its state and the instant (ms) it will be full,
// which orders evictions without knowing the bucket's limit.
type entry struct {
	state
	fullAt int64
}

// ref locates a key: its hash and shard.
type ref struct {
	hash  uint64
	shard int
}

const (
	sweepEvery  = 64 // operations per shard between lazy sweeps
	sweepSample = 8  // entries a lazy sweep looks at
	evictSample = 16 // entries looked at to make room
	minIndex    = 8  // smallest index of a shard
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
		t.shards[i].index = make([]uint64, minIndex)
		t.shards[i].rnd = uint32(i)*2654435761 | 1
	}
	return t
}

// ref hashes key.
func (t *table) ref(key string) ref {
	h := maphash.String(t.seed, key)
	return ref{hash: h, shard: int(h & t.mask)}
}

// home is the first index position for hash h in an index of len mask+1.
// It uses the high bits: the low ones chose the shard.
func home(h uint64, mask int) int { return int(h>>32) & mask }

// lockShards locks the distinct shards of refs (at most MaxBuckets), in
// ascending order so that concurrent multi-bucket calls cannot deadlock. It
// returns the sorted distinct shard indices and their count, for
// unlockShards.
func (t *table) lockShards(refs []ref) ([MaxBuckets]int, int) {
	var u [MaxBuckets]int
	n := 0
	for _, r := range refs {
		// insertion into the sorted, distinct prefix u[:n]
		x := r.shard
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

// findLocked returns the position of key in its shard, or -1.
func (t *table) findLocked(r ref, key string) int {
	sh := &t.shards[r.shard]
	mask := len(sh.index) - 1
	tag := r.hash & tagMask
	for i := home(r.hash, mask); ; i = (i + 1) & mask {
		v := sh.index[i]
		if v == 0 {
			return -1
		}
		if v&tagMask == tag {
			if p := int(uint32(v)) - 1; sh.slots[p].key == key {
				return p
			}
		}
	}
}

// atLocked returns the entry at position p of key's shard, to read or
// update in place. Positions stay valid until the next insert or removal in
// the shard.
func (t *table) atLocked(r ref, p int) *entry {
	return &t.shards[r.shard].slots[p].entry
}

// insertLocked adds key (not present) to its shard, making room when the
// shard is full. now is in ms.
func (t *table) insertLocked(r ref, key string, e entry, now int64) {
	sh := &t.shards[r.shard]
	if len(sh.slots) >= t.perShard {
		sh.makeRoom(now)
	}
	if 2*(len(sh.slots)+1) > len(sh.index) { // keep the load at most 1/2
		sh.grow()
	}
	// The key string is kept as given, as a Go map keeps its keys: callers
	// build keys of their own (a slice of a larger buffer would pin it).
	// A copy would cost a comparison of bytes on every lookup by the same
	// string, where equal pointers now settle it.
	sh.slots = append(sh.slots, slot{key: key, hash: r.hash, entry: e})
	sh.place(r.hash, len(sh.slots))
}

// place indexes the entry of hash h stored at slots[n-1] (n counts from
// 1: 0 marks an empty index position) at the first free position for h.
func (sh *shard) place(h uint64, n int) {
	mask := len(sh.index) - 1
	i := home(h, mask)
	for sh.index[i] != 0 {
		i = (i + 1) & mask
	}
	sh.index[i] = h&tagMask | uint64(n)
}

// grow doubles the index and re-places every entry.
func (sh *shard) grow() {
	sh.index = make([]uint64, 2*len(sh.index))
	for p := range sh.slots {
		sh.place(sh.slots[p].hash, p+1)
	}
}

// slotOf returns the index position holding position p.
func (sh *shard) slotOf(p int) int {
	mask := len(sh.index) - 1
	i := home(sh.slots[p].hash, mask)
	for uint32(sh.index[i]) != uint32(p+1) {
		i = (i + 1) & mask
	}
	return i
}

// remove deletes the entry at position p, moving the last entry into its
// place.
func (sh *shard) remove(p int) {
	mask := len(sh.index) - 1
	// Backward-shift deletion: pull later members of the probe run into the
	// hole so that every lookup still finds them.
	hole := sh.slotOf(p)
	for i := (hole + 1) & mask; sh.index[i] != 0; i = (i + 1) & mask {
		h := home(sh.index[i], mask)
		// Move it unless its home lies cyclically in (hole, i].
		if (i > hole && (h <= hole || h > i)) || (i < hole && h <= hole && h > i) {
			sh.index[hole] = sh.index[i]
			hole = i
		}
	}
	sh.index[hole] = 0
	last := len(sh.slots) - 1
	if p != last {
		i := sh.slotOf(last)
		sh.index[i] = sh.index[i]&tagMask | uint64(p+1)
		sh.slots[p] = sh.slots[last]
	}
	sh.slots[last] = slot{} // release the key string
	sh.slots = sh.slots[:last]
}

// tickLocked counts an operation on key's shard and runs a lazy sweep every
// sweepEvery operations.
func (t *table) tickLocked(r ref, now int64) {
	sh := &t.shards[r.shard]
	sh.ops++
	if sh.ops%sweepEvery == 0 {
		sh.scan(now, sweepSample, false)
	}
}

// makeRoom frees at least one slot: every full entry among those scanned,
// else the scanned entry that will be full soonest.
func (sh *shard) makeRoom(now int64) { sh.scan(now, evictSample, true) }

// scan looks at n entries — all of them when there are at most n, else n
// independent random ones (not a window: entries sit in insertion order,
// and callers who drained their buckets together sit side by side) — and
// removes those full by now. With evict, when none was full it removes the
// looked-at entry that will be full soonest.
func (sh *shard) scan(now int64, n int, evict bool) {
	freed := false
	victim, victimFull := -1, int64(0)
	look := func(p int) {
		e := &sh.slots[p]
		if e.fullAt <= now {
			if victim == len(sh.slots)-1 {
				victim = p // remove moves the last entry into p
			}
			sh.remove(p)
			freed = true
			return
		}
		if victim < 0 || e.fullAt < victimFull {
			victim, victimFull = p, e.fullAt
		}
	}
	if len(sh.slots) <= n {
		// Backwards: a removal moves the (already seen) last entry into p.
		for p := len(sh.slots) - 1; p >= 0; p-- {
			look(p)
		}
	} else {
		for i := 0; i < n && len(sh.slots) > 0; i++ {
			look(sh.random())
		}
	}
	if evict && !freed && victim >= 0 {
		sh.remove(victim)
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
