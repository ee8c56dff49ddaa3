package benchmarks

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/bucketgate/bucketgate/benchmarks/charts"
	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authctx"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// Environment variables of the harness.
const (
	// envBench turns the measurements (TestBench) on when "1".
	envBench = "BUCKETGATE_BENCH"
	// envBenchOut names a file the Markdown tables are written to.
	envBenchOut = "BUCKETGATE_BENCH_OUT"
	// envBenchCharts names a file the chart data is written to (JSON, for
	// benchmarks/charts/render).
	envBenchCharts = "BUCKETGATE_BENCH_CHARTS"
)

// upstashPricePer100K is Upstash Redis pay-as-you-go's price, in dollars
// per 100,000 commands (https://upstash.com/docs/redis/overall/billing and
// https://upstash.com/pricing/redis, checked November 2026).
const upstashPricePer100K = 0.20

// dollarsPerMillion converts commands per API request into dollars per
// million API requests at upstashPricePer100K.
func dollarsPerMillion(commandsPerRequest float64) float64 {
	return commandsPerRequest * 1e6 / 1e5 * upstashPricePer100K
}

// requireBench skips t unless BUCKETGATE_BENCH=1.
func requireBench(t *testing.T) {
	t.Helper()
	if os.Getenv(envBench) != "1" {
		t.Skipf("measurements are off: set %s=1 (make bench)", envBench)
	}
}

// repoRoot is the module's root directory (the tests run in benchmarks/).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatalf("repo root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repo root %s has no go.mod: %v", root, err)
	}
	return root
}

// report collects one figure's Markdown and prints it (stdout, and the
// BUCKETGATE_BENCH_OUT file when set) at the end of the test.
type report struct {
	t       *testing.T
	b       strings.Builder
	machine string // the host and its load when the report was started
}

var reportMu sync.Mutex

func newReport(t *testing.T, title string) *report {
	t.Helper()
	r := &report{t: t, machine: machine()}
	fmt.Fprintf(&r.b, "\n### %s\n\n", title)
	t.Cleanup(r.flush)
	return r
}

// line appends one line of text.
func (r *report) line(format string, args ...any) {
	fmt.Fprintf(&r.b, format+"\n", args...)
}

// table appends a Markdown table.
func (r *report) table(header []string, rows [][]string) {
	r.b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for range header {
		r.b.WriteString("---|")
	}
	r.b.WriteString("\n")
	for _, row := range rows {
		r.b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	r.b.WriteString("\n")
}

func (r *report) flush() {
	if r.t.Failed() {
		r.b.WriteString("\n(test failed: figures incomplete)\n")
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	fmt.Print(r.b.String())
	if path := os.Getenv(envBenchOut); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			r.t.Errorf("report: %v", err)
			return
		}
		defer f.Close()
		if _, err := f.WriteString(r.b.String()); err != nil {
			r.t.Errorf("report: %v", err)
		}
	}
}

// machine describes the host for a report's header line.
func machine() string {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					cpu = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	load := "?"
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	return fmt.Sprintf("%s, %d CPUs, load average %s at start, %s", cpu, runtime.NumCPU(), load, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

// latencies is a set of samples.
type latencies []time.Duration

// pct returns the p-th percentile (0 < p <= 1), nearest rank.
func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// fmtDur renders a duration with three significant digits or so.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d >= 10*time.Microsecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.1f µs", float64(d)/1e3)
}

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// --- Redis command counting -------------------------------------------

// commandStats is INFO commandstats: command name -> calls (including
// failed calls) plus rejected calls.
type commandStats map[string]int64

// notBilled are commands that are not the application's: the harness's own
// INFO, and HELLO, which upstashlocal's connection pool sends when it opens
// a connection to redis-server (a real Upstash REST endpoint has no such
// per-client handshake to bill).
var notBilled = map[string]bool{"info": true, "hello": true}

func readCommandStats(t testing.TB, rs *redistest.Server) commandStats {
	t.Helper()
	cs, err := parseCommandStats(rs.Do(t, "INFO", "commandstats"))
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	return cs
}

// parseCommandStats reads lines such as
// "cmdstat_evalsha:calls=22,usec=1538,usec_per_call=69.91,rejected_calls=0,failed_calls=1".
func parseCommandStats(text string) (commandStats, error) {
	cs := commandStats{}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		name, fields, ok := strings.Cut(strings.TrimPrefix(l, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(l, "cmdstat_") {
			continue
		}
		var n int64
		for _, f := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			if k != "calls" && k != "rejected_calls" {
				continue
			}
			x, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %q: %s is not an integer", l, k)
			}
			n += x
		}
		cs[name] = n
	}
	return cs, nil
}

// usecPerCall reads usec_per_call from INFO commandstats: Redis's own time
// per command (for EVALSHA, the whole script), in microseconds.
func usecPerCall(t testing.TB, rs *redistest.Server) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, l := range strings.Split(rs.Do(t, "INFO", "commandstats"), "\n") {
		name, fields, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "cmdstat_"), ":")
		if !ok {
			continue
		}
		for _, f := range strings.Split(fields, ",") {
			if k, v, _ := strings.Cut(f, "="); k == "usec_per_call" {
				if x, err := strconv.ParseFloat(v, 64); err == nil {
					out[name] = x
				}
			}
		}
	}
	return out
}

// since returns the billable commands run between prev and cs, by name.
func (cs commandStats) since(prev commandStats) commandStats {
	d := commandStats{}
	for name, n := range cs {
		if notBilled[name] {
			continue
		}
		if n -= prev[name]; n > 0 {
			d[name] = n
		}
	}
	return d
}

func (cs commandStats) total() int64 {
	var n int64
	for _, v := range cs {
		n += v
	}
	return n
}

// String lists the commands, most frequent first: "EVALSHA 1000, MGET 1000".
func (cs commandStats) String() string {
	names := make([]string, 0, len(cs))
	for n := range cs {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if cs[a] != cs[b] {
			return int(cs[b] - cs[a])
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", strings.ToUpper(n), cs[n])
	}
	return strings.Join(parts, ", ")
}

// meter counts Upstash requests (at the server) and Redis commands (INFO
// commandstats) over a measured stretch.
type meter struct {
	env      *upstashtest.Env
	requests uint64
	stats    commandStats
	at       time.Time // when the meter started
}

func startMeter(t testing.TB, env *upstashtest.Env) *meter {
	t.Helper()
	m := &meter{env: env, at: time.Now()}
	m.stats = readCommandStats(t, env.Redis)
	m.requests = env.Server.Requests()
	return m
}

// stop returns the requests and billable commands since startMeter.
func (m *meter) stop(t testing.TB) (uint64, commandStats) {
	t.Helper()
	req := m.env.Server.Requests() - m.requests
	return req, readCommandStats(t, m.env.Redis).since(m.stats)
}

// --- the authorizer, as the Lambda builds it --------------------------

// anonymous tier of the defaults: 6/minute, burst 10 — the peer's
// equivalent is tokenBucket(1, "10 s", 10).
const (
	peerRefill   = "1"
	peerInterval = "10 s"
	peerBurst    = "10"
)

// newAuthorizer builds the authorizer exactly as functions/authorizer does
// (authorizer.LoadSettings + authorizer.Build, which primes the Upstash
// connection), with env on top of UPSTASH_* pointing at up. Logs (JSON,
// level info, one line per decision) and EMF metrics are formatted and
// discarded, as the real cost of a decision includes them.
func newAuthorizer(t testing.TB, up *upstashtest.Env, env map[string]string) *authorizer.Handler {
	t.Helper()
	vars := map[string]string{
		"UPSTASH_REDIS_REST_URL":   up.URL,
		"UPSTASH_REDIS_REST_TOKEN": up.Token,
		// The smoke tests assert where decisions come from (upstash,
		// cache); a loaded machine must not turn a slow healthy call into a
		// fallback. Measurements are unaffected: a call that timed out
		// would not be the figure measured anyway.
		"LIMITER_TIMEOUT": "5s",
	}
	for k, v := range env {
		vars[k] = v
	}
	return buildAuthorizer(t, vars, io.Discard, io.Discard)
}

// buildAuthorizer is newAuthorizer with every variable given (an API key
// file in a temporary directory unless vars names a key store), logs to
// logs and EMF lines to metrics (nil: none).
func buildAuthorizer(t testing.TB, vars map[string]string, logs, metrics io.Writer) *authorizer.Handler {
	t.Helper()
	if vars["API_KEYS_FILE"] == "" && vars["API_KEYS_TABLE"] == "" {
		vars["API_KEYS_FILE"] = filepath.Join(t.TempDir(), "keys.json")
	}
	s, err := authorizer.LoadSettings(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatalf("authorizer settings: %v", err)
	}
	h, err := authorizer.Build(context.Background(), s, authorizer.NewLogger(logs, s.LogLevel), metrics)
	if err != nil {
		t.Fatalf("authorizer: %v", err)
	}
	return h
}

// anonymousEvent is an authorizer event for POST /predict without a key
// from sourceIP.
func anonymousEvent(sourceIP string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	var e events.APIGatewayCustomAuthorizerRequestTypeRequest
	e.Type = "REQUEST"
	e.MethodArn = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/POST/predict"
	e.Resource, e.Path, e.HTTPMethod = "/predict", "/predict", "POST"
	e.RequestContext.Identity.SourceIP = sourceIP
	e.RequestContext.RequestID = "bench"
	return e
}

// ipOf returns a distinct IPv4 address for caller i in block (0-255).
func ipOf(block, i int) string {
	return fmt.Sprintf("10.%d.%d.%d", block, (i>>8)&255, i&255)
}

// decision is what the harness reads back from an authorizer response.
type decision struct {
	allowed bool
	source  string
}

func decide(t testing.TB, h *authorizer.Handler, e events.APIGatewayCustomAuthorizerRequestTypeRequest) decision {
	t.Helper()
	resp, err := h.Handle(context.Background(), e)
	if err != nil {
		t.Fatalf("authorizer: %v", err)
	}
	if len(resp.PolicyDocument.Statement) != 1 {
		t.Fatalf("authorizer: %d policy statements, want 1", len(resp.PolicyDocument.Statement))
	}
	src, _ := resp.Context[authctx.KeySource].(string)
	return decision{allowed: resp.PolicyDocument.Statement[0].Effect == "Allow", source: src}
}

// newKey writes a key of tier into the key file path and returns it.
func newKey(t testing.TB, path, tier string) string {
	t.Helper()
	fs, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	key, rec, err := apikey.New("bench "+tier, tier, time.Now())
	if err != nil {
		t.Fatalf("new key: %v", err)
	}
	if err := fs.Create(context.Background(), rec); err != nil {
		t.Fatalf("create key: %v", err)
	}
	return key
}

// --- the peer: @upstash/ratelimit through tools/node/ratelimit-peer.mjs --

// peerRun is what one run of the peer driver reported.
type peerRun struct {
	Calls     int            `json:"calls"`
	Allowed   int            `json:"allowed"`
	Denied    int            `json:"denied"`
	Reasons   map[string]int `json:"reasons"`
	LatencyUs []int64        `json:"latencyUs"`

	requests uint64        // Upstash requests of the measured calls
	commands commandStats  // billable Redis commands of the measured calls
	elapsed  time.Duration // from "go" to the result
}

func (p peerRun) latencies() latencies {
	l := make(latencies, len(p.LatencyUs))
	for i, us := range p.LatencyUs {
		l[i] = time.Duration(us) * time.Microsecond
	}
	return l
}

// needPeer returns the path of the peer driver, after checking that node
// and the npm packages are there (skip, or fail under
// BUCKETGATE_INTEGRATION=1).
func needPeer(t testing.TB) string {
	t.Helper()
	redistest.Need(t, "node")
	root := repoRoot(t)
	mod := filepath.Join(root, "tools", "node", "node_modules", "@upstash", "ratelimit")
	if _, err := os.Stat(mod); err != nil {
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatalf("%s is missing: run `make test-deps` (npm ci in tools/node)", mod)
		}
		t.Skipf("%s is missing (npm ci in tools/node)", mod)
	}
	return filepath.Join(root, "tools", "node", "ratelimit-peer.mjs")
}

// runPeerPlan runs the peer driver on a traffic plan: the calls steps
// lists, each decided by one of containers Ratelimit instances (see
// tools/node/ratelimit-peer.mjs). Caller i is the identifier "caller-i".
func runPeerPlan(t testing.TB, up *upstashtest.Env, steps []step, containers int, args ...string) peerRun {
	t.Helper()
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "%d %d\n", s.caller, s.container)
	}
	plan := filepath.Join(t.TempDir(), "plan.txt")
	if err := os.WriteFile(plan, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return runPeer(t, up, append([]string{"--plan", plan, "--containers", strconv.Itoa(containers)}, args...)...)
}

// runPeer runs the peer driver against up with args and meters the
// measured calls only (after its warm-up, between "ready" and its result).
func runPeer(t testing.TB, up *upstashtest.Env, args ...string) peerRun {
	t.Helper()
	script := needPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"UPSTASH_REDIS_REST_URL=" + up.URL,
		"UPSTASH_REDIS_REST_TOKEN=" + up.Token,
		"UPSTASH_DISABLE_TELEMETRY=1",
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("peer: %v", err)
	}
	defer func() { _ = cmd.Wait() }()
	out := bufio.NewReaderSize(stdout, 1<<20)
	fail := func(format string, args ...any) {
		t.Helper()
		cancel()
		_ = cmd.Wait()
		t.Fatalf("peer: "+format+"; stderr: %s", append(args, stderr.String())...)
	}
	line, err := out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != `{"ready":true}` {
		fail("want the ready line, got %q (%v)", line, err)
	}
	m := startMeter(t, up)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		fail("writing the go line: %v", err)
	}
	line, err = out.ReadString('\n')
	if err != nil {
		fail("reading the result: %v", err)
	}
	var run peerRun
	if err := json.Unmarshal([]byte(line), &run); err != nil {
		fail("result is not JSON: %v", err)
	}
	run.requests, run.commands = m.stop(t)
	run.elapsed = time.Since(m.at)
	if err := cmd.Wait(); err != nil {
		fail("exit: %v", err)
	}
	if run.Calls != len(run.LatencyUs) || run.Allowed+run.Denied != run.Calls {
		t.Fatalf("peer: inconsistent result: %d calls, %d allowed, %d denied, %d samples", run.Calls, run.Allowed, run.Denied, len(run.LatencyUs))
	}
	return run
}

// --- charts -------------------------------------------------------------

// chartList collects the charts of a TestBench run; TestBench writes them
// to BUCKETGATE_BENCH_CHARTS at the end.
var chartList struct {
	sync.Mutex
	charts []charts.Chart
}

// addChart records c for this run, replacing a chart of the same file.
func addChart(t testing.TB, c charts.Chart) {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Errorf("chart: %v", err)
		return
	}
	chartList.Lock()
	defer chartList.Unlock()
	for i, old := range chartList.charts {
		if old.File == c.File {
			chartList.charts[i] = c
			return
		}
	}
	chartList.charts = append(chartList.charts, c)
}

// writeCharts writes the charts collected so far to path as JSON.
func writeCharts(t testing.TB, path string) {
	t.Helper()
	chartList.Lock()
	defer chartList.Unlock()
	if len(chartList.charts) == 0 {
		return
	}
	data, err := json.MarshalIndent(chartList.charts, "", " ")
	if err != nil {
		t.Fatalf("charts: %v", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		t.Errorf("%s: %v", envBenchCharts, err)
	}
}

// cdfPoints samples l's distribution for a chart: (µs, quantile) at every
// percentile and at 99.5% and 99.9% when there are samples enough.
func cdfPoints(l latencies) [][2]float64 {
	qs := make([]float64, 0, 102)
	for p := 1; p <= 99; p++ {
		qs = append(qs, float64(p)/100)
	}
	if len(l) >= 400 {
		qs = append(qs, 0.995)
	}
	if len(l) >= 2000 {
		qs = append(qs, 0.999)
	}
	s := slices.Clone(l)
	slices.Sort(s)
	out := make([][2]float64, 0, len(qs))
	for _, q := range qs {
		i := min(max(int(math.Ceil(q*float64(len(s))))-1, 0), len(s)-1)
		out = append(out, [2]float64{max(float64(s[i].Nanoseconds())/1e3, 0.1), q})
	}
	return out
}

// execCommand is exec.CommandContext (one name for the harness's helpers).
var execCommand = exec.CommandContext
