package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// Every policy of README's "Policies: several limits on one request",
// through start-api with the real authorizer and predict function on a real
// redis-server. The keyed tiers refill 1 token an hour (tierLimits), so
// that remaining counts are exact while a test runs.

// timed sends one request and returns the reply with the instants before
// and after it: the decision was made in between.
func timed(send func() reply) (reply, time.Time, time.Time) {
	before := time.Now()
	r := send()
	return r, before, time.Now()
}

// nearMidnight skips a test whose quota window could end while it runs.
func nearMidnight(t *testing.T) {
	t.Helper()
	now := time.Now().UTC()
	if next := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC); next.Sub(now) < 2*time.Minute {
		t.Skip("a daily quota window ends within 2 minutes: run again after 00:00 UTC")
	}
}

func TestTierQuota(t *testing.T) {
	nearMidnight(t)
	s := launch(t, options{env: map[string]string{
		// The quota is at least the batch route's cost, or the authorizer
		// refuses to start.
		"TIER_LIMITS": "anonymous=1/second:burst=5,authenticated=1/hour:burst=8:quota=5/day,premium=1/hour:burst=20",
	}})
	key := s.keys["authenticated"]
	policies := func(spent int64, before, after time.Time) []pol {
		return []pol{
			{name: "authenticated", q: authBurst, w: authBurst * 3600, r: authBurst - spent, t: resetAfter(spent, hour)},
			{name: "authenticated-quota", q: 5, w: 86400, r: 5 - spent, t: toMidnight(before, after)},
		}
	}
	for i := int64(1); i <= 5; i++ {
		r, before, after := timed(func() reply { return s.predict("/predict", key, 1) })
		// The quota has the fewest left: it is the deciding policy.
		limited{status: 200, tier: "authenticated", policies: policies(i, before, after), deciding: 1}.check(t, r)
	}
	for range 2 { // the second denial shows the first charged nothing
		r, before, after := timed(func() reply { return s.predict("/predict", key, 1) })
		// Retry-After is the time to the window's end: 00:00 UTC.
		limited{status: 429, tier: "authenticated", policies: policies(5, before, after), deciding: 1, retry: toMidnight(before, after)}.check(t, r)
	}
	// Another caller of the tier has a quota of its own.
	s.keys["other"] = s.addKey("authenticated")
	r, before, after := timed(func() reply { return s.predict("/predict", s.keys["other"], 1) })
	limited{status: 200, tier: "authenticated", policies: []pol{
		{name: "authenticated", q: authBurst, w: authBurst * 3600, r: authBurst - 1, t: resetAfter(1, hour)},
		{name: "authenticated-quota", q: 5, w: 86400, r: 4, t: toMidnight(before, after)},
	}, deciding: 1}.check(t, r)
}

func TestPerKeyLimitAndQuota(t *testing.T) {
	nearMidnight(t)
	s := launch(t, options{keys: []keySpec{{name: "own", tier: "authenticated", limit: "1/hour:burst=3:quota=4/day"}}})
	key := s.keys["own"]
	policies := func(spent, quotaSpent int64, before, after time.Time) []pol {
		return []pol{
			{name: "key", q: 3, w: 3 * 3600, r: 3 - spent, t: resetAfter(spent, hour)},
			{name: "key-quota", q: 4, w: 86400, r: 4 - quotaSpent, t: toMidnight(before, after)},
		}
	}
	for i := int64(1); i <= 3; i++ {
		r, before, after := timed(func() reply { return s.predict("/predict", key, 1) })
		// The key's bucket has fewer left than its quota (ties: the first).
		limited{status: 200, tier: "authenticated", policies: policies(i, i, before, after), deciding: 0}.check(t, r)
	}
	for range 2 {
		r, before, after := timed(func() reply { return s.predict("/predict", key, 1) })
		limited{status: 429, tier: "authenticated", policies: policies(3, 3, before, after), deciding: 0, retry: resetAfter(1, hour)}.check(t, r)
	}
	// The key's tier still decides premium routes.
	if r := s.predict("/premium/predict", key, 1); r.status != 403 {
		t.Errorf("premium route with an authenticated key that has its own limit: %s, want 403", r)
	}

	// set-limit (cmd/apikeys' store call) takes effect when the key's
	// record is read again: after the authorizer's 60 s cache TTL, or, as
	// here, in a new deployment of the same system (same keys and Upstash).
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: s.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	bigger, err := limiter.ParsePolicy("1/hour:burst=10")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetLimit(context.Background(), s.ids["own"], bigger); err != nil {
		t.Fatal(err)
	}
	s2 := launch(t, options{keyFile: s.keyFile, upstash: s.upstash})
	r, _, _ := timed(func() reply { return s2.predict("/predict", key, 1) })
	// The bucket keeps what it held (none left of 3), now out of 10; the
	// new limit has no quota.
	limited{status: 429, tier: "authenticated", policies: []pol{{name: "key", q: 10, w: 10 * 3600, r: 0, t: resetAfter(10, hour)}},
		retry: resetAfter(1, hour)}.check(t, r)

	if err := store.SetLimit(context.Background(), s.ids["own"], limiter.Policy{}); err != nil { // set-limit --clear
		t.Fatal(err)
	}
	s3 := launch(t, options{keyFile: s.keyFile, upstash: s.upstash})
	r, _, _ = timed(func() reply { return s3.predict("/predict", key, 1) })
	// Back on its tier's limit, still the same caller's bucket: empty.
	limited{status: 429, tier: "authenticated", policies: []pol{{name: "authenticated", q: authBurst, w: authBurst * 3600, r: 0, t: resetAfter(authBurst, hour)}},
		retry: resetAfter(1, hour)}.check(t, r)
}

func TestKeyExpiry(t *testing.T) {
	expires := time.Now().Add(3 * time.Second)
	s := launch(t, options{keys: []keySpec{
		{name: "soon", tier: "authenticated", expires: expires},
		{name: "gone", tier: "premium", expires: time.Now().Add(-time.Second)},
	}})
	if r := s.predict("/predict", s.keys["gone"], 1); r.status != 401 || trimmed(r.body) != `{"message":"Unauthorized"}` {
		t.Errorf("expired key: %s, want 401 Unauthorized", r)
	}
	r, _, after := timed(func() reply { return s.predict("/predict", s.keys["soon"], 1) })
	switch {
	case after.Before(expires):
		// Decided before the expiry: the key worked (and is now cached).
		limited{status: 200, tier: "authenticated", policies: []pol{{name: "authenticated", q: authBurst, w: authBurst * 3600, r: authBurst - 1, t: resetAfter(1, hour)}}}.check(t, r)
	default:
		t.Logf("the first request ended after the key's expiry (a slow machine): %s", r)
	}
	time.Sleep(time.Until(expires) + 50*time.Millisecond) // real time must pass the expiry
	for range 2 {
		if r := s.predict("/predict", s.keys["soon"], 1); r.status != 401 || trimmed(r.body) != `{"message":"Unauthorized"}` {
			t.Errorf("after its expiry: %s, want 401 Unauthorized", r)
		}
	}
}

// trimmed is a body without surrounding white space.
func trimmed(b []byte) string { return strings.TrimSpace(string(b)) }

func TestRouteLimit(t *testing.T) {
	s := launch(t, options{env: map[string]string{
		"ROUTE_LIMITS": "POST /predict=1/hour:burst=3, POST /predict@premium=1/hour:burst=6",
	}})
	tests := []struct {
		name, key, tier string
		burst, route    int64
	}{
		{name: "entry for every tier", key: s.keys["authenticated"], tier: "authenticated", burst: authBurst, route: 3},
		{name: "entry for the caller's tier wins", key: s.keys["premium"], tier: "premium", burst: premiumBurst, route: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies := func(spent int64) []pol {
				return []pol{
					{name: tt.tier, q: tt.burst, w: tt.burst * 3600, r: tt.burst - spent, t: resetAfter(spent, hour)},
					{name: "route:POST /predict", q: tt.route, w: tt.route * 3600, r: tt.route - spent, t: resetAfter(spent, hour)},
				}
			}
			for i := int64(1); i <= tt.route; i++ {
				limited{status: 200, tier: tt.tier, policies: policies(i), deciding: 1}.check(t, s.predict("/predict", tt.key, 1))
			}
			for range 2 {
				limited{status: 429, tier: tt.tier, policies: policies(tt.route), deciding: 1, retry: resetAfter(1, hour)}.check(t, s.predict("/predict", tt.key, 1))
			}
			// Another route has no route limit, and the denials charged the
			// tier's bucket nothing: a batch (cost 5) still fits.
			spent := tt.route + batchCost
			limited{status: 200, tier: tt.tier, policies: []pol{{name: tt.tier, q: tt.burst, w: tt.burst * 3600, r: tt.burst - spent, t: resetAfter(spent, hour)}}}.
				check(t, s.predict("/predict/batch", tt.key, 1))
		})
	}
}

func TestGlobalLimit(t *testing.T) {
	s := launch(t, options{env: map[string]string{"GLOBAL_LIMIT": "1/hour:burst=6"}})
	a, b := s.keys["authenticated"], s.keys["premium"]
	type caller struct {
		key, tier    string
		burst, spent int64
	}
	ca, cb := &caller{key: a, tier: "authenticated", burst: authBurst}, &caller{key: b, tier: "premium", burst: premiumBurst}
	var globalSpent int64
	policies := func(c *caller) []pol {
		return []pol{
			{name: c.tier, q: c.burst, w: c.burst * 3600, r: c.burst - c.spent, t: resetAfter(c.spent, hour)},
			{name: "global", q: 6, w: 6 * 3600, r: 6 - globalSpent, t: resetAfter(globalSpent, hour)},
		}
	}
	// Two callers share the global bucket: 6 requests in all pass.
	for _, c := range []*caller{ca, cb, ca, cb, cb, cb} {
		c.spent++
		globalSpent++
		// The global bucket has the fewest left: it decides.
		limited{status: 200, tier: c.tier, policies: policies(c), deciding: 1}.check(t, s.predict("/predict", c.key, 1))
	}
	for _, c := range []*caller{ca, cb, ca} {
		limited{status: 429, tier: c.tier, policies: policies(c), deciding: 1, retry: resetAfter(1, hour)}.check(t, s.predict("/predict", c.key, 1))
	}
	// Anonymous callers are behind it too.
	r := s.predict("/predict", "", 1)
	if r.status != 429 || r.json(t)["policy"] != "global" {
		t.Errorf("anonymous caller: %s, want 429 by the global policy", r)
	}
	// Unlimited routes are not.
	if r := s.request("GET", "/model-info", "", nil, nil, ""); r.status != 200 {
		t.Errorf("GET /model-info: %s, want 200", r)
	}
}

func TestLiveFactor(t *testing.T) {
	s := start(t)
	limits := buildLimits(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := limits.run(s, args...)
		if err != nil {
			t.Fatalf("limits %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	fresh := func(tier string) string { // a caller whose bucket is full
		return s.addKey(tier)
	}
	// full checks a new premium caller's first request under factor f:
	// burst and rate are both scaled, so the window stays 20 hours and a
	// token takes 1/f hours.
	full := func(f float64) {
		t.Helper()
		burst := int64(premiumBurst * f)
		limited{status: 200, tier: "premium", policies: []pol{{name: "premium", q: burst, w: premiumBurst * 3600, r: burst - 1,
			t: resetAfter(1, time.Duration(float64(hour)/f))}}}.check(t, s.predict("/predict", fresh("premium"), 1))
	}
	full(1)

	// scale 0.5: from the next decision after SettingsTTL, every burst is
	// halved (and every rate: the window stays 20 h for premium).
	run("scale", "0.5")
	time.Sleep(limiter.DefaultSettingsTTL)
	full(0.5)
	var shown map[string]any
	if err := json.Unmarshal([]byte(run("show")), &shown); err != nil || shown["tier"] != "*" || shown["factorNow"] != 0.5 {
		t.Errorf("limits show = %v (%v), want the change at 0.5", shown, err)
	}

	// One tier's factor multiplies the every-limit one.
	run("scale", "--tier", "premium", "3")
	time.Sleep(limiter.DefaultSettingsTTL)
	full(1.5)

	run("clear")
	time.Sleep(limiter.DefaultSettingsTTL)
	full(1)
}

// addKey adds a key of tier to the stack's key file and returns it: a new
// caller, found by the authorizer on its first request.
func (s *stack) addKey(tier string) string {
	s.t.Helper()
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: s.keyFile})
	if err != nil {
		s.t.Fatal(err)
	}
	key, rec, err := apikey.New("e2e extra", tier, time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	if err := store.Create(context.Background(), rec); err != nil {
		s.t.Fatal(err)
	}
	return key
}

func TestWarmup(t *testing.T) {
	const burst = 100
	s := launch(t, options{env: map[string]string{
		"TIER_LIMITS": fmt.Sprintf("anonymous=1/hour:burst=%d,authenticated=1/hour:burst=8,premium=1/hour:burst=20", burst),
		"WARMUP":      "0.2/10s",
	}, maxProcs: 4})
	// capacity at k whole seconds after the start: the factor rises from
	// 0.2 to 1 in steps of whole seconds.
	capacity := func(k int64) int64 { return burst * (200_000 + 800_000*min(max(k, 0), 10)/10) / 1_000_000 }

	type obs struct {
		before, after time.Time
		limit         int64
	}
	var mu sync.Mutex
	var seen []obs
	send := func() {
		r, before, after := timed(func() reply { return s.request("POST", "/predict", "", inputs(1), nil, freshLoopback(t)) })
		if r.status != 200 {
			t.Errorf("%s, want 200 (a fresh caller)", r)
			return
		}
		n, err := strconv.ParseInt(r.header.Get("X-RateLimit-Limit"), 10, 64)
		if err != nil {
			t.Errorf("X-RateLimit-Limit %q", r.header.Get("X-RateLimit-Limit"))
		}
		mu.Lock()
		seen = append(seen, obs{before, after, n})
		mu.Unlock()
	}
	send() // the first process starts, and records the version's start
	// More processes start 2 s later, while the warm-up runs (a real wait:
	// a process that ramped from its own start would then show a smaller
	// burst than the shared start gives): concurrent requests until the
	// authorizer runs 4 processes.
	time.Sleep(2 * time.Second)
	for i := 0; i < 20 && s.app.Functions["AuthorizerFunction"].Stats().Starts < 4; i++ {
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() { defer wg.Done(); send() }()
		}
		wg.Wait()
	}
	if n := s.app.Functions["AuthorizerFunction"].Stats().Starts; n < 4 {
		t.Fatalf("the authorizer ran %d processes, want 4", n)
	}
	for range 4 { // each of them, likely, once more
		send()
	}

	// One start for the version, recorded in Upstash; every decision of
	// every process agrees with it.
	raw := s.redis.Do(t, "GET", limiter.WarmupKey(""))
	ver, ms, ok := strings.Cut(raw, "=")
	startMs, err := strconv.ParseInt(ms, 10, 64)
	if !ok || ver == "" || strings.Contains(raw, ";") || err != nil {
		t.Fatalf("warm-up key holds %q, want one version=start entry", raw)
	}
	start := time.UnixMilli(startMs)
	for i, o := range seen {
		lo, hi := capacity(o.before.Sub(start).Milliseconds()/1000), capacity(o.after.Sub(start).Milliseconds()/1000)
		if o.limit < lo || o.limit > hi {
			t.Errorf("decision %d, %s..%s after the start: burst %d, want %d..%d (the shared start's factor)",
				i, o.before.Sub(start), o.after.Sub(start), o.limit, lo, hi)
		}
	}
	if first := seen[0]; first.after.Sub(start) < time.Second && first.limit != burst/5 {
		t.Errorf("first decision's burst = %d, want a fifth of %d", first.limit, burst)
	}
}

var loopback struct {
	sync.Mutex
	n int
}

// freshLoopback is a loopback address no other request of this test binary
// came from (Linux routes 127.0.0.0/8 to loopback): a new anonymous caller.
func freshLoopback(t *testing.T) string {
	loopback.Lock()
	defer loopback.Unlock()
	loopback.n++
	return fmt.Sprintf("127.3.%d.%d", 1+loopback.n/250, 1+loopback.n%250)
}

func TestShadowMode(t *testing.T) {
	s := launch(t, options{env: map[string]string{
		"LIMITER_SHADOW": "true",
		"ROUTE_LIMITS":   "POST /predict=1/hour:burst=2",
	}})
	key := s.keys["authenticated"]
	policies := func(spent, routeSpent int64) []pol {
		return []pol{
			{name: "authenticated", q: authBurst, w: authBurst * 3600, r: authBurst - spent, t: resetAfter(spent, hour)},
			{name: "route:POST /predict", q: 2, w: 2 * 3600, r: 2 - routeSpent, t: resetAfter(routeSpent, hour)},
		}
	}
	for i := int64(1); i <= 2; i++ {
		limited{status: 200, tier: "authenticated", policies: policies(i, i), deciding: 1}.check(t, s.predict("/predict", key, 1))
	}
	// Over the route limit: let through, with the real state in the
	// headers (none left), charging nothing (the tier's bucket stays at 6).
	for range 3 {
		r := s.predict("/predict", key, 1)
		limited{status: 200, tier: "authenticated", policies: policies(2, 2), deciding: 1}.check(t, r)
		if preds, _ := r.json(t)["predictions"].([]any); len(preds) != 1 {
			t.Errorf("shadow-denied request's body %s, want the prediction", r.body)
		}
	}
	// The authorizer logged each as shadow-denied.
	if n := strings.Count(s.logs.String(), `"decision":"shadow-denied"`); n != 3 {
		t.Errorf("%d shadow-denied decision log lines, want 3", n)
	}
}

func TestCustomLimitMessage(t *testing.T) {
	const tmpl = `Slow down, "{tier}" \ caller: retry in {retryAfter}s <{policy}> — limit {limit}` + "\t!"
	s := launch(t, options{env: map[string]string{"LIMIT_MESSAGE": tmpl, "ROUTE_LIMITS": "POST /predict=1/hour:burst=1"}})
	key := s.keys["authenticated"]
	s.predict("/predict", key, 1)
	r := s.predict("/predict", key, 1)
	retry := r.header.Get("Retry-After")
	want := limited{status: 429, tier: "authenticated", deciding: 1, retry: resetAfter(1, hour),
		message: `Slow down, "authenticated" \ caller: retry in ` + retry + `s <route:POST /predict> — limit 1` + "\t!",
		policies: []pol{
			{name: "authenticated", q: authBurst, w: authBurst * 3600, r: authBurst - 1, t: resetAfter(1, hour)},
			{name: "route:POST /predict", q: 1, w: 3600, r: 0, t: resetAfter(1, hour)},
		}}
	want.check(t, r) // the body is valid JSON, and its message is exactly the rendered text
}

// TestStartupErrors: a malformed policy variable stops the authorizer at
// start with an error naming the variable, as a user sees it from
// start-api (503 and the log line) and from invoke (Lambda's error object
// and the log line).
func TestStartupErrors(t *testing.T) {
	exes := functions(t)
	tests := []struct {
		name, variable, value string
		want                  string // in the log line
	}{
		{name: "route limit", variable: "ROUTE_LIMITS", value: "POST /predict=fast", want: `ROUTE_LIMITS: `},
		{name: "route limit below the route's cost", variable: "ROUTE_LIMITS", value: "POST /predict/batch=1/minute:burst=2",
			want: `ROUTE_LIMITS: POST /predict/batch costs 5 tokens (ROUTE_COSTS), more than its route limit's burst of 2`},
		{name: "warm-up factor", variable: "WARMUP", value: "2/10s", want: `WARMUP: factor \"2\" must be a number from 0.001 to below 1`},
		{name: "warm-up duration", variable: "WARMUP", value: "0.5/1.5s", want: `WARMUP: duration \"1.5s\" must be whole seconds`},
		{name: "global limit", variable: "GLOBAL_LIMIT", value: "lots", want: `GLOBAL_LIMIT: `},
		{name: "global burst below a route's cost", variable: "GLOBAL_LIMIT", value: "10/second:burst=2", want: `GLOBAL_LIMIT: ROUTE_COSTS has a route costing 5 tokens, more than the global burst of 2`},
		{name: "limit message", variable: "LIMIT_MESSAGE", value: "wait {seconds}", want: `LIMIT_MESSAGE: unknown placeholder \"{seconds}\"`},
	}
	up := upstashtest.Start(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{
				"UPSTASH_REDIS_REST_URL": up.URL, "UPSTASH_REDIS_REST_TOKEN": up.Token,
				"API_KEYS_FILE": "events/demo-keys.json", "API_KEYS_TABLE": "", tt.variable: tt.value,
			}
			t.Run("start-api", func(t *testing.T) {
				logs := &syncbuf.Buffer{}
				app, err := startapi.StartAPI(context.Background(), startapi.Options{
					Template: template, Prebuilt: exes, Logs: logs,
					EnvVars: startapi.EnvVars{"Parameters": env}, MaxProcs: 1,
				})
				if err != nil {
					t.Fatalf("StartAPI: %v", err)
				}
				t.Cleanup(func() { _ = app.Close() })
				srv := httptest.NewServer(app.Handler())
				t.Cleanup(srv.Close)
				s := &stack{t: t, base: srv.URL}
				if r := s.predict("/predict", "", 1); r.status != http.StatusServiceUnavailable {
					t.Errorf("%s, want 503 (the authorizer could not start)", r)
				}
				out := logs.String()
				if !strings.Contains(out, tt.want) {
					t.Errorf("start-api output lacks %q:\n%s", tt.want, out)
				}
			})
			t.Run("invoke", func(t *testing.T) {
				logs := &syncbuf.Buffer{}
				app, err := startapi.StartFunction(context.Background(), startapi.Options{
					Template: template, Prebuilt: exes, Logs: logs,
					EnvVars: startapi.EnvVars{"Parameters": env}, MaxProcs: 1,
				}, "AuthorizerFunction")
				if err != nil {
					t.Fatalf("StartFunction: %v", err)
				}
				t.Cleanup(func() { _ = app.Close() })
				res, err := app.Invoke(context.Background(), "AuthorizerFunction", readEvent(t, "authorizer-anonymous.json"))
				if err != nil {
					t.Fatal(err)
				}
				if res.Error == nil || res.Error.Type != "Runtime.ExitError" {
					t.Errorf("invoke result %s, error %+v; want Runtime.ExitError", res.Payload, res.Error)
				}
				out := logs.String()
				if !strings.Contains(out, tt.want) {
					t.Errorf("invoke output lacks %q:\n%s", tt.want, out)
				}
			})
		})
	}
}

// readEvent returns a sample event of events/.
func readEvent(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../events/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
