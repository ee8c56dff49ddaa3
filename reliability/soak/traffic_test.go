//go:build linux

package soak_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bucketgate/bucketgate/internal/apikey"
)

// sample is one HTTP exchange as the client saw it.
type sample struct {
	At      time.Time // sent
	Latency time.Duration
	Source  string // the traffic source (plot and report)
	Path    string
	Keyed   bool // carried an API key
	Valid   bool // a valid one
	Status  int  // 0: transport error
	Problem string
	Policy  string // a 429 body's policy
}

// recorder collects samples; safe for concurrent use.
type recorder struct {
	mu      sync.Mutex
	samples []sample
}

func (r *recorder) add(s sample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

func (r *recorder) all() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sample(nil), r.samples...)
}

// clientFrom returns an HTTP client whose connections come from ip (any
// 127.0.0.0/8 address on Linux): a caller the gateway keys by that address.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil, MaxIdleConnsPerHost: 4},
		Timeout:   30 * time.Second,
	}
}

func body(rows int) string {
	r := make([]string, rows)
	for i := range r {
		r[i] = "[0.5,-1.2,2,0.3]"
	}
	return `{"inputs":[` + strings.Join(r, ",") + `]}`
}

// send makes one request and checks the reply's shape: a 200 from a
// limited route carries the rate-limit headers, a 429 a Retry-After equal
// to its body's retryAfter.
func send(c *http.Client, base, source, path, key string, valid bool, rows int) sample {
	s := sample{At: time.Now(), Source: source, Path: path, Keyed: key != "", Valid: valid}
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body(rows)))
	if err != nil {
		s.Problem = err.Error()
		return s
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := c.Do(req)
	s.Latency = time.Since(s.At)
	if err != nil {
		s.Problem = "transport: " + err.Error()
		return s
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	s.Status = resp.StatusCode
	switch resp.StatusCode {
	case http.StatusOK:
		if resp.Header.Get("X-RateLimit-Remaining") == "" {
			s.Problem = "200 without X-RateLimit-Remaining"
		}
	case http.StatusTooManyRequests:
		var tb struct {
			RetryAfter json.Number `json:"retryAfter"`
			Policy     string      `json:"policy"`
		}
		if err := json.Unmarshal(b, &tb); err != nil {
			s.Problem = fmt.Sprintf("429 body %q: %v", b, err)
			break
		}
		s.Policy = tb.Policy
		if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" || ra != tb.RetryAfter.String() {
			s.Problem = fmt.Sprintf("429 with Retry-After %q and body retryAfter %q", ra, tb.RetryAfter)
		}
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusInternalServerError:
		s.Problem = strings.TrimSpace(string(b))
	}
	return s
}

// flow is one source of traffic: a client (address), what it sends, how
// often.
type flow struct {
	name  string
	ip    string
	every time.Duration
	next  func() (path, key string, valid bool, rows int)
}

// run sends f's requests until ctx ends, pacing them every f.every.
func (f flow) run(ctx context.Context, base string, rec *recorder, wg *sync.WaitGroup) {
	defer wg.Done()
	c := clientFrom(f.ip)
	defer c.CloseIdleConnections()
	tick := time.NewTicker(f.every)
	defer tick.Stop()
	for {
		path, key, valid, rows := f.next()
		rec.add(send(c, base, f.name, path, key, valid, rows))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// soakKeys are the valid keys the traffic uses.
type soakKeys struct {
	auth    [3]string // authenticated
	premium [2]string
}

// flows is the soak's traffic mix, about 80 requests a second.
func flows(k soakKeys) []flow {
	fixed := func(path, key string, rows int) func() (string, string, bool, int) {
		return func() (string, string, bool, int) { return path, key, key != "", rows }
	}
	var fs []flow
	// Anonymous callers, each above its 2/s: some denied.
	for i := range 6 {
		fs = append(fs, flow{name: "anonymous", ip: fmt.Sprintf("127.10.0.%d", i+1), every: 330 * time.Millisecond, next: fixed("/predict", "", 1)})
	}
	// Keyed callers at 4/s against 3/s: some denied.
	fs = append(fs,
		flow{name: "keyed", ip: "127.11.0.1", every: 250 * time.Millisecond, next: fixed("/predict", k.auth[0], 2)},
		flow{name: "keyed", ip: "127.11.0.3", every: 250 * time.Millisecond, next: fixed("/predict", k.auth[2], 1)},
		// Batches, 5 tokens each, 2.5/s against 10/s: some denied.
		flow{name: "batch", ip: "127.12.0.1", every: 400 * time.Millisecond, next: fixed("/predict/batch", k.premium[0], 200)},
		// Premium route: a premium key under its limit, an authenticated
		// key refused (403).
		flow{name: "premium", ip: "127.13.0.1", every: 250 * time.Millisecond, next: fixed("/premium/predict", k.premium[1], 1)},
		flow{name: "forbidden", ip: "127.13.0.2", every: time.Second, next: fixed("/premium/predict", k.auth[2], 1)},
		// One address flooding.
		flow{name: "flood", ip: "127.14.0.1", every: 30 * time.Millisecond, next: fixed("/predict", "", 1)},
		// One address trying made-up keys, and a valid key from the same
		// address (a NAT neighbour).
		flow{name: "attacker", ip: "127.15.0.1", every: 100 * time.Millisecond, next: func() (string, string, bool, int) {
			key, _, _, _ := apikey.Generate() // on error: "" (anonymous), still traffic
			return "/predict", key, false, 1
		}},
		flow{name: "neighbour", ip: "127.15.0.1", every: 500 * time.Millisecond, next: fixed("/predict", k.auth[1], 1)},
	)
	return fs
}
