package benchmarks

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// benchTierLimits are the template's default tiers plus "bench", a tier
// no load generator can drain: the allowed mix measures the path, not
// the limit.
const benchTierLimits = "anonymous=6/minute:burst=10,authenticated=30/minute:burst=50,premium=120/minute:burst=200,bench=1000000/second:burst=1000000"

// buildLocal builds cmd/local into dir and returns the binary's path.
func buildLocal(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "local")
	goBuild(t, repoRoot(t), nil, "-o", bin, "./cmd/local")
	return bin
}

// goBuild runs `go build args...` in dir with extra environment.
func goBuild(t testing.TB, dir string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// localAPI is a running `cmd/local start-api`.
type localAPI struct {
	URL  string
	PID  int
	logs string // path of its stderr (function logs included)
}

// startLocalAPI runs bin start-api on a free port with the authorizer's
// environment overridden by authEnv, waits until it serves, and stops it
// (SIGINT, then SIGKILL after 15 s) at cleanup.
func startLocalAPI(t testing.TB, bin, buildDir string, authEnv map[string]string) *localAPI {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env.json")
	data, err := json.Marshal(map[string]map[string]string{"AuthorizerFunction": authEnv})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(envFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	logs := filepath.Join(dir, "local.log")
	logf, err := os.Create(logs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "start-api", "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--template", filepath.Join(root, "template.yaml"), "--env-vars", envFile, "--build-dir", buildDir)
	cmd.Dir = root
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start-api: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logf.Close()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, after, ok := strings.Cut(sc.Text(), "Running on "); ok {
				ready <- strings.Fields(after)[0]
			}
		}
	}()
	select {
	case u := <-ready:
		return &localAPI{URL: u, PID: cmd.Process.Pid, logs: logs}
	case err := <-done:
		t.Fatalf("start-api exited: %v\n%s", err, tail(logs, 30))
	case <-time.After(10 * time.Minute):
		t.Fatalf("start-api not ready after 10 minutes\n%s", tail(logs, 30))
	}
	return nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// mix is one kind of traffic.
type mix struct {
	name string
	next func(w, n int) (*http.Request, error)
}

func e2eMixes(base string, keys []string) []mix {
	body := `{"inputs": [[0.5, -1.2, 2.0, 0.3]]}`
	post := func(key string) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, base+"/predict", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		return req, nil
	}
	return []mix{
		{"GET /model-info (predict only, no authorizer)", func(w, n int) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, base+"/model-info", nil)
		}},
		{"POST /predict, allowed (API keys, authorizer + predict)", func(w, n int) (*http.Request, error) {
			return post(keys[w%len(keys)])
		}},
		{"POST /predict, denied (one anonymous caller flooding: 429 from the authorizer)", func(w, n int) (*http.Request, error) {
			return post("")
		}},
		{"POST /predict, 90% allowed / 10% denied", func(w, n int) (*http.Request, error) {
			if n%10 == 9 {
				return post("")
			}
			return post(keys[w%len(keys)])
		}},
	}
}

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

// benchE2E is figure 4: requests/s and latency through `cmd/local
// start-api` (API Gateway emulation, authorizer and predict as warm
// processes through the Runtime API), for two Upstash backends.
func benchE2E(t *testing.T) {
	const workers = 8
	warmup, duration := 2*time.Second, 6*time.Second
	rep := newReport(t, "End to end through cmd/local start-api")
	tmp := t.TempDir()
	bin := buildLocal(t, tmp)
	buildDir := filepath.Join(tmp, "build")
	keysFile := filepath.Join(tmp, "keys.json")
	keys := make([]string, workers)
	for i := range keys {
		keys[i] = newKey(t, keysFile, "bench")
	}
	up := upstashtest.StartRedis(t)
	backends := []struct {
		name string
		env  map[string]string
	}{
		{"embedded store (make run's default)", map[string]string{}},
		{"upstashlocal + redis-server", map[string]string{"UPSTASH_REDIS_REST_URL": up.URL, "UPSTASH_REDIS_REST_TOKEN": up.Token}},
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, DisableCompression: true}, Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)

	var rows, cpuRows [][]string
	for _, b := range backends {
		env := map[string]string{"API_KEYS_FILE": keysFile, "API_KEYS_TABLE": "", "TIER_LIMITS": benchTierLimits}
		for k, v := range b.env {
			env[k] = v
		}
		api := startLocalAPI(t, bin, buildDir, env)
		for _, m := range e2eMixes(api.URL, keys) {
			before := sampleCPU(t, api.PID)
			r := load{Workers: workers, Warmup: warmup, Duration: duration, MaxRequests: 500_000, Call: httpCall(client, m.next)}.run()
			cpu := sampleCPU(t, api.PID).since(before)
			if r.Errors > 0 || r.Requests == 0 {
				t.Errorf("%s, %s: %d requests, %d transport errors\n%s", b.name, m.name, r.Requests, r.Errors, tail(api.logs, 20))
			}
			rows = append(rows, []string{b.name, m.name, strconv.Itoa(r.Requests), fmt.Sprintf("%.0f", r.perSecond()),
				fmtDur(r.Latency.pct(0.5)), fmtDur(r.Latency.pct(0.99)), statusString(r.Statuses)})
			cpuRows = append(cpuRows, []string{b.name, m.name, cpu.perRequest(r.Total), cpu.ceiling(r.Total)})
		}
	}
	rep.line("Measured with `%s`; %s.", benchCommand("e2e"), rep.machine)
	rep.line("`cmd/local start-api` (built from this tree; functions built for the host by its makefile targets, up to 4 warm")
	rep.line("processes each, LOG_LEVEL info) on 127.0.0.1; load from this test process: %d workers in a closed loop", workers)
	rep.line("(one request at a time each, keep-alive), %s warm-up then %s measured per row, capped at 500,000 requests.", warmup, duration)
	rep.line("Everything — generator, emulator, up to 8 function processes, Redis — shares the machine's %d CPUs.", runtime.NumCPU())
	rep.line("")
	rep.table([]string{"backend", "traffic", "requests", "req/s", "p50", "p99", "statuses"}, rows)
	rep.line("CPU time per request, µs, by process (/proc/PID/stat over warm-up and measurement; the test process is the load")
	rep.line("generator, plus the upstashlocal server for the redis-server backend; cmd/local includes the embedded store when used).")
	rep.line("CPU ceiling: the req/s the machine's %d CPUs would sustain at that cost, %d,000,000 / total — what the row would reach", runtime.NumCPU(), runtime.NumCPU())
	rep.line("with the machine to itself (the measured req/s also depend on the other work the machine was doing; see load average).")
	rep.line("")
	rep.table([]string{"backend", "traffic", "CPU µs per request", "CPU ceiling, req/s"}, cpuRows)

	// The decision path alone: the same authorizer, called in this process.
	var drows [][]string
	for _, m := range []struct {
		name string
		h    *authorizer.Handler
		ip   func(n int) string
	}{
		{"allowed (a new anonymous caller each time: EVALSHA, MGET, SET)", newAuthorizer(t, up, nil), func(n int) string { return ipOf(8, n) }},
		{"denied (one anonymous caller flooding: deny cache)", newAuthorizer(t, up, nil), func(int) string { return "10.9.0.1" }},
	} {
		before := sampleCPU(t, -1)
		r := load{Workers: workers, Warmup: warmup, Duration: duration, MaxRequests: 2_000_000, Call: func(w, n int) (int, error) {
			resp, err := m.h.Handle(context.Background(), anonymousEvent(m.ip(n)))
			if err != nil || len(resp.PolicyDocument.Statement) != 1 {
				return 0, fmt.Errorf("authorizer: %v", err)
			}
			if resp.PolicyDocument.Statement[0].Effect == "Allow" {
				return 200, nil
			}
			return 429, nil
		}}.run()
		cpu := sampleCPU(t, -1).since(before)
		if r.Errors > 0 {
			t.Errorf("decision path, %s: %d errors", m.name, r.Errors)
		}
		drows = append(drows, []string{m.name, strconv.Itoa(r.Requests), fmt.Sprintf("%.0f", r.perSecond()),
			fmtDur(r.Latency.pct(0.5)), fmtDur(r.Latency.pct(0.99)), statusString(r.Statuses), cpu.perRequest(r.Total), cpu.ceiling(r.Total)})
	}
	rep.line("The authorizer decision path without the emulator: `authorizer.Handler.Handle` (built as the Lambda builds it) called")
	rep.line("by %d goroutines of this process against upstashlocal + redis-server (the server runs in this process too), same", workers)
	rep.line("warm-up and duration. Statuses: 200 = Allow, 429 = Deny.")
	rep.line("")
	rep.table([]string{"decisions", "requests", "req/s", "p50", "p99", "outcomes", "CPU µs per request", "CPU ceiling, req/s"}, drows)
}
