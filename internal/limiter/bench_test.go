package limiter

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

// Benchmarks. The numbers and the commands that produce them are in
// docs/BENCHMARKS.md ("Limiter"). The comparison with x/time/rate and
// sethvargo/go-limiter lives in the separate bench/ module, so that this
// module does not require them.

// benchKeys returns n bucket keys shaped like the authorizer's.
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("anonymous:ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
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
		for pb.Next() {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			buckets[0] = Bucket{Key: keys[x%uint64(len(keys))], Limit: l}
			if _, err := m.AllowNow(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMemoryStoreBytesPerKey reports the heap an idle bucket costs
// with 1M buckets, key string included. It measures once per process,
// whatever b.N; its ns/op means nothing.
func BenchmarkMemoryStoreBytesPerKey(b *testing.B) {
	bytesPerKeyOnce.Do(func() { bytesPerKeyMillion = bytesPerKey(b, benchKeys(1_000_000)) })
	for range b.N {
	}
	b.ReportMetric(bytesPerKeyMillion, "bytes/key")
}

var (
	bytesPerKeyOnce    sync.Once
	bytesPerKeyMillion float64
)

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
