package authorizer_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authctx"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/limiter"
)

// fuzzHandler is an authorizer on a memory-only limiter and a key file with
// one authenticated and one premium key, with failed-key throttling.
func fuzzHandler(f *testing.F) (*authorizer.Handler, []string) {
	f.Helper()
	path := filepath.Join(f.TempDir(), "keys.json")
	fs, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
	if err != nil {
		f.Fatal(err)
	}
	var keys []string
	for _, tier := range []string{"authenticated", "premium"} {
		key, rec, err := apikey.New("fuzz", tier, time.Now())
		if err != nil {
			f.Fatal(err)
		}
		if err := fs.Create(context.Background(), rec); err != nil {
			f.Fatal(err)
		}
		keys = append(keys, key)
	}
	tiers, err := limiter.ParseTierLimits(authorizer.DefaultTierLimits)
	if err != nil {
		f.Fatal(err)
	}
	costs, err := limiter.ParseRouteCosts(authorizer.DefaultRouteCosts)
	if err != nil {
		f.Fatal(err)
	}
	lim, err := limiter.New(limiter.Config{})
	if err != nil {
		f.Fatal(err)
	}
	failures, err := limiter.ParseLimit(authorizer.DefaultAuthFailures)
	if err != nil {
		f.Fatal(err)
	}
	h, err := authorizer.New(authorizer.Config{
		Keys:          apikey.NewCache(fs, apikey.CacheConfig{}),
		Limiter:       lim,
		Tiers:         tiers,
		Costs:         costs,
		PremiumRoutes: []string{"/premium/"},
		AuthFailures:  failures, // bad keys soon meet the failed-key 429
	})
	if err != nil {
		f.Fatal(err)
	}
	return h, keys
}

// FuzzHandleEvent decodes arbitrary bytes as the Lambda runtime decodes the
// authorizer's event, and hands the event to Handle. Seeds: the sample
// events in events/authorizer-*.json, one with a real key, and odd shapes.
//
// Properties: no panic; either ErrUnauthorized, another error with a
// lowercase "authorizer: " message and no key in it, or a policy with one
// statement (Allow or Deny on exactly the event's methodArn) whose
// principal is the caller in the context, never the X-Api-Key value, with
// all the rate-limit context a gateway response reads.
func FuzzHandleEvent(f *testing.F) {
	h, keys := fuzzHandler(f)
	fixtures, err := filepath.Glob("../../events/authorizer-*.json")
	if err != nil || len(fixtures) == 0 {
		f.Fatalf("no authorizer fixtures: %v", err)
	}
	for _, path := range fixtures {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	withKey, err := json.Marshal(events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type: "REQUEST", MethodArn: "arn:aws:execute-api:us-east-1:1:a/v1/POST/premium/predict",
		Resource: "/premium/predict", HTTPMethod: "POST",
		Headers:           map[string]string{"x-API-key": keys[0]},
		MultiValueHeaders: map[string][]string{"X-Api-Key": {keys[0], " " + keys[0]}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withKey)
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"methodArn":"arn"}`, `{"methodArn":"a","headers":{"X-Api-Key":""}}`,
		`{"methodArn":"a","requestContext":{"identity":{"sourceIp":"::ffff:1.2.3.4%eth0"}}}`,
		`{"methodArn":"a","requestContext":{"identity":{"sourceIp":"fe80::1%25zone"}}}`,
		`{"methodArn":"a","httpMethod":"post","resource":"/predict/batch"}`,
		`{"methodArn":"a","multiValueHeaders":{"x-api-key":["a","b"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
		if json.Unmarshal(data, &ev) != nil {
			return // the runtime fails before calling the handler
		}
		res, err := h.Handle(context.Background(), ev)
		var sent []string // X-Api-Key values in the event
		for name, v := range ev.Headers {
			if strings.EqualFold(name, authorizer.HeaderAPIKey) {
				sent = append(sent, strings.TrimSpace(v))
			}
		}
		for name, vs := range ev.MultiValueHeaders {
			if strings.EqualFold(name, authorizer.HeaderAPIKey) {
				for _, v := range vs {
					sent = append(sent, strings.TrimSpace(v))
				}
			}
		}
		leaks := func(s string) bool {
			for _, k := range sent {
				if len(k) >= 12 && strings.Contains(s, k) {
					return true
				}
			}
			return false
		}
		if err != nil {
			switch {
			case errors.Is(err, authorizer.ErrUnauthorized):
			case !strings.HasPrefix(err.Error(), "authorizer: "):
				t.Fatalf("error %q: want Unauthorized or an \"authorizer: \" error", err)
			case leaks(err.Error()):
				t.Fatalf("error %q contains the API key", err)
			}
			return
		}
		st := res.PolicyDocument.Statement
		if len(st) != 1 || (st[0].Effect != "Allow" && st[0].Effect != "Deny") ||
			len(st[0].Resource) != 1 || st[0].Resource[0] != ev.MethodArn {
			t.Fatalf("policy %+v for methodArn %q", res.PolicyDocument, ev.MethodArn)
		}
		if res.PrincipalID == "" || res.PrincipalID != res.Context[authctx.KeyCaller] || leaks(res.PrincipalID) {
			t.Fatalf("principal %q, context caller %v", res.PrincipalID, res.Context[authctx.KeyCaller])
		}
		if ctx := res.Context; ctx[authctx.KeyForbidden] != "true" {
			for _, k := range []string{authctx.KeyTier, authctx.KeyLimit, authctx.KeyRemaining, authctx.KeyReset,
				authctx.KeyRetryAfter, authctx.KeyPolicy, authctx.KeyRateLimit, authctx.KeySource} {
				if s, _ := ctx[k].(string); s == "" {
					t.Fatalf("context %q is empty: %v", k, ctx)
				}
			}
			if (st[0].Effect == "Deny") != (ctx[authctx.KeyRetryAfter] != "0") {
				t.Fatalf("effect %s with retryAfter %v", st[0].Effect, ctx[authctx.KeyRetryAfter])
			}
		}
		if st[0].Effect == "Deny" && res.Context[authctx.KeyForbidden] == "true" {
			t.Fatal("a forbidden route must be an Allow with forbidden=true")
		}
	})
}

// FuzzLoadSettings feeds arbitrary values to every environment variable the
// authorizer reads. Properties: no panic; an error names the variable it is
// about and never contains the Upstash token; accepted settings are usable
// (a timeout in (0, 10s], an anonymous tier, valid limits).
func FuzzLoadSettings(f *testing.F) {
	f.Add("https://eu1-x.upstash.io", "AXtoken1234567890", authorizer.DefaultTierLimits, authorizer.DefaultRouteCosts,
		authorizer.DefaultPremiumRoutes, "150ms", "fallback", "info")
	f.Add("", "", "anonymous=1/second", "", "", "", "", "")
	f.Add("https://user:AXtoken1234567890@x.io", "AXtoken1234567890", "premium=1/day", "GET /=0", "premium", "-1s", "half-open", "trace")
	f.Add("http://[::1]:8079/prefix/", "tok en", "anonymous=6/minute:burst=0", "POST /a=1,POST /a=2", "/a,/b", "10s", "CLOSED", "WARN")
	f.Add(":", "AXtoken1234567890", "anonymous=6/minute,anonymous=7/minute", "POST /x=99999999", "/", "10.000000001s", "open", "error")
	f.Fuzz(func(t *testing.T, url, token, tiers, costs, premium, timeout, mode, level string) {
		vars := map[string]string{
			"UPSTASH_REDIS_REST_URL": url, "UPSTASH_REDIS_REST_TOKEN": token, "TIER_LIMITS": tiers,
			"ROUTE_COSTS": costs, "PREMIUM_ROUTES": premium, "LIMITER_TIMEOUT": timeout,
			"LIMITER_FAILURE_MODE": mode, "LOG_LEVEL": level, "API_KEYS_FILE": "keys.json",
		}
		s, err := authorizer.LoadSettings(func(k string) string { return vars[k] })
		if err != nil {
			msg := err.Error()
			named := false
			for name := range vars {
				if strings.Contains(msg, name) {
					named = true
				}
			}
			if !named {
				t.Fatalf("error %q names no variable", msg)
			}
			tok := strings.TrimSpace(token)
			if len(tok) >= 8 && strings.Contains(msg, tok) {
				// Only a leak if the token did not come in through another
				// variable the error may quote.
				for name, v := range vars {
					if name != "UPSTASH_REDIS_REST_TOKEN" && strings.Contains(v, tok) {
						return
					}
				}
				t.Fatalf("error %q contains the token", msg)
			}
			return
		}
		if s.Timeout <= 0 || s.Timeout > 10*time.Second {
			t.Fatalf("timeout %s", s.Timeout)
		}
		if _, ok := s.Tiers[authorizer.AnonymousTier]; !ok {
			t.Fatalf("no anonymous tier in %v", s.Tiers)
		}
		for name, l := range s.Tiers {
			if err := l.Limit.Validate(); err != nil {
				t.Fatalf("tier %q: %v", name, err)
			}
		}
		for _, p := range s.PremiumRoutes {
			if !strings.HasPrefix(p, "/") {
				t.Fatalf("premium route %q", p)
			}
		}
	})
}
