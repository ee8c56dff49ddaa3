package upstash_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// The benchmarks compare a call through the client with a hand-written
// net/http POST of the same body to the same server, read to EOF and not
// decoded: "raw" through http.Client.Do, "rawrt" straight to the
// transport's RoundTrip (as the client sends). The difference is the
// client's own work: encoding, decoding into a typed value, error
// classification. All use a context with a deadline (as the limiter does).
// B/op and allocs/op include the in-process server's.
//
//	fixed/*                an httptest server answering a fixed reply, so
//	                       that the server's cost is small and steady:
//	                       PING -> "PONG", decoded into a string
//	fixed/script-*         a limiter-like EVALSHA (2 keys, 4 arguments)
//	                       answered [1,200,199,0,500], decoded into []int64
//	upstashlocal/*         upstashlocal in front of a real redis-server: GET
//	upstashlocal/script-*  of a key, and the EVALSHA of a script returning
//	                       five integers
//
// BenchmarkRoundTripRatio alternates client and rawrt calls in one loop, so
// that both see the same load on a shared machine, and reports client/raw.
//
//	go test -run '^$' -bench RoundTrip -benchmem -count 10 -benchtime 0.5s ./internal/upstash/

// benchCase is one call, made through the client or sent raw.
type benchCase struct {
	name       string
	url, token string
	body       []byte // what the client sends, for the raw POST
	call       func(ctx context.Context, c *upstash.Client) error
}

func benchCases(b *testing.B) []benchCase {
	ping := fixedServer(b, `{"result":"PONG"}`)
	scripted := fixedServer(b, `{"result":[1,200,199,0,500]}`)
	script := upstash.NewScript(benchScript)
	keys := []string{"bg:k:premium:0123456789abcdef", "bg:global"}
	args := []any{int64(1_700_000_000_000), int64(1000), int64(0), int64(864_000_000)}
	scriptBody := mustJSON(b, []string{"EVALSHA", script.SHA1(), "2", keys[0], keys[1], "1700000000000", "1000", "0", "864000000"})
	var str string
	var ints []int64
	runScript := func(ctx context.Context, c *upstash.Client) error { return script.Run(ctx, c, &ints, keys, args...) }

	env := upstashtest.StartRedis(b)
	env.Redis.Do(b, "SET", "bench:key", "some value")
	env.Redis.Do(b, "SCRIPT", "LOAD", benchScript)
	return []benchCase{
		{"fixed/", ping.URL, benchToken, []byte(`["PING"]`),
			func(ctx context.Context, c *upstash.Client) error { return c.Do(ctx, &str, "PING") }},
		{"fixed/script-", scripted.URL, benchToken, scriptBody, runScript},
		{"upstashlocal/", env.URL, env.Token, []byte(`["GET","bench:key"]`),
			func(ctx context.Context, c *upstash.Client) error { return c.Do(ctx, &str, "GET", "bench:key") }},
		{"upstashlocal/script-", env.URL, env.Token, scriptBody, runScript},
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	for _, bc := range benchCases(b) {
		b.Run(bc.name+"raw", func(b *testing.B) { benchRaw(b, bc, false) })
		b.Run(bc.name+"rawrt", func(b *testing.B) { benchRaw(b, bc, true) })
		b.Run(bc.name+"client", func(b *testing.B) { benchClient(b, bc) })
	}
}

func BenchmarkRoundTripRatio(b *testing.B) {
	for _, bc := range benchCases(b) {
		b.Run(bc.name+"client-vs-rawrt", func(b *testing.B) {
			c := newBenchClient(b, bc)
			raw := rawPoster(b, bc, true)
			ctx := benchContext(b)
			var client, direct time.Duration
			i := 0
			for b.Loop() {
				// Alternate the order, so that neither always runs on a
				// connection that just went idle.
				first, second := func() error { return bc.call(ctx, c) }, func() error { return raw(ctx) }
				if i%2 == 1 {
					first, second = second, first
				}
				t0 := time.Now()
				if err := first(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := second(); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if i%2 == 0 {
					client, direct = client+t1.Sub(t0), direct+t2.Sub(t1)
				} else {
					client, direct = client+t2.Sub(t1), direct+t1.Sub(t0)
				}
				i++
			}
			b.ReportMetric(float64(client)/float64(b.N), "client-ns/op")
			b.ReportMetric(float64(direct)/float64(b.N), "rawrt-ns/op")
			b.ReportMetric(float64(client)/float64(direct), "client/rawrt")
		})
	}
}

// fixedServer answers every request with reply, after reading the body.
func fixedServer(b *testing.B, reply string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// benchScript returns five integers, as the token-bucket script does.
const benchScript = "return {1, tonumber(ARGV[2]) / 5, tonumber(ARGV[2]) / 5 - 1, 0, 500}"

const benchToken = "bench-token-0123456789"

func mustJSON(b *testing.B, v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

func benchContext(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	b.Cleanup(cancel)
	return ctx
}

// rawPoster returns a function posting bc.body with the headers the client
// sends and reading the reply to EOF, through http.Client or (roundTrip)
// straight to the transport. The transport has the client's settings that
// matter on loopback.
func rawPoster(b *testing.B, bc benchCase, roundTrip bool) func(ctx context.Context) error {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128, ForceAttemptHTTP2: true, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	auth := "Bearer " + bc.token
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, bc.url+"/", bytes.NewReader(bc.body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		var resp *http.Response
		if roundTrip {
			resp, err = tr.RoundTrip(req)
		} else {
			resp, err = hc.Do(req)
		}
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return nil
	}
}

func benchRaw(b *testing.B, bc benchCase, roundTrip bool) {
	post := rawPoster(b, bc, roundTrip)
	ctx := benchContext(b)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if err := post(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func newBenchClient(b *testing.B, bc benchCase) *upstash.Client {
	c, err := upstash.New(upstash.Config{URL: bc.url, Token: bc.token})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	return c
}

func benchClient(b *testing.B, bc benchCase) {
	c := newBenchClient(b, bc)
	ctx := benchContext(b)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if err := bc.call(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU starts measuring the process's CPU time; the function it
// returns reports it as cpu-ns/op. Call it right before the b.Loop loop.
func reportCPU(b *testing.B) func() {
	start, ok := processCPU()
	return func() {
		end, ok2 := processCPU()
		if ok && ok2 && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
