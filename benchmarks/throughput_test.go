package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

func statusString(m map[int]int) string {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("%d×%d", c, m[c])
	}
	return strings.Join(parts, ", ")
}

// handleCall returns a load.Call deciding ev(n) on h: 200 for Allow, 429
// for Deny.
func handleCall(h *authorizer.Handler, ev func(n int) string) func(w, n int) (int, error) {
	return func(w, n int) (int, error) {
		resp, err := h.Handle(context.Background(), anonymousEvent(ev(n)))
		if err != nil || len(resp.PolicyDocument.Statement) != 1 {
			return 0, fmt.Errorf("authorizer: %v", err)
		}
		if resp.PolicyDocument.Statement[0].Effect == "Allow" {
			return http.StatusOK, nil
		}
		return http.StatusTooManyRequests, nil
	}
}

// benchThroughput is the "throughput" figure: the authorizer's decision
// path in this process (no Lambda runtime, no emulator), 8 goroutines at
// once against upstashlocal + redis-server. The end-to-end figure through
// cmd/local start-api is retired: the emulator is a development tool.
func benchThroughput(t *testing.T) {
	const workers = 8
	warmup, duration := 2*time.Second, 6*time.Second
	rep := newReport(t, "Throughput of the decision path")
	up := upstashtest.StartRedis(t)
	var rows [][]string
	for _, m := range []struct {
		name string
		h    *authorizer.Handler
		ip   func(n int) string
	}{
		{"allowed (a new anonymous caller each time: EVALSHA, SET … GET)", newAuthorizer(t, up, nil), func(n int) string { return ipOf(8, n) }},
		{"denied (one anonymous caller flooding: deny cache)", newAuthorizer(t, up, nil), func(int) string { return "10.9.0.1" }},
	} {
		before := sampleCPU(t, -1)
		r := load{Workers: workers, Warmup: warmup, Duration: duration, MaxRequests: 2_000_000, Call: handleCall(m.h, m.ip)}.run()
		cpu := sampleCPU(t, -1).since(before)
		if r.Errors > 0 {
			t.Errorf("decision path, %s: %d errors", m.name, r.Errors)
		}
		rows = append(rows, []string{m.name, strconv.Itoa(r.Requests), fmt.Sprintf("%.0f", r.perSecond()),
			fmtDur(r.Latency.pct(0.5)), fmtDur(r.Latency.pct(0.99)), statusString(r.Statuses), cpu.perRequest(r.Total), cpu.ceiling(r.Total)})
	}
	rep.line("Measured with `%s`; %s.", benchCommand("throughput"), rep.machine)
	rep.line("`authorizer.Handler.Handle` (built as the Lambda builds it) called by %d goroutines of this process against", workers)
	rep.line("upstashlocal + redis-server (the server runs in this process too, redis-server beside it), %s warm-up then %s", warmup, duration)
	rep.line("measured. Statuses: 200 = Allow, 429 = Deny. CPU per request from /proc/PID/stat of this process and redis-server;")
	rep.line("CPU ceiling: the decisions/s the machine's %d CPUs would sustain at that cost.", runtime.NumCPU())
	rep.line("")
	rep.table([]string{"decisions", "requests", "req/s", "p50", "p99", "outcomes", "CPU µs per request", "CPU ceiling, req/s"}, rows)
}
