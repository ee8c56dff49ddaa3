package upstashlocal_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
)

// BenchmarkServer measures one HTTP round trip through the server on
// loopback, client included: the floor under any latency the limiter sees
// against upstash-local.
//
//	go test -run '^$' -bench BenchmarkServer -benchtime 2000x ./internal/upstashlocal/
func BenchmarkServer(b *testing.B) {
	script := "#!lua flags=allow-key-locking\nreturn redis.call('INCR', KEYS[1])"
	cases := []struct {
		name, path, body string
		headers          map[string]string
	}{
		{name: "ping", path: "/", body: `["PING"]`},
		{name: "get-base64", path: "/", body: `["GET","bench:v"]`, headers: map[string]string{"Upstash-Encoding": "base64"}},
		{name: "evalsha-shebang", path: "/", body: jsonCmd(b, "EVALSHA", sha1Hex(script), 1, "bench:n")},
		{name: "pipeline-10", path: "/pipeline", body: "[" + strings.Repeat(`["INCR","bench:p"],`, 9) + `["INCR","bench:p"]]`},
		{name: "multi-exec-3", path: "/multi-exec", body: `[["INCR","bench:t"],["INCR","bench:t"],["GET","bench:t"]]`},
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			ts := startServer(b, backend, upstashlocal.Config{})
			do := func(b *testing.B, path, body string, headers map[string]string) {
				req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testToken)
				for k, v := range headers {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%s %s: status %d", path, body, resp.StatusCode)
				}
			}
			do(b, "/", `["SET","bench:v","some value"]`, nil)
			do(b, "/", jsonCmd(b, "SCRIPT", "LOAD", script), nil)
			for _, c := range cases {
				b.Run(c.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						do(b, c.path, c.body, c.headers)
					}
				})
			}
		})
	}
}
