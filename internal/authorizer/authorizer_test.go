package authorizer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/google/go-cmp/cmp"
)

const (
	methodArn = "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/POST/predict"
)

// fakeKeys is a key store keyed by plaintext key (test only).
type fakeKeys struct {
	recs map[string]apikey.Record
	err  error
}

func (f fakeKeys) Lookup(_ context.Context, key string) (apikey.Record, error) {
	if f.err != nil {
		return apikey.Record{}, f.err
	}
	if r, ok := f.recs[key]; ok {
		return r, nil
	}
	return apikey.Record{}, apikey.ErrNotFound
}

// recordingLimiter answers with a fixed result and remembers requests.
type recordingLimiter struct {
	mu   sync.Mutex
	reqs []limiter.Request
	res  limiter.Result
	err  error
}

func (l *recordingLimiter) Allow(_ context.Context, req limiter.Request) (limiter.Result, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, req)
	return l.res, l.err
}

var tiers = limiter.Tiers{
	"anonymous":     {Limit: limiter.Limit{Rate: 6, Period: time.Minute, Burst: 10}},
	"authenticated": {Limit: limiter.Limit{Rate: 30, Period: time.Minute, Burst: 50}},
	"premium":       {Limit: limiter.Limit{Rate: 120, Period: time.Minute, Burst: 200}},
}

// result is a limiter answer over the given buckets, reporting bucket
// reported (the top-level numbers are copied from it).
func result(allowed bool, source limiter.Source, retry time.Duration, reported int, states ...limiter.BucketState) limiter.Result {
	r := limiter.Result{Allowed: allowed, Source: source, RetryAfter: retry, Reported: reported, N: len(states)}
	copy(r.Buckets[:], states)
	b := states[reported]
	r.Limit, r.Remaining, r.ResetAfter, r.Window = b.Limit, b.Remaining, b.ResetAfter, b.Window
	if !allowed {
		r.Reason = limiter.ReasonOverLimit
	}
	return r
}

// caller is the caller's own bucket as the handler asks for it.
func caller(key, tier string) limiter.Bucket {
	return limiter.Bucket{Key: key, Limit: tiers[tier].Limit, Scope: limiter.ScopeTier}
}

const (
	authKey    = "bg_authenticated-test-key"
	premiumKey = "bg_premium-test-key"
)

var keys = fakeKeys{recs: map[string]apikey.Record{
	authKey:    {ID: "key_auth", Tier: "authenticated", Name: "a"},
	premiumKey: {ID: "key_prem", Tier: "premium", Name: "p"},
}}

func newHandler(t *testing.T, ks KeyStore, lim Limiter, logs, metrics *bytes.Buffer) *Handler {
	t.Helper()
	costs, err := limiter.ParseRouteCosts(DefaultRouteCosts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Keys: ks, Limiter: lim, Tiers: tiers, Costs: costs, PremiumRoutes: []string{"/premium/"}}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if metrics != nil {
		cfg.Metrics = metrics
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func event(method, resource, sourceIP string, headers map[string]string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	e := events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type: "REQUEST", MethodArn: methodArn, Resource: resource, Path: resource,
		HTTPMethod: method, Headers: headers,
	}
	e.RequestContext.Identity.SourceIP = sourceIP
	e.RequestContext.RequestID = "req-1"
	return e
}

func TestHandleDecisions(t *testing.T) {
	allowed := result(true, limiter.SourceUpstash, 0, 0, limiter.BucketState{Limit: 10, Remaining: 9, ResetAfter: 9500 * time.Millisecond, Window: 100 * time.Second})
	denied := result(false, limiter.SourceUpstash, 2100*time.Millisecond, 0, limiter.BucketState{Limit: 10, Remaining: 0, ResetAfter: 100 * time.Second, Window: 100 * time.Second})
	tests := []struct {
		name        string
		ev          events.APIGatewayCustomAuthorizerRequestTypeRequest
		res         limiter.Result
		wantErr     error
		wantEffect  string
		wantReq     *limiter.Request // nil: the limiter must not be called
		wantContext map[string]interface{}
	}{
		{
			name:       "anonymous by source ip",
			ev:         event("POST", "/predict", "198.51.100.7", map[string]string{"X-Forwarded-For": "203.0.113.9"}),
			res:        allowed,
			wantEffect: "Allow",
			wantReq:    &limiter.Request{Buckets: []limiter.Bucket{caller("ip:198.51.100.7", "anonymous")}, Cost: 1, Tier: "anonymous"},
			wantContext: map[string]interface{}{
				"tier": "anonymous", "caller": "ip:198.51.100.7", "limit": "10", "remaining": "9", "reset": "10",
				"retryAfter": "0", "source": "upstash", "cost": "1", "forbidden": "false", "policy": "anonymous",
				"rateLimitPolicy": `"anonymous";q=10;w=100`, "rateLimit": `"anonymous";r=9;t=10`,
			},
		},
		{
			name:       "ipv6 grouped by /64",
			ev:         event("POST", "/predict", "2001:db8:1:2:aaaa::1", nil),
			res:        allowed,
			wantEffect: "Allow",
			wantReq:    &limiter.Request{Buckets: []limiter.Bucket{caller("ip:2001:db8:1:2::/64", "anonymous")}, Cost: 1, Tier: "anonymous"},
		},
		{
			name:       "authenticated key, header in lower case, batch cost",
			ev:         event("POST", "/predict/batch", "198.51.100.7", map[string]string{"x-api-key": authKey}),
			res:        allowed,
			wantEffect: "Allow",
			wantReq:    &limiter.Request{Buckets: []limiter.Bucket{caller("key_auth", "authenticated")}, Cost: 5, Tier: "authenticated"},
		},
		{
			name:       "denied with retry rounded up",
			ev:         event("POST", "/predict", "198.51.100.7", nil),
			res:        denied,
			wantEffect: "Deny",
			wantReq:    &limiter.Request{Buckets: []limiter.Bucket{caller("ip:198.51.100.7", "anonymous")}, Cost: 1, Tier: "anonymous"},
			wantContext: map[string]interface{}{
				"tier": "anonymous", "caller": "ip:198.51.100.7", "limit": "10", "remaining": "0", "reset": "100",
				"retryAfter": "3", "source": "upstash", "cost": "1", "forbidden": "false", "policy": "anonymous",
				"message":         "Too Many Requests",
				"rateLimitPolicy": `"anonymous";q=10;w=100`, "rateLimit": `"anonymous";r=0;t=100`,
			},
		},
		{
			name:    "unknown key",
			ev:      event("POST", "/predict", "198.51.100.7", map[string]string{"X-Api-Key": "bg_nope"}),
			wantErr: ErrUnauthorized,
		},
		{
			name:    "empty key header",
			ev:      event("POST", "/predict", "198.51.100.7", map[string]string{"X-Api-Key": " "}),
			wantErr: ErrUnauthorized,
		},
		{
			name:    "two different keys",
			ev:      event("POST", "/predict", "198.51.100.7", map[string]string{"X-Api-Key": authKey, "X-API-KEY": premiumKey}),
			wantErr: ErrUnauthorized,
		},
		{
			name:       "premium route, premium key",
			ev:         event("POST", "/premium/predict", "198.51.100.7", map[string]string{"X-Api-Key": premiumKey}),
			res:        allowed,
			wantEffect: "Allow",
			wantReq:    &limiter.Request{Buckets: []limiter.Bucket{caller("key_prem", "premium")}, Cost: 1, Tier: "premium"},
		},
		{
			name:       "premium route, authenticated key: forbidden, nothing charged",
			ev:         event("POST", "/premium/predict", "198.51.100.7", map[string]string{"X-Api-Key": authKey}),
			wantEffect: "Allow",
			wantContext: map[string]interface{}{
				"tier": "authenticated", "caller": "key_auth", "source": "none", "cost": "1", "forbidden": "true",
				"requiredTier": "premium", "forbiddenReason": "this route requires the premium tier",
			},
		},
		{
			name:       "premium route, anonymous: forbidden",
			ev:         event("POST", "/premium/predict", "198.51.100.7", nil),
			wantEffect: "Allow",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := &recordingLimiter{res: tt.res}
			var logs, metrics bytes.Buffer
			h := newHandler(t, keys, lim, &logs, &metrics)
			got, err := h.Handle(context.Background(), tt.ev)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if err.Error() != "Unauthorized" {
					t.Errorf("error text = %q, API Gateway needs exactly \"Unauthorized\"", err.Error())
				}
				if len(lim.reqs) != 0 {
					t.Errorf("limiter called %d times for an unauthorized request, want 0", len(lim.reqs))
				}
				return
			}
			if got.PolicyDocument.Statement[0].Effect != tt.wantEffect {
				t.Errorf("effect = %q, want %q", got.PolicyDocument.Statement[0].Effect, tt.wantEffect)
			}
			if diff := cmp.Diff([]string{methodArn}, got.PolicyDocument.Statement[0].Resource); diff != "" {
				t.Errorf("resource (-want +got):\n%s", diff)
			}
			var wantReqs []limiter.Request
			if tt.wantReq != nil {
				wantReqs = []limiter.Request{*tt.wantReq}
			}
			if diff := cmp.Diff(wantReqs, lim.reqs); diff != "" {
				t.Errorf("limiter requests (-want +got):\n%s", diff)
			}
			if tt.wantContext != nil {
				if diff := cmp.Diff(tt.wantContext, got.Context); diff != "" {
					t.Errorf("context (-want +got):\n%s", diff)
				}
			}
			if got.PrincipalID == "" || strings.HasPrefix(got.PrincipalID, "bg_") {
				t.Errorf("principalId = %q, want the key id or ip", got.PrincipalID)
			}
			if strings.Contains(logs.String(), "bg_") {
				t.Errorf("logs contain an API key:\n%s", logs.String())
			}
			if metrics.Len() == 0 || !json.Valid(bytes.TrimSpace(metrics.Bytes())) {
				t.Errorf("want one EMF JSON line, got %q", metrics.String())
			}
		})
	}
}

func TestHandleStoreDown(t *testing.T) {
	var logs bytes.Buffer
	lim := &recordingLimiter{res: result(true, limiter.SourceUpstash, 0, 0, limiter.BucketState{Limit: 10, Remaining: 9})}
	h := newHandler(t, fakeKeys{err: errors.New("dynamodb: connection refused")}, lim, &logs, nil)
	_, err := h.Handle(context.Background(), event("POST", "/predict", "198.51.100.7", map[string]string{"X-Api-Key": authKey}))
	if err == nil || errors.Is(err, ErrUnauthorized) || err.Error() == "Unauthorized" {
		t.Fatalf("error = %v, want a non-401 failure", err)
	}
	if strings.Contains(err.Error(), authKey) || strings.Contains(logs.String(), authKey) {
		t.Errorf("key leaked: err=%q logs=%q", err, logs.String())
	}
	// Anonymous callers do not need the key store.
	if _, err := h.Handle(context.Background(), event("POST", "/predict", "198.51.100.7", nil)); err != nil {
		t.Errorf("anonymous with store down: %v", err)
	}
}

func TestNewRejectsCostAboveBurst(t *testing.T) {
	costs, err := limiter.ParseRouteCosts("POST /predict/batch=11")
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Keys: keys, Limiter: &recordingLimiter{}, Tiers: tiers, Costs: costs})
	if err == nil || !strings.Contains(err.Error(), "ROUTE_COSTS") {
		t.Fatalf("New error = %v, want one naming ROUTE_COSTS", err)
	}
}

func TestLoadSettings(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring; "" = success
	}{
		{name: "defaults with table", env: map[string]string{"API_KEYS_TABLE": "t"}},
		{name: "no key store", env: map[string]string{}, wantErr: "API_KEYS_TABLE"},
		{name: "bad tier", env: map[string]string{"API_KEYS_FILE": "k.json", "TIER_LIMITS": "anonymous=6/fortnight"}, wantErr: "TIER_LIMITS"},
		{name: "no anonymous tier", env: map[string]string{"API_KEYS_FILE": "k.json", "TIER_LIMITS": "premium=1/second"}, wantErr: "anonymous"},
		{name: "bad cost", env: map[string]string{"API_KEYS_FILE": "k.json", "ROUTE_COSTS": "POST /x=zero"}, wantErr: "ROUTE_COSTS"},
		{name: "bad timeout", env: map[string]string{"API_KEYS_FILE": "k.json", "LIMITER_TIMEOUT": "soon"}, wantErr: "LIMITER_TIMEOUT"},
		{name: "bad mode", env: map[string]string{"API_KEYS_FILE": "k.json", "LIMITER_FAILURE_MODE": "maybe"}, wantErr: "LIMITER_FAILURE_MODE"},
		{name: "bad level", env: map[string]string{"API_KEYS_FILE": "k.json", "LOG_LEVEL": "loud"}, wantErr: "LOG_LEVEL"},
		{name: "bad premium prefix", env: map[string]string{"API_KEYS_FILE": "k.json", "PREMIUM_ROUTES": "premium"}, wantErr: "PREMIUM_ROUTES"},
		{name: "url without token", env: map[string]string{"API_KEYS_FILE": "k.json", "UPSTASH_REDIS_REST_URL": "https://x.upstash.io"}, wantErr: "UPSTASH_REDIS_REST_TOKEN"},
		{name: "bad route limit", env: map[string]string{"API_KEYS_FILE": "k.json", "ROUTE_LIMITS": "POST /x=oops"}, wantErr: `ROUTE_LIMITS: "POST /x=oops": want RATE/PERIOD[:burst=N]`},
		{name: "route limit without path", env: map[string]string{"API_KEYS_FILE": "k.json", "ROUTE_LIMITS": "POST=1/second"}, wantErr: `ROUTE_LIMITS: "POST=1/second": want METHOD PATH[@TIER]=`},
		{name: "route limit with a quota", env: map[string]string{"API_KEYS_FILE": "k.json", "ROUTE_LIMITS": "POST /x=1/second:quota=5/day"}, wantErr: `ROUTE_LIMITS: "POST /x=1/second:quota=5/day": unknown option "quota=5/day"`},
		{name: "bad global limit", env: map[string]string{"API_KEYS_FILE": "k.json", "GLOBAL_LIMIT": "100"}, wantErr: `GLOBAL_LIMIT: want RATE/PERIOD[:burst=N]`},
		{name: "bad warm-up factor", env: map[string]string{"API_KEYS_FILE": "k.json", "WARMUP": "2/10m"}, wantErr: `WARMUP: factor "2" must be a number from 0.001 to below 1`},
		{name: "bad warm-up duration", env: map[string]string{"API_KEYS_FILE": "k.json", "WARMUP": "0.2/soon"}, wantErr: `WARMUP: duration "soon"`},
		{name: "bad message placeholder", env: map[string]string{"API_KEYS_FILE": "k.json", "LIMIT_MESSAGE": "wait {seconds}s"}, wantErr: `LIMIT_MESSAGE: unknown placeholder "{seconds}"`},
		{name: "bad shadow", env: map[string]string{"API_KEYS_FILE": "k.json", "LIMITER_SHADOW": "maybe"}, wantErr: `LIMITER_SHADOW: "maybe" is not true or false`},
		{name: "bad quota", env: map[string]string{"API_KEYS_FILE": "k.json", "TIER_LIMITS": "anonymous=6/minute:quota=10/year"}, wantErr: `TIER_LIMITS: "anonymous=6/minute:quota=10/year": unknown quota period "year"`},
		{name: "every policy set", env: map[string]string{"API_KEYS_FILE": "k.json",
			"TIER_LIMITS":  "anonymous=6/minute:burst=10:quota=100/day,authenticated=30/minute:burst=50,premium=120/minute:burst=200",
			"ROUTE_LIMITS": "POST /predict=10/minute,POST /predict@premium=100/minute", "GLOBAL_LIMIT": "1000/second:burst=2000",
			"LIMIT_MESSAGE": "Slow down: retry in {retryAfter}s ({policy})", "WARMUP": "0.2/10m", "LIMITER_SHADOW": "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := LoadSettings(func(k string) string { return tt.env[k] })
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadSettings: %v", err)
				}
				if s.Timeout != limiter.DefaultTimeout || s.UpstashConfigured || len(s.Tiers) != 3 || s.Message == "" {
					t.Errorf("defaults not applied: %+v", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}
