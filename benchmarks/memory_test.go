package benchmarks

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/limiter"
)

// memoryRun is the memory store at its bound: n keys in a store of
// MaxKeys n, then n more.
type memoryRun struct {
	maxKeys int
	// fill: n distinct callers, one request each (hot callers drained
	// first).
	fillLen     int
	fillHeap    int64 // the store's live heap after GC, bytes
	bytesPerKey float64
	fillPerOp   time.Duration
	// churn at the same instant: n more new callers; the store is full and
	// no bucket is full again, so every insert evicts a sampled bucket.
	churnLen   int
	churnHeap  int64
	churnPerOp time.Duration
	hotDenied  int // drained callers still denied after the churn
	// later: 60 s on, n more new callers; the one-request buckets are full
	// again (dropped exactly), the drained ones are not.
	laterLen    int
	hotRetained int // drained callers whose state survived (not reset to full)
	hot         int
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// measureMemory runs the scenario with n keys and hot drained callers.
func measureMemory(t testing.TB, n, hot int) memoryRun {
	t.Helper()
	anon, err := limiter.ParseLimit("6/minute:burst=10")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	allow := func(m *limiter.MemoryStore, key string, cost int64, now time.Time) limiter.Result {
		r, err := m.Allow(limiter.Request{Buckets: []limiter.Bucket{{Key: key, Limit: anon}}, Cost: cost}, now)
		if err != nil {
			t.Fatalf("allow: %v", err)
		}
		return r
	}
	// Keys are built before measuring so that only the store's heap counts.
	keys := func(prefix string) []string {
		ks := make([]string, n)
		for i := range ks {
			ks[i] = prefix + strconv.Itoa(i)
		}
		return ks
	}
	fill, churn, later := keys("ip:10.1."), keys("ip:10.2."), keys("ip:10.3.")
	hotKeys := make([]string, hot)
	for i := range hotKeys {
		hotKeys[i] = "ip:10.0." + strconv.Itoa(i)
	}

	res := memoryRun{maxKeys: n, hot: hot}
	before := liveHeap()
	m, err := limiter.NewMemoryStore(limiter.MemoryConfig{MaxKeys: n})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range hotKeys {
		if r := allow(m, k, 10, t0); !r.Allowed || r.Remaining != 0 {
			t.Fatalf("draining %s: %+v", k, r)
		}
	}
	start := time.Now()
	for _, k := range fill[:n-hot] {
		allow(m, k, 1, t0)
	}
	res.fillPerOp = time.Since(start) / time.Duration(n-hot)
	res.fillLen = m.Len()
	res.fillHeap = int64(liveHeap()) - int64(before)
	res.bytesPerKey = float64(res.fillHeap) / float64(res.fillLen)

	start = time.Now()
	for _, k := range churn {
		allow(m, k, 1, t0)
	}
	res.churnPerOp = time.Since(start) / time.Duration(n)
	res.churnLen = m.Len()
	res.churnHeap = int64(liveHeap()) - int64(before)
	for _, k := range hotKeys {
		if !allow(m, k, 1, t0).Allowed {
			res.hotDenied++
		}
	}

	// 60 s later a one-request bucket (9 of 10 tokens, 1 token per 10 s) is
	// full again; a drained one holds 6 tokens. Taking one leaves 5 when
	// its state was kept, 9 when it was evicted (reset to full).
	t1 := t0.Add(60 * time.Second)
	for _, k := range later {
		allow(m, k, 1, t1)
	}
	res.laterLen = m.Len()
	for _, k := range hotKeys {
		if r := allow(m, k, 1, t1); r.Allowed && r.Remaining == 5 {
			res.hotRetained++
		}
	}
	runtime.KeepAlive(fill)
	return res
}

// TestSmokeMemory runs the 1M-keys scenario on 20,000 keys: the store stays
// within MaxKeys, drained callers survive churn (sampled eviction takes
// buckets closest to full), and buckets that are full again go first.
func TestSmokeMemory(t *testing.T) {
	got := measureMemory(t, 20_000, 100)
	if got.fillLen > got.maxKeys || got.churnLen > got.maxKeys || got.laterLen > got.maxKeys {
		t.Errorf("store exceeded MaxKeys %d: %d after fill, %d after churn, %d later", got.maxKeys, got.fillLen, got.churnLen, got.laterLen)
	}
	if got.hotDenied != got.hot || got.hotRetained != got.hot {
		t.Errorf("drained callers: %d of %d still denied after churn, %d kept their state later; want all", got.hotDenied, got.hot, got.hotRetained)
	}
}

// benchMemory is the 1M-keys part of figure 3.
func benchMemory(t *testing.T) {
	const n, hot = 1_000_000, 1_000
	rep := newReport(t, "Memory store at 1M keys")
	got := measureMemory(t, n, hot)
	rep.line("Measured with `%s`; %s.", benchCommand("memory"), rep.machine)
	rep.line("`limiter.MemoryStore` with MaxKeys %d (64 shards), anonymous tier (6/minute, burst 10), one goroutine, injected clock.", n)
	rep.line("Keys are `ip:10.x.N` strings (%d–%d bytes). Store heap: live heap after `runtime.GC()` minus the heap before the store was made.", len("ip:10.1.0"), len("ip:10.1.999999"))
	rep.line("")
	mb := func(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/1e6) }
	rep.table([]string{"step", "keys held", "store heap", "per Allow", "check"}, [][]string{
		{fmt.Sprintf("fill: %d callers drained (cost 10), then %d callers × 1 request", hot, n-hot), strconv.Itoa(got.fillLen), mb(got.fillHeap),
			fmtDur(got.fillPerOp), fmt.Sprintf("%.0f bytes per idle key, key string included", got.bytesPerKey)},
		{fmt.Sprintf("churn, same instant: %d new callers (store full, none full again: sampled eviction)", n), strconv.Itoa(got.churnLen), mb(got.churnHeap),
			fmtDur(got.churnPerOp), fmt.Sprintf("drained callers still denied: %d / %d", got.hotDenied, hot)},
		{fmt.Sprintf("60 s later: %d new callers (one-request buckets full again: dropped exactly)", n), strconv.Itoa(got.laterLen), "",
			"", fmt.Sprintf("drained callers kept their state: %d / %d", got.hotRetained, hot)},
	})
	rep.line("The bound is per shard (MaxKeys/64 each), so the fullest shards start evicting a little before the store holds")
	rep.line("MaxKeys: the fill keeps %d of %d.", got.fillLen, n)
}
