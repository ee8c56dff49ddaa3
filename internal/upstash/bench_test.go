package upstash_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// The benchmarks compare one command sent through the client with a raw
// net/http POST of the same pre-built body to the same server, read to EOF
// and not decoded: "raw" through http.Client.Do, "rawrt" straight to the
// transport's RoundTrip (as the client does). The difference is the
// client's overhead: encoding, decoding, error classification. All use a
// context with a deadline (as the limiter does), created once.
//
//	go test -run '^$' -bench 'RoundTrip|Codec' -benchmem -count 10 -benchtime 0.5s ./internal/upstash/

const benchToken = "bench-token-0123456789"

// rawTransport has the settings of the client's default transport that
// matter on loopback.
func rawClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		ForceAttemptHTTP2:   true,
		DisableCompression:  true,
	}}
}

func benchContext(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	b.Cleanup(cancel)
	return ctx
}

// benchRaw posts body to url with the headers the client sends and reads
// the reply to EOF.
func benchRaw(b *testing.B, url, token string, body []byte) {
	hc := rawClient()
	b.Cleanup(hc.CloseIdleConnections)
	ctx := benchContext(b)
	auth := "Bearer " + token
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
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

// benchRawTransport is benchRaw without http.Client: the request goes
// straight to the transport's RoundTrip, as the client sends it. It is the
// least net/http work a POST can cost.
func benchRawTransport(b *testing.B, url, token string, body []byte) {
	tr := rawClient().Transport
	b.Cleanup(tr.(*http.Transport).CloseIdleConnections)
	ctx := benchContext(b)
	auth := "Bearer " + token
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := tr.RoundTrip(req)
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

// benchClient sends the command through the client.
func benchClient(b *testing.B, url, token string, args ...any) {
	c, err := upstash.New(upstash.Config{URL: url, Token: token})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	ctx := benchContext(b)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := c.Do(ctx, args...); err != nil {
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

// BenchmarkRoundTrip/fixed: an httptest server answering a fixed reply, so
// that the server's cost is as small and steady as possible.
// BenchmarkRoundTrip/upstashlocal: the project's Upstash-compatible server
// and a real redis-server.
func BenchmarkRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"result":"PONG"}`)
	}))
	b.Cleanup(srv.Close)
	b.Run("fixed/raw", func(b *testing.B) { benchRaw(b, srv.URL+"/", benchToken, []byte(`["PING"]`)) })
	b.Run("fixed/rawrt", func(b *testing.B) { benchRawTransport(b, srv.URL+"/", benchToken, []byte(`["PING"]`)) })
	b.Run("fixed/client", func(b *testing.B) { benchClient(b, srv.URL, benchToken, "PING") })

	// The real stack: upstashlocal in front of redis-server, GET of a key.
	env := upstashtest.Start(b)
	env.Redis.Do(b, "SET", "bench:key", "some value")
	b.Run("upstashlocal/raw", func(b *testing.B) { benchRaw(b, env.URL+"/", env.Token, []byte(`["GET","bench:key"]`)) })
	b.Run("upstashlocal/rawrt", func(b *testing.B) {
		benchRawTransport(b, env.URL+"/", env.Token, []byte(`["GET","bench:key"]`))
	})
	b.Run("upstashlocal/client", func(b *testing.B) { benchClient(b, env.URL, env.Token, "GET", "bench:key") })
}
