package authorizer

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/google/go-cmp/cmp"
)

// policyConfig is a configuration with every kind of policy: a tier quota,
// route limits (one for every tier, one for premium), a global bucket.
func policyConfig(t *testing.T, lim Limiter) Config {
	t.Helper()
	tiers, err := limiter.ParseTierLimits("anonymous=6/minute:burst=10:quota=100/day,authenticated=30/minute:burst=50,premium=120/minute:burst=200:quota=5000/month")
	if err != nil {
		t.Fatal(err)
	}
	costs, err := limiter.ParseRouteCosts(DefaultRouteCosts)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := limiter.ParseRouteLimits("POST /predict=3/minute:burst=5,POST /predict@premium=100/minute")
	if err != nil {
		t.Fatal(err)
	}
	global, err := limiter.ParseLimit("1000/second:burst=2000")
	if err != nil {
		t.Fatal(err)
	}
	return Config{Keys: keysWithLimit(t), Limiter: lim, Tiers: tiers, Costs: costs, RouteLimits: routes, Global: global,
		PremiumRoutes: []string{"/premium/"}}
}

const ownLimitKey = "bg_own-limit-test-key"

// keysWithLimit adds a key with its own limit and quota to the test keys.
func keysWithLimit(t *testing.T) fakeKeys {
	t.Helper()
	own, err := limiter.ParsePolicy("2/second:burst=7:quota=50/week")
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]apikey.Record{ownLimitKey: {ID: "key_own", Tier: "authenticated", Limit: own}}
	for k, r := range keys.recs {
		recs[k] = r
	}
	return fakeKeys{recs: recs}
}

// TestHandlePolicies: which buckets a request is checked against, in which
// order, under which names.
func TestHandlePolicies(t *testing.T) {
	cfg := policyConfig(t, nil)
	route := func(key string, l limiter.Limit) limiter.Bucket {
		return limiter.Bucket{Key: "r:POST /predict:" + key, Limit: l, Scope: limiter.ScopeTier}
	}
	global := limiter.Bucket{Key: "global", Limit: cfg.Global, Scope: limiter.ScopeAll}
	every, _ := cfg.RouteLimits.Lookup("POST", "/predict", "anonymous")
	prem, _ := cfg.RouteLimits.Lookup("POST", "/predict", "premium")
	own, _ := limiter.ParsePolicy("2/second:burst=7:quota=50/week")
	tests := []struct {
		name      string
		ev        events.APIGatewayCustomAuthorizerRequestTypeRequest
		wantReq   limiter.Request
		wantNames []string
	}{
		{
			name: "anonymous: tier, its quota, the route, global",
			ev:   event("POST", "/predict", "198.51.100.7", nil),
			wantReq: limiter.Request{Cost: 1, Tier: "anonymous", Buckets: []limiter.Bucket{
				{Key: "ip:198.51.100.7", Limit: cfg.Tiers["anonymous"].Limit, Scope: limiter.ScopeTier},
				{Key: "q:day:ip:198.51.100.7", Quota: cfg.Tiers["anonymous"].Quota},
				route("ip:198.51.100.7", every), global}},
			wantNames: []string{"anonymous", "anonymous-quota", "route:POST /predict", "global"},
		},
		{
			name: "authenticated, no quota, a route without a limit",
			ev:   event("POST", "/predict/batch", "198.51.100.7", map[string]string{"X-Api-Key": authKey}),
			wantReq: limiter.Request{Cost: 5, Tier: "authenticated", Buckets: []limiter.Bucket{
				{Key: "key_auth", Limit: cfg.Tiers["authenticated"].Limit, Scope: limiter.ScopeTier}, global}},
			wantNames: []string{"authenticated", "global"},
		},
		{
			name: "premium: its own route limit wins over the one for every tier",
			ev:   event("POST", "/predict", "198.51.100.7", map[string]string{"X-Api-Key": premiumKey}),
			wantReq: limiter.Request{Cost: 1, Tier: "premium", Buckets: []limiter.Bucket{
				{Key: "key_prem", Limit: cfg.Tiers["premium"].Limit, Scope: limiter.ScopeTier},
				{Key: "q:month:key_prem", Quota: cfg.Tiers["premium"].Quota},
				route("key_prem", prem), global}},
			wantNames: []string{"premium", "premium-quota", "route:POST /predict", "global"},
		},
		{
			name: "a key's own limit replaces its tier's; route limits still by tier",
			ev:   event("POST", "/predict", "198.51.100.7", map[string]string{"X-Api-Key": ownLimitKey}),
			wantReq: limiter.Request{Cost: 1, Tier: "authenticated", Buckets: []limiter.Bucket{
				{Key: "key_own", Limit: own.Limit, Scope: limiter.ScopeTier},
				{Key: "q:week:key_own", Quota: own.Quota},
				route("key_own", every), global}},
			wantNames: []string{"key", "key-quota", "route:POST /predict", "global"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var states []limiter.BucketState
			for i := range tt.wantReq.Buckets {
				states = append(states, limiter.BucketState{Limit: int64(10 + i), Remaining: int64(5 - i), ResetAfter: time.Duration(i+1) * time.Second, Window: time.Minute})
			}
			lim := &recordingLimiter{res: result(true, limiter.SourceUpstash, 0, len(states)-1, states...)}
			cfg := policyConfig(t, lim)
			h, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.Handle(context.Background(), tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]limiter.Request{tt.wantReq}, lim.reqs); diff != "" {
				t.Fatalf("limiter request (-want +got):\n%s", diff)
			}
			var policies, rates []string
			for i, n := range tt.wantNames {
				policies = append(policies, `"`+n+`";q=`+itoa(10+i)+`;w=60`)
				rates = append(rates, `"`+n+`";r=`+itoa(5-i)+`;t=`+itoa(i+1))
			}
			last := len(tt.wantNames) - 1
			want := map[string]string{
				"rateLimitPolicy": strings.Join(policies, ", "), "rateLimit": strings.Join(rates, ", "),
				"policy": tt.wantNames[last], "limit": itoa(10 + last), "remaining": itoa(5 - last),
			}
			for k, v := range want {
				if got.Context[k] != v {
					t.Errorf("context %s = %v, want %q", k, got.Context[k], v)
				}
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestHandleShadowAndMessage: a denial becomes a 429 with the rendered
// message, or, in shadow mode, an Allow that says it would have been denied;
// neither charges (the limiter charged nothing when it denied).
func TestHandleShadowAndMessage(t *testing.T) {
	denied := result(false, limiter.SourceUpstash, 2500*time.Millisecond, 1,
		limiter.BucketState{Limit: 10, Remaining: 4, ResetAfter: 60 * time.Second, Window: 100 * time.Second},
		limiter.BucketState{Limit: 100, Remaining: 0, ResetAfter: time.Hour, Window: 24 * time.Hour})
	tests := []struct {
		name        string
		message     string
		shadow      bool
		wantEffect  string
		wantContext map[string]interface{}
		wantEMF     map[string]any
	}{
		{
			name: "denied, default message", wantEffect: "Deny",
			wantContext: map[string]interface{}{"message": "Too Many Requests", "policy": "anonymous-quota", "retryAfter": "3", "remaining": "0", "limit": "100", "reset": "3600"},
			wantEMF:     map[string]any{"Denied": 1.0, "Allowed": 0.0, "ShadowDenied": 0.0, "Policy": "anonymous-quota"},
		},
		{
			name: "denied, custom message with placeholders and characters JSON must escape", wantEffect: "Deny",
			message:     `"{tier}" over {policy} (limit {limit}): retry in {retryAfter}s \ {unknown`,
			wantContext: map[string]interface{}{"message": `\"anonymous\" over anonymous-quota (limit 100): retry in 3s \\ {unknown`},
		},
		{
			name: "shadow: allowed, counted, headers show the real state", shadow: true, wantEffect: "Allow",
			wantContext: map[string]interface{}{"shadowDenied": "true", "policy": "anonymous-quota", "remaining": "0", "retryAfter": "3"},
			wantEMF:     map[string]any{"Denied": 0.0, "Allowed": 1.0, "ShadowDenied": 1.0, "Policy": "anonymous-quota"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tiers, err := limiter.ParseTierLimits("anonymous=6/minute:burst=10:quota=100/day")
			if err != nil {
				t.Fatal(err)
			}
			var logs, metrics bytes.Buffer
			cfg := Config{Keys: keys, Limiter: &recordingLimiter{res: denied}, Tiers: tiers, Message: tt.message, Shadow: tt.shadow,
				Logger: NewLogger(&logs, 0), Metrics: &metrics}
			if tt.message != "" && strings.Contains(tt.message, "{unknown") {
				// An unclosed brace is refused at start...
				if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "LIMIT_MESSAGE") {
					t.Fatalf("New accepted %q: %v", tt.message, err)
				}
				// ...so test the rendering of the rest.
				cfg.Message = strings.TrimSuffix(tt.message, " {unknown")
				tt.wantContext["message"] = strings.TrimSuffix(tt.wantContext["message"].(string), " {unknown")
			}
			h, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.Handle(context.Background(), event("POST", "/predict", "198.51.100.7", nil))
			if err != nil {
				t.Fatal(err)
			}
			if e := got.PolicyDocument.Statement[0].Effect; e != tt.wantEffect {
				t.Errorf("effect %s, want %s", e, tt.wantEffect)
			}
			for k, v := range tt.wantContext {
				if got.Context[k] != v {
					t.Errorf("context %s = %#v, want %#v", k, got.Context[k], v)
				}
			}
			// The message goes between quotes in the gateway response's
			// body template: the result must be valid JSON.
			body := `{"message":"` + got.Context["message"].(string) + `"}`
			if !json.Valid([]byte(body)) {
				t.Errorf("429 body %s is not JSON", body)
			}
			var line map[string]any
			if err := json.Unmarshal(metrics.Bytes(), &line); err != nil {
				t.Fatalf("EMF line %q: %v", metrics.String(), err)
			}
			for k, v := range tt.wantEMF {
				if line[k] != v {
					t.Errorf("EMF %s = %v, want %v", k, line[k], v)
				}
			}
			if tt.shadow && !strings.Contains(logs.String(), `"decision":"shadow-denied"`) {
				t.Errorf("no shadow-denied log line:\n%s", logs.String())
			}
		})
	}
}

// TestEMFLines: one line per decision, with the dimension sets and values
// the dashboard and alarms read.
func TestEMFLines(t *testing.T) {
	allowed := result(true, limiter.SourceMemory, 0, 0, limiter.BucketState{Limit: 10, Remaining: 3, ResetAfter: 70 * time.Second, Window: 100 * time.Second})
	allowed.UpstashLatency = 150 * time.Millisecond // a failed call, then the fallback
	tests := []struct {
		name       string
		ev         events.APIGatewayCustomAuthorizerRequestTypeRequest
		res        limiter.Result
		want       map[string]any
		absent     []string
		directives int
	}{
		{name: "allowed on the fallback", ev: event("POST", "/predict", "198.51.100.7", nil), res: allowed, directives: 1,
			want: map[string]any{"Tier": "anonymous", "Route": "POST /predict", "Source": "memory", "Requests": 1.0, "Allowed": 1.0,
				"Fallback": 1.0, "UpstashLatency": 150.0, "Caller": "ip:198.51.100.7", "Limit": 10.0, "Remaining": 3.0, "ResetMs": 70000.0},
			absent: []string{"Policy"}},
		{name: "unauthorized", ev: event("POST", "/predict", "198.51.100.7", map[string]string{"X-Api-Key": "bg_nope"}), directives: 1,
			want:   map[string]any{"Tier": "none", "Route": "POST /predict", "Unauthorized": 1.0, "Requests": 1.0, "Allowed": 0.0, "Source": "none"},
			absent: []string{"Caller", "Limit", "UpstashLatency", "Policy"}},
		{name: "forbidden", ev: event("POST", "/premium/predict", "198.51.100.7", nil), directives: 1,
			want:   map[string]any{"Tier": "anonymous", "Route": "POST /premium/predict", "Forbidden": 1.0, "Caller": "ip:198.51.100.7"},
			absent: []string{"Limit", "Policy"}},
		{name: "no resource: grouped", ev: event("GET", "", "198.51.100.7", nil), res: allowed, directives: 1,
			want: map[string]any{"Route": "other"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var metrics bytes.Buffer
			h := newHandler(t, keys, &recordingLimiter{res: tt.res}, nil, &metrics)
			_, _ = h.Handle(context.Background(), tt.ev)
			lines := bytes.Split(bytes.TrimSpace(metrics.Bytes()), []byte("\n"))
			if len(lines) != 1 {
				t.Fatalf("%d EMF lines, want 1:\n%s", len(lines), metrics.String())
			}
			var got map[string]any
			if err := json.Unmarshal(lines[0], &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s present: %v", k, got[k])
				}
			}
			aws := got["_aws"].(map[string]any)
			if n := len(aws["CloudWatchMetrics"].([]any)); n != tt.directives {
				t.Errorf("%d directives, want %d", n, tt.directives)
			}
		})
	}
}

// TestNewRejectsPoliciesThatCanNeverPass: a route cost above any bucket or
// quota it is charged to is a start-up error naming the variable.
func TestNewRejectsPoliciesThatCanNeverPass(t *testing.T) {
	tests := []struct {
		name                         string
		tiers, costs, routes, global string
		message                      string
		wantErr                      string
	}{
		{name: "cost above a burst", tiers: "anonymous=1/second:burst=4", costs: "POST /predict/batch=5", wantErr: "TIER_LIMITS: ROUTE_COSTS has a route costing 5 tokens, more than tier \"anonymous\"'s burst of 4"},
		{name: "cost above a quota", tiers: "anonymous=10/second:quota=3/day", costs: "POST /predict/batch=5", wantErr: "quota of 3"},
		{name: "cost above a route limit", tiers: "anonymous=10/second", costs: "POST /predict/batch=5", routes: "POST /predict/batch=1/second:burst=4", wantErr: "ROUTE_LIMITS: POST /predict/batch costs 5 tokens"},
		{name: "route limit for an unknown tier", tiers: "anonymous=10/second", routes: "POST /predict@gold=1/second", wantErr: "ROUTE_LIMITS: POST /predict@gold names a tier"},
		{name: "cost above the global burst", tiers: "anonymous=10/second", costs: "POST /predict/batch=5", global: "100/second:burst=2", wantErr: "GLOBAL_LIMIT"},
		{name: "unknown placeholder", tiers: "anonymous=10/second", message: "{when}", wantErr: "LIMIT_MESSAGE"},
		{name: "all fine", tiers: "anonymous=10/second:quota=5/day", costs: "POST /predict/batch=5", routes: "POST /predict/batch=1/second:burst=5", global: "1/second:burst=5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Keys: keys, Limiter: &recordingLimiter{}, Message: tt.message}
			var err error
			if cfg.Tiers, err = limiter.ParseTierLimits(tt.tiers); err != nil {
				t.Fatal(err)
			}
			if cfg.Costs, err = limiter.ParseRouteCosts(tt.costs); err != nil {
				t.Fatal(err)
			}
			if cfg.RouteLimits, err = limiter.ParseRouteLimits(tt.routes); err != nil {
				t.Fatal(err)
			}
			if tt.global != "" {
				if cfg.Global, err = limiter.ParseLimit(tt.global); err != nil {
					t.Fatal(err)
				}
			}
			_, err = New(cfg)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("New error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
