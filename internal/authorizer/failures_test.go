package authorizer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authctx"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// countingKeys is a key store by hash that counts its reads: the key-store
// reads (DynamoDB GetItem) that failed-key throttling must bound.
type countingKeys struct {
	mu    sync.Mutex
	recs  map[string]apikey.Record
	reads int
}

func (c *countingKeys) Lookup(_ context.Context, key string) (apikey.Record, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	if r, ok := c.recs[apikey.Hash(key)]; ok {
		return r, nil
	}
	return apikey.Record{}, apikey.ErrNotFound
}

func (c *countingKeys) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// failuresLimit is the failed-key bucket of these tests: burst 3, one
// token back every 10 s.
var failuresLimit = limiter.Limit{Rate: 6, Period: time.Minute, Burst: 3}

// container is one authorizer container on a shared Upstash: its own
// limiter (deny cache, memory fallback) and key cache over the shared key
// store.
type container struct {
	h       *Handler
	metrics *bytes.Buffer
}

func newContainer(t testing.TB, up *upstashtest.Env, store apikey.Store, clk *fakeclock.Clock, shadow bool, failures limiter.Limit) container {
	t.Helper()
	client, err := upstash.New(upstash.Config{URL: up.URL, Token: up.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.CloseIdleConnections)
	us, err := limiter.NewUpstashStore(limiter.UpstashConfig{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	// A generous timeout: these tests count Upstash requests, and a loaded
	// machine must not turn one into a fallback.
	lim, err := limiter.New(limiter.Config{Upstash: us, Now: clk.Now, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	costs, err := limiter.ParseRouteCosts(DefaultRouteCosts)
	if err != nil {
		t.Fatal(err)
	}
	metrics := &bytes.Buffer{}
	h, err := New(Config{
		Keys:          apikey.NewCache(store, apikey.CacheConfig{Now: clk.Now}),
		Limiter:       lim,
		Tiers:         tiers,
		Costs:         costs,
		PremiumRoutes: []string{"/premium/"},
		AuthFailures:  failures,
		Shadow:        shadow,
		Metrics:       metrics,
		Now:           clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return container{h: h, metrics: metrics}
}

// answer is what one request got, as the test compares it.
type answer struct {
	Status  int    // 200 (Allow), 401, 429 (Deny)
	Caller  string // context caller (Allow and Deny)
	Policy  string // deciding policy (Deny)
	Retry   string // retryAfter (Deny)
	Limit   string // limit (Deny)
	RLPol   string // rateLimitPolicy (Deny)
	Source  string
	EMFTier string // the EMF line's Tier
	EMF     string // the EMF line's counted outcome: Allowed, Denied, Unauthorized
	EMFPol  string // the EMF line's Policy
	Shadow  bool   // the EMF line counts ShadowDenied
}

func (c container) send(t *testing.T, ip, key string) answer {
	t.Helper()
	var headers map[string]string
	if key != "" {
		headers = map[string]string{"X-Api-Key": key}
	}
	c.metrics.Reset()
	res, err := c.h.Handle(context.Background(), event("POST", "/predict", ip, headers))
	var o answer
	switch {
	case errors.Is(err, ErrUnauthorized):
		o.Status = 401
	case err != nil:
		t.Fatalf("Handle: %v", err)
	case res.PolicyDocument.Statement[0].Effect == "Allow":
		o.Status = 200
	default:
		o.Status = 429
	}
	if err == nil {
		ctx := res.Context
		o.Caller, _ = ctx[authctx.KeyCaller].(string)
		o.Source, _ = ctx[authctx.KeySource].(string)
		if o.Status == 429 {
			o.Policy, _ = ctx[authctx.KeyPolicyName].(string)
			o.Retry, _ = ctx[authctx.KeyRetryAfter].(string)
			o.Limit, _ = ctx[authctx.KeyLimit].(string)
			o.RLPol, _ = ctx[authctx.KeyPolicy].(string)
		}
	}
	var line emfLine
	if err := json.Unmarshal(bytes.TrimSpace(c.metrics.Bytes()), &line); err != nil {
		t.Fatalf("EMF line %q: %v", c.metrics.String(), err)
	}
	o.EMFTier, o.EMFPol, o.Shadow = line.Tier, line.Policy, line.ShadowDenied == 1
	switch {
	case line.Allowed == 1:
		o.EMF = "Allowed"
	case line.Denied == 1:
		o.EMF = "Denied"
	case line.Unauthorized == 1:
		o.EMF = "Unauthorized"
	}
	return o
}

// TestFailedKeyThrottling: bad keys from one address charge its failed-key
// bucket; once it is empty, keys this container has not seen work get a
// 429 (policy auth-failures) without a key-store read or an Upstash
// request, while keys it has seen work, anonymous callers and other
// addresses are untouched.
func TestFailedKeyThrottling(t *testing.T) {
	const a, b = "203.0.113.7", "198.51.100.9"
	var valid, fresh string // fresh: valid, never used before the bucket is empty
	store := &countingKeys{recs: map[string]apikey.Record{}}
	for _, dst := range []*string{&valid, &fresh} {
		key, rec, err := apikey.New("k", "authenticated", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		store.recs[rec.Hash] = rec
		*dst = key
	}
	unknown := func() string {
		k, _, _, err := apikey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	up := upstashtest.Start(t)
	clk := fakeclock.New(time.Now())
	c1 := newContainer(t, up, store, clk, false, failuresLimit)
	c2 := newContainer(t, up, store, clk, false, failuresLimit) // another container, same Upstash and key store

	ok := func(caller string) answer {
		return answer{Status: 200, Caller: caller, Source: "upstash", EMFTier: "authenticated", EMF: "Allowed"}
	}
	unauthorized := answer{Status: 401, EMFTier: NoTier, EMF: "Unauthorized"}
	tooMany := func(ip, retry, source string) answer {
		return answer{Status: 429, Caller: "ip:" + ip, Policy: FailuresPolicy, Retry: retry, Limit: "3",
			RLPol: `"auth-failures";q=3;w=30`, Source: source, EMFTier: NoTier, EMF: "Denied", EMFPol: FailuresPolicy}
	}
	type step struct {
		name      string
		advance   time.Duration
		c         container
		ip, key   string
		want      answer
		wantReads int   // key-store reads by this step
		wantUp    int64 // Upstash requests by this step
	}
	var validCaller string
	for _, r := range store.recs {
		if apikey.Hash(valid) == r.Hash {
			validCaller = r.ID
		}
	}
	steps := []step{
		{name: "a valid key, now known", c: c1, ip: a, key: valid, want: ok(validCaller), wantReads: 1, wantUp: 1},
		{name: "unknown key: 401, one failure charged", c: c1, ip: a, key: unknown(), want: unauthorized, wantReads: 1, wantUp: 1},
		{name: "another unknown key", c: c1, ip: a, key: unknown(), want: unauthorized, wantReads: 1, wantUp: 1},
		{name: "malformed key: no read, still charged", c: c1, ip: a, key: "not-a-key", want: unauthorized, wantUp: 1},
		{name: "bucket empty: 429 with neither a read nor an Upstash request", c: c1, ip: a, key: unknown(), want: tooMany(a, "10", "cache")},
		{name: "an empty key header is an attempt too", c: c1, ip: a, key: " ", want: tooMany(a, "10", "cache")},
		{name: "the known valid key from the same address works", c: c1, ip: a, key: valid, want: ok(validCaller), wantUp: 1},
		{name: "a valid key this container has not seen waits like any other", c: c1, ip: a, key: fresh, want: tooMany(a, "10", "cache")},
		{name: "anonymous callers are not affected", c: c1, ip: a, want: answer{Status: 200, Caller: "ip:" + a, Source: "upstash", EMFTier: "anonymous", EMF: "Allowed"}, wantUp: 1},
		{name: "another address has its own bucket", c: c1, ip: b, key: unknown(), want: unauthorized, wantReads: 1, wantUp: 1},
		// Another container has never seen a's bucket: it reads the key
		// store once, its charge is refused (429), and then it knows.
		{name: "another container: one read, refused by the charge", c: c2, ip: a, key: unknown(), want: tooMany(a, "10", "upstash"), wantReads: 1, wantUp: 1},
		{name: "another container, then known empty", c: c2, ip: a, key: unknown(), want: tooMany(a, "10", "cache")},
		{name: "a token back after 10 s: one more attempt", advance: 10 * time.Second, c: c1, ip: a, key: unknown(), want: unauthorized, wantReads: 1, wantUp: 1},
		{name: "and empty again", c: c1, ip: a, key: unknown(), want: tooMany(a, "10", "cache")},
		{name: "the fresh valid key once a token is back", advance: 10 * time.Second, c: c1, ip: a, key: fresh, want: ok(""), wantReads: 1, wantUp: 1},
	}
	// Warm both containers: script loaded, live settings read.
	for _, c := range []container{c1, c2} {
		if got := c.send(t, "192.0.2.1", ""); got.Status != 200 {
			t.Fatalf("warm-up: %+v", got)
		}
	}
	reads, ups := store.count(), up.Server.Requests()
	for _, s := range steps {
		clk.Advance(s.advance)
		got := s.c.send(t, s.ip, s.key)
		if s.want.Caller == "" && s.want.Status == 200 {
			s.want.Caller = got.Caller // the fresh key's id
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
		if n := store.count(); n-reads != s.wantReads {
			t.Errorf("%s: %d key-store reads, want %d", s.name, n-reads, s.wantReads)
		}
		if n := up.Server.Requests(); int64(n-ups) != s.wantUp {
			t.Errorf("%s: %d Upstash requests, want %d", s.name, n-ups, s.wantUp)
		}
		reads, ups = store.count(), up.Server.Requests()
	}
}

// TestFailedKeyThrottlingShadow: shadow mode refuses nothing; an attempt
// the failed-key bucket would refuse is a 401 counted as ShadowDenied.
func TestFailedKeyThrottlingShadow(t *testing.T) {
	up := upstashtest.Start(t)
	clk := fakeclock.New(time.Now())
	c := newContainer(t, up, &countingKeys{recs: map[string]apikey.Record{}}, clk, true, failuresLimit)
	var got []answer
	for range 5 {
		got = append(got, c.send(t, "203.0.113.7", "not-a-key"))
	}
	u := answer{Status: 401, EMFTier: NoTier, EMF: "Unauthorized"}
	shadowed := u
	shadowed.Shadow, shadowed.EMFPol = true, FailuresPolicy
	if diff := cmp.Diff([]answer{u, u, u, shadowed, shadowed}, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

// TestFailedKeyThrottlingOff: without AUTH_FAILURE_LIMIT a bad key is a
// 401 and the limiter is never asked.
func TestFailedKeyThrottlingOff(t *testing.T) {
	lim := &recordingLimiter{}
	h := newHandler(t, keys, lim, nil, nil)
	for range 30 {
		_, err := h.Handle(context.Background(), event("POST", "/predict", "203.0.113.7", map[string]string{"X-Api-Key": "bg_nope"}))
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("error = %v, want Unauthorized", err)
		}
	}
	if len(lim.reqs) != 0 {
		t.Errorf("limiter asked %d times, want never", len(lim.reqs))
	}
}

// TestFailureDenyContext: an auth-failures 429 carries the full rate-limit
// context of the failed-key bucket, as any other Deny does.
func TestFailureDenyContext(t *testing.T) {
	up := upstashtest.Start(t)
	clk := fakeclock.New(time.Now())
	c := newContainer(t, up, &countingKeys{recs: map[string]apikey.Record{}}, clk, false, failuresLimit)
	var res events.APIGatewayCustomAuthorizerResponse
	for i := range 4 {
		var err error
		res, err = c.h.Handle(context.Background(), event("POST", "/predict", "203.0.113.7", map[string]string{"X-Api-Key": "not-a-key"}))
		if i < 3 && !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("attempt %d: %v, want Unauthorized", i+1, err)
		}
	}
	want := map[string]any{
		"tier": NoTier, "caller": "ip:203.0.113.7", "limit": "3", "remaining": "0", "reset": "30", "retryAfter": "10",
		"policy": FailuresPolicy, "source": "cache", "cost": "1", "forbidden": "false", "message": "Too Many Requests",
		"rateLimitPolicy": `"auth-failures";q=3;w=30`, "rateLimit": `"auth-failures";r=0;t=30`,
	}
	if diff := cmp.Diff(want, res.Context); diff != "" {
		t.Errorf("context (-want +got):\n%s", diff)
	}
	if res.PrincipalID != "ip:203.0.113.7" || res.PolicyDocument.Statement[0].Effect != "Deny" {
		t.Errorf("principal %q, effect %q; want ip:203.0.113.7, Deny", res.PrincipalID, res.PolicyDocument.Statement[0].Effect)
	}
}

// TestHandleRoutePath: premium routes and route costs are decided on the
// path the function routes on (authctx.RoutePath), behind a greedy
// resource or a custom domain's base path alike; the Route metric stays
// the template's resource.
func TestHandleRoutePath(t *testing.T) {
	allowed := result(true, limiter.SourceUpstash, 0, 0, limiter.BucketState{Limit: 50, Remaining: 40})
	proxy := func(method, proxyParam, path string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
		e := event(method, "/{proxy+}", "198.51.100.7", map[string]string{"X-Api-Key": authKey})
		e.PathParameters, e.Path = map[string]string{"proxy": proxyParam}, path
		return e
	}
	basePath := event("POST", "/premium/predict", "198.51.100.7", map[string]string{"X-Api-Key": authKey})
	basePath.Path = "/api/premium/predict"
	tests := []struct {
		name          string
		ev            events.APIGatewayCustomAuthorizerRequestTypeRequest
		wantForbidden bool
		wantCost      int64 // when not forbidden
		wantRoute     string
	}{
		{name: "proxy: batch", ev: proxy("POST", "predict/batch", "/predict/batch"), wantCost: 5, wantRoute: "POST /{proxy+}"},
		{name: "proxy: batch, trailing slash", ev: proxy("POST", "predict/batch/", "/predict/batch/"), wantCost: 5, wantRoute: "POST /{proxy+}"},
		{name: "proxy: batch, doubled slash", ev: proxy("POST", "/predict/batch", "//predict/batch"), wantCost: 5, wantRoute: "POST /{proxy+}"},
		{name: "proxy: batch, lower-case method priced as POST", ev: proxy("post", "predict/batch", "/predict/batch"), wantCost: 5, wantRoute: "POST /{proxy+}"},
		{name: "proxy: other letter case is another route", ev: proxy("POST", "Predict/batch", "/Predict/batch"), wantCost: 1, wantRoute: "POST /{proxy+}"},
		{name: "proxy: premium", ev: proxy("POST", "premium/predict", "/premium/predict"), wantForbidden: true, wantRoute: "POST /{proxy+}"},
		{name: "proxy: premium, encoded slashes", ev: proxy("POST", "/premium/predict", "/%2Fpremium%2Fpredict"), wantForbidden: true, wantRoute: "POST /{proxy+}"},
		{name: "proxy: premium, dot segments", ev: proxy("POST", "predict/../premium/predict", "/predict/../premium/predict"), wantForbidden: true, wantRoute: "POST /{proxy+}"},
		{name: "custom domain base path", ev: basePath, wantForbidden: true, wantRoute: "POST /premium/predict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := &recordingLimiter{res: allowed}
			var metrics bytes.Buffer
			h := newHandler(t, keys, lim, nil, &metrics)
			res, err := h.Handle(context.Background(), tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Context[authctx.KeyForbidden] == "true"; got != tt.wantForbidden {
				t.Errorf("forbidden = %v, want %v", got, tt.wantForbidden)
			}
			var costs []int64
			for _, r := range lim.reqs {
				costs = append(costs, r.Cost)
			}
			var want []int64
			if !tt.wantForbidden {
				want = []int64{tt.wantCost}
			}
			if diff := cmp.Diff(want, costs); diff != "" {
				t.Errorf("costs charged (-want +got):\n%s", diff)
			}
			var line emfLine
			if err := json.Unmarshal(bytes.TrimSpace(metrics.Bytes()), &line); err != nil {
				t.Fatal(err)
			}
			if line.Route != tt.wantRoute {
				t.Errorf("Route = %q, want %q", line.Route, tt.wantRoute)
			}
		})
	}
}
