package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/apitest"
	"github.com/bucketgate/bucketgate/internal/testutil/fnbuild"

	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

const template = "../template.yaml"

// Limits for the tests: anonymous refills fast (1 token a second) so that
// waiting out a 429 takes about a second; the keyed tiers refill so slowly
// (1 token an hour) that remaining-token counts are exact during a test.
// Every burst is at least the batch route's cost of 5 (the authorizer
// refuses to start otherwise).
const (
	tierLimits     = "anonymous=1/second:burst=5,authenticated=1/hour:burst=8,premium=1/hour:burst=20"
	anonBurst      = 5
	authBurst      = 8
	premiumBurst   = 20
	batchCost      = 5 // template.yaml's default ROUTE_COSTS: POST /predict/batch=5
	predictMaxRows = 100
)

func TestMain(m *testing.M) {
	code := m.Run()
	fnbuild.Cleanup()
	cleanupLimits()
	os.Exit(code)
}

// functions builds the template's functions for the host once per test
// binary, the way cmd/local does (make build-<LogicalId>).
func functions(t testing.TB) map[string]string {
	t.Helper()
	return fnbuild.Binaries(t, "..")
}

// stack is one running copy of the whole system.
type stack struct {
	t       testing.TB
	base    string
	keys    map[string]string // tier (or a named key's name) -> plaintext key
	ids     map[string]string // the same names -> key IDs
	revoked string            // a revoked key
	redis   *redistest.Server
	upstash *upstashtest.Env
	app     *startapi.App
	logs    *syncbuf.Buffer // the functions' and the gateway's output
	keyFile string
}

// start runs template.yaml against a fresh redis-server with a key file
// holding one key per tier and a revoked key, with the test tier limits.
func start(t *testing.T) *stack {
	t.Helper()
	return startWith(t, tierLimits)
}

func startWith(t testing.TB, limits string) *stack {
	t.Helper()
	return launch(t, options{env: map[string]string{"TIER_LIMITS": limits}})
}

// options says how launch differs from start's stack.
type options struct {
	// env overrides or adds --env-vars "Parameters" (TIER_LIMITS defaults
	// to tierLimits).
	env map[string]string
	// keys are extra keys in the key file, by name (s.keys[name]).
	keys []keySpec
	// keyFile and upstash, when set, reuse another stack's key file and
	// Upstash endpoint (a new deployment of the same system).
	keyFile string
	upstash *upstashtest.Env
	// maxProcs caps the processes per function; 0 = start-api's default (4).
	maxProcs int
}

// keySpec is an extra key: its tier, own limit (canonical LIMIT text, ""
// for the tier's) and expiry (zero: never).
type keySpec struct {
	name, tier, limit string
	expires           time.Time
}

// launch starts a stack as opts says: template.yaml through start-api with
// the real functions, a key file with one key per tier, a revoked key and
// opts.keys, on a fresh redis-server behind an Upstash-compatible endpoint.
func launch(t testing.TB, opts options) *stack {
	t.Helper()
	exes := functions(t)
	up := opts.upstash
	if up == nil {
		up = upstashtest.Start(t)
	}
	ctx := context.Background()
	s := &stack{t: t, keys: map[string]string{}, ids: map[string]string{}, redis: up.Redis, upstash: up, keyFile: opts.keyFile}
	if s.keyFile == "" {
		s.keyFile = filepath.Join(t.TempDir(), "keys.json")
		s.makeKeys(ctx, opts.keys)
	}

	vars := map[string]string{
		"UPSTASH_REDIS_REST_URL":   up.URL,
		"UPSTASH_REDIS_REST_TOKEN": up.Token,
		"API_KEYS_FILE":            s.keyFile,
		"API_KEYS_TABLE":           "",
		"TIER_LIMITS":              tierLimits,
		"LIMITER_TIMEOUT":          "2s", // a slow CI machine must not turn a test into a fallback test
	}
	for k, v := range opts.env {
		vars[k] = v
	}
	s.logs = &syncbuf.Buffer{}
	app, srv := apitest.Serve(t, startapi.Options{
		Template: template,
		Prebuilt: exes,
		Logs:     s.logs,
		EnvVars:  startapi.EnvVars{"Parameters": vars},
		MaxProcs: opts.maxProcs,
	})
	if app.UpstashURL() != "" {
		t.Fatal("an embedded Upstash endpoint was started although UPSTASH_REDIS_REST_URL is set")
	}
	s.app = app
	s.base = srv.URL
	return s
}

// makeKeys writes s.keyFile: one key per keyed tier, a revoked key, and
// extra.
func (s *stack) makeKeys(ctx context.Context, extra []keySpec) {
	t := s.t
	t.Helper()
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: s.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	specs := []keySpec{{name: "authenticated", tier: "authenticated"}, {name: "premium", tier: "premium"}, {name: "revoked", tier: "premium"}}
	for _, k := range append(specs, extra...) {
		created := time.Now()
		if !k.expires.IsZero() && !k.expires.After(created) {
			created = k.expires.Add(-time.Hour) // an expired key
		}
		key, rec, err := apikey.New("e2e "+k.name, k.tier, created)
		if err != nil {
			t.Fatal(err)
		}
		if k.limit != "" {
			if rec.Limit, err = limiter.ParsePolicy(k.limit); err != nil {
				t.Fatalf("key %s: %v", k.name, err)
			}
		}
		rec.ExpiresAt = k.expires
		if err := store.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if k.name == "revoked" {
			if err := store.Revoke(ctx, rec.ID); err != nil {
				t.Fatal(err)
			}
			s.revoked = key
			continue
		}
		s.keys[k.name], s.ids[k.name] = key, rec.ID
	}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

func (r reply) String() string {
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

// request sends one request from 127.0.0.1 (or from another loopback
// address when from is set) and returns the reply.
func (s *stack) request(method, path, key string, body []byte, header map[string]string, from string) reply {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := http.DefaultClient
	if from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		client = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		defer client.CloseIdleConnections()
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (s *stack) predict(path, key string, rows int) reply {
	s.t.Helper()
	return s.request("POST", path, key, inputs(rows), nil, "")
}

// inputs is a valid body with n rows of 4 features.
func inputs(n int) []byte {
	rows := make([]string, n)
	for i := range rows {
		rows[i] = "[0.5,-1.2,2,0.3]"
	}
	return []byte(`{"inputs":[` + strings.Join(rows, ",") + `]}`)
}

var (
	policyRE    = regexp.MustCompile(`^"(\w+)";q=(\d+);w=(\d+)$`)
	rateLimitRE = regexp.MustCompile(`^"(\w+)";r=(\d+);t=(\d+)$`)
)

// checkLimitHeaders asserts the six rate-limit headers of a limited
// response and returns X-RateLimit-Remaining.
func checkLimitHeaders(t *testing.T, r reply, tier string, limit int) int {
	t.Helper()
	h := r.header
	if got := h.Get("X-RateLimit-Tier"); got != tier {
		t.Errorf("X-RateLimit-Tier = %q, want %q (%s)", got, tier, r)
	}
	if got := h.Get("X-RateLimit-Limit"); got != strconv.Itoa(limit) {
		t.Errorf("X-RateLimit-Limit = %q, want %d", got, limit)
	}
	remaining, err := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	if err != nil || remaining < 0 || remaining > limit {
		t.Errorf("X-RateLimit-Remaining = %q, want a whole number in [0, %d]", h.Get("X-RateLimit-Remaining"), limit)
	}
	if reset, err := strconv.Atoi(h.Get("X-RateLimit-Reset")); err != nil || reset < 0 {
		t.Errorf("X-RateLimit-Reset = %q, want whole seconds", h.Get("X-RateLimit-Reset"))
	}
	if m := policyRE.FindStringSubmatch(h.Get("RateLimit-Policy")); m == nil || m[1] != tier || m[2] != strconv.Itoa(limit) {
		t.Errorf("RateLimit-Policy = %q, want %q;q=%d;w=<seconds>", h.Get("RateLimit-Policy"), tier, limit)
	}
	if m := rateLimitRE.FindStringSubmatch(h.Get("RateLimit")); m == nil || m[1] != tier || m[2] != h.Get("X-RateLimit-Remaining") || m[3] != h.Get("X-RateLimit-Reset") {
		t.Errorf("RateLimit = %q, want %q;r=<remaining>;t=<reset> matching the X-RateLimit headers", h.Get("RateLimit"), tier)
	}
	return remaining
}

// checkTooMany asserts a 429 with every header and a body whose retryAfter
// equals Retry-After; it returns Retry-After.
func checkTooMany(t *testing.T, r reply, tier string, limit int) int {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("got %s, want 429", r)
	}
	checkLimitHeaders(t, r, tier, limit)
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || retry < 1 {
		t.Fatalf("Retry-After = %q, want whole seconds >= 1", r.header.Get("Retry-After"))
	}
	body := r.json(t)
	if body["message"] == "" || body["message"] == nil {
		t.Errorf("429 body %s has no message", r.body)
	}
	if got, ok := body["retryAfter"].(float64); !ok || int(got) != retry {
		t.Errorf("body retryAfter = %v, want the Retry-After header's %d", body["retryAfter"], retry)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	return retry
}

func TestModelInfoNeedsNoKeyAndIsNotLimited(t *testing.T) {
	s := start(t)
	for i := range 3 * anonBurst {
		r := s.request("GET", "/model-info", "", nil, nil, "")
		if r.status != 200 {
			t.Fatalf("request %d: %s, want 200", i+1, r)
		}
		if n, ok := r.json(t)["input_features"].(float64); !ok || n < 1 {
			t.Fatalf("input_features = %v, want a positive number", r.json(t)["input_features"])
		}
		if h := r.header.Get("X-RateLimit-Limit"); h != "" {
			t.Fatalf("/model-info carries X-RateLimit-Limit %q; it is not limited", h)
		}
	}
	// Nor did it draw from the caller's anonymous bucket.
	r := s.predict("/predict", "", 1)
	if r.status != 200 {
		t.Fatalf("POST /predict: %s", r)
	}
	if got := checkLimitHeaders(t, r, "anonymous", anonBurst); got != anonBurst-1 {
		t.Errorf("remaining after one predict = %d, want %d", got, anonBurst-1)
	}
}

// untilDenied sends anonymous POST /predict requests (headers from hdr(i))
// until one is refused, and returns the 429 and how many passed. The bucket
// starts full, so the first anonBurst always pass; a machine so slow that a
// whole token refills between requests may let one or two more through, so
// the test allows up to 3*anonBurst before calling the limit broken.
func untilDenied(t *testing.T, s *stack, hdr func(i int) map[string]string) (reply, int) {
	t.Helper()
	for i := range 3 * anonBurst {
		r := s.request("POST", "/predict", "", inputs(1), hdr(i), "")
		switch r.status {
		case 200:
			if tier := r.json(t)["tier"]; tier != "anonymous" {
				t.Errorf("body tier = %v, want anonymous", tier)
			}
			checkLimitHeaders(t, r, "anonymous", anonBurst)
		case 429:
			if i < anonBurst {
				t.Fatalf("request %d refused; the first %d fit in the burst", i+1, anonBurst)
			}
			return r, i
		default:
			t.Fatalf("request %d: %s", i+1, r)
		}
	}
	t.Fatalf("%d requests in a row passed; the burst is %d", 3*anonBurst, anonBurst)
	return reply{}, 0
}

func TestAnonymousBurstThenHonest429(t *testing.T) {
	s := start(t)
	denied, _ := untilDenied(t, s, func(int) map[string]string { return nil })
	retry := checkTooMany(t, denied, "anonymous", anonBurst)
	// A denied request costs nothing: asking again at once is denied again
	// with no longer a wait.
	if again := checkTooMany(t, s.predict("/predict", "", 1), "anonymous", anonBurst); again > retry {
		t.Errorf("a second denial asks to wait %d s, more than the first's %d s: the denial was charged", again, retry)
	}
	// Honesty: after Retry-After seconds the same request passes. (A real
	// wait is what is being tested; the tier refills 1 token a second.)
	time.Sleep(time.Duration(retry) * time.Second)
	if r := s.predict("/predict", "", 1); r.status != 200 {
		t.Fatalf("after waiting Retry-After (%d s): %s, want 200", retry, r)
	}
}

func TestTiers(t *testing.T) {
	s := start(t)
	tests := []struct {
		name  string
		key   string
		tier  string
		limit int
	}{
		{name: "anonymous", key: "", tier: "anonymous", limit: anonBurst},
		{name: "authenticated key", key: s.keys["authenticated"], tier: "authenticated", limit: authBurst},
		{name: "premium key", key: s.keys["premium"], tier: "premium", limit: premiumBurst},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.predict("/predict", tc.key, 2)
			if r.status != 200 {
				t.Fatalf("%s", r)
			}
			body := r.json(t)
			if body["tier"] != tc.tier {
				t.Errorf("body tier = %v, want %s", body["tier"], tc.tier)
			}
			if preds, _ := body["predictions"].([]any); len(preds) != 2 {
				t.Errorf("predictions = %v, want 2", body["predictions"])
			}
			if rem := checkLimitHeaders(t, r, tc.tier, tc.limit); rem != tc.limit-1 {
				t.Errorf("remaining = %d, want %d", rem, tc.limit-1)
			}
		})
	}
	t.Run("premium route with a premium key", func(t *testing.T) {
		r := s.predict("/premium/predict", s.keys["premium"], 1)
		if r.status != 200 || r.json(t)["tier"] != "premium" {
			t.Fatalf("%s, want 200 for tier premium", r)
		}
	})
}

func TestUnknownAndRevokedKeysAre401(t *testing.T) {
	s := start(t)
	unknown, _, _, err := apikey.Generate() // well-formed, never stored
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  string
	}{
		{name: "unknown key", key: unknown},
		{name: "revoked key", key: s.revoked},
		{name: "malformed key", key: "not-a-key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.predict("/predict", tc.key, 1)
			if r.status != 401 {
				t.Fatalf("%s, want 401", r)
			}
			if got := string(bytes.TrimSpace(r.body)); got != `{"message":"Unauthorized"}` {
				t.Errorf("body = %s, want {\"message\":\"Unauthorized\"}", got)
			}
		})
	}
}

func TestPremiumRouteForbidsOtherTiersWithoutCharging(t *testing.T) {
	s := start(t)
	key := s.keys["authenticated"]
	first := s.predict("/predict", key, 1)
	if first.status != 200 {
		t.Fatal(first)
	}
	before := checkLimitHeaders(t, first, "authenticated", authBurst)
	for _, k := range []string{key, ""} {
		r := s.predict("/premium/predict", k, 1)
		if r.status != 403 {
			t.Fatalf("premium route with key %q: %s, want 403", k, r)
		}
		if msg, _ := r.json(t)["message"].(string); msg == "" {
			t.Errorf("403 body %s has no message", r.body)
		}
	}
	after := checkLimitHeaders(t, s.predict("/predict", key, 1), "authenticated", authBurst)
	if after != before-1 {
		t.Errorf("remaining went %d -> %d around the 403, want %d: the 403 was charged", before, after, before-1)
	}
}

func TestBadRequestsAre400AndCharged(t *testing.T) {
	s := start(t)
	key := s.keys["premium"]
	rows := func(n int, row string) []byte {
		r := make([]string, n)
		for i := range r {
			r[i] = row
		}
		return []byte(`{"inputs":[` + strings.Join(r, ",") + `]}`)
	}
	tests := []struct {
		name string
		body []byte
	}{
		{name: "bad JSON", body: []byte(`{"inputs": [[1,2,3,4]`)},
		{name: "wrong shape", body: []byte(`{"inputs": [1, 2, 3, 4]}`)},
		{name: "non-numbers", body: []byte(`{"inputs": [["a", "b", "c", "d"]]}`)},
		{name: "wrong feature count", body: []byte(`{"inputs": [[1, 2]]}`)},
		{name: "too many rows", body: rows(predictMaxRows+1, "[1,2,3,4]")},
		{name: "empty body", body: []byte(``)},
	}
	remaining := premiumBurst
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.request("POST", "/predict", key, tc.body, nil, "")
			if r.status != 400 {
				t.Fatalf("%s, want 400", r)
			}
			if msg, _ := r.json(t)["message"].(string); msg == "" {
				t.Errorf("400 body %s has no message", r.body)
			}
			// The authorizer cannot see the body: a 400 is charged.
			remaining--
			if got := checkLimitHeaders(t, r, "premium", premiumBurst); got != remaining {
				t.Errorf("remaining = %d, want %d", got, remaining)
			}
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	s := start(t)
	key := s.keys["premium"]
	t.Run("over the function's 1 MiB", func(t *testing.T) {
		big := []byte(`{"inputs":[[1,2,3,4]],"pad":"` + strings.Repeat("x", 1<<20) + `"}`)
		r := s.request("POST", "/predict", key, big, nil, "")
		if r.status != 413 {
			t.Fatalf("%s, want 413", r)
		}
		if msg, _ := r.json(t)["message"].(string); msg == "" {
			t.Errorf("413 body %s has no message", r.body)
		}
		if got := checkLimitHeaders(t, r, "premium", premiumBurst); got != premiumBurst-1 {
			t.Errorf("remaining = %d, want %d (a 413 from the function is charged)", got, premiumBurst-1)
		}
	})
	t.Run("over API Gateway's 10 MB", func(t *testing.T) {
		r := s.request("POST", "/predict", key, bytes.Repeat([]byte("x"), 10<<20+1), nil, "")
		if r.status != 413 {
			t.Fatalf("%s, want 413", r)
		}
		// API Gateway refuses it before the authorizer: nothing charged.
		next := s.predict("/predict", key, 1)
		if got := checkLimitHeaders(t, next, "premium", premiumBurst); got != premiumBurst-2 {
			t.Errorf("remaining = %d, want %d", got, premiumBurst-2)
		}
	})
}

func TestSpoofedForwardedForIsIgnored(t *testing.T) {
	s := start(t)
	// Every request claims another client address. Were X-Forwarded-For
	// choosing the bucket, each would get a fresh one and none be refused.
	denied, _ := untilDenied(t, s, func(i int) map[string]string {
		return map[string]string{"X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i+1)}
	})
	checkTooMany(t, denied, "anonymous", anonBurst)

	// Another peer address has a bucket of its own (Linux routes all of
	// 127.0.0.0/8 to loopback; elsewhere this part is skipped).
	if ln, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Logf("127.0.0.2 unavailable (%v); skipping the second-peer check", err)
		return
	} else {
		ln.Close()
	}
	r := s.request("POST", "/predict", "", inputs(1), nil, "127.0.0.2")
	if r.status != 200 {
		t.Fatalf("from another peer: %s, want 200", r)
	}
	if rem := checkLimitHeaders(t, r, "anonymous", anonBurst); rem != anonBurst-1 {
		t.Errorf("another peer's remaining = %d, want %d", rem, anonBurst-1)
	}
}

func TestBatchCostsRouteCosts(t *testing.T) {
	s := start(t)
	key := s.keys["authenticated"]
	r := s.predict("/predict/batch", key, 150) // more rows than /predict allows
	if r.status != 200 {
		t.Fatalf("%s", r)
	}
	if preds, _ := r.json(t)["predictions"].([]any); len(preds) != 150 {
		t.Errorf("%d predictions, want 150", len(preds))
	}
	if got := checkLimitHeaders(t, r, "authenticated", authBurst); got != authBurst-batchCost {
		t.Errorf("remaining after a batch = %d, want %d (cost %d)", got, authBurst-batchCost, batchCost)
	}
	// 3 tokens left: the next batch (5) is refused and charges nothing...
	retry := checkTooMany(t, s.predict("/predict/batch", key, 1), "authenticated", authBurst)
	// ...with an honest wait: 2 missing tokens at 1 per hour.
	if retry < 7000 || retry > 7200 {
		t.Errorf("Retry-After = %d, want about 7200 s (2 tokens at 1/hour)", retry)
	}
	// A cheaper request still fits in what is left.
	if r := s.predict("/predict", key, 1); r.status != 200 {
		t.Fatalf("single predict after the refused batch: %s", r)
	} else if got := checkLimitHeaders(t, r, "authenticated", authBurst); got != authBurst-batchCost-1 {
		t.Errorf("remaining = %d, want %d", got, authBurst-batchCost-1)
	}
}

func TestUnknownRouteIsMissingAuthenticationToken(t *testing.T) {
	s := start(t)
	for _, tc := range []struct{ method, path string }{{"GET", "/nope"}, {"GET", "/predict"}, {"DELETE", "/model-info"}} {
		r := s.request(tc.method, tc.path, "", nil, nil, "")
		if r.status != 403 || string(bytes.TrimSpace(r.body)) != `{"message":"Missing Authentication Token"}` {
			t.Errorf("%s %s: %s, want 403 Missing Authentication Token", tc.method, tc.path, r)
		}
	}
}

// BenchmarkAllowedPredict measures one allowed POST /predict through the
// whole local stack (gateway, authorizer process, Upstash REST server, real
// redis-server, predict process), from one client connection, and reports
// Upstash REST requests per decision.
func BenchmarkAllowedPredict(b *testing.B) {
	s := startWith(b, "anonymous=1000000/second:burst=1000000")
	body := inputs(1)
	if r := s.request("POST", "/predict", "", body, nil, ""); r.status != 200 {
		b.Fatalf("warm-up: %s", r)
	}
	before := s.upstash.Server.Requests()
	for b.Loop() {
		if r := s.request("POST", "/predict", "", body, nil, ""); r.status != 200 {
			b.Fatalf("%s", r)
		}
	}
	b.ReportMetric(float64(s.upstash.Server.Requests()-before)/float64(b.N), "upstash-req/op")
}
