package limiter

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestTableMatchesAMap drives one shard through random inserts, removals
// (which move entries and shift probe runs back) and index growth, and
// checks after every step that it holds exactly what a Go map would.
func TestTableMatchesAMap(t *testing.T) {
	tb := newTable(1, 1<<20)
	model := map[string]int64{} // key → units
	rng := rand.New(rand.NewPCG(5, 6))
	sh := &tb.shards[0]
	check := func(step int) {
		t.Helper()
		if got := len(sh.slots); got != len(model) {
			t.Fatalf("step %d: %d slots, want %d", step, got, len(model))
		}
		used := 0
		for _, v := range sh.index {
			if v != 0 {
				used++
			}
		}
		if used != len(model) {
			t.Fatalf("step %d: %d index entries, want %d", step, used, len(model))
		}
		for k, units := range model {
			p := tb.findLocked(tb.ref(k), k)
			if p < 0 || tb.atLocked(tb.ref(k), p).units != units {
				t.Fatalf("step %d: key %s at %d, want units %d", step, k, p, units)
			}
		}
	}
	for step := 0; step < 3000; step++ {
		switch op := rng.IntN(10); {
		case op < 6 || len(model) == 0: // insert a new key or update one
			k := "k" + strconv.Itoa(rng.IntN(800))
			r := tb.ref(k)
			units := rng.Int64N(1000)
			if p := tb.findLocked(r, k); p >= 0 {
				tb.atLocked(r, p).units = units
			} else {
				tb.insertLocked(r, k, entry{state: state{units: units}, fullAt: 1 << 40}, 0)
			}
			model[k] = units
		default: // remove a random entry
			p := rng.IntN(len(sh.slots))
			delete(model, sh.slots[p].key)
			sh.remove(p)
		}
		if step%50 == 0 || step > 2900 {
			check(step)
		}
	}
	for k := range model {
		if tb.findLocked(tb.ref(k), k) < 0 {
			t.Fatalf("lost %s", k)
		}
	}
	if p := tb.findLocked(tb.ref("absent"), "absent"); p >= 0 {
		t.Fatalf("found an absent key at %d", p)
	}
}
