package authorizer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/google/go-cmp/cmp"
)

// eventEnv builds the environment `cmd/local invoke --env-vars events/env.json`
// gives the authorizer, pointed at a real redis-server behind the
// Upstash-compatible server.
func eventEnv(t *testing.T, up *upstashtest.Env, file string) func(string) string {
	t.Helper()
	raw, err := os.ReadFile("../../events/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Parameters map[string]string }
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("events/env.json: %v", err)
	}
	env := map[string]string{
		"UPSTASH_REDIS_REST_URL":   up.URL,
		"UPSTASH_REDIS_REST_TOKEN": up.Token,
		"LIMITER_TIMEOUT":          "2s", // a busy CI machine must not turn this test into a fallback test
	}
	for k, v := range doc.Parameters {
		if k == "API_KEYS_FILE" {
			v = filepath.Join("../..", v)
		}
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

// untilMidnight stands for the seconds left until 00:00 UTC, what
// Retry-After says for an exhausted daily quota; compared within 2 s.
const untilMidnight = "seconds until midnight UTC"

func nearMidnight(got interface{}) bool {
	n, err := strconv.ParseInt(fmt.Sprint(got), 10, 64)
	now := time.Now().UTC()
	next := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	want := int64((next.Sub(now) + time.Second - 1) / time.Second)
	return err == nil && n >= want-2 && n <= want+2
}

// TestEventFixtures runs every events/authorizer-*.json through the real
// wiring (file key store, Upstash limiter on real redis-server).
func TestEventFixtures(t *testing.T) {
	type want struct {
		env          string // the --env-vars file; "" for env.json
		before       int    // invocations of the same event before the one checked
		beforeErr    bool   // those are refused as Unauthorized (else allowed)
		unauthorized bool
		effect       string
		context      map[string]interface{} // compared key by key
	}
	wants := map[string]want{
		"authorizer-anonymous.json": {effect: "Allow", context: map[string]interface{}{
			"tier": "anonymous", "caller": "ip:198.51.100.7", "limit": "10", "remaining": "9", "cost": "1", "source": "upstash", "retryAfter": "0"}},
		"authorizer-spoofed-forwarded-for.json": {effect: "Allow", context: map[string]interface{}{
			"tier": "anonymous", "caller": "ip:198.51.100.7", "remaining": "9"}},
		"authorizer-authenticated-key.json": {effect: "Allow", context: map[string]interface{}{
			"tier": "authenticated", "limit": "50", "remaining": "49", "cost": "1"}},
		"authorizer-premium-key.json": {effect: "Allow", context: map[string]interface{}{
			"tier": "premium", "limit": "200", "remaining": "199", "forbidden": "false"}},
		"authorizer-batch-route.json": {effect: "Allow", context: map[string]interface{}{
			"cost": "5"}},
		"authorizer-premium-route-authenticated.json": {effect: "Allow", context: map[string]interface{}{
			"tier": "authenticated", "forbidden": "true", "requiredTier": "premium", "source": "none"}},
		"authorizer-unknown-key.json": {unauthorized: true},
		// AUTH_FAILURE_LIMIT's default burst of 20 failed keys from one
		// address, then a 429 naming the failed-key bucket, refilling one
		// token every 6 s.
		"authorizer-failed-key-attempts.json": {before: 20, beforeErr: true, effect: "Deny", context: map[string]interface{}{
			"tier": "none", "caller": "ip:203.0.113.99", "policy": "auth-failures", "limit": "20", "remaining": "0",
			"retryAfter": "6", "source": "cache"}},
		// Behind a /{proxy+} resource the path decides, as in the function.
		"authorizer-proxy-premium-route.json": {effect: "Allow", context: map[string]interface{}{
			"tier": "authenticated", "forbidden": "true", "requiredTier": "premium", "source": "none"}},
		"authorizer-proxy-batch-route.json": {effect: "Allow", context: map[string]interface{}{
			"cost": "5"}},
		"authorizer-revoked-key.json":   {unauthorized: true},
		"authorizer-malformed-key.json": {unauthorized: true},
		// A key with its own limit and a quota of 3 a day: the fourth
		// request of the day is denied by the quota, until midnight UTC.
		"authorizer-key-quota.json": {before: 3, effect: "Deny", context: map[string]interface{}{
			"tier": "authenticated", "policy": "key-quota", "limit": "3", "remaining": "0", "retryAfter": untilMidnight}},
		// ROUTE_LIMITS gives anonymous callers 2 a minute on POST /predict.
		"authorizer-route-limit.json": {env: "env-policies.json", before: 2, effect: "Deny", context: map[string]interface{}{
			"tier": "anonymous", "policy": "route:POST /predict", "limit": "2", "remaining": "0", "retryAfter": "30",
			"rateLimitPolicy": `"anonymous";q=10;w=100, "route:POST /predict";q=2;w=60`}},
	}
	files, err := filepath.Glob("../../events/authorizer-*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(wants) {
		t.Errorf("%d authorizer events, %d expectations: keep them in step", len(files), len(wants))
	}
	up := upstashtest.StartRedis(t)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			w, ok := wants[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatalf("decode: %v", err)
			}
			// A fresh container per event, on a fresh bucket namespace.
			up.Redis.Do(t, "FLUSHALL")
			env := w.env
			if env == "" {
				env = "env.json"
			}
			s, err := LoadSettings(eventEnv(t, up, env))
			if err != nil {
				t.Fatalf("LoadSettings: %v", err)
			}
			var logs bytes.Buffer
			h, err := Build(context.Background(), s, NewLogger(&logs, 0), nil)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := 0; i < w.before; i++ {
				r, err := h.Handle(ctx, ev)
				if w.beforeErr {
					if !errors.Is(err, ErrUnauthorized) {
						t.Fatalf("invocation %d before the checked one: %v, want Unauthorized", i+1, err)
					}
					continue
				}
				if err != nil || r.PolicyDocument.Statement[0].Effect != "Allow" {
					t.Fatalf("invocation %d before the checked one: %+v, %v", i+1, r.Context, err)
				}
			}
			got, err := h.Handle(ctx, ev)
			if w.unauthorized {
				if err == nil || err.Error() != "Unauthorized" {
					t.Fatalf("error = %v, want Unauthorized", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if got.PolicyDocument.Statement[0].Effect != w.effect {
				t.Errorf("effect = %q, want %q", got.PolicyDocument.Statement[0].Effect, w.effect)
			}
			sub := map[string]interface{}{}
			for k, v := range w.context {
				sub[k] = got.Context[k]
				if v == untilMidnight && nearMidnight(got.Context[k]) {
					sub[k] = v
				}
			}
			if diff := cmp.Diff(w.context, sub); diff != "" {
				t.Errorf("context (-want +got):\n%s", diff)
			}
			if key := ev.Headers["X-Api-Key"]; key != "" && strings.Contains(logs.String(), key) {
				t.Errorf("the API key reached the logs")
			}
		})
	}
}

// TestBuildWarmsWithoutSideEffects: Build makes a decision at init to warm
// the code path, on nothing — no bucket key in Redis, no log line about a
// decision, no metrics line.
func TestBuildWarmsWithoutSideEffects(t *testing.T) {
	up := upstashtest.StartRedis(t)
	s, err := LoadSettings(eventEnv(t, up, "env.json"))
	if err != nil {
		t.Fatal(err)
	}
	var logs, metrics bytes.Buffer
	if _, err := Build(context.Background(), s, NewLogger(&logs, 0), &metrics); err != nil {
		t.Fatal(err)
	}
	if metrics.Len() != 0 {
		t.Errorf("Build wrote metrics: %s", metrics.String())
	}
	if strings.Contains(logs.String(), `"decision"`) {
		t.Errorf("Build logged a decision: %s", logs.String())
	}
	if keys := up.Redis.Do(t, "KEYS", "*"); keys != "" {
		t.Errorf("Build left keys in Redis: %q", keys)
	}
}
