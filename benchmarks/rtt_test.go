package benchmarks

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/benchmarks/charts"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// rttSetting is one network condition of the "rtt" figure.
type rttSetting struct {
	name   string
	oneWay time.Duration // held each way by a delayProxy; < 0: no proxy at all
	warmup int           // rounds not measured (the first opens the connections)
	rounds int
}

// rttSettings are the conditions of the "rtt" figure, each bounded to a
// few seconds on 2 cores: a round (one raw round trip and one decision)
// takes about 2 × (2 × oneWay + 0.1 ms).
var rttSettings = []rttSetting{
	{name: "loopback, direct (no proxy)", oneWay: -1, warmup: 200, rounds: 2000},
	{name: "loopback through the delay proxy, nothing added", oneWay: 0, warmup: 200, rounds: 2000},
	{name: "+1 ms round trip (0.5 ms each way)", oneWay: 500 * time.Microsecond, warmup: 50, rounds: 1000},
	{name: "+5 ms round trip (2.5 ms each way)", oneWay: 2500 * time.Microsecond, warmup: 20, rounds: 400},
}

// rttResult is one setting's samples: raw[i] and dec[i] were taken in the
// same round.
type rttResult struct {
	setting  rttSetting
	raw, dec latencies
}

// rttProbes are the two contenders of the "rtt" figure against base (up's
// URL, or a proxy's in front of it): one raw single-command round trip
// (POST / ["GET", k], net/http, reply read but not decoded) and an allowed
// authorizer decision for a new anonymous caller ipOf(block, i), built as
// the Lambda builds it. Both hold their own keep-alive connection to base.
func rttProbes(t testing.TB, up *upstashtest.Env, base string, block int) []probe {
	t.Helper()
	via := *up
	via.URL = base
	h := newAuthorizer(t, &via, nil)
	return []probe{
		{"raw REST round trip: POST / [\"GET\", k]", rawHTTP(t, &via, `["GET","bench:probe"]`)},
		{"authorizer decision, allowed (new caller each time)", func(i int) {
			if d := decide(t, h, anonymousEvent(ipOf(block, i))); !d.allowed || d.source != "upstash" {
				t.Fatalf("decision %d: %+v, want allowed by upstash", i, d)
			}
		}},
	}
}

// measureRTT samples the two contenders of the "rtt" figure, interleaved,
// under each setting in turn (a proxy of its own per setting, new callers
// per setting).
func measureRTT(t testing.TB, up *upstashtest.Env, settings []rttSetting) []rttResult {
	t.Helper()
	up.Redis.Do(t, "SET", "bench:probe", "0:0")
	out := make([]rttResult, 0, len(settings))
	for k, s := range settings {
		base := up.URL
		if s.oneWay >= 0 {
			base = startDelayProxy(t, up.URL, s.oneWay).URL
		}
		samples := sampleInterleaved(rttProbes(t, up, base, 20+k), s.warmup, s.rounds)
		out = append(out, rttResult{setting: s, raw: samples[0], dec: samples[1]})
	}
	return out
}

// TestSmokeRTT runs the "rtt" figure's probes a few rounds directly and
// through a 1 ms proxy: every decision is allowed by Upstash, each setting
// yields one sample per round, and the proxy's round trips take at least
// the delay it adds (a lower bound: it cannot fail because the machine is
// slow). The idle-gap measurement runs a few times too: its decisions
// come from the deny cache.
func TestSmokeRTT(t *testing.T) {
	up := upstashtest.StartRedis(t)
	const oneWay = 500 * time.Microsecond
	got := measureRTT(t, up, []rttSetting{
		{name: "direct", oneWay: -1, warmup: 2, rounds: 5},
		{name: "1 ms", oneWay: oneWay, warmup: 2, rounds: 5},
	})
	cold := measureIdleGaps(t, up, idleGaps[:2], 3)
	for _, c := range cold {
		if len(c.slept) != 3 || len(c.first) != 3 || len(c.second) != 3 {
			t.Errorf("idle gap %s: %d, %d, %d samples, want 3 each", c.name, len(c.slept), len(c.first), len(c.second))
		}
	}
	for _, r := range got {
		if len(r.raw) != 5 || len(r.dec) != 5 {
			t.Errorf("%s: %d raw and %d decision samples, want 5 each", r.setting.name, len(r.raw), len(r.dec))
		}
	}
	for i, d := range append(append(latencies{}, got[1].raw...), got[1].dec...) {
		if d < 2*oneWay {
			t.Errorf("sample %d through the 1 ms proxy took %s, want at least %s", i, d, 2*oneWay)
		}
	}
}

// benchRTT is the "rtt" figure: the latency figure's headline comparison,
// an allowed authorizer decision against one raw single-command round
// trip to the same server, at round trips users meet (Lambda to Upstash in
// one region: 1–5 ms over HTTPS) rather than loopback's ~0.1 ms. The delay
// is added by a TCP proxy both contenders go through.
func benchRTT(t *testing.T) {
	up := upstashtest.StartRedis(t)
	rep := newReport(t, "Decision latency at a realistic round trip")
	results := measureRTT(t, up, rttSettings)

	rep.line("Measured with `%s`; %s.", benchCommand("rtt"), rep.machine)
	rep.line("One upstashlocal server over one redis-server on loopback. Both contenders — a raw REST round trip")
	rep.line("(POST / [\"GET\", k] with net/http, reply read, not decoded) and an allowed authorizer decision for a new")
	rep.line("anonymous caller (`authorizer.Handler.Handle` as the Lambda builds it: EVALSHA, SET … GET) — go through the same")
	rep.line("TCP proxy on 127.0.0.1, which holds every chunk of bytes for the one-way delay in each direction (the first byte")
	rep.line("of each request and of each reply is held that long), each over its own keep-alive connection. They run")
	rep.line("interleaved, one of each per round, after warm-up rounds; a new proxy and new callers per row. Δ = decision − raw.")
	rep.line("")
	var rows [][]string
	for _, r := range results {
		rp50, dp50 := r.raw.pct(0.5), r.dec.pct(0.5)
		rp99, dp99 := r.raw.pct(0.99), r.dec.pct(0.99)
		rows = append(rows, []string{r.setting.name, strconv.Itoa(r.setting.rounds),
			fmtDur(rp50), fmtDur(dp50), fmtDur(dp50 - rp50), "**" + ratio(dp50, rp50) + "**",
			fmtDur(rp99), fmtDur(dp99), ratio(dp99, rp99)})
	}
	rep.table([]string{"network", "rounds", "raw p50", "decision p50", "Δ p50", "p50 ratio", "raw p99", "decision p99", "p99 ratio"}, rows)
	var ratios []string
	for _, r := range results[len(results)-2:] {
		ratios = append(ratios, fmt.Sprintf("%s at %s", ratio(r.dec.pct(0.5), r.raw.pct(0.5)), r.setting.name))
	}
	rep.line("Target: decision ≤ 1.10 × raw round trip. Measured p50 ratio %s (loopback, direct: %s).",
		joinAnd(ratios), ratio(results[0].dec.pct(0.5), results[0].raw.pct(0.5)))
	rep.line("")

	// The peer on the same two networks, for the latency chart: after the
	// Go contenders (a process of its own), direct and through a +1 ms
	// proxy of its own.
	const peerCalls = 1000
	peerOn := func(base string, prefix string) latencies {
		via := *up
		via.URL = base
		return runPeer(t, &via, "--callers", strconv.Itoa(peerCalls), "--requests-per-caller", "1",
			"--refill", peerRefill, "--interval", peerInterval, "--burst", peerBurst, "--cache", "on",
			"--prefix", prefix, "--warmup", "100").latencies()
	}
	peerDirect := peerOn(up.URL, "peer-rtt-direct")
	peer1ms := peerOn(startDelayProxy(t, up.URL, 500*time.Microsecond).URL, "peer-rtt-1ms")
	var prows [][]string
	for _, p := range []struct {
		name string
		ours latencies
		peer latencies
	}{{results[0].setting.name, results[0].dec, peerDirect}, {results[2].setting.name, results[2].dec, peer1ms}} {
		prows = append(prows, []string{p.name, fmtDur(p.ours.pct(0.5)), fmtDur(p.peer.pct(0.5)), ratio(p.peer.pct(0.5), p.ours.pct(0.5)),
			fmtDur(p.ours.pct(0.99)), fmtDur(p.peer.pct(0.99)), ratio(p.peer.pct(0.99), p.ours.pct(0.99))})
	}
	rep.line("@upstash/ratelimit's `limit()` (node %s, a new identifier per call, ephemeral cache on, %d calls after 100 warm-up", nodeVersion(t), peerCalls)
	rep.line("calls, timed with `performance.now()`) on the same networks, right after the Go contenders: directly, and through a")
	rep.line("+1 ms proxy of its own. bucketgate's column is the decision column of the table above.")
	rep.line("")
	rep.table([]string{"network", "bucketgate p50", "peer p50", "peer / bucketgate", "bucketgate p99", "peer p99", "peer / bucketgate"}, prows)
	addChart(t, charts.Chart{
		File: "latency.svg", Kind: charts.KindCDF,
		Title: "Allowed-decision latency: bucketgate vs @upstash/ratelimit",
		Note: "bucketgate: the authorizer's decision (Handler.Handle, log and EMF lines included); peer: limit() in node, a new caller each call.\n" +
			"Same upstashlocal + redis-server; +1 ms: a proxy holding 0.5 ms each way. " + rep.machine,
		Panels: []charts.Panel{
			{Title: "loopback", Lines: []charts.Line{{Name: "bucketgate", Points: cdfPoints(results[0].dec)}, {Name: "@upstash/ratelimit", Points: cdfPoints(peerDirect)}}},
			{Title: "+1 ms round trip", Lines: []charts.Line{{Name: "bucketgate", Points: cdfPoints(results[2].dec)}, {Name: "@upstash/ratelimit", Points: cdfPoints(peer1ms)}}},
		},
	})

	// Why Δ is not a constant: work done right after an idle gap.
	cold := measureIdleGaps(t, up, idleGaps, 300)
	rep.line("The same work with no network at all, right after the process sat idle: an authorizer decision denied from")
	rep.line("its deny cache (policy, context, log line and EMF line; no Upstash call), timed once right after a `time.Sleep`")
	rep.line("of the gap and once more immediately after, %d times per gap. The gap column is the sleep actually taken (p50).", 300)
	rep.line("")
	var crows [][]string
	for _, c := range cold {
		crows = append(crows, []string{c.name, fmtDur(c.slept.pct(0.5)), fmtDur(c.first.pct(0.5)), fmtDur(c.first.pct(0.99)),
			fmtDur(c.second.pct(0.5)), fmtDur(c.second.pct(0.99))})
	}
	rep.table([]string{"idle gap", "slept p50", "first call p50", "first call p99", "next call p50", "next call p99"}, crows)
}

// idleGap is one row of the idle-gap table: samples of a network-free
// authorizer decision right after sleeping gap, and of the next one.
type idleGap struct {
	name          string
	gap           time.Duration
	slept         latencies
	first, second latencies
}

// idleGaps are the sleeps of the idle-gap table (0: none).
var idleGaps = []idleGap{
	{name: "none (back to back)", gap: 0},
	{name: "0.5 ms", gap: 500 * time.Microsecond},
	{name: "2.5 ms", gap: 2500 * time.Microsecond},
}

// measureIdleGaps times two denied decisions (answered from the deny
// cache: no network) right after each gap, n times per gap; a pair in
// which the deny cache re-checked Upstash (once a second) is left out. The anonymous
// tier is 1 per day with burst 5 (the default batch route costs 5), so the
// flooding caller stays denied.
func measureIdleGaps(t testing.TB, up *upstashtest.Env, gaps []idleGap, n int) []idleGap {
	t.Helper()
	h := newAuthorizer(t, up, map[string]string{
		"TIER_LIMITS": "anonymous=1/day:burst=5,authenticated=30/minute:burst=50,premium=120/minute:burst=200",
	})
	const ip = "10.30.0.1"
	for i := 0; decide(t, h, anonymousEvent(ip)) != (decision{source: "cache"}); i++ {
		if i == 10 { // 5 allowed, then denials from the cache
			t.Fatalf("idle gaps: no denial from the deny cache after %d decisions", i+1)
		}
	}
	out := make([]idleGap, 0, len(gaps))
	for _, g := range gaps {
		for tries := 0; len(g.first) < n; tries++ {
			if tries >= 2*n {
				t.Fatalf("idle gap %s: %d of %d tries had a decision from Upstash", g.name, tries-len(g.first), tries)
			}
			t0 := time.Now()
			if g.gap > 0 {
				time.Sleep(g.gap)
			}
			t1 := time.Now()
			d1 := decide(t, h, anonymousEvent(ip))
			t2 := time.Now()
			d2 := decide(t, h, anonymousEvent(ip))
			t3 := time.Now()
			if d1.allowed || d2.allowed {
				t.Fatalf("idle gap %s: decisions %+v, %+v, want both denied", g.name, d1, d2)
			}
			if d1.source != "cache" || d2.source != "cache" {
				// The deny cache re-checks Upstash once the live settings
				// are stale (once a second): not the network-free path.
				continue
			}
			g.slept = append(g.slept, t1.Sub(t0))
			g.first = append(g.first, t2.Sub(t1))
			g.second = append(g.second, t3.Sub(t2))
		}
		out = append(out, g)
	}
	return out
}

// joinAnd joins parts as "a, b and c".
func joinAnd(parts []string) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	out := parts[0]
	for _, p := range parts[1 : len(parts)-1] {
		out += ", " + p
	}
	return out + " and " + parts[len(parts)-1]
}
