package limiter

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

// Benchmarks. The numbers and the commands that produce them are in
// docs/BENCHMARKS.md ("Memory path", "Upstash path of the limiter") and
// docs/BENCHMARKS-memory.md. The comparison with x/time/rate and
// sethvargo/go-limiter lives in the separate bench/ module, so that this
// module does not require them.

// benchKey is the i-th bucket key, shaped like the authorizer's.
func benchKey(i int) string {
	return fmt.Sprintf("anonymous:ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
}

// benchKeys returns benchKey(0..n-1).
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	return keys
}

// BenchmarkMemoryStore: 10k keys, a random key per operation, all
// goroutines at once, the store's own clock (ProcessNow, as the Limiter's).
func BenchmarkMemoryStore(b *testing.B) {
	keys := benchKeys(10_000)
	m, err := NewMemoryStore(MemoryConfig{})
	if err != nil {
		b.Fatal(err)
	}
	l := PerSecond(100)
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		x := seed.Add(0x9E3779B97F4A7C15) | 1
		var buckets [1]Bucket
		req := Request{Buckets: buckets[:], Cost: 1}
		var r Result
		for pb.Next() {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			buckets[0] = Bucket{Key: keys[x%uint64(len(keys))], Limit: l}
			if err := m.AllowNow(req, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkClock compares the clock reads a decision can make:
// time.Now (wall and monotonic clocks) and ProcessNow (monotonic only).
func BenchmarkClock(b *testing.B) {
	for _, c := range []struct {
		name string
		now  func() time.Time
	}{{"time.Now", time.Now}, {"ProcessNow", ProcessNow}} {
		b.Run(c.name, func(b *testing.B) {
			var sum int64
			for range b.N {
				sum += c.now().UnixMilli()
			}
			clockSink = sum
		})
	}
}

var clockSink int64

// BenchmarkMemoryStoreBytesPerKey reports the heap an idle bucket costs
// with 1M buckets, key string included. It measures once per process,
// whatever b.N; its ns/op means nothing.
func BenchmarkMemoryStoreBytesPerKey(b *testing.B) {
	bytesPerKeyOnce.Do(func() { bytesPerKeyMillion = bytesPerKey(b, 1_000_000) })
	for range b.N {
	}
	b.ReportMetric(bytesPerKeyMillion, "bytes/key")
}

var (
	bytesPerKeyOnce    sync.Once
	bytesPerKeyMillion float64
)

// BenchmarkUpstash compares one limiter decision (EVALSHA of the token
// bucket script, through the Upstash-compatible server to a real
// redis-server) with one raw single-command round trip (GET of a missing
// key) on the same client and server, and reports HTTP requests and Redis
// commands per decision.
func BenchmarkUpstash(b *testing.B) {
	_, env := newTestUpstash(b, UpstashConfig{})
	needRedis(b, env)
	store, c := newStoreOn(b, env, UpstashConfig{}) // one client (and its connections) for both
	ctx := context.Background()
	keys := benchKeys(1000)
	l := PerSecond(1_000_000) // every decision allowed: the 2-command path
	b.Run("decision", func(b *testing.B) {
		// Load the script, then count the steady state.
		if _, err := store.Allow(ctx, Request{Buckets: []Bucket{{Key: "warm", Limit: l}}, Cost: 1}, time.Now()); err != nil {
			b.Fatal(err)
		}
		env.Redis.Do(b, "CONFIG", "RESETSTAT")
		reqs0 := env.Server.Requests()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			req := Request{Buckets: []Bucket{{Key: keys[i%len(keys)], Limit: l}}, Cost: 1}
			if _, err := store.Allow(ctx, req, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(env.Server.Requests()-reqs0)/float64(b.N), "http/op")
		b.ReportMetric(float64(redisCalls(b, env.Redis))/float64(b.N), "redis-cmds/op")
		b.ReportMetric(redisUsec(b, env.Redis, "evalsha")/float64(b.N), "redis-µs/op")
	})
	b.Run("denial", func(b *testing.B) {
		one := PerDay(1)
		req := Request{Buckets: []Bucket{{Key: "denied", Limit: one}}, Cost: 1}
		if _, err := store.Allow(ctx, req, time.Now()); err != nil { // empties it
			b.Fatal(err)
		}
		env.Redis.Do(b, "CONFIG", "RESETSTAT")
		reqs0 := env.Server.Requests()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r, err := store.Allow(ctx, req, time.Now())
			if err != nil || r.Allowed {
				b.Fatal(r, err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(env.Server.Requests()-reqs0)/float64(b.N), "http/op")
		b.ReportMetric(float64(redisCalls(b, env.Redis))/float64(b.N), "redis-cmds/op")
		b.ReportMetric(redisUsec(b, env.Redis, "evalsha")/float64(b.N), "redis-µs/op")
	})
	b.Run("raw-get", func(b *testing.B) {
		env.Redis.Do(b, "CONFIG", "RESETSTAT")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := c.Do(ctx, nil, "GET", "bg:"+keys[i%len(keys)]+":missing"); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(redisUsec(b, env.Redis, "get")/float64(b.N), "redis-µs/op")
	})
}

// BenchmarkUpstashRatio alternates a decision and a raw GET round trip on
// the same client, so that both see the same machine load, and reports the
// mean of each and their ratio (the target: decision ≤ 1.10 × raw).
func BenchmarkUpstashRatio(b *testing.B) {
	_, env := newTestUpstash(b, UpstashConfig{})
	store, c := newStoreOn(b, env, UpstashConfig{})
	ctx := context.Background()
	keys := benchKeys(1000)
	l := PerSecond(1_000_000)
	if _, err := store.Allow(ctx, Request{Buckets: []Bucket{{Key: "warm", Limit: l}}, Cost: 1}, time.Now()); err != nil {
		b.Fatal(err)
	}
	var decision, raw time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := keys[i%len(keys)]
		t1 := time.Now()
		if _, err := store.Allow(ctx, Request{Buckets: []Bucket{{Key: k, Limit: l}}, Cost: 1}, t1); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := c.Do(ctx, nil, "GET", "bg:"+k+":missing"); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		decision += t2.Sub(t1)
		raw += t3.Sub(t2)
	}
	b.ReportMetric(float64(decision.Microseconds())/float64(b.N), "decision-µs")
	b.ReportMetric(float64(raw.Microseconds())/float64(b.N), "raw-µs")
	b.ReportMetric(float64(decision)/float64(raw), "ratio")
}

// redisUsec returns the microseconds Redis spent in command name (INFO
// commandstats usec), including the commands a script runs for EVALSHA.
func redisUsec(b *testing.B, rs *redistest.Server, name string) float64 {
	b.Helper()
	for _, line := range strings.Split(rs.Do(b, "INFO", "commandstats"), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+name+":")
		if !ok {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("commandstats line %q: %v", line, err)
				}
				return n
			}
		}
	}
	return 0
}

// redisCalls sums the calls in INFO commandstats, leaving out INFO and
// CONFIG.
func redisCalls(b *testing.B, rs *redistest.Server) int {
	b.Helper()
	total := 0
	for _, n := range commandStats(b, rs) {
		total += n
	}
	return total
}
