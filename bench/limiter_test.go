package bench

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	golimiter "github.com/sethvargo/go-limiter"
	"github.com/sethvargo/go-limiter/memorystore"
	"golang.org/x/time/rate"

	"github.com/bucketgate/bucketgate/internal/limiter"
)

// The workload: numKeys callers, a random one per operation, every
// goroutine at once; each caller may do 100 requests per second with a
// burst of 100. BenchmarkKeyedInterleaved spreads each contender's
// operations over its whole run, so about 90% are allowed; a back-to-back
// BenchmarkKeyed run asks faster than the callers refill, so after their
// bursts most operations are denials.
const (
	numKeys = 10_000
	perSec  = 100
)

func keys(n int) []string {
	k := make([]string, n)
	for i := range k {
		k[i] = fmt.Sprintf("anonymous:ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	return k
}

// keyedLimiter is one contender: allow one request for key.
type keyedLimiter interface {
	allow(key string) bool
}

// bucketgateMemory is bucketgate's MemoryStore at its own clock
// (limiter.ProcessNow, as the Limiter's): one clock read per decision.
type bucketgateMemory struct{ m *limiter.MemoryStore }

func newBucketgate(tb testing.TB) keyedLimiter {
	m, err := limiter.NewMemoryStore(limiter.MemoryConfig{MaxKeys: 2_000_000}) // room for BenchmarkBytesPerKey: no eviction
	if err != nil {
		tb.Fatal(err)
	}
	return bucketgateMemory{m}
}

var bgLimit = limiter.PerSecond(perSec)

func (b bucketgateMemory) allow(key string) bool {
	var buckets [1]limiter.Bucket
	buckets[0] = limiter.Bucket{Key: key, Limit: bgLimit}
	var r limiter.Result
	err := b.m.AllowNow(limiter.Request{Buckets: buckets[:], Cost: 1}, &r)
	return err == nil && r.Allowed
}

// xTimeRate is the usual hand-rolled keyed limiter: a mutex and a map of
// *rate.Limiter.
type xTimeRate struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newXTimeRate(testing.TB) keyedLimiter {
	return &xTimeRate{m: make(map[string]*rate.Limiter)}
}

func (x *xTimeRate) allow(key string) bool {
	x.mu.Lock()
	l, ok := x.m[key]
	if !ok {
		l = rate.NewLimiter(perSec, perSec)
		x.m[key] = l
	}
	x.mu.Unlock()
	return l.Allow()
}

// goLimiter is sethvargo/go-limiter's memorystore.
type goLimiter struct{ s golimiter.Store }

func newGoLimiter(tb testing.TB) keyedLimiter {
	s, err := memorystore.New(&memorystore.Config{Tokens: perSec, Interval: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close(context.Background()) })
	return goLimiter{s}
}

func (g goLimiter) allow(key string) bool {
	_, _, _, ok, err := g.s.Take(context.Background(), key)
	return err == nil && ok
}

var contenders = []struct {
	name string
	new  func(testing.TB) keyedLimiter
}{
	{"bucketgate-memory", newBucketgate},
	{"x-time-rate-map", newXTimeRate},
	{"go-limiter-memorystore", newGoLimiter},
}

// BenchmarkKeyed runs the workload against every contender in one run.
func BenchmarkKeyed(b *testing.B) {
	ks := keys(numKeys)
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			l := c.new(b)
			for _, k := range ks { // every caller known: the steady state
				l.allow(k)
			}
			var seed atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				x := seed.Add(0x9E3779B97F4A7C15) | 1
				for pb.Next() {
					x ^= x << 13
					x ^= x >> 7
					x ^= x << 17
					l.allow(ks[x%numKeys])
				}
			})
		})
	}
}

// BenchmarkBytesPerKey reports the heap each contender holds per idle
// caller, with 1M callers, key strings included: each key is built fresh
// for its first request and dropped by the caller, so a contender is
// charged for the copy it keeps. It measures once per contender and
// process, whatever b.N; its ns/op means nothing.
func BenchmarkBytesPerKey(b *testing.B) {
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			per, ok := measured.Load(c.name)
			if !ok {
				per = bytesPerKey(b, c.new, 1_000_000)
				measured.Store(c.name, per)
			}
			for range b.N {
			}
			b.ReportMetric(per.(float64), "bytes/key")
		})
	}
}

var measured sync.Map

func bytesPerKey(b *testing.B, newLimiter func(testing.TB) keyedLimiter, n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := newLimiter(b)
	for i := 0; i < n; i++ {
		l.allow(fmt.Sprintf("anonymous:ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(l)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// BenchmarkKeyedInterleaved runs the same workload as BenchmarkKeyed, but
// alternates the contenders in short rounds (GOMAXPROCS goroutines, a few
// milliseconds each, in rotating order) and reports each one's median
// ns/op over the rounds, and bucketgate's ratio to each peer. On a shared
// machine whose load drifts, this keeps the comparison fair where
// back-to-back sub-benchmarks are not. Its own ns/op means nothing.
func BenchmarkKeyedInterleaved(b *testing.B) {
	const rounds, perRound = 150, 20_000 // operations per goroutine per round
	ks := keys(numKeys)
	ls := make([]keyedLimiter, len(contenders))
	for i, c := range contenders {
		ls[i] = c.new(b)
		for _, k := range ks {
			ls[i].allow(k)
		}
	}
	procs := runtime.GOMAXPROCS(0)
	samples := make([][]float64, len(contenders))
	for r := 0; r < rounds; r++ {
		for j := range contenders {
			i := (r + j) % len(contenders)
			var wg sync.WaitGroup
			start := time.Now()
			for g := 0; g < procs; g++ {
				wg.Add(1)
				go func(x uint64) {
					defer wg.Done()
					for n := 0; n < perRound; n++ {
						x ^= x << 13
						x ^= x >> 7
						x ^= x << 17
						ls[i].allow(ks[x%numKeys])
					}
				}(uint64(r*procs+g+1) * 0x9E3779B97F4A7C15)
			}
			wg.Wait()
			samples[i] = append(samples[i], float64(time.Since(start).Nanoseconds())/float64(perRound*procs))
		}
	}
	for range b.N {
	}
	med := make([]float64, len(contenders))
	for i, c := range contenders {
		med[i] = median(samples[i])
		b.ReportMetric(med[i], c.name+"-ns/op")
	}
	for i := 1; i < len(contenders); i++ {
		b.ReportMetric(med[0]/med[i], "ratio-to-"+contenders[i].name)
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
