package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// scriptUsec runs f between a CONFIG RESETSTAT and a read of INFO
// commandstats and returns Redis's time per EVALSHA (the whole script,
// its commands included) in µs, and the EVALSHA calls.
func scriptUsec(t testing.TB, up *upstashtest.Env, f func()) (float64, int64) {
	t.Helper()
	up.Redis.Do(t, "CONFIG", "RESETSTAT")
	f()
	calls := readCommandStats(t, up.Redis)["evalsha"]
	return usecPerCall(t, up.Redis)["evalsha"], calls
}

// globalContender is one configuration of the "global" figure.
type globalContender struct {
	name       string
	global     bool
	containers int
}

var globalContenders = []globalContender{
	{"tier bucket only", false, 1},
	{"tier + global bucket, 1 container", true, 1},
	{"tier + global bucket, 4 containers round robin (the global guess is wrong each time)", true, 4},
}

// globalEnv is the authorizer's configuration for the global figure:
// limits no run drains.
func globalEnv(global bool) map[string]string {
	env := map[string]string{"TIER_LIMITS": policyTier}
	if global {
		env["GLOBAL_LIMIT"] = policyGlobal
	}
	return env
}

// benchGlobal is the "global" figure: what a GLOBAL_LIMIT costs where it
// hurts — every decision touches one key. Upstash's allow-key-locking
// runs scripts on different keys in parallel but serializes those sharing
// a key, so the script's own time bounds the decisions per second one
// global key can take. Plain Redis runs every script one at a time, so
// only that bound and end-to-end throughput on one Redis can be measured.
func benchGlobal(t *testing.T) {
	up := upstashtest.StartRedis(t)
	rep := newReport(t, "Global limit: one hot key")

	// Part 1: the script's time in Redis per decision, interleaved blocks.
	const blocks, perBlock = 8, 500
	hs := make([][]*authorizer.Handler, len(globalContenders))
	for i, c := range globalContenders {
		for range c.containers {
			h := newAuthorizer(t, up, globalEnv(c.global))
			warm(t, h)
			hs[i] = append(hs[i], h)
		}
	}
	usecs := make([][]float64, len(globalContenders))
	next := 0
	for b := 0; b < blocks; b++ {
		for k := range globalContenders {
			i := (k + b) % len(globalContenders) // rotate the order
			us, calls := scriptUsec(t, up, func() {
				for j := 0; j < perBlock; j++ {
					h := hs[i][j%len(hs[i])]
					if d := decide(t, h, anonymousEvent(ipOf(90+i, next%60000))); !d.allowed {
						t.Fatalf("%s: decision denied", globalContenders[i].name)
					}
					next++
				}
			})
			if calls != perBlock {
				t.Fatalf("%s: %d EVALSHA for %d decisions", globalContenders[i].name, calls, perBlock)
			}
			usecs[i] = append(usecs[i], us)
		}
	}
	rep.line("Measured with `%s`; %s.", benchCommand("global"), rep.machine)
	rep.line("Redis's own time per decision script (INFO commandstats `usec_per_call` of EVALSHA, the commands it runs included),")
	rep.line("redis-server %s, authorizers built as the Lambda builds them, a new anonymous caller per decision (limits: tier `%s`,", redisVersion(t, up), policyTier)
	rep.line("`GLOBAL_LIMIT=%s`, nothing drains). %d blocks of %d decisions per configuration, order rotating, stats reset", policyGlobal, blocks, perBlock)
	rep.line("before each block; the median block. Bound: if every script touching the global key ran one after another (as")
	rep.line("Upstash's key locking makes them), the key could take at most 10^6 / µs decisions per second.")
	rep.line("")
	var rows [][]string
	base := median(append([]float64(nil), usecs[0]...))
	for i, c := range globalContenders {
		m := median(append([]float64(nil), usecs[i]...))
		bound := "– (no shared key)"
		if c.global {
			bound = fmt.Sprintf("%.0f", 1e6/m)
		}
		rows = append(rows, []string{c.name, fmt.Sprintf("%.1f µs", m), fmt.Sprintf("%.1f–%.1f µs", slices.Min(usecs[i]), slices.Max(usecs[i])),
			fmt.Sprintf("%.2f", m/base), bound})
	}
	rep.table([]string{"configuration", "script time per decision (median block)", "blocks, min–max", "vs tier only", "decisions / s one global key can take"}, rows)

	// Part 2: throughput on one redis-server with N concurrent callers.
	const warmup, duration = 500 * time.Millisecond, 3 * time.Second
	var trows [][]string
	for _, workers := range []int{1, 4, 16} {
		for _, global := range []bool{false, true} {
			containers := make([]*authorizer.Handler, 4)
			for i := range containers {
				containers[i] = newAuthorizer(t, up, globalEnv(global))
				warm(t, containers[i])
			}
			block := 120 + workers
			if global {
				block += 50
			}
			m := startMeter(t, up)
			up.Redis.Do(t, "CONFIG", "RESETSTAT")
			m.stats = readCommandStats(t, up.Redis)
			r := load{Workers: workers, Warmup: warmup, Duration: duration, MaxRequests: 1_000_000, Call: func(w, n int) (int, error) {
				resp, err := containers[w%4].Handle(context.Background(), anonymousEvent(ipOf(block, w)))
				if err != nil || len(resp.PolicyDocument.Statement) != 1 {
					return 0, fmt.Errorf("authorizer: %v", err)
				}
				if resp.PolicyDocument.Statement[0].Effect != "Allow" {
					return http.StatusTooManyRequests, nil
				}
				return http.StatusOK, nil
			}}.run()
			_, cmds := m.stop(t)
			us := usecPerCall(t, up.Redis)["evalsha"]
			if r.Errors > 0 || r.Statuses[http.StatusTooManyRequests] > 0 {
				t.Errorf("%d workers, global %v: %d errors, statuses %v", workers, global, r.Errors, r.Statuses)
			}
			name := "tier bucket only"
			if global {
				name = "tier + global bucket"
			}
			trows = append(trows, []string{fmt.Sprintf("%d", workers), name, fmt.Sprintf("%.0f", r.perSecond()),
				fmtDur(r.Latency.pct(0.5)), fmtDur(r.Latency.pct(0.99)),
				fmt.Sprintf("%.3f", float64(cmds.total()-cmds["get"])/float64(r.Total)), fmt.Sprintf("%.1f µs", us)})
		}
	}
	rep.line("Throughput on one redis-server: N goroutines, each one anonymous caller deciding as fast as it can, spread over 4")
	rep.line("authorizers (containers) built as the Lambda builds them, worker w on container w mod 4; %s warm-up, %s measured;", warmup, duration)
	rep.line("with and without the global bucket, one after the other. Everything (callers, upstashlocal, redis-server) shares the")
	rep.line("machine's CPUs, and plain Redis runs one script at a time whatever its keys.")
	rep.line("")
	rep.table([]string{"concurrent callers", "buckets", "decisions / s", "p50", "p99", "commands / decision (live-settings GETs left out)", "script time per decision"}, trows)
}

// redisVersion is the backing redis-server's version.
func redisVersion(t testing.TB, up *upstashtest.Env) string {
	t.Helper()
	for _, l := range strings.Split(up.Redis.Do(t, "INFO", "server"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}
