package reliability_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/apitest"
	"github.com/bucketgate/bucketgate/internal/testutil/fnbuild"

	"github.com/bucketgate/bucketgate/internal/local/startapi"
)

// The HTTP-level scenarios run template.yaml the way `cmd/local start-api`
// does (internal/local/startapi, in process): API Gateway emulation in front of
// the real function binaries, each running as warm processes behind the
// Lambda Runtime API.

const templatePath = "../template.yaml"

func TestMain(m *testing.M) {
	code := m.Run()
	fnbuild.Cleanup()
	os.Exit(code)
}

// functionBinaries builds the template's functions for this machine once per
// test binary, as cmd/local does (make build-<LogicalId>).
func functionBinaries(t *testing.T) map[string]string {
	t.Helper()
	return fnbuild.Binaries(t, "..")
}

// localAPI is a running start-api.
type localAPI struct {
	URL  string
	App  *startapi.App
	Logs *logSink // gateway and function output, one line per write
}

// startLocalAPI serves template.yaml with env as --env-vars "Parameters"
// and at most maxProcs processes per function.
func startLocalAPI(t *testing.T, env map[string]string, maxProcs int) *localAPI {
	t.Helper()
	return startLocalAPIWith(t, env, maxProcs, nil)
}

// startLocalAPIWith is startLocalAPI with getenv as the host environment
// the AWS variables are passed through from (nil: none).
func startLocalAPIWith(t *testing.T, env map[string]string, maxProcs int, getenv func(string) string) *localAPI {
	t.Helper()
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	exes := functionBinaries(t)
	vars := map[string]string{"API_KEYS_TABLE": ""}
	for k, v := range env {
		vars[k] = v
	}
	logs := &logSink{}
	app, srv := apitest.Serve(t, startapi.Options{
		Template: templatePath,
		Prebuilt: exes,
		Logs:     logs,
		EnvVars:  startapi.EnvVars{"Parameters": vars},
		MaxProcs: maxProcs,
		Getenv:   getenv, // not the real host's: no AWS settings leak in
	})
	return &localAPI{URL: srv.URL, App: app, Logs: logs}
}

var loopSeq struct {
	sync.Mutex
	n int
}

// freshLoopback returns a loopback address (127.x.y.z, not 127.0.0.1) no
// other client in this test binary used: connections from it are a new
// anonymous caller to the gateway, which keys anonymous buckets by the TCP
// peer's address.
func freshLoopback() string {
	loopSeq.Lock()
	defer loopSeq.Unlock()
	loopSeq.n++
	n := loopSeq.n
	return fmt.Sprintf("127.%d.%d.%d", 1+n/40000%250, 1+n/200%200, 1+n%200)
}

// clientFrom returns an HTTP client whose connections come from ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil, MaxIdleConnsPerHost: 16},
		Timeout:   30 * time.Second,
	}
}

const predictBody = `{"inputs":[[0.5,-1.2,2.0,0.3]]}`

// reply is one HTTP exchange.
type reply struct {
	Status  int
	Header  http.Header
	Body    string
	Latency time.Duration
	Err     error
}

// predict sends POST /predict with headers.
func (api *localAPI) predict(c *http.Client, headers map[string]string) reply {
	req, err := http.NewRequest(http.MethodPost, api.URL+"/predict", strings.NewReader(predictBody))
	if err != nil {
		return reply{Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return reply{Err: err, Latency: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: string(body), Latency: time.Since(start), Err: err}
}

// httpTally aggregates replies; safe for concurrent use.
type httpTally struct {
	mu         sync.Mutex
	n          int
	byStatus   map[int]int
	bad        []string
	maxLatency time.Duration
}

func (h *httpTally) add(r reply) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if h.byStatus == nil {
		h.byStatus = map[int]int{}
	}
	h.byStatus[r.Status]++
	h.maxLatency = max(h.maxLatency, r.Latency)
	switch {
	case r.Err != nil:
		h.bad = append(h.bad, "error: "+r.Err.Error())
	case r.Status == http.StatusOK:
		if r.Header.Get("X-RateLimit-Remaining") == "" {
			h.bad = append(h.bad, "200 without X-RateLimit-Remaining")
		}
	case r.Status == http.StatusTooManyRequests:
		if r.Header.Get("Retry-After") == "" || r.Header.Get("Retry-After") == "0" {
			h.bad = append(h.bad, "429 without a positive Retry-After")
		}
	default:
		h.bad = append(h.bad, fmt.Sprintf("%d %s", r.Status, strings.TrimSpace(r.Body)))
	}
}

// check fails the test for any reply other than a well-formed 200 or 429,
// or one slower than limit.
func (h *httpTally) check(t *testing.T, what string, limit time.Duration) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, b := range h.bad {
		if i == 3 {
			t.Errorf("%s: ... %d bad replies in all", what, len(h.bad))
			break
		}
		t.Errorf("%s: got %s, want 200 or 429 with rate-limit headers", what, b)
	}
	if h.maxLatency > limit {
		t.Errorf("%s: slowest reply took %s, want at most %s", what, h.maxLatency, limit)
	}
}

func (h *httpTally) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("200=%d 429=%d other=%d", h.byStatus[200], h.byStatus[429], h.n-h.byStatus[200]-h.byStatus[429])
}

// functionLines returns the JSON lines the named function wrote (see
// apitest.FunctionLines).
func (api *localAPI) functionLines(t *testing.T, function string) []map[string]any {
	t.Helper()
	return apitest.FunctionLines(t, api.Logs.String(), function)
}

// decisionSources counts the authorizer's decision log lines by source
// for callers (ip:ADDR) in ips.
func decisionSources(lines []map[string]any, ips map[string]bool) map[string]int {
	out := map[string]int{}
	for _, l := range lines {
		if l["msg"] != "decision" {
			continue
		}
		if c, _ := l["caller"].(string); ips[strings.TrimPrefix(c, "ip:")] {
			out[str(l["source"])]++
		}
	}
	return out
}
