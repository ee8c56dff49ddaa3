package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/local/sam"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
	"github.com/bucketgate/bucketgate/internal/testutil/apitest"
	"github.com/bucketgate/bucketgate/internal/testutil/dynamotest"
	"github.com/bucketgate/bucketgate/internal/testutil/faultproxy"
	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

const proxyTemplate = "testdata/template-proxy.yaml"

// dynamoStack is a running template whose key store is DynamoDB (dynalite)
// reached through a proxy that counts the authorizer's reads.
type dynamoStack struct {
	*stack
	keyReads *faultproxy.Server // between the authorizer and dynalite
	logs     *syncbuf.Buffer
}

// startDynamo serves tmpl with env (on top of the test's Upstash, key table
// and LIMITER_TIMEOUT) in one authorizer container, with one key per tier
// in a fresh DynamoDB table.
func startDynamo(t *testing.T, tmpl string, env map[string]string) *dynamoStack {
	t.Helper()
	exes := functions(t)
	up := upstashtest.Start(t)
	endpoint := dynamotest.Start(t)
	direct := dynamotest.Client(t, endpoint) // the test's own writes are not counted
	table := dynamotest.KeysTable(t, direct)
	store, err := apikey.NewDynamoStore(apikey.DynamoConfig{Client: direct, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, keys: map[string]string{}, redis: up.Redis, upstash: up}
	for _, tier := range []string{"authenticated", "premium"} {
		key, rec, err := apikey.New("e2e "+tier, tier, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Create(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		s.keys[tier] = key
	}
	px := faultproxy.Start(t, endpoint)
	vars := map[string]string{
		"UPSTASH_REDIS_REST_URL":   up.URL,
		"UPSTASH_REDIS_REST_TOKEN": up.Token,
		"API_KEYS_TABLE":           table,
		"API_KEYS_FILE":            "",
		"TIER_LIMITS":              tierLimits,
		"LIMITER_TIMEOUT":          "2s", // a slow CI machine must not turn a test into a fallback test
	}
	for k, v := range env {
		vars[k] = v
	}
	host := map[string]string{
		"AWS_ACCESS_KEY_ID":         "dynamotest",
		"AWS_SECRET_ACCESS_KEY":     "dynamotest",
		"AWS_ENDPOINT_URL_DYNAMODB": px.URL,
	}
	logs := &syncbuf.Buffer{}
	_, srv := apitest.Serve(t, startapi.Options{
		Template: tmpl,
		Prebuilt: exes,
		Logs:     logs,
		MaxProcs: 1,
		EnvVars:  startapi.EnvVars{"Parameters": vars},
		Getenv:   func(k string) string { return host[k] },
	})
	s.base = srv.URL
	return &dynamoStack{stack: s, keyReads: px, logs: logs}
}

// waitLines waits until the authorizer has logged at least n decisions
// (its output travels through a pipe) and returns its lines.
func (d *dynamoStack) waitLines(t *testing.T, n int) []map[string]any {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		lines := apitest.FunctionLines(t, d.logs.String(), "AuthorizerFunction")
		got := 0
		for _, l := range lines {
			if l["msg"] == "decision" {
				got++
			}
		}
		if got >= n || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// failuresBurst and failuresRate are AUTH_FAILURE_LIMIT's default,
// 10/minute:burst=20.
const (
	failuresBurst = 20
	failuresRate  = 10.0 / 60 // tokens per second
)

// TestFailedKeyAttemptsFromOneAddress: 1,000 made-up keys from one
// address. After the failed-key bucket's burst they get 429 (policy
// auth-failures, honest Retry-After, everything in the body) with no
// key-store read: the reads stay within burst + rate × elapsed. A valid key
// the container has seen still works from that address; another address is
// untouched.
func TestFailedKeyAttemptsFromOneAddress(t *testing.T) {
	d := startDynamo(t, template, nil)
	const attacker, neighbour = "127.0.0.21", "127.0.0.22"
	valid := d.keys["authenticated"]
	if r := d.request("POST", "/predict", valid, inputs(1), nil, attacker); r.status != 200 {
		t.Fatalf("valid key before the attempts: %s", r)
	}
	readsBefore := d.keyReads.Requests()

	const attempts = 1000
	status := map[int]int{}
	var rtt401, rtt429 []float64
	start := time.Now()
	for i := range attempts {
		key, _, _, err := apikey.Generate() // well formed, never stored: each needs a read to refuse
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		r := d.request("POST", "/predict", key, inputs(1), nil, attacker)
		rtt := float64(time.Since(t0).Microseconds()) / 1000
		status[r.status]++
		switch r.status {
		case 401:
			rtt401 = append(rtt401, rtt)
		case 429:
			rtt429 = append(rtt429, rtt)
			if status[429] == 1 || i == attempts-1 {
				checkFailures429(t, r)
			}
		default:
			t.Fatalf("attempt %d: %s, want 401 or 429", i+1, r)
		}
	}
	elapsed := time.Since(start)
	reads := d.keyReads.Requests() - readsBefore
	bound := failuresBurst + failuresRate*elapsed.Seconds()
	if float64(reads) > bound+1 {
		t.Errorf("%d key-store reads for %d made-up keys in %s, want at most burst + rate × elapsed = %.1f (+1)", reads, attempts, elapsed.Round(time.Millisecond), bound)
	}
	if status[401] < failuresBurst || float64(status[401]) > bound+1 {
		t.Errorf("%d × 401, want the burst (%d) and at most %.1f", status[401], failuresBurst, bound+1)
	}
	if int(reads) != status[401] {
		t.Errorf("%d key-store reads for %d × 401: every refused key should cost one read and every 429 none", reads, status[401])
	}

	// The valid key the container has seen still works from that address,
	// without a read; a valid key it has not seen waits like the rest.
	before := d.keyReads.Requests()
	if r := d.request("POST", "/predict", valid, inputs(1), nil, attacker); r.status != 200 {
		t.Errorf("cached valid key from the throttled address: %s, want 200", r)
	} else {
		checkLimitHeaders(t, r, "authenticated", authBurst)
	}
	if r := d.request("POST", "/predict", d.keys["premium"], inputs(1), nil, attacker); r.status != 429 {
		t.Errorf("valid key never seen by the container, from the throttled address: %s, want 429 (auth-failures)", r)
	}
	if n := d.keyReads.Requests() - before; n != 0 {
		t.Errorf("%d key-store reads for a cached key and a throttled attempt, want 0", n)
	}
	// Another address has its own bucket.
	key, _, _, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if r := d.request("POST", "/predict", key, inputs(1), nil, neighbour); r.status != 401 {
		t.Errorf("made-up key from another address: %s, want 401", r)
	}

	// Lambda time per request, from the authorizer's own decision lines.
	lines := d.waitLines(t, attempts+4)
	var known, charged []float64
	for _, l := range lines {
		if l["msg"] != "decision" || l["caller"] != "ip:"+attacker {
			continue
		}
		ms, _ := l["latencyMs"].(float64)
		switch {
		case l["policy"] == authorizer.FailuresPolicy && l["decision"] == "denied" && l["failedKeyBucket"] == "known empty":
			known = append(known, ms)
		case l["decision"] == "unauthorized":
			charged = append(charged, ms)
		}
	}
	if len(known) < attempts-status[401] {
		t.Errorf("%d decisions logged as refused from a known-empty bucket, want %d", len(known), attempts-status[401])
	}
	t.Logf("MEASURED failed-key attempts=%d elapsed=%s 401=%d 429=%d key_store_reads=%d bound=%.1f "+
		"handler_ms_429{p50=%.3f p99=%.3f} handler_ms_401{p50=%.3f p99=%.3f} http_rtt_ms_429{p50=%.2f p99=%.2f} http_rtt_ms_401{p50=%.2f p99=%.2f}",
		attempts, elapsed.Round(time.Millisecond), status[401], status[429], reads, bound,
		percentile(known, 0.5), percentile(known, 0.99), percentile(charged, 0.5), percentile(charged, 0.99),
		percentile(rtt429, 0.5), percentile(rtt429, 0.99), percentile(rtt401, 0.5), percentile(rtt401, 0.99))
}

// checkFailures429 asserts an auth-failures 429 whose body alone tells the
// client everything, in agreement with the headers.
func checkFailures429(t *testing.T, r reply) {
	t.Helper()
	body := checkBodyAlone(t, r)
	if body.Policy != authorizer.FailuresPolicy || body.Tier != authorizer.NoTier || body.Limit != failuresBurst {
		t.Errorf("auth-failures 429 body %s: want policy %s, tier %s, limit %d", r.body, authorizer.FailuresPolicy, authorizer.NoTier, failuresBurst)
	}
	if body.RetryAfter < 1 || body.RetryAfter > 6 {
		t.Errorf("retryAfter %d, want 1..6 s (one token every 6 s)", body.RetryAfter)
	}
}

// tooManyBody is the 429 body of ACCESS_DENIED: every field a client needs.
type tooManyBody struct {
	Message    string `json:"message"`
	RetryAfter int64  `json:"retryAfter"`
	Limit      int64  `json:"limit"`
	Remaining  int64  `json:"remaining"`
	Reset      int64  `json:"reset"`
	Tier       string `json:"tier"`
	Policy     string `json:"policy"`
}

// checkBodyAlone decodes a 429 body strictly (exactly the documented
// fields, of the documented JSON types) and checks it against the headers
// the gateway response maps from the same context.
func checkBodyAlone(t *testing.T, r reply) tooManyBody {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("got %s, want 429", r)
	}
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var raw map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatalf("429 body %q is not JSON: %v", r.body, err)
	}
	for _, k := range []string{"message", "retryAfter", "limit", "remaining", "reset", "tier", "policy"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("429 body %s has no %q", r.body, k)
		}
	}
	var b tooManyBody
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("429 body %s: %v (want strings message/tier/policy, whole numbers retryAfter/limit/remaining/reset)", r.body, err)
	}
	got := []string{strconv.FormatInt(b.RetryAfter, 10), strconv.FormatInt(b.Limit, 10), strconv.FormatInt(b.Remaining, 10),
		strconv.FormatInt(b.Reset, 10), b.Tier}
	want := []string{r.header.Get("Retry-After"), r.header.Get("X-RateLimit-Limit"), r.header.Get("X-RateLimit-Remaining"),
		r.header.Get("X-RateLimit-Reset"), r.header.Get("X-RateLimit-Tier")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("429 body and headers disagree (-headers +body):\n%s", diff)
	}
	if b.Message == "" || b.RetryAfter < 1 || b.Policy == "" {
		t.Errorf("429 body %s: want a message, retryAfter >= 1 and the policy", r.body)
	}
	return b
}

// TestTooManyBodyAlone: the ACCESS_DENIED 429's body carries everything a
// client needs (message, retryAfter, limit, remaining, reset, tier,
// policy), in agreement with the headers, and it rests on nothing but
// $context.authorizer.* substitution in the body template: a client that
// never sees a mapped header still knows when to come back. Waiting the
// body's retryAfter is enough for the request to pass.
func TestTooManyBodyAlone(t *testing.T) {
	tpl, err := sam.Load(template)
	if err != nil {
		t.Fatal(err)
	}
	api, err := tpl.API("RateLimitedApi", nil)
	if err != nil {
		t.Fatal(err)
	}
	denied := api.GatewayResponses["ACCESS_DENIED"]
	vars := regexp.MustCompile(`\$[A-Za-z][A-Za-z0-9._]*`).FindAllString(denied.Templates["application/json"], -1)
	if len(vars) != 7 {
		t.Errorf("ACCESS_DENIED body uses %d variables %v, want the 7 fields", len(vars), vars)
	}
	for _, v := range vars {
		if !strings.HasPrefix(v, "$context.authorizer.") {
			t.Errorf("ACCESS_DENIED body uses %s: the body must rest on the authorizer's context only", v)
		}
	}

	s := start(t)
	denial, _ := untilDenied(t, s, func(int) map[string]string { return nil })
	b := checkBodyAlone(t, denial)
	if b.Policy != "anonymous" || b.Tier != "anonymous" || b.Limit != anonBurst || b.Remaining != 0 {
		t.Errorf("429 body %s: want policy and tier anonymous, limit %d, remaining 0", denial.body, anonBurst)
	}
	time.Sleep(time.Duration(b.RetryAfter) * time.Second) // the real wait is what is tested
	if r := s.predict("/predict", "", 1); r.status != 200 {
		t.Errorf("after the body's retryAfter (%d s): %s, want 200", b.RetryAfter, r)
	}
}

// TestStageThrottle: template.yaml throttles the whole stage with
// parameters, and API Gateway's own 429 (THROTTLED) is JSON with a
// Retry-After and a body a client reads like the authorizer's.
func TestStageThrottle(t *testing.T) {
	tpl, err := sam.Load(template)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		params      map[string]string
		rate, burst string
	}{
		{name: "defaults", rate: "100", burst: "200"},
		{name: "overridden", params: map[string]string{"StageThrottlingRateLimit": "2500", "StageThrottlingBurstLimit": "5000"}, rate: "2500", burst: "5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tpl.Resolve(tpl.Resources["RateLimitedApi"].Properties["MethodSettings"], tt.params)
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprint(v)
			want := fmt.Sprint([]any{map[string]any{"HttpMethod": "*", "ResourcePath": "/*",
				"ThrottlingBurstLimit": tt.burst, "ThrottlingRateLimit": tt.rate}})
			if got != want {
				t.Errorf("MethodSettings = %s, want %s", got, want)
			}
		})
	}
	for _, p := range []string{"StageThrottlingRateLimit", "StageThrottlingBurstLimit"} {
		if tpl.Parameters[p].Type != "Number" {
			t.Errorf("parameter %s: type %q, want Number", p, tpl.Parameters[p].Type)
		}
	}

	api, err := tpl.API("RateLimitedApi", nil)
	if err != nil {
		t.Fatal(err)
	}
	th, ok := api.GatewayResponses["THROTTLED"]
	if !ok {
		t.Fatal("no THROTTLED gateway response")
	}
	none := func(string) (string, bool) { return "", false } // nothing of the caller is known
	headers := th.RenderHeaders(none)
	body := sam.RenderTemplate(th.Templates["application/json"], none)
	var b struct {
		Message    string `json:"message"`
		RetryAfter int    `json:"retryAfter"`
		Policy     string `json:"policy"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("THROTTLED body %q: %v", body, err)
	}
	if th.StatusCode != 429 || headers["Content-Type"] != "application/json" || headers["Retry-After"] != "1" ||
		b.RetryAfter != 1 || b.Message == "" || b.Policy != "stage-throttle" {
		t.Errorf("THROTTLED: status %d, headers %v, body %s; want 429, JSON, Retry-After 1 in header and body, policy stage-throttle",
			th.StatusCode, headers, body)
	}
}

// TestProxyResourceOnePath: with predict behind one POST /{proxy+}
// resource (testdata/template-proxy.yaml), the authorizer gates premium
// routes and prices the batch route on the request path, as predict routes
// on it: non-premium callers get 403 on /premium/predict (nothing
// charged), a batch costs ROUTE_COSTS, whatever the spelling of the path.
func TestProxyResourceOnePath(t *testing.T) {
	checkVariantAgrees(t)
	d := startDynamo(t, proxyTemplate, nil)
	auth, prem := d.keys["authenticated"], d.keys["premium"]

	remaining := authBurst
	tests := []struct {
		name       string
		path, key  string
		rows       int
		wantStatus int
		wantCost   int // tokens taken from the authenticated key's bucket
		wantTier   string
	}{
		{name: "predict", path: "/predict", key: auth, rows: 1, wantStatus: 200, wantCost: 1, wantTier: "authenticated"},
		{name: "batch costs 5", path: "/predict/batch", key: auth, rows: 150, wantStatus: 200, wantCost: batchCost, wantTier: "authenticated"},
		{name: "premium route, authenticated: 403, nothing charged", path: "/premium/predict", key: auth, rows: 1, wantStatus: 403},
		{name: "premium route, anonymous: 403", path: "/premium/predict", rows: 1, wantStatus: 403},
		{name: "premium route, premium key", path: "/premium/predict", key: prem, rows: 1, wantStatus: 200, wantTier: "premium"},
		{name: "premium route, trailing slash", path: "/premium/predict/", key: auth, rows: 1, wantStatus: 403},
		{name: "premium route, doubled slash", path: "//premium//predict", key: auth, rows: 1, wantStatus: 403},
		{name: "premium route, encoded slashes", path: "/%2Fpremium%2Fpredict", key: auth, rows: 1, wantStatus: 403},
		{name: "premium route, dot segments", path: "/predict/../premium/predict", key: auth, rows: 1, wantStatus: 403},
		{name: "other letter case is no route: 404, charged 1", path: "/Premium/predict", key: auth, rows: 1, wantStatus: 404, wantCost: 1},
		{name: "batch with a trailing slash costs 5", path: "/predict/batch/", key: auth, rows: 1, wantStatus: 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := d.request("POST", tt.path, tt.key, inputs(tt.rows), nil, "")
			if r.status != tt.wantStatus {
				t.Fatalf("POST %s: %s, want %d", tt.path, r, tt.wantStatus)
			}
			if tt.wantTier != "" {
				if got := r.json(t)["tier"]; got != tt.wantTier {
					t.Errorf("tier %v, want %s", got, tt.wantTier)
				}
			}
			if tt.key != auth {
				return
			}
			remaining -= tt.wantCost
			switch r.status {
			case 403:
				if msg, _ := r.json(t)["message"].(string); !strings.Contains(msg, "premium") {
					t.Errorf("403 body %s: want the premium tier named", r.body)
				}
			case 429:
				// 8 − 1 − 5 − 1 = 1 token left: the batch's 5 do not fit,
				// which shows it was priced as the batch route.
				if b := checkBodyAlone(t, r); b.Remaining != int64(remaining) || b.Policy != "authenticated" {
					t.Errorf("429 body %s: want remaining %d under policy authenticated", r.body, remaining)
				}
			default:
				if got := checkLimitHeaders(t, r, "authenticated", authBurst); got != remaining {
					t.Errorf("remaining %d, want %d (cost %d)", got, remaining, tt.wantCost)
				}
			}
		})
	}
	// The Route metric is the template's resource, never the client's path.
	routes := map[string]bool{}
	for _, l := range d.waitLines(t, len(tests)) {
		if l["_aws"] != nil {
			routes[fmt.Sprint(l["Route"])] = true
		}
	}
	if diff := cmp.Diff(map[string]bool{"POST /{proxy+}": true}, routes); diff != "" {
		t.Errorf("EMF Route values (-want +got):\n%s", diff)
	}
}

// checkVariantAgrees: the proxy variant differs from template.yaml only in
// its routes: same authorizer environment (with template.yaml's default
// parameters) and same gateway responses.
func checkVariantAgrees(t *testing.T) {
	t.Helper()
	load := func(path string) (map[string]string, sam.API) {
		tpl, err := sam.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		fns, err := tpl.Functions(nil)
		if err != nil {
			t.Fatal(err)
		}
		api, err := tpl.API("RateLimitedApi", nil)
		if err != nil {
			t.Fatal(err)
		}
		return fns["AuthorizerFunction"].Environment, api
	}
	env, api := load(template)
	venv, vapi := load(filepath.FromSlash(proxyTemplate))
	if diff := cmp.Diff(env, venv); diff != "" {
		t.Errorf("%s's authorizer environment differs from template.yaml's (-template +variant):\n%s", proxyTemplate, diff)
	}
	if diff := cmp.Diff(api.GatewayResponses, vapi.GatewayResponses); diff != "" {
		t.Errorf("%s's gateway responses differ from template.yaml's (-template +variant):\n%s", proxyTemplate, diff)
	}
	var routes []string
	for _, r := range vapi.Routes {
		routes = append(routes, r.Method+" "+r.Path)
	}
	if diff := cmp.Diff([]string{"GET /model-info", "POST /{proxy+}"}, routes); diff != "" {
		t.Errorf("variant routes (-want +got):\n%s", diff)
	}
}
