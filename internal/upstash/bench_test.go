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

// BenchmarkRoundTrip compares a call through the client with a hand-written
// net/http POST of the same body to the same server, read to EOF and not
// decoded: "raw" through http.Client.Do, "rawrt" straight to the
// transport's RoundTrip (as the client sends). The difference is the
// client's own work: encoding, decoding into a typed value, error
// classification. All use a context with a deadline (as the limiter does).
//
//	fixed/*         an httptest server answering a fixed reply, so that the
//	                server's cost is small and steady: PING -> "PONG"
//	fixed/script-*  the same server; a limiter-like EVALSHA (2 keys, 4
//	                arguments) answered [1,200,199,0,500], decoded into []int64
//	upstashlocal/*  upstashlocal in front of a real redis-server: GET of a key,
//	                and script-* the same EVALSHA running a script that
//	                returns five integers
//
//	go test -run '^$' -bench RoundTrip -benchmem -count 10 -benchtime 0.5s ./internal/upstash/
func BenchmarkRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var cmd []string
		_ = json.NewDecoder(r.Body).Decode(&cmd)
		w.Header().Set("Content-Type", "application/json")
		if len(cmd) > 0 && cmd[0] == "EVALSHA" {
			_, _ = io.WriteString(w, `{"result":[1,200,199,0,500]}`)
			return
		}
		_, _ = io.WriteString(w, `{"result":"PONG"}`)
	}))
	b.Cleanup(srv.Close)
	script := upstash.NewScript(benchScript)
	keys := []string{"bg:k:premium:0123456789abcdef", "bg:global"}
	args := []any{int64(1_700_000_000_000), int64(1000), int64(0), int64(864_000_000)}
	scriptBody := mustJSON(b, append([]any{"EVALSHA", script.SHA1(), "2", keys[0], keys[1]}, "1700000000000", "1000", "0", "864000000"))
	var str string
	var ints []int64

	run := func(prefix, url, token string, body []byte, call func(ctx context.Context, c *upstash.Client) error) {
		b.Run(prefix+"raw", func(b *testing.B) { benchRaw(b, url, token, body, false) })
		b.Run(prefix+"rawrt", func(b *testing.B) { benchRaw(b, url, token, body, true) })
		b.Run(prefix+"client", func(b *testing.B) { benchClient(b, url, token, call) })
	}
	run("fixed/", srv.URL, benchToken, []byte(`["PING"]`),
		func(ctx context.Context, c *upstash.Client) error { return c.Do(ctx, &str, "PING") })
	run("fixed/script-", srv.URL, benchToken, scriptBody,
		func(ctx context.Context, c *upstash.Client) error { return script.Run(ctx, c, &ints, keys, args...) })

	env := upstashtest.StartRedis(b)
	env.Redis.Do(b, "SET", "bench:key", "some value")
	env.Redis.Do(b, "SCRIPT", "LOAD", benchScript)
	run("upstashlocal/", env.URL, env.Token, []byte(`["GET","bench:key"]`),
		func(ctx context.Context, c *upstash.Client) error { return c.Do(ctx, &str, "GET", "bench:key") })
	run("upstashlocal/script-", env.URL, env.Token, scriptBody,
		func(ctx context.Context, c *upstash.Client) error { return script.Run(ctx, c, &ints, keys, args...) })
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

// benchRaw posts body to url with the headers the client sends and reads
// the reply to EOF; roundTrip sends it straight to the transport instead of
// through http.Client. The transport has the client's settings that matter
// on loopback.
func benchRaw(b *testing.B, url, token string, body []byte, roundTrip bool) {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128, ForceAttemptHTTP2: true, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	ctx := benchContext(b)
	auth := "Bearer " + token
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
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
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// benchClient makes the call through a client.
func benchClient(b *testing.B, url, token string, call func(context.Context, *upstash.Client) error) {
	c, err := upstash.New(upstash.Config{URL: url, Token: token})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	ctx := benchContext(b)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if err := call(ctx, c); err != nil {
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
