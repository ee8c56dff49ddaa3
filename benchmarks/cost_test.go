package benchmarks

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/benchmarks/charts"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/google/go-cmp/cmp"
)

// step is one decision of a traffic plan: which caller, decided by which
// container (authorizer instance).
type step struct{ caller, container int }

// trafficMix is one traffic mix of the "cost" figure.
type trafficMix struct {
	name, detail string
	containers   int
	steps        []step
}

// Cost mixes' limit: a token refills in 10 ms, so a caller idle for longer
// finds its bucket full and its key expired, and a burst no mix drains.
// The peer's equivalent is tokenBucket(100, "1 s", 100000).
const (
	mixTier       = "anonymous=100/second:burst=100000"
	mixPeerRefill = "100"
	mixPeerPeriod = "1 s"
	mixPeerBurst  = "100000"
)

// costMixes are the traffic mixes of the "cost" figure: (a) occasional
// callers, each back only after its bucket expired; (b) one hot caller on
// one container; (c) the same caller spread round robin over 4 containers,
// the worst case for the containers' guesses; (d) 1,000 callers with
// Zipf-distributed popularity over 4 containers, each request to a random
// one (as Lambda routes them). n scales the number of decisions.
func costMixes(n int) []trafficMix {
	occasional := trafficMix{name: "(a) occasional callers", detail: fmt.Sprintf("%d callers × 3, round robin, 1 container", n), containers: 1}
	for r := 0; r < 3; r++ {
		for c := 0; c < n; c++ {
			occasional.steps = append(occasional.steps, step{caller: c})
		}
	}
	hot := trafficMix{name: "(b) one hot caller", detail: fmt.Sprintf("%d requests, 1 container", 2*n), containers: 1}
	hot4 := trafficMix{name: "(c) one hot caller, 4 containers", detail: fmt.Sprintf("%d requests, round robin", 2*n), containers: 4}
	for i := 0; i < 2*n; i++ {
		hot.steps = append(hot.steps, step{})
		hot4.steps = append(hot4.steps, step{container: i % 4})
	}
	zipf := trafficMix{name: "(d) Zipf mix, 4 containers", detail: fmt.Sprintf("%d requests, %d callers (s = 1.1), random container", 4*n, n), containers: 4}
	r := rand.New(rand.NewPCG(14, 1))
	z := rand.NewZipf(r, 1.1, 1, uint64(n-1))
	for i := 0; i < 4*n; i++ {
		zipf.steps = append(zipf.steps, step{caller: int(z.Uint64()), container: r.IntN(4)})
	}
	return []trafficMix{occasional, hot, hot4, zipf}
}

// costRun is one limiter's bill for one stretch of decisions.
type costRun struct {
	calls, allowed int
	bySource       map[string]int // bucketgate only: decisions by Source
	requests       uint64
	commands       commandStats
	elapsed        time.Duration
}

// settingsReads are the live-settings reads among the commands: the only
// GETs when no warm-up is configured (decide.lua).
func (r costRun) settingsReads() int64 { return r.commands["get"] }

// perAllowed is commands per allowed decision, the live-settings reads
// left out (they are per container-second, not per decision).
func (r costRun) perAllowed() float64 {
	if r.allowed == 0 {
		return 0
	}
	return float64(r.commands.total()-r.settingsReads()) / float64(r.allowed)
}

// ourMix makes the decisions of m with m.containers authorizers built as
// the Lambda builds them (env on top), anonymous callers ipOf(block, i),
// after a warm-up decision per container on a caller of its own. It
// meters the measured decisions only.
func ourMix(t testing.TB, up *upstashtest.Env, env map[string]string, m trafficMix, block int) costRun {
	t.Helper()
	hs := make([]*authorizer.Handler, m.containers)
	for i := range hs {
		hs[i] = newAuthorizer(t, up, env)
		for range 2 {
			decide(t, hs[i], anonymousEvent(fmt.Sprintf("192.0.2.%d", i+1)))
		}
	}
	run := costRun{bySource: map[string]int{}}
	mt := startMeter(t, up)
	for _, s := range m.steps {
		d := decide(t, hs[s.container], anonymousEvent(ipOf(block, s.caller)))
		run.calls++
		if d.allowed {
			run.allowed++
		}
		run.bySource[d.source]++
	}
	run.requests, run.commands = mt.stop(t)
	run.elapsed = time.Since(mt.at)
	return run
}

// ourRun is ourMix for callers × perCaller decisions, round robin over the
// callers, on one container with env.
func ourRun(t testing.TB, up *upstashtest.Env, env map[string]string, block, callers, perCaller int) costRun {
	t.Helper()
	m := trafficMix{containers: 1}
	for r := 0; r < perCaller; r++ {
		for c := 0; c < callers; c++ {
			m.steps = append(m.steps, step{caller: c})
		}
	}
	return ourMix(t, up, env, m, block)
}

// peerMix runs m on the peer: m.containers Ratelimit instances, with the
// mixes' limit and its ephemeral cache on.
func peerMix(t testing.TB, up *upstashtest.Env, m trafficMix, prefix string) costRun {
	t.Helper()
	p := runPeerPlan(t, up, m.steps, m.containers, "--refill", mixPeerRefill, "--interval", mixPeerPeriod, "--burst", mixPeerBurst,
		"--cache", "on", "--prefix", prefix)
	return costRun{calls: p.Calls, allowed: p.Allowed, requests: p.requests, commands: p.commands, elapsed: p.elapsed}
}

func peerCost(t testing.TB, up *upstashtest.Env, prefix string, callers, perCaller int, cache bool) costRun {
	t.Helper()
	onOff := "off"
	if cache {
		onOff = "on"
	}
	p := runPeer(t, up, "--callers", strconv.Itoa(callers), "--requests-per-caller", strconv.Itoa(perCaller),
		"--refill", peerRefill, "--interval", peerInterval, "--burst", peerBurst,
		"--cache", onOff, "--prefix", prefix)
	return costRun{calls: p.Calls, allowed: p.Allowed, requests: p.requests, commands: p.commands, elapsed: p.elapsed}
}

// withoutSettings is cs without the live-settings reads (GET), which a
// test cannot pin down: they come once per container-second.
func withoutSettings(cs commandStats) commandStats {
	out := commandStats{}
	for k, v := range cs {
		if k != "get" {
			out[k] = v
		}
	}
	return out
}

// TestSmokeCost checks, on a few decisions against a real redis-server, what
// the cost figures rest on: an allowed decision of a caller this container
// wrote last, or whose key expired, costs one request and two commands
// (EVALSHA, SET ... GET); the same caller decided by containers in turn
// costs one more (the repair of a wrong guess); a flood from one caller
// costs one request per allowed decision (the burst), every denial
// answered from the deny cache. Live-settings reads (GET, one per
// container-second) are left out of the exact counts and bounded instead.
func TestSmokeCost(t *testing.T) {
	up := upstashtest.StartRedis(t)
	mixes := costMixes(8)
	const defaults = "" // the anonymous tier's default: 6/minute, burst 10
	// The figure's tier refills a token in 10 ms, so a key written after
	// one decision expires 10 ms later; on a loaded machine two decisions
	// can be further apart than that, and the second then rightly guesses
	// the key absent and saves the repair SET this test counts. Here a
	// token takes a minute: no key expires during the test.
	const tier = "anonymous=1/minute:burst=100000"
	tests := []struct {
		name string
		run  func() costRun
		want costRun
	}{
		{
			name: "new callers, one container",
			run:  func() costRun { return ourRun(t, up, map[string]string{"TIER_LIMITS": tier}, 1, 6, 1) },
			want: costRun{calls: 6, allowed: 6, bySource: map[string]int{"upstash": 6}, requests: 6,
				commands: commandStats{"evalsha": 6, "set": 6}},
		},
		{
			name: "one hot caller, one container",
			run:  func() costRun { return ourMix(t, up, map[string]string{"TIER_LIMITS": tier}, mixes[1], 2) },
			want: costRun{calls: 16, allowed: 16, bySource: map[string]int{"upstash": 16}, requests: 16,
				commands: commandStats{"evalsha": 16, "set": 16}},
		},
		{
			// The first decision finds the key absent, as guessed; every
			// later one finds another container's write.
			name: "one hot caller, 4 containers round robin",
			run:  func() costRun { return ourMix(t, up, map[string]string{"TIER_LIMITS": tier}, mixes[2], 3) },
			want: costRun{calls: 16, allowed: 16, bySource: map[string]int{"upstash": 16}, requests: 16,
				commands: commandStats{"evalsha": 16, "set": 16 + 15}},
		},
		{
			// Burst 10: ten allowed. The tenth leaves the bucket empty, so
			// the limiter remembers it and every denial comes from the deny
			// cache: the flood costs ten Upstash requests, the burst.
			name: "flood from one caller",
			run:  func() costRun { return ourRun(t, up, map[string]string{"TIER_LIMITS": defaults}, 4, 1, 30) },
			want: costRun{calls: 30, allowed: 10, bySource: map[string]int{"upstash": 10, "cache": 20}, requests: 10,
				commands: commandStats{"evalsha": 10, "set": 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.run()
			reads, elapsed := got.settingsReads(), got.elapsed
			got.commands, got.elapsed = withoutSettings(got.commands), 0
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(costRun{})); diff != "" {
				t.Errorf("cost (-want +got):\n%s", diff)
			}
			// Each of at most 4 containers reads the settings at most once
			// per second of the run, and once more at its start.
			if limit := 4 * (int64(elapsed/time.Second) + 2); reads > limit {
				t.Errorf("%d live-settings reads, want at most %d", reads, limit)
			}
		})
	}
}

// TestSmokePeer checks the peer driver's protocol and the peer's known
// bill: 4 commands per allowed call, 2 per denial, and with the ephemeral
// cache one denial from Redis, then none; and its plans: containers are
// separate instances with caches of their own.
func TestSmokePeer(t *testing.T) {
	up := upstashtest.StartRedis(t)
	tests := []struct {
		name string
		run  func() costRun
		want costRun
	}{
		{
			name: "flood from one caller, one instance",
			run:  func() costRun { return peerCost(t, up, "smoke", 1, 15, true) },
			want: costRun{calls: 15, allowed: 10, requests: 11,
				commands: commandStats{"evalsha": 11, "hmget": 11, "hset": 10, "pexpire": 10}},
		},
		{
			// Caller 0 floods two containers in turn: each container's
			// cache learns of the denial on its own.
			name: "flood from one caller over two containers",
			run: func() costRun {
				var steps []step
				for i := 0; i < 16; i++ {
					steps = append(steps, step{container: i % 2})
				}
				p := runPeerPlan(t, up, steps, 2, "--refill", peerRefill, "--interval", peerInterval, "--burst", peerBurst,
					"--cache", "on", "--prefix", "smoke-plan")
				return costRun{calls: p.Calls, allowed: p.Allowed, requests: p.requests, commands: p.commands}
			},
			want: costRun{calls: 16, allowed: 10, requests: 12,
				commands: commandStats{"evalsha": 12, "hmget": 12, "hset": 10, "pexpire": 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.run()
			got.elapsed = 0
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(costRun{})); diff != "" {
				t.Errorf("peer cost (-want +got):\n%s", diff)
			}
		})
	}
}

// benchCost is the "cost" figure: Upstash requests and Redis commands per
// decision for the traffic mixes, bucketgate and @upstash/ratelimit
// against the same server, in one run, interleaved mix by mix.
func benchCost(t *testing.T) {
	up := upstashtest.StartRedis(t)
	rep := newReport(t, "Upstash cost per decision, by traffic mix")
	env := map[string]string{"TIER_LIMITS": mixTier}

	type row struct {
		mix       trafficMix
		ours, pr  costRun
		oursPerA  float64
		peerPerA  float64
		reqPerDec float64
	}
	var rows []row
	for i, m := range costMixes(1000) {
		r := row{mix: m}
		r.ours = ourMix(t, up, env, m, 40+i)
		r.pr = peerMix(t, up, m, fmt.Sprintf("peer-mix-%d", i))
		r.oursPerA, r.peerPerA = r.ours.perAllowed(), float64(r.pr.commands.total())/float64(max(r.pr.allowed, 1))
		rows = append(rows, r)
	}

	rep.line("Measured with `%s`; %s.", benchCommand("cost"), rep.machine)
	rep.line("Limit: bucketgate's anonymous tier set to `%s` (a token refills in 10 ms: an occasional caller's", mixTier)
	rep.line("key has expired by its next request; no mix drains the burst); the peer's `Ratelimit.tokenBucket(100, \"1 s\", 100000)`,")
	rep.line("ephemeral cache on. Containers: separate authorizers built as the Lambda builds them (each its own client,")
	rep.line("guesses and deny cache), and separate Ratelimit instances (each its own @upstash/redis client and cache) for the peer.")
	rep.line("Both against one upstashlocal server over one redis-server; requests counted at the server, commands with `INFO")
	rep.line("commandstats` (HELLO of the server's pool excluded), after a warm-up per container. Each mix runs ours, then the")
	rep.line("peer, on the same plan of (caller, container) pairs. Live-settings reads (GET) are counted apart: they come once")
	rep.line("per second per warm container, not per decision. Dollars: commands × $%.2f per 100K.", upstashPricePer100K)
	rep.line("")
	var table [][]string
	for _, r := range rows {
		table = append(table,
			[]string{r.mix.name + " — " + r.mix.detail, "bucketgate", fmt.Sprintf("%d / %d", r.ours.allowed, r.ours.calls),
				fmt.Sprintf("%.3f", float64(r.ours.requests)/float64(r.ours.calls)), r.ours.commands.String(),
				fmt.Sprintf("**%.3f**", r.oursPerA),
				fmt.Sprintf("%d in %.2f s × %d containers", r.ours.settingsReads(), r.ours.elapsed.Seconds(), r.mix.containers),
				fmt.Sprintf("$%.2f", dollarsPerMillion(r.oursPerA))},
			[]string{"", "@upstash/ratelimit", fmt.Sprintf("%d / %d", r.pr.allowed, r.pr.calls),
				fmt.Sprintf("%.3f", float64(r.pr.requests)/float64(r.pr.calls)), r.pr.commands.String(),
				fmt.Sprintf("%.3f", r.peerPerA), "–", fmt.Sprintf("$%.2f", dollarsPerMillion(r.peerPerA))})
	}
	rep.table([]string{"mix", "limiter", "allowed", "HTTP requests / decision", "Redis commands", "commands / allowed decision", "live-settings GETs", "$ per 1M allowed requests"}, table)
	for _, r := range rows {
		rep.line("- %s: bucketgate's decisions by source %v; ours/peer commands %.2f", r.mix.name, r.ours.bySource, r.oursPerA/r.peerPerA)
	}

	c := charts.Chart{
		File: "cost.svg", Kind: charts.KindBars, Format: "$%.2f",
		Title:  "Upstash bill per 1M allowed requests, by traffic mix",
		Note:   "Redis commands × $0.20 per 100K (live-settings reads, 1 per second per container, left out); bucketgate vs\n@upstash/ratelimit 2.2.0, same plans, same upstashlocal + redis-server, one run. " + rep.machine,
		Axis:   "$ per 1M allowed requests",
		Series: []string{"bucketgate", "@upstash/ratelimit"},
	}
	for _, r := range rows {
		c.Groups = append(c.Groups, charts.Group{Label: r.mix.name, Sub: r.mix.detail,
			Values: []float64{dollarsPerMillion(r.oursPerA), dollarsPerMillion(r.peerPerA)}})
	}
	addChart(t, c)
}

// benchCommand is the command line reproducing one figure.
func benchCommand(figure string) string {
	return fmt.Sprintf("BUCKETGATE_INTEGRATION=1 BUCKETGATE_BENCH=1 go test -count=1 -run '^TestBench$/^%s$' -v ./benchmarks/", figure)
}
