package benchmarks

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/google/go-cmp/cmp"
)

// costRun is one limiter's bill for one scenario.
type costRun struct {
	calls, allowed int
	bySource       map[string]int // bucketgate only: decisions by Source
	requests       uint64
	commands       commandStats
}

// ourRun makes callers × perCaller anonymous decisions with a fresh
// authorizer, round robin over the callers ipOf(block, 0..callers-1) (all
// allowed when perCaller <= 10, the anonymous burst), after a warm-up that
// loads the script and opens the connection. It meters the measured
// decisions only.
func ourRun(t testing.TB, up *upstashtest.Env, block, callers, perCaller int) costRun {
	t.Helper()
	h := newAuthorizer(t, up, nil)
	warm(t, h)
	run := costRun{bySource: map[string]int{}}
	m := startMeter(t, up)
	for r := 0; r < perCaller; r++ {
		for c := 0; c < callers; c++ {
			d := decide(t, h, anonymousEvent(ipOf(block, c)))
			run.calls++
			if d.allowed {
				run.allowed++
			}
			run.bySource[d.source]++
		}
	}
	run.requests, run.commands = m.stop(t)
	return run
}

// warm makes two decisions for a caller of its own: the first may need
// EVAL (NOSCRIPT) and a new connection; steady state is what is measured.
func warm(t testing.TB, h *authorizer.Handler) {
	t.Helper()
	for range 2 {
		decide(t, h, anonymousEvent("192.0.2.1"))
	}
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
	return costRun{calls: p.Calls, allowed: p.Allowed, requests: p.requests, commands: p.commands}
}

// TestSmokeCost checks, on a few decisions against a real redis-server, what
// the cost figure rests on: one Upstash request and two Redis commands
// (EVALSHA, SET ... GET) per allowed decision of one container; a flood from one caller costs
// one request per allowed decision (the burst), every denial answered from
// the deny cache.
func TestSmokeCost(t *testing.T) {
	up := upstashtest.StartRedis(t)
	t.Run("allowed", func(t *testing.T) {
		got := ourRun(t, up, 1, 3, 4)
		want := costRun{calls: 12, allowed: 12, bySource: map[string]int{"upstash": 12}, requests: 12,
			commands: commandStats{"evalsha": 12, "set": 12}}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(costRun{})); diff != "" {
			t.Errorf("cost (-want +got):\n%s", diff)
		}
	})
	t.Run("flood", func(t *testing.T) {
		// Burst 10: ten allowed. The tenth leaves the bucket empty, so the
		// limiter remembers it and every denial comes from the deny cache:
		// the flood costs ten Upstash requests, the burst.
		got := ourRun(t, up, 2, 1, 30)
		want := costRun{calls: 30, allowed: 10, bySource: map[string]int{"upstash": 10, "cache": 20}, requests: 10,
			commands: commandStats{"evalsha": 10, "set": 10}}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(costRun{})); diff != "" {
			t.Errorf("cost (-want +got):\n%s", diff)
		}
	})
}

// TestSmokePeer checks the peer driver's protocol and the peer's known
// bill: 4 commands per allowed call, 2 per denial, and with the ephemeral
// cache one denial from Redis, then none.
func TestSmokePeer(t *testing.T) {
	up := upstashtest.StartRedis(t)
	got := peerCost(t, up, "smoke", 1, 15, true)
	want := costRun{calls: 15, allowed: 10, requests: 11,
		commands: commandStats{"evalsha": 11, "hmget": 11, "hset": 10, "pexpire": 10}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(costRun{})); diff != "" {
		t.Errorf("peer cost (-want +got):\n%s", diff)
	}
}

// benchCost is figure 1: Upstash requests and Redis commands per decision,
// bucketgate and @upstash/ratelimit against the same server, in one run.
func benchCost(t *testing.T) {
	up := upstashtest.StartRedis(t)
	rep := newReport(t, "Upstash cost per decision")
	const callers, perCaller, flood = 100, 10, 1000

	type row struct {
		scenario, limiter string
		run               costRun
	}
	var rows []row
	rows = append(rows,
		row{"allowed: 100 callers × 10", "bucketgate", ourRun(t, up, 1, callers, perCaller)},
		row{"allowed: 100 callers × 10", "@upstash/ratelimit (ephemeral cache on)", peerCost(t, up, "peer-allowed", callers, perCaller, true)},
		row{"flood: 1 caller × 1,000", "bucketgate", ourRun(t, up, 2, 1, flood)},
		row{"flood: 1 caller × 1,000", "@upstash/ratelimit, ephemeral cache on", peerCost(t, up, "peer-flood-cache", 1, flood, true)},
		row{"flood: 1 caller × 1,000", "@upstash/ratelimit, ephemeral cache off", peerCost(t, up, "peer-flood-nocache", 1, flood, false)},
	)

	rep.line("Measured with `%s`; %s.", benchCommand("cost"), rep.machine)
	rep.line("Limits: bucketgate's anonymous tier (6/minute, burst 10); the peer's `Ratelimit.tokenBucket(1, \"10 s\", 10)`.")
	rep.line("Both against one upstashlocal server (the code cmd/upstash-local serves) over one redis-server 7;")
	rep.line("requests counted at the server, commands with `INFO commandstats` (HELLO handshakes of the server's pool excluded),")
	rep.line("after a warm-up that loads each script. Dollars: commands × $%.2f per 100K (Upstash pay-as-you-go).", upstashPricePer100K)
	rep.line("")
	var table [][]string
	for _, r := range rows {
		calls := float64(r.run.calls)
		cmds := float64(r.run.commands.total())
		table = append(table, []string{
			r.scenario, r.limiter,
			fmt.Sprintf("%d / %d", r.run.allowed, r.run.calls),
			strconv.FormatUint(r.run.requests, 10),
			fmt.Sprintf("%.3f", float64(r.run.requests)/calls),
			r.run.commands.String(),
			fmt.Sprintf("%.3f", cmds/calls),
			fmt.Sprintf("$%.3f", dollarsPerMillion(cmds/calls)),
		})
	}
	rep.table([]string{"scenario", "limiter", "allowed", "HTTP requests", "requests / call", "Redis commands", "commands / call", "$ per 1M API requests"}, table)
	for _, r := range rows {
		if r.run.bySource != nil {
			rep.line("- bucketgate, %s: decisions by source %v", r.scenario, r.run.bySource)
		}
	}
}

// benchCommand is the command line reproducing one figure.
func benchCommand(figure string) string {
	return fmt.Sprintf("BUCKETGATE_INTEGRATION=1 BUCKETGATE_BENCH=1 go test -count=1 -run '^TestBench$/^%s$' -v ./benchmarks/", figure)
}
