package authorizer

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
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
func eventEnv(t *testing.T, up *upstashtest.Env) func(string) string {
	t.Helper()
	raw, err := os.ReadFile("../../events/env.json")
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

// TestEventFixtures runs every events/authorizer-*.json through the real
// wiring (file key store, Upstash limiter on real redis-server).
func TestEventFixtures(t *testing.T) {
	type want struct {
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
		"authorizer-unknown-key.json":   {unauthorized: true},
		"authorizer-revoked-key.json":   {unauthorized: true},
		"authorizer-malformed-key.json": {unauthorized: true},
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
			s, err := LoadSettings(eventEnv(t, up))
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
			for k := range w.context {
				sub[k] = got.Context[k]
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
