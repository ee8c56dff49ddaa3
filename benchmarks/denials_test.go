package benchmarks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
	"github.com/google/go-cmp/cmp"
)

// newStore is a limiter.UpstashStore of its own (a container's: its own
// client and memory of what it saw) on up.
func newStore(t testing.TB, up *upstashtest.Env) *limiter.UpstashStore {
	t.Helper()
	c, err := upstash.New(upstash.Config{URL: up.URL, Token: up.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	s, err := limiter.NewUpstashStore(limiter.UpstashConfig{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// denialCase is a way for a container to meet a bucket it cannot pay from:
// prepare runs on containers a (the one measured) and b (another) before
// the measured decision of a.
type denialCase struct {
	name    string
	prepare func(a, b func(key string) bool, key string)
}

// denialCases: the bucket holds 2 tokens (burst 2, one per minute).
var denialCases = []denialCase{
	{"right guess: this container drained the bucket", func(a, b func(string) bool, key string) { a(key); a(key) }},
	{"wrong guess: another container drained it, this one never saw it", func(a, b func(string) bool, key string) { b(key); b(key) }},
	{"wrong guess: this container saw a token left, another took it", func(a, b func(string) bool, key string) { a(key); b(key) }},
}

// storeDenials makes n denials of denialCase dc on container a (a store:
// no deny cache in front of it) and meters them; before each, dc.prepare
// (not metered) sets the bucket up on a and b.
func storeDenials(t testing.TB, up *upstashtest.Env, dc denialCase, n int, tag string) costRun {
	t.Helper()
	a, b := newStore(t, up), newStore(t, up)
	l, err := limiter.ParseLimit("1/minute:burst=2")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	on := func(s *limiter.UpstashStore) func(string) bool {
		return func(key string) bool {
			r, err := s.Allow(ctx, limiter.Request{Buckets: []limiter.Bucket{{Key: key, Limit: l}}, Cost: 1}, time.Now())
			if err != nil {
				t.Fatalf("decision: %v", err)
			}
			return r.Allowed
		}
	}
	decideA, decideB := on(a), on(b)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("deny-%s:%d", tag, i)
		dc.prepare(decideA, decideB, keys[i])
	}
	run := costRun{}
	m := startMeter(t, up)
	for _, k := range keys {
		run.calls++
		if decideA(k) {
			run.allowed++
		}
	}
	run.requests, run.commands = m.stop(t)
	return run
}

// TestSmokeDenials checks the denial costs the figure reports: a denial
// reaching Upstash costs EVALSHA and MGET when the container's guess says
// it cannot pass, and EVALSHA, SET ... GET and the SET putting the value
// back when the guess was wrong.
func TestSmokeDenials(t *testing.T) {
	up := upstashtest.StartRedis(t)
	wants := []commandStats{
		{"evalsha": 4, "mget": 4},
		{"evalsha": 4, "set": 8},
		{"evalsha": 4, "set": 8},
	}
	for i, dc := range denialCases {
		t.Run(dc.name, func(t *testing.T) {
			got := storeDenials(t, up, dc, 4, fmt.Sprintf("smoke%d", i))
			if got.allowed != 0 || got.requests != 4 {
				t.Errorf("%d allowed, %d requests for 4 denials; want 0 and 4", got.allowed, got.requests)
			}
			if diff := cmp.Diff(wants[i], withoutSettings(got.commands)); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
		})
	}
}

// floodFor makes decisions for one anonymous caller (the default tier: 10
// allowed, then denied for 10 s per token) as fast as one goroutine can
// for d, on one authorizer built as the Lambda builds it, and meters them.
func floodFor(t testing.TB, up *upstashtest.Env, d time.Duration, ip string) costRun {
	t.Helper()
	h := newAuthorizer(t, up, nil)
	warm(t, h)
	run := costRun{bySource: map[string]int{}}
	m := startMeter(t, up)
	for time.Since(m.at) < d {
		dd := decide(t, h, anonymousEvent(ip))
		run.calls++
		if dd.allowed {
			run.allowed++
		}
		run.bySource[dd.source]++
	}
	run.requests, run.commands = m.stop(t)
	run.elapsed = time.Since(m.at)
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

// benchDenials is the "denials" figure: what a denial costs at the store
// (guess right or wrong), and what a flood from one caller costs with the
// deny cache, against the peer.
func benchDenials(t *testing.T) {
	up := upstashtest.StartRedis(t)
	rep := newReport(t, "Denials")
	const n = 500

	var rows [][]string
	for i, dc := range denialCases {
		r := storeDenials(t, up, dc, n, fmt.Sprintf("bench%d", i))
		rows = append(rows, []string{"bucketgate store (no deny cache): " + dc.name, fmt.Sprintf("%d / %d", r.calls-r.allowed, r.calls),
			fmt.Sprintf("%.3f", float64(r.requests)/float64(r.calls)), r.commands.String(),
			fmt.Sprintf("**%.3f**", float64(r.commands.total()-r.settingsReads())/float64(r.calls))})
	}
	peer := peerCost(t, up, "peer-denials", 1, n+10, false)
	rows = append(rows, []string{"@upstash/ratelimit, ephemeral cache off (first 10 calls allowed)", fmt.Sprintf("%d / %d", peer.calls-peer.allowed, peer.calls),
		fmt.Sprintf("%.3f", float64(peer.requests)/float64(peer.calls)), peer.commands.String(),
		fmt.Sprintf("%.3f per call; %.3f per denial", float64(peer.commands.total())/float64(peer.calls),
			float64(peer.commands["evalsha"]+peer.commands["hmget"]-2*int64(peer.allowed))/float64(peer.calls-peer.allowed))})

	rep.line("Measured with `%s`; %s.", benchCommand("denials"), rep.machine)
	rep.line("A denial that reaches Upstash, one bucket of burst 2 (1/minute) per key, %d keys per row: `limiter.UpstashStore.Allow`", n)
	rep.line("of the measured container, after the bucket was drained as the row says (not metered). The store has no deny cache;")
	rep.line("the Limiter in front of it answers repeated denials from memory (next table).")
	rep.line("")
	rep.table([]string{"denial", "denied", "HTTP requests / call", "Redis commands", "commands / denial"}, rows)

	// Floods from one caller through the authorizer (deny cache), and the
	// peer's flood with and without its ephemeral cache.
	const flood = 1000
	type frow struct {
		name string
		run  costRun
	}
	frows := []frow{
		{"bucketgate, 1,000 calls", ourRun(t, up, nil, 30, 1, flood)},
		{"@upstash/ratelimit, ephemeral cache on, 1,000 calls", peerCost(t, up, "peer-flood-cache", 1, flood, true)},
		{"@upstash/ratelimit, ephemeral cache off, 1,000 calls", peerCost(t, up, "peer-flood-nocache", 1, flood, false)},
		{"bucketgate, 3 s as fast as one goroutine goes", floodFor(t, up, 3*time.Second, "10.31.0.1")},
	}
	var ftable [][]string
	for _, f := range frows {
		calls := float64(f.run.calls)
		src := "–"
		if f.run.bySource != nil {
			src = fmt.Sprint(f.run.bySource)
		}
		ftable = append(ftable, []string{f.name, fmt.Sprintf("%d / %d", f.run.allowed, f.run.calls), fmt.Sprintf("%.2f s", f.run.elapsed.Seconds()),
			fmt.Sprintf("%d", f.run.requests), fmt.Sprintf("%.2g", float64(f.run.requests)/calls), f.run.commands.String(),
			fmt.Sprintf("%.2g", float64(f.run.commands.total())/calls), fmt.Sprintf("$%.3g", dollarsPerMillion(float64(f.run.commands.total())/calls)), src})
	}
	rep.line("A flood from one anonymous caller (default tier: burst 10, then a token per 6 s), one call after another. bucketgate:")
	rep.line("the authorizer as the Lambda builds it; its deny cache answers while the live settings are fresh, and re-checks")
	rep.line("Upstash once they are stale (SettingsTTL, 1 s): one request per second per container while denying. The peer:")
	rep.line("`tokenBucket(1, \"10 s\", 10)`.")
	rep.line("")
	rep.table([]string{"flood", "allowed", "duration", "HTTP requests", "requests / call", "Redis commands", "commands / call", "$ per 1M calls", "bucketgate decisions by source"}, ftable)
}
