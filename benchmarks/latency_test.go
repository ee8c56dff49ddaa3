package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// probe is one kind of call whose latency is sampled.
type probe struct {
	name string
	call func(i int)
}

// rawHTTP returns a probe posting one pre-encoded command to url with the
// client's headers, reading the reply to EOF without decoding it: the floor
// under any Upstash call.
func rawHTTP(t testing.TB, up *upstashtest.Env, body string) func(int) {
	t.Helper()
	post := rawHTTPBody(t, up)
	return func(int) { post(body) }
}

// rawHTTPBody is rawHTTP with the body given at each call.
func rawHTTPBody(t testing.TB, up *upstashtest.Env) func(body string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 128, ForceAttemptHTTP2: true, DisableCompression: true,
	}}
	t.Cleanup(hc.CloseIdleConnections)
	auth := "Bearer " + up.Token
	return func(body string) {
		req, err := http.NewRequest(http.MethodPost, up.URL+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("raw round trip: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("raw round trip: status %d", resp.StatusCode)
		}
	}
}

// sampleInterleaved runs warmup + n rounds; each round calls every probe
// once, in turn, so that drift on a shared machine hits all of them alike.
// It returns the samples of the n measured rounds per probe.
func sampleInterleaved(probes []probe, warmup, n int) []latencies {
	out := make([]latencies, len(probes))
	for i := range out {
		out[i] = make(latencies, 0, n)
	}
	for r := 0; r < warmup+n; r++ {
		for j, p := range probes {
			start := time.Now()
			p.call(r)
			if d := time.Since(start); r >= warmup {
				out[j] = append(out[j], d)
			}
		}
	}
	return out
}

// latencyProbes are the calls compared in figure 2, all against up.
func latencyProbes(t testing.TB, up *upstashtest.Env) []probe {
	t.Helper()
	client, err := upstash.New(upstash.Config{URL: up.URL, Token: up.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.CloseIdleConnections)
	ctx := context.Background()
	if err := client.Do(ctx, nil, "SET", "bench:probe", "0:0"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	allowed := newAuthorizer(t, up, nil)
	denied := newAuthorizer(t, up, nil)
	anon, err := limiter.ParseLimit("6/minute:burst=10")
	if err != nil {
		t.Fatal(err)
	}
	store, err := limiter.NewUpstashStore(limiter.UpstashConfig{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := limiter.New(limiter.Config{Upstash: store, Timeout: 5 * time.Second}) // as newAuthorizer's LIMITER_TIMEOUT
	if err != nil {
		t.Fatal(err)
	}
	req := func(block, i int) limiter.Request {
		return limiter.Request{Buckets: []limiter.Bucket{{Key: "ip:" + ipOf(block, i), Limit: anon}}, Cost: 1}
	}
	// rawEval posts a prepared EVALSHA of the limiter's script: its
	// arguments are the anonymous tier's (10 tokens of 86,400,000 units,
	// 8,640 units per ms; see decide.lua), cost 1 token, no guess.
	rawEval := rawHTTPBody(t, up)
	if err := upstash.NewScript(limiter.ScriptSource).Run(ctx, client, nil, []string{"bench:load"}, time.Now().UnixMilli(), 1, 2000, 1, 0, "", 1000000, 1000000, "", "t", 864_000_000, 8640, ""); err != nil {
		t.Fatalf("loading the script: %v", err)
	}
	return []probe{
		{"raw REST round trip: POST / [\"GET\", k] (net/http, reply not decoded)", rawHTTP(t, up, `["GET","bench:probe"]`)},
		{"raw REST round trip: POST / [\"EVALSHA\", token-bucket script, new key] (net/http, reply not decoded)", func(i int) {
			rawEval(fmt.Sprintf(`["EVALSHA","%s","1","bench:raw:%d","%d","1","2000","1","0","","1000000","1000000","","t","864000000","8640",""]`,
				limiter.ScriptSHA1(), i, time.Now().UnixMilli()))
		}},
		{"upstash.Client.Do(GET k)", func(int) {
			var v string
			if err := client.Do(ctx, &v, "GET", "bench:probe"); err != nil {
				t.Fatalf("GET: %v", err)
			}
		}},
		{"limiter.UpstashStore.Allow, allowed (EVALSHA: SET ... GET)", func(i int) {
			if r, err := store.Allow(ctx, req(5, i), time.Now()); err != nil || !r.Allowed {
				t.Fatalf("store decision %d: %+v, %v", i, r, err)
			}
		}},
		{"limiter.Limiter.Allow, allowed", func(i int) {
			if r, err := lim.Allow(ctx, req(6, i)); err != nil || !r.Allowed || r.Source != limiter.SourceUpstash {
				t.Fatalf("limiter decision %d: %+v, %v", i, r, err)
			}
		}},
		{"authorizer decision, allowed (new caller each time: EVALSHA, SET … GET)", func(i int) {
			if d := decide(t, allowed, anonymousEvent(ipOf(3, i))); !d.allowed || d.source != "upstash" {
				t.Fatalf("decision %d: %+v, want allowed by upstash", i, d)
			}
		}},
		{"authorizer decision, denied (one caller flooding: deny cache, which re-checks Upstash once a second)", func(i int) {
			if d := decide(t, denied, anonymousEvent("10.4.0.1")); i >= 11 && d.allowed {
				t.Fatalf("decision %d: %+v, want denied", i, d)
			}
		}},
	}
}

// TestSmokeLatency runs the latency probes a few times: every probe works
// against a real redis-server and the sampler returns one sample per
// measured round.
func TestSmokeLatency(t *testing.T) {
	up := upstashtest.StartRedis(t)
	got := sampleInterleaved(latencyProbes(t, up), 12, 5)
	for i, l := range got {
		if len(l) != 5 {
			t.Errorf("probe %d: %d samples, want 5", i, len(l))
		}
	}
}

// benchLatency is figure 2: decision latency against one raw round trip to
// the same server, and the peer's limit().
func benchLatency(t *testing.T) {
	up := upstashtest.StartRedis(t)
	rep := newReport(t, "Decision latency")
	const warmup, n = 300, 3000
	probes := latencyProbes(t, up)
	samples := sampleInterleaved(probes, warmup, n)
	us := usecPerCall(t, up.Redis)
	peerAllowed := runPeer(t, up, "--callers", strconv.Itoa(n), "--requests-per-caller", "1",
		"--refill", peerRefill, "--interval", peerInterval, "--burst", peerBurst, "--cache", "on",
		"--prefix", "peer-latency", "--warmup", strconv.Itoa(warmup)).latencies()
	peerFlood := runPeer(t, up, "--callers", "1", "--requests-per-caller", strconv.Itoa(n),
		"--refill", peerRefill, "--interval", peerInterval, "--burst", peerBurst, "--cache", "on",
		"--prefix", "peer-latency-flood", "--warmup", strconv.Itoa(warmup)).latencies()[11:]

	rep.line("Measured with `%s`; %s.", benchCommand("latency"), rep.machine)
	rep.line("One upstashlocal server over one redis-server on loopback (plain HTTP/1.1 keep-alive). The Go probes run")
	rep.line("interleaved (one of each per round, %d rounds after %d warm-up rounds); the peer (node %s) runs next,", n, warmup, nodeVersion(t))
	rep.line("timing `await ratelimit.limit(id)` with `performance.now()`, after %d warm-up calls. The decision is", warmup)
	rep.line("`authorizer.Handler.Handle` as built by the Lambda's wiring (JSON log line and EMF line formatted, discarded).")
	rep.line("")
	raw := samples[0]
	var rows [][]string
	add := func(name string, l latencies) {
		rows = append(rows, []string{name, fmtDur(l.pct(0.5)), fmtDur(l.pct(0.99)),
			ratio(l.pct(0.5), raw.pct(0.5)), ratio(l.pct(0.99), raw.pct(0.99))})
	}
	for i, p := range probes {
		add(p.name, samples[i])
	}
	add("@upstash/ratelimit limit(), allowed (new identifier each time)", peerAllowed)
	add("@upstash/ratelimit limit(), denied (ephemeral cache)", peerFlood)
	rep.table([]string{"call", "p50", "p99", "p50 / raw", "p99 / raw"}, rows)
	dec := samples[5]
	rep.line("Redis's own time per command during the Go probes (INFO commandstats, usec_per_call): EVALSHA of bucketgate's script %.1f µs, GET %.1f µs.", us["evalsha"], us["get"])
	rep.line("")
	rep.line("Target: decision ≤ 1.10 × raw round trip. Measured p50 ratio %s, p99 ratio %s.",
		ratio(dec.pct(0.5), raw.pct(0.5)), ratio(dec.pct(0.99), raw.pct(0.99)))
}

func nodeVersion(t testing.TB) string {
	out, err := execOutput("node", "--version")
	if err != nil {
		t.Logf("node --version: %v", err)
		return "?"
	}
	return out
}

// execOutput runs a program and returns its trimmed stdout.
func execOutput(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := execCommand(ctx, name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return string(bytes.TrimSpace(out)), nil
}
