package benchmarks

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/google/go-cmp/cmp"
)

// logsPricePerGB is CloudWatch Logs' price for ingesting standard-class
// logs, dollars per GB (https://aws.amazon.com/cloudwatch/pricing/, the
// first tier in us-east-1): what the EMF and log lines of a decision cost
// in Lambda, where stdout and stderr go to CloudWatch Logs.
const logsPricePerGB = 0.50

// lineLog records the lines written to it (one Write per line, as the
// authorizer's logger and EMF writer do). Safe for concurrent use.
type lineLog struct {
	mu    sync.Mutex
	lines [][]byte
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, bytes.Clone(p))
	l.mu.Unlock()
	return len(p), nil
}

// since returns the lines written after the first n.
func (l *lineLog) since(n int) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[n:])
}

func (l *lineLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// closedURL is an http URL on 127.0.0.1 where nothing listens.
func closedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr
}

// outcomeLines is one decision's EMF and log lines.
type outcomeLines struct {
	name       string
	emf, logs  [][]byte
	emfPolicy  bool // the EMF line has the [Policy] dimension set
	wantSource string
}

// emfOutcomes makes one decision of each outcome with authorizers built as
// the Lambda builds them, and returns the lines each wrote.
func emfOutcomes(t testing.TB, up *upstashtest.Env) []outcomeLines {
	t.Helper()
	emf, logs := &lineLog{}, &lineLog{}
	vars := func(extra map[string]string) map[string]string {
		v := map[string]string{"UPSTASH_REDIS_REST_URL": up.URL, "UPSTASH_REDIS_REST_TOKEN": up.Token, "LIMITER_TIMEOUT": "5s"}
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	a := buildAuthorizer(t, vars(nil), logs, emf)
	b := newAuthorizer(t, up, nil) // another container
	down := buildAuthorizer(t, vars(map[string]string{"UPSTASH_REDIS_REST_URL": closedURL(t), "LIMITER_TIMEOUT": "100ms"}), logs, emf)
	shadow := buildAuthorizer(t, vars(map[string]string{"LIMITER_SHADOW": "true"}), logs, emf)

	// Callers 10.70.0.1 and .11 drained by the other container: a's first
	// decision for one is a denial by Upstash, the next one by a's deny
	// cache.
	for range 10 {
		decide(t, b, anonymousEvent("10.70.0.1"))
		decide(t, b, anonymousEvent("10.70.0.11"))
	}
	premium := anonymousEvent("10.70.0.2")
	premium.Resource, premium.Path = "/premium/predict", "/premium/predict"
	premium.MethodArn = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/POST/premium/predict"
	badKey := anonymousEvent("10.70.0.3")
	badKey.Headers = map[string]string{authorizer.HeaderAPIKey: "bg_live_0000000000000000000000000000000000000000"}

	// Bring down's breaker to its steady state (open, its first lines
	// logged) before anything is kept: Prime's failure and the first
	// decisions' log when the breaker opens, once per container.
	for range 3 {
		_, _ = down.Handle(t.Context(), anonymousEvent("10.70.0.5"))
	}

	var out []outcomeLines
	run := func(name string, h *authorizer.Handler, ev events.APIGatewayCustomAuthorizerRequestTypeRequest, wantSource string) {
		ne, nl := emf.len(), logs.len()
		_, _ = h.Handle(t.Context(), ev) // unauthorized is an error, the rest answers
		o := outcomeLines{name: name, emf: emf.since(ne), logs: logs.since(nl), wantSource: wantSource}
		for _, l := range o.emf {
			o.emfPolicy = o.emfPolicy || bytes.Contains(l, []byte(`"Policy"`))
		}
		out = append(out, o)
	}
	for k := range 2 { // the second of each is the one kept: warm connections
		out = out[:0]
		drained := fmt.Sprintf("10.70.0.%d", 1+10*k)
		run("allowed (Upstash)", a, anonymousEvent(fmt.Sprintf("10.70.1.%d", k)), "upstash")
		run("denied by Upstash", a, anonymousEvent(drained), "upstash")
		run("denied from the deny cache", a, anonymousEvent(drained), "cache")
		run("allowed from memory (Upstash down: fallback)", down, anonymousEvent("10.70.0.4"), "memory")
		run("shadow-denied (LIMITER_SHADOW)", shadow, anonymousEvent("10.70.0.1"), "")
		run("forbidden (premium route, anonymous caller)", a, premium, "")
		run("unauthorized (unknown key)", a, badKey, "")
	}
	return out
}

// TestSmokeMetrics checks what the metrics figure counts: every decision,
// whatever its outcome, writes exactly one EMF line and one log line;
// denials carry the [Policy] dimension set and other outcomes do not.
func TestSmokeMetrics(t *testing.T) {
	up := upstashtest.StartRedis(t)
	type got struct {
		Name            string
		EMF, Logs       int
		Policy, HasSrcs bool
	}
	var gots, wants []got
	for _, o := range emfOutcomes(t, up) {
		hasSrc := o.wantSource == "" || (len(o.emf) == 1 && bytes.Contains(o.emf[0], []byte(`"Source":"`+o.wantSource+`"`)))
		gots = append(gots, got{o.name, len(o.emf), len(o.logs), o.emfPolicy, hasSrc})
		denial := o.name == "denied by Upstash" || o.name == "denied from the deny cache" || o.name == "shadow-denied (LIMITER_SHADOW)"
		wants = append(wants, got{o.name, 1, 1, denial, true})
	}
	if diff := cmp.Diff(wants, gots); diff != "" {
		t.Errorf("lines per decision (-want +got):\n%s", diff)
	}
}

// cpuTime is this process's user + system CPU time.
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// opCost is what n calls cost per call.
type opCost struct {
	wall, cpu     float64 // ns per call
	allocs, bytes float64 // per call
}

// measureOps runs f n times and returns the cost per call.
func measureOps(t testing.TB, n int, f func(i int)) opCost {
	t.Helper()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	c0, w0 := cpuTime(t), time.Now()
	for i := 0; i < n; i++ {
		f(i)
	}
	wall, cpu := time.Since(w0), cpuTime(t)-c0
	runtime.ReadMemStats(&m1)
	fn := float64(n)
	return opCost{wall: float64(wall) / fn, cpu: float64(cpu) / fn,
		allocs: float64(m1.Mallocs-m0.Mallocs) / fn, bytes: float64(m1.TotalAlloc-m0.TotalAlloc) / fn}
}

// median returns the median of xs (xs is reordered).
func median(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs) == 0 {
		return 0
	}
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// benchMetrics is the "metrics" figure: what the EMF line costs a
// decision — CPU time and allocations, with and without Config.Metrics,
// interleaved — and its size by outcome.
func benchMetrics(t *testing.T) {
	up := upstashtest.StartRedis(t)
	rep := newReport(t, "Metrics cost")
	base := map[string]string{"UPSTASH_REDIS_REST_URL": up.URL, "UPSTASH_REDIS_REST_TOKEN": up.Token, "LIMITER_TIMEOUT": "5s"}
	vars := func() map[string]string {
		v := map[string]string{}
		for k, x := range base {
			v[k] = x
		}
		return v
	}

	type pathCase struct {
		name   string
		n      int
		on     *authorizer.Handler
		off    *authorizer.Handler
		caller func(block, i int) string
	}
	// Memory only (no Upstash configured): an allowed decision without
	// network, so that the EMF line's cost is not lost in a round trip's
	// noise.
	memory := map[string]string{"TIER_LIMITS": "anonymous=1000000/second:burst=1000000"}
	on1, off1 := buildAuthorizer(t, vars(), io.Discard, io.Discard), buildAuthorizer(t, vars(), io.Discard, nil)
	on2, off2 := buildAuthorizer(t, memory, io.Discard, io.Discard), buildAuthorizer(t, memory, io.Discard, nil)
	on3, off3 := buildAuthorizer(t, vars(), io.Discard, io.Discard), buildAuthorizer(t, vars(), io.Discard, nil)
	cases := []pathCase{
		{"denied from the deny cache (no network)", 20000, on1, off1, func(block, i int) string { return ipOf(block, 0) }},
		{"allowed, memory-only limiter (no network; new caller each time)", 20000, on2, off2, func(block, i int) string { return ipOf(block, (i+1)%50000) }},
		{"allowed by Upstash (new caller each time)", 2000, on3, off3, func(block, i int) string { return ipOf(block, i+1) }},
	}
	const rounds = 7
	var rows [][]string
	for ci, c := range cases {
		// Blocks of their own per contender, so that both flood their own
		// caller (denied case) or meet new callers (allowed cases).
		blockOn, blockOff := 80+2*ci, 81+2*ci
		for range 12 { // drain (denied case) and warm up
			decide(t, c.on, anonymousEvent(c.caller(blockOn, -1)))
			decide(t, c.off, anonymousEvent(c.caller(blockOff, -1)))
		}
		var onCPU, offCPU, onWall, offWall, onAllocs, offAllocs, onBytes, offBytes []float64
		next := 0
		for r := range rounds {
			measure := func(h *authorizer.Handler, block int) opCost {
				start := next
				return measureOps(t, c.n, func(i int) { _, _ = h.Handle(t.Context(), anonymousEvent(c.caller(block, start+i))) })
			}
			var on, off opCost
			if r%2 == 0 {
				on, off = measure(c.on, blockOn), measure(c.off, blockOff)
			} else {
				off, on = measure(c.off, blockOff), measure(c.on, blockOn)
			}
			next += c.n
			onCPU, offCPU = append(onCPU, on.cpu), append(offCPU, off.cpu)
			onWall, offWall = append(onWall, on.wall), append(offWall, off.wall)
			onAllocs, offAllocs = append(onAllocs, on.allocs), append(offAllocs, off.allocs)
			onBytes, offBytes = append(onBytes, on.bytes), append(offBytes, off.bytes)
		}
		mOn, mOff := median(onCPU), median(offCPU)
		rows = append(rows, []string{c.name, fmt.Sprintf("%d × %d", rounds, c.n),
			fmt.Sprintf("%.2f µs", mOff/1e3), fmt.Sprintf("%.2f µs", mOn/1e3), fmt.Sprintf("**%.2f µs**", (mOn-mOff)/1e3),
			fmt.Sprintf("%.2f", mOn/mOff),
			fmt.Sprintf("%.2f / %.2f µs", median(offWall)/1e3, median(onWall)/1e3),
			fmt.Sprintf("%.0f → %.0f (+%.0f)", median(offAllocs), median(onAllocs), median(onAllocs)-median(offAllocs)),
			fmt.Sprintf("%.0f → %.0f (+%.0f)", median(offBytes), median(onBytes), median(onBytes)-median(offBytes))})
	}

	rep.line("Measured with `%s`; %s.", benchCommand("metrics"), rep.machine)
	rep.line("`authorizer.Handler.Handle` built as the Lambda builds it (JSON log line at info, formatted and discarded), once with")
	rep.line("Metrics set (EMF lines formatted and discarded) and once without (`authorizer.Build(..., nil)`): %d rounds, each", rounds)
	rep.line("timing both one after the other (order alternating); medians. CPU time from getrusage of this process (for the")
	rep.line("allowed case it includes the in-process upstashlocal server); allocations and bytes from runtime.MemStats.")
	rep.line("")
	rep.table([]string{"decision", "calls", "CPU per decision, no metrics", "with metrics", "Δ (the EMF line)", "ratio", "wall per decision, without / with", "allocations", "bytes allocated"}, rows)

	var orows [][]string
	for _, o := range emfOutcomes(t, up) {
		eb, lb := 0, 0
		for _, l := range o.emf {
			eb += len(l)
		}
		for _, l := range o.logs {
			lb += len(l)
		}
		meta := 0
		if len(o.emf) == 1 {
			meta = bytes.Index(o.emf[0], []byte(`,"Tier":`)) + 1 // `{"_aws":{...},`
		}
		orows = append(orows, []string{o.name, fmt.Sprintf("%d", eb), fmt.Sprintf("%d", meta), fmt.Sprintf("%d", lb),
			fmt.Sprintf("$%.3f", float64(eb)*1e6/1e9*logsPricePerGB), fmt.Sprintf("$%.3f", float64(eb+lb)*1e6/1e9*logsPricePerGB)})
	}
	rep.line("Bytes written per decision by outcome (the line and its newline), from authorizers built as the Lambda builds them;")
	rep.line("dollars: CloudWatch Logs ingestion at $%.2f per GB (standard class, first tier), 1 GB = 10^9 bytes.", logsPricePerGB)
	rep.line("")
	rep.table([]string{"outcome", "EMF line, bytes", "of which the `_aws` metadata", "log line, bytes", "EMF, $ per 1M decisions", "EMF + log line, $ per 1M decisions"}, orows)
}
