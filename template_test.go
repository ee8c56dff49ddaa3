package bucketgate_test

// Checks of the deployment wiring: template.yaml (parsed with internal/local/sam),
// its agreement with the Makefile, the code's environment variables and the
// authorizer context contract (internal/authctx), and the sample events.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authctx"
	"github.com/bucketgate/bucketgate/internal/local/sam"
)

const modulePath = "github.com/bucketgate/bucketgate"

// Logical IDs README documents.
const (
	authorizerID = "AuthorizerFunction"
	predictID    = "PredictFunction"
	tableID      = "ApiKeysTable"
	apiID        = "RateLimitedApi"
	dashboardID  = "RateLimitDashboard"
	fallbackID   = "UpstashFallbackAlarm"
	errorAlarmID = "AuthorizerErrorAlarm"
)

// designDefaults is README's configuration table: variable → default
// ("" = unset). Every variable must be declared on the authorizer.
var designDefaults = map[string]string{
	"ROUTE_LIMITS":             "",
	"GLOBAL_LIMIT":             "",
	"LIMIT_MESSAGE":            "Too Many Requests",
	"WARMUP":                   "",
	"LIMITER_SHADOW":           "false",
	"UPSTASH_REDIS_REST_URL":   "",
	"UPSTASH_REDIS_REST_TOKEN": "",
	"TIER_LIMITS":              "anonymous=6/minute:burst=10,authenticated=30/minute:burst=50,premium=120/minute:burst=200",
	"ROUTE_COSTS":              "POST /predict/batch=5",
	"PREMIUM_ROUTES":           "/premium/",
	"API_KEYS_TABLE":           tableID, // set by template.yaml: Ref to the table (its logical ID locally)
	"API_KEYS_FILE":            "",
	"LIMITER_TIMEOUT":          "150ms",
	"LIMITER_FAILURE_MODE":     "fallback",
	"LOG_LEVEL":                "info",
	"AUTH_FAILURE_LIMIT":       "10/minute:burst=20",
}

func loadTemplate(t *testing.T) *sam.Template {
	t.Helper()
	tpl, err := sam.Load("template.yaml")
	if err != nil {
		t.Fatalf("load template.yaml: %v", err)
	}
	return tpl
}

func TestTemplateResources(t *testing.T) {
	tpl := loadTemplate(t)
	want := map[string]string{
		authorizerID: sam.TypeFunction,
		predictID:    sam.TypeFunction,
		apiID:        sam.TypeAPI,
		tableID:      "AWS::DynamoDB::Table",
		dashboardID:  "AWS::CloudWatch::Dashboard",
		fallbackID:   "AWS::CloudWatch::Alarm",
		errorAlarmID: "AWS::CloudWatch::Alarm",
	}
	got := map[string]string{}
	for id, r := range tpl.Resources {
		got[id] = r.Type
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resources (logical ID → type) mismatch (-want +got):\n%s", diff)
	}
	if !contains(tpl.Transform, "AWS::Serverless-2016-10-31") {
		t.Errorf("Transform = %v, want AWS::Serverless-2016-10-31", tpl.Transform)
	}
}

func TestTemplateFunctions(t *testing.T) {
	tpl := loadTemplate(t)
	fns, err := tpl.Functions(nil)
	if err != nil {
		t.Fatalf("Functions: %v", err)
	}
	targets := makeTargets(t)
	tests := []struct {
		name             string
		id               string
		pkg              string // package the Makefile target builds
		minMem, maxMem   int
		minTime, maxTime time.Duration
	}{
		{"authorizer", authorizerID, "./functions/authorizer", 128, 256, 3 * time.Second, 5 * time.Second},
		{"predict", predictID, "./functions/predict", 128, 1024, 3 * time.Second, 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := fns[tc.id]
			if !ok {
				t.Fatalf("no function %s", tc.id)
			}
			got := struct {
				Handler, Runtime, CodeURI, BuildMethod string
				Arch                                   []string
			}{f.Handler, f.Runtime, f.CodeURI, f.BuildMethod, f.Architectures}
			want := struct {
				Handler, Runtime, CodeURI, BuildMethod string
				Arch                                   []string
			}{"bootstrap", "provided.al2023", ".", "makefile", []string{"arm64"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", tc.id, diff)
			}
			if f.MemorySize < tc.minMem || f.MemorySize > tc.maxMem {
				t.Errorf("MemorySize = %d MB, want %d to %d", f.MemorySize, tc.minMem, tc.maxMem)
			}
			if f.Timeout < tc.minTime || f.Timeout > tc.maxTime {
				t.Errorf("Timeout = %v, want %v to %v", f.Timeout, tc.minTime, tc.maxTime)
			}
			// sam build runs `make build-<LogicalId>` (BuildMethod: makefile).
			recipe, ok := targets["build-"+tc.id]
			if !ok {
				t.Fatalf("Makefile has no target build-%s", tc.id)
			}
			if !strings.Contains(recipe, "$(ARTIFACTS_DIR)/bootstrap") || !strings.Contains(recipe, tc.pkg) {
				t.Errorf("build-%s recipe %q does not build %s into $(ARTIFACTS_DIR)/bootstrap", tc.id, recipe, tc.pkg)
			}
		})
	}
}

func TestTemplateRoutes(t *testing.T) {
	tpl := loadTemplate(t)
	api, err := tpl.API(apiID, nil)
	if err != nil {
		t.Fatalf("API: %v", err)
	}
	const auth = "RateLimitAuthorizer"
	want := []sam.Route{
		{Method: "GET", Path: "/model-info", FunctionLogicalID: predictID}, // no key, no limit
		{Method: "POST", Path: "/predict", FunctionLogicalID: predictID, Authorizer: auth},
		{Method: "POST", Path: "/predict/batch", FunctionLogicalID: predictID, Authorizer: auth},
		{Method: "POST", Path: "/premium/predict", FunctionLogicalID: predictID, Authorizer: auth},
	}
	if diff := cmp.Diff(want, api.Routes); diff != "" {
		t.Errorf("routes mismatch (-want +got):\n%s", diff)
	}
	if api.DefaultAuthorizer != auth {
		t.Errorf("DefaultAuthorizer = %q, want %q", api.DefaultAuthorizer, auth)
	}
	if api.StageName == "" {
		t.Error("StageName is empty")
	}
}

func TestTemplateAuthorizer(t *testing.T) {
	tpl := loadTemplate(t)
	api, err := tpl.API(apiID, nil)
	if err != nil {
		t.Fatalf("API: %v", err)
	}
	if len(api.Authorizers) != 1 {
		t.Errorf("authorizers = %d, want 1", len(api.Authorizers))
	}
	a := api.Authorizers[api.DefaultAuthorizer]
	got := struct {
		FunctionLogicalID, PayloadType string
		ReauthorizeEvery               int
		HasIdentitySources             bool
	}{a.FunctionLogicalID, a.PayloadType, a.ReauthorizeEvery, a.HasIdentitySources()}
	// No identity sources: with one, API Gateway answers 401 itself when it
	// is absent and anonymous callers never reach the authorizer.
	// ReauthorizeEvery 0: every request is decided (and counted).
	want := struct {
		FunctionLogicalID, PayloadType string
		ReauthorizeEvery               int
		HasIdentitySources             bool
	}{authorizerID, "REQUEST", 0, false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("authorizer mismatch (-want +got):\n%s", diff)
	}

	// SAM accepts an empty Identity only when ReauthorizeEvery is a literal
	// 0, not an intrinsic function.
	raw := tpl.Resources[apiID].Properties["Auth"].(map[string]any)["Authorizers"].(map[string]any)[api.DefaultAuthorizer].(map[string]any)
	identity, _ := raw["Identity"].(map[string]any)
	if v, ok := identity["ReauthorizeEvery"]; !ok || !isLiteralZero(v) {
		t.Errorf("Identity.ReauthorizeEvery = %#v, want a literal 0", v)
	}

	// Read-only access to the key table.
	policies, _ := tpl.Resources[authorizerID].Properties["Policies"].([]any)
	wantPolicy := map[string]any{"DynamoDBReadPolicy": map[string]any{"TableName": map[string]any{"Ref": tableID}}}
	if diff := cmp.Diff([]any{wantPolicy}, policies); diff != "" {
		t.Errorf("authorizer Policies mismatch (-want +got):\n%s", diff)
	}
}

func isLiteralZero(v any) bool {
	s, ok := v.(string)
	if !ok {
		s = ""
		if b, err := json.Marshal(v); err == nil {
			s = strings.Trim(string(b), `"`)
		}
	}
	return s == "0"
}

// sampleDecision is a denial with every field distinct, so a header mapped
// to the wrong context key shows.
var sampleDecision = authctx.Decision{
	Tier: "authenticated", Caller: "key_6nlbpuh2foiif3uv", RetryAfter: 7, Source: "upstash", Cost: 5,
	Message: `Slow down, \"authenticated\"`, Deciding: 1,
	Policies: []authctx.Policy{
		{Name: "authenticated", Limit: 50, Remaining: 12, Reset: 76, Window: 100},
		{Name: "route:POST /predict/batch", Limit: 6, Remaining: 2, Reset: 96, Window: 120},
	},
}

// contextLookup resolves gateway-response mapping sources from an
// authorizer context the way API Gateway does for a Deny.
func contextLookup(ctx map[string]interface{}) sam.Lookup {
	return func(name string) (string, bool) {
		key, ok := strings.CutPrefix(name, "context.authorizer.")
		if !ok {
			return "", false
		}
		v, ok := ctx[key]
		if !ok {
			return "", false
		}
		s, ok := v.(string)
		return s, ok
	}
}

func TestTemplateGatewayResponses(t *testing.T) {
	tpl := loadTemplate(t)
	api, err := tpl.API(apiID, nil)
	if err != nil {
		t.Fatalf("API: %v", err)
	}
	ctx := sampleDecision.Map()

	t.Run("429 headers map authorizer context keys", func(t *testing.T) {
		g, ok := api.GatewayResponses["ACCESS_DENIED"]
		if !ok {
			t.Fatal("no ACCESS_DENIED gateway response")
		}
		if g.StatusCode != http.StatusTooManyRequests {
			t.Errorf("StatusCode = %d, want 429", g.StatusCode)
		}
		want := map[string]string{
			authctx.HeaderRetryAfter: "context.authorizer." + authctx.KeyRetryAfter,
			authctx.HeaderLimit:      "context.authorizer." + authctx.KeyLimit,
			authctx.HeaderRemaining:  "context.authorizer." + authctx.KeyRemaining,
			authctx.HeaderReset:      "context.authorizer." + authctx.KeyReset,
			authctx.HeaderTier:       "context.authorizer." + authctx.KeyTier,
			authctx.HeaderPolicy:     "context.authorizer." + authctx.KeyPolicy,
			authctx.HeaderRateLimit:  "context.authorizer." + authctx.KeyRateLimit,
			"Content-Type":           "'application/json'",
		}
		if diff := cmp.Diff(want, g.Headers); diff != "" {
			t.Errorf("headers mismatch (-want +got):\n%s", diff)
		}
		// Every context key a header reads is one Decision.Map produces.
		for name, expr := range g.Headers {
			if key, ok := strings.CutPrefix(expr, "context.authorizer."); ok {
				if _, ok := ctx[key]; !ok {
					t.Errorf("header %s maps %s, which authctx.Decision.Map does not set", name, expr)
				}
			}
		}
	})

	t.Run("429 headers equal the ones a 200 echoes", func(t *testing.T) {
		got := api.GatewayResponses["ACCESS_DENIED"].RenderHeaders(contextLookup(ctx))
		echo, err := authctx.FromRequest(ctx)
		if err != nil {
			t.Fatalf("FromRequest: %v", err)
		}
		h := http.Header{}
		echo.SetHeaders(h)
		want := map[string]string{
			"Content-Type":           "application/json",
			authctx.HeaderRetryAfter: strconv.FormatInt(sampleDecision.RetryAfter, 10),
		}
		for k := range h {
			want[k] = h.Get(k)
		}
		if diff := cmp.Diff(want, canonical(got)); diff != "" {
			t.Errorf("rendered 429 headers mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("429 body", func(t *testing.T) {
		tmpl, ok := api.GatewayResponses["ACCESS_DENIED"].Templates["application/json"]
		if !ok {
			t.Fatal("ACCESS_DENIED has no application/json template")
		}
		// Every $context.authorizer.X in the body is a key Decision.Map sets.
		for _, m := range regexp.MustCompile(`\$context\.authorizer\.([A-Za-z0-9_]+)`).FindAllStringSubmatch(tmpl, -1) {
			if _, ok := ctx[m[1]]; !ok {
				t.Errorf("body uses $context.authorizer.%s, which authctx.Decision.Map does not set", m[1])
			}
		}
		body := sam.RenderTemplate(tmpl, contextLookup(ctx))
		var got map[string]any
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("rendered body %s is not JSON: %v", body, err)
		}
		want := map[string]any{
			"message": `Slow down, "authenticated"`, "retryAfter": 7.0, "limit": 6.0, "remaining": 2.0, "reset": 96.0,
			"tier": "authenticated", "policy": "route:POST /predict/batch",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("rendered body mismatch (-want +got):\n%s", diff)
		}
	})

	static := []struct {
		typ     string
		status  int
		body    map[string]any
		headers map[string]string
	}{
		{"UNAUTHORIZED", 401, map[string]any{"message": "Unauthorized"}, map[string]string{"Content-Type": "application/json"}},
		{"AUTHORIZER_FAILURE", 503, map[string]any{"message": "Service Unavailable"}, map[string]string{"Content-Type": "application/json", "Retry-After": "1"}},
		// A function error or timeout of the authorizer surfaces as this type.
		{"AUTHORIZER_CONFIGURATION_ERROR", 503, map[string]any{"message": "Service Unavailable"}, map[string]string{"Content-Type": "application/json", "Retry-After": "1"}},
		{"DEFAULT_4XX", 0, map[string]any{"message": "Missing Authentication Token"}, map[string]string{"Content-Type": "application/json"}},
		{"DEFAULT_5XX", 0, map[string]any{"message": "Missing Authentication Token"}, map[string]string{"Content-Type": "application/json"}},
	}
	// What API Gateway offers these responses: no authorizer context.
	errLookup := func(name string) (string, bool) {
		if name == "context.error.messageString" {
			return `"Missing Authentication Token"`, true
		}
		return "", false
	}
	for _, tc := range static {
		t.Run(tc.typ, func(t *testing.T) {
			g, ok := api.GatewayResponses[tc.typ]
			if !ok {
				t.Fatalf("no %s gateway response", tc.typ)
			}
			if g.StatusCode != tc.status {
				t.Errorf("StatusCode = %d, want %d", g.StatusCode, tc.status)
			}
			if diff := cmp.Diff(tc.headers, g.RenderHeaders(errLookup)); diff != "" {
				t.Errorf("headers mismatch (-want +got):\n%s", diff)
			}
			if len(g.RenderHeaders(errLookup)) != len(g.Headers) {
				t.Errorf("headers %v read sources that are absent here", g.Headers)
			}
			var got map[string]any
			body := sam.RenderTemplate(g.Templates["application/json"], errLookup)
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("rendered body %q is not JSON: %v", body, err)
			}
			if diff := cmp.Diff(tc.body, got); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func canonical(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[http.CanonicalHeaderKey(k)] = v
	}
	return out
}

func TestTemplateParameters(t *testing.T) {
	tpl := loadTemplate(t)
	fns, err := tpl.Functions(nil)
	if err != nil {
		t.Fatalf("Functions with defaults: %v", err)
	}
	env := fns[authorizerID].Environment

	t.Run("every configuration variable declared with its default", func(t *testing.T) {
		got := map[string]string{}
		for k := range designDefaults {
			v, ok := env[k]
			if !ok {
				v = "(undeclared)"
			}
			got[k] = v
		}
		if diff := cmp.Diff(designDefaults, got); diff != "" {
			t.Errorf("authorizer environment with default parameters mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("overrides reach the environment", func(t *testing.T) {
		params := map[string]string{
			"TierLimits": "anonymous=1/second", "RouteCosts": "POST /predict=2", "PremiumRoutes": "/vip/",
			"LimiterTimeout": "80ms", "LimiterFailureMode": "closed", "LogLevel": "debug",
			"UpstashRedisRestUrl": "https://example.upstash.io", "UpstashRedisRestToken": "tok",
			"RouteLimits": "POST /predict=10/minute", "GlobalLimit": "100/second", "LimitMessage": "wait {retryAfter}s",
			"Warmup": "0.5/5m", "LimiterShadow": "true", "AuthFailureLimit": "5/minute",
		}
		fns, err := tpl.Functions(params)
		if err != nil {
			t.Fatalf("Functions: %v", err)
		}
		got := fns[authorizerID].Environment
		want := map[string]string{
			"TIER_LIMITS": "anonymous=1/second", "ROUTE_COSTS": "POST /predict=2", "PREMIUM_ROUTES": "/vip/",
			"LIMITER_TIMEOUT": "80ms", "LIMITER_FAILURE_MODE": "closed", "LOG_LEVEL": "debug",
			"UPSTASH_REDIS_REST_URL": "https://example.upstash.io", "UPSTASH_REDIS_REST_TOKEN": "tok",
			"API_KEYS_TABLE": tableID, "API_KEYS_FILE": "",
			"ROUTE_LIMITS": "POST /predict=10/minute", "GLOBAL_LIMIT": "100/second", "LIMIT_MESSAGE": "wait {retryAfter}s",
			"WARMUP": "0.5/5m", "LIMITER_SHADOW": "true", "AUTH_FAILURE_LIMIT": "5/minute",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("environment mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("token is NoEcho or resolved from Secrets Manager", func(t *testing.T) {
		for name, p := range tpl.Parameters {
			if strings.Contains(strings.ToLower(name), "token") && !strings.Contains(strings.ToLower(name), "secret") {
				if !p.NoEcho {
					t.Errorf("parameter %s holds a token but is not NoEcho", name)
				}
				if p.Default != "" {
					t.Errorf("parameter %s has a non-empty default token", name)
				}
			}
		}
		fns, err := tpl.Functions(map[string]string{"UpstashRedisRestTokenSecret": "bucketgate/upstash-token"})
		if err != nil {
			t.Fatalf("Functions: %v", err)
		}
		if got, want := fns[authorizerID].Environment["UPSTASH_REDIS_REST_TOKEN"], "{{resolve:secretsmanager:bucketgate/upstash-token}}"; got != want {
			t.Errorf("token with a secret = %q, want %q", got, want)
		}
		// The raw declaration is an intrinsic, never a literal.
		raw := tpl.Resources[authorizerID].Properties["Environment"].(map[string]any)["Variables"].(map[string]any)["UPSTASH_REDIS_REST_TOKEN"]
		if _, isMap := raw.(map[string]any); !isMap {
			t.Errorf("UPSTASH_REDIS_REST_TOKEN is declared as the literal %#v", raw)
		}
	})

	t.Run("invalid failure mode refused", func(t *testing.T) {
		if _, err := tpl.Functions(map[string]string{"LimiterFailureMode": "sometimes"}); !errors.Is(err, sam.ErrInvalidParameter) {
			t.Errorf("error = %v, want ErrInvalidParameter", err)
		}
	})
}

// TestTemplateDeclaresEnvRead checks that every environment variable the
// function code reads (directly or through the module's packages it imports)
// is declared on that function: like sam, cmd/local's --env-vars only
// overrides declared variables.
func TestTemplateDeclaresEnvRead(t *testing.T) {
	tpl := loadTemplate(t)
	fns, err := tpl.Functions(nil)
	if err != nil {
		t.Fatalf("Functions: %v", err)
	}
	targets := makeTargets(t)
	for _, id := range []string{authorizerID, predictID} {
		t.Run(id, func(t *testing.T) {
			m := regexp.MustCompile(`\./(functions/[A-Za-z0-9_/-]+)`).FindStringSubmatch(targets["build-"+id])
			if m == nil {
				t.Fatalf("cannot find the package build-%s builds", id)
			}
			if _, err := os.Stat(m[1]); errors.Is(err, os.ErrNotExist) {
				t.Skipf("%s does not exist yet", m[1])
			}
			read, err := envVarsRead(m[1])
			if err != nil {
				t.Fatalf("scan %s: %v", m[1], err)
			}
			if id == authorizerID && len(read) == 0 {
				t.Fatalf("found no environment variables read by %s; the scan is broken", m[1])
			}
			for _, name := range read {
				if _, ok := fns[id].Environment[name]; !ok {
					t.Errorf("%s reads %s, which template.yaml does not declare on %s", m[1], name, id)
				}
			}
			t.Logf("%s reads %v", m[1], read)
		})
	}
}

var envNameRE = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)

// envVarsRead returns the environment variable names read by the package in
// dir and by the packages of this module it imports, transitively: string
// literals that are the first argument of a call to something named *env*
// or get (os.Getenv, getenv, LookupEnv, get) or the value of a constant
// named *Env* (upstash.EnvURL). Variables the Lambda runtime sets (AWS_*,
// LAMBDA_*, _*) are left out.
func envVarsRead(dir string) ([]string, error) {
	seen := map[string]bool{}
	found := map[string]bool{}
	queue := []string{dir}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d] {
			continue
		}
		seen[d] = true
		paths, err := filepath.Glob(filepath.Join(d, "*.go"))
		if err != nil {
			return nil, err
		}
		fset := token.NewFileSet()
		for _, p := range paths {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return nil, err
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if rel, ok := strings.CutPrefix(path, modulePath+"/"); ok {
					queue = append(queue, filepath.FromSlash(rel))
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.CallExpr:
					var name string
					switch fn := x.Fun.(type) {
					case *ast.Ident:
						name = fn.Name
					case *ast.SelectorExpr:
						name = fn.Sel.Name
					}
					lower := strings.ToLower(name)
					if (strings.Contains(lower, "env") && !strings.HasPrefix(lower, "set")) || lower == "get" {
						if len(x.Args) > 0 {
							addLiteral(found, x.Args[0])
						}
					}
				case *ast.ValueSpec:
					for i, n := range x.Names {
						if strings.Contains(n.Name, "Env") && i < len(x.Values) {
							addLiteral(found, x.Values[i])
						}
					}
				}
				return true
			})
		}
	}
	out := make([]string, 0, len(found))
	for k := range found {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

func addLiteral(found map[string]bool, e ast.Expr) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil || !envNameRE.MatchString(s) {
		return
	}
	for _, reserved := range []string{"AWS_", "LAMBDA_", "_"} {
		if strings.HasPrefix(s, reserved) {
			return
		}
	}
	found[s] = true
}

func TestTemplateTable(t *testing.T) {
	tpl := loadTemplate(t)
	props, err := tpl.Resolve(tpl.Resources[tableID].Properties, nil)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	p := props.(map[string]any)
	got := map[string]any{
		"BillingMode":                      p["BillingMode"],
		"KeySchema":                        p["KeySchema"],
		"AttributeDefinitions":             p["AttributeDefinitions"],
		"GlobalSecondaryIndexes":           p["GlobalSecondaryIndexes"],
		"PointInTimeRecoverySpecification": p["PointInTimeRecoverySpecification"],
	}
	want := map[string]any{
		"BillingMode": "PAY_PER_REQUEST",
		"KeySchema":   []any{map[string]any{"AttributeName": "keyHash", "KeyType": "HASH"}},
		"AttributeDefinitions": []any{
			map[string]any{"AttributeName": "keyHash", "AttributeType": "S"},
		},
		// No index: apikey.DynamoStore reads by hash and revokes by Scan.
		"GlobalSecondaryIndexes":           nil,
		"PointInTimeRecoverySpecification": map[string]any{"PointInTimeRecoveryEnabled": true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ApiKeysTable mismatch (-want +got):\n%s", diff)
	}
	if got := p["KeySchema"].([]any)[0].(map[string]any)["AttributeName"]; got != apikey.AttrKeyHash {
		t.Errorf("partition key %v differs from apikey.AttrKeyHash %q", got, apikey.AttrKeyHash)
	}
}

func TestTemplateOutputs(t *testing.T) {
	tpl := loadTemplate(t)
	got, err := tpl.OutputValues(nil)
	if err != nil {
		t.Fatalf("OutputValues: %v", err)
	}
	want := map[string]string{
		"ApiUrl":                "https://" + apiID + ".execute-api.us-east-1.amazonaws.com/v1/",
		"ApiKeysTableName":      tableID,
		"AuthorizerFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:" + authorizerID,
		"PredictFunctionArn":    "arn:aws:lambda:us-east-1:123456789012:function:" + predictID,
		"DashboardUrl":          "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=local-rate-limits",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outputs mismatch (-want +got):\n%s", diff)
	}
}

// DashboardMetric is one metric a dashboard widget or an alarm reads: its
// namespace, name, and the dimension names it is filtered or searched by.
type DashboardMetric struct {
	Namespace, Name string
	Dimensions      string // sorted, comma-joined dimension names ("" = none)
}

var searchExpr = regexp.MustCompile(`^SEARCH\('\{([^}]*)\} MetricName="([A-Za-z0-9]+)"', '[A-Za-z0-9]+', [0-9]+\)$`)

// TemplateMetrics resolves the dashboard body and the alarms with
// parameters params and returns every metric they read. The dashboard body
// must be JSON after substitution; widgets name metrics as
// [namespace, name, {options}] or through SEARCH('{namespace,dims}
// MetricName="..."').
func TemplateMetrics(t *testing.T, params map[string]string) []DashboardMetric {
	t.Helper()
	tpl := loadTemplate(t)
	raw, err := tpl.Resolve(tpl.Resources[dashboardID].Properties["DashboardBody"], params)
	if err != nil {
		t.Fatalf("dashboard body: %v", err)
	}
	var body struct {
		Widgets []struct {
			Type       string
			Properties struct {
				Metrics [][]any
				Alarms  []string
				Region  string
			}
		}
	}
	if err := json.Unmarshal([]byte(raw.(string)), &body); err != nil {
		t.Fatalf("dashboard body is not JSON after substitution: %v\n%s", err, raw)
	}
	var out []DashboardMetric
	for i, w := range body.Widgets {
		if w.Type == "metric" && w.Properties.Region != "us-east-1" {
			t.Errorf("widget %d: region %q, want the stack's", i, w.Properties.Region)
		}
		if w.Type == "alarm" && len(w.Properties.Alarms) != 2 {
			t.Errorf("alarm widget lists %v", w.Properties.Alarms)
		}
		for _, m := range w.Properties.Metrics {
			if len(m) == 1 {
				opts, _ := m[0].(map[string]any)
				expr, _ := opts["expression"].(string)
				g := searchExpr.FindStringSubmatch(expr)
				if g == nil {
					t.Errorf("widget %d: expression %q is not a SEARCH this test reads", i, expr)
					continue
				}
				parts := strings.Split(g[1], ",")
				dims := append([]string(nil), parts[1:]...)
				sort.Strings(dims)
				out = append(out, DashboardMetric{Namespace: parts[0], Name: g[2], Dimensions: strings.Join(dims, ",")})
				continue
			}
			ns, _ := m[0].(string)
			name, _ := m[1].(string)
			var dims []string
			for j := 2; j+1 < len(m); j += 2 {
				if d, ok := m[j].(string); ok {
					dims = append(dims, d)
				}
			}
			sort.Strings(dims)
			out = append(out, DashboardMetric{Namespace: ns, Name: name, Dimensions: strings.Join(dims, ",")})
		}
	}
	for _, id := range []string{fallbackID, errorAlarmID} {
		v, err := tpl.Resolve(tpl.Resources[id].Properties, params)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		p := v.(map[string]any)
		var dims []string
		if ds, ok := p["Dimensions"].([]any); ok {
			for _, d := range ds {
				dims = append(dims, d.(map[string]any)["Name"].(string))
			}
		}
		sort.Strings(dims)
		out = append(out, DashboardMetric{Namespace: p["Namespace"].(string), Name: p["MetricName"].(string), Dimensions: strings.Join(dims, ",")})
	}
	return out
}

func TestTemplateDashboardAndAlarms(t *testing.T) {
	metrics := TemplateMetrics(t, nil)
	if len(metrics) < 10 {
		t.Fatalf("only %d metrics found: the parser missed widgets", len(metrics))
	}
	seen := map[DashboardMetric]bool{}
	for _, m := range metrics {
		seen[m] = true
	}
	// The graphs the monitoring section promises.
	for _, want := range []DashboardMetric{
		{"Bucketgate", "Allowed", "Tier"}, {"Bucketgate", "Denied", "Tier"}, {"Bucketgate", "Forbidden", "Tier"}, {"Bucketgate", "Unauthorized", "Tier"},
		{"Bucketgate", "Allowed", "Route"}, {"Bucketgate", "Denied", "Route"}, {"Bucketgate", "Denied", "Policy"},
		{"Bucketgate", "Fallback", ""}, {"Bucketgate", "DecisionLatency", ""}, {"Bucketgate", "UpstashLatency", ""},
		{"AWS/ApiGateway", "5XXError", "ApiName,Stage"},
	} {
		if !seen[want] {
			t.Errorf("the dashboard and alarms read no %+v", want)
		}
	}
	// The alarms notify the topic when one is given, and nobody otherwise.
	tpl := loadTemplate(t)
	for _, tc := range []struct {
		topic string
		want  []any
	}{{"", nil}, {"arn:aws:sns:us-east-1:123456789012:ops", []any{"arn:aws:sns:us-east-1:123456789012:ops"}}} {
		v, err := tpl.Resolve(tpl.Resources[fallbackID].Properties, map[string]string{"AlarmTopicArn": tc.topic})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := v.(map[string]any)["AlarmActions"].([]any)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("AlarmActions with topic %q (-want +got):\n%s", tc.topic, diff)
		}
	}
	// The error alarm watches the API this stack creates.
	api := tpl.Resources[apiID].Properties["Name"]
	name, err := tpl.Resolve(api, nil)
	if err != nil || name != "local-api" {
		t.Errorf("API name = %v, %v; want local-api (the alarm's ApiName)", name, err)
	}
}

// makeTargets returns the Makefile's targets with their recipes (joined).
func makeTargets(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatalf("read Makefile: %v", err)
	}
	targets := map[string]string{}
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "\t") {
			if cur != "" {
				targets[cur] += strings.TrimSpace(line) + "\n"
			}
			continue
		}
		cur = ""
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.ContainsAny(name, " =$#\t") && !strings.HasPrefix(name, ".") {
			cur = name
			targets[cur] += ""
		}
	}
	return targets
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// authorizerEventShape is the real REST API REQUEST authorizer event,
// which carries more than aws-lambda-go's
// APIGatewayCustomAuthorizerRequestTypeRequest declares (API Gateway adds
// fields over time); decoding into it with unknown fields disallowed catches
// misspelled or invented fields.
type authorizerEventShape struct {
	events.APIGatewayCustomAuthorizerRequestTypeRequest
	RequestContext struct {
		events.APIGatewayProxyRequestContext
		Identity struct {
			events.APIGatewayRequestIdentity
			PrincipalOrgID *string `json:"principalOrgId"`
		} `json:"identity"`
	} `json:"requestContext"`
}

var methodArnRE = regexp.MustCompile(`^arn:aws:execute-api:([a-z0-9-]+):(\d{12}):([a-z0-9]+)/([A-Za-z0-9_]+)/([A-Z]+)(/.*)$`)

func TestEvents(t *testing.T) {
	paths, err := filepath.Glob("events/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no events/*.json")
	}
	for _, path := range paths {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(data) {
				t.Fatalf("%s is not valid JSON", path)
			}
			switch {
			case strings.HasPrefix(name, "authorizer-"):
				checkAuthorizerEvent(t, data)
			case strings.HasPrefix(name, "predict-"), strings.HasPrefix(name, "model-info"):
				var ev events.APIGatewayProxyRequest
				if err := strictDecode(data, &ev); err != nil {
					t.Fatalf("decode into APIGatewayProxyRequest: %v", err)
				}
				if ev.HTTPMethod == "" || !strings.HasPrefix(ev.Path, "/") || ev.RequestContext.Identity.SourceIP == "" {
					t.Errorf("httpMethod %q, path %q, sourceIp %q: want all set", ev.HTTPMethod, ev.Path, ev.RequestContext.Identity.SourceIP)
				}
			case name == "env.json":
				var env map[string]map[string]string
				if err := strictDecode(data, &env); err != nil {
					t.Fatalf("env.json is not SAM's --env-vars format ({\"Parameters\"|\"<LogicalId>\": {NAME: value}}): %v", err)
				}
			case name == "demo-keys.json":
				if _, err := apikey.NewFileStore(apikey.FileConfig{Path: path}); err != nil {
					t.Fatalf("not a key file: %v", err)
				}
			default:
				t.Logf("%s: no known event type for this name; checked as JSON only", name)
			}
		})
	}
}

func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func checkAuthorizerEvent(t *testing.T, data []byte) {
	t.Helper()
	var shape authorizerEventShape
	if err := strictDecode(data, &shape); err != nil {
		t.Fatalf("unexpected field for a REST REQUEST authorizer event: %v", err)
	}
	var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("decode into APIGatewayCustomAuthorizerRequestTypeRequest: %v", err)
	}
	if ev.Type != "REQUEST" {
		t.Errorf("type = %q, want REQUEST", ev.Type)
	}
	m := methodArnRE.FindStringSubmatch(ev.MethodArn)
	if m == nil {
		t.Fatalf("methodArn %q is not arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH", ev.MethodArn)
	}
	rc := ev.RequestContext
	got := []string{m[2], m[3], m[4], m[5], m[6], ev.Resource, rc.ResourcePath, rc.HTTPMethod, rc.Path}
	want := []string{rc.AccountID, rc.APIID, rc.Stage, ev.HTTPMethod, ev.Path, ev.Path, ev.Path, ev.HTTPMethod, "/" + rc.Stage + ev.Path}
	if strings.Contains(ev.Resource, "{") {
		// A parameterised resource (/{proxy+}): the resource with its path
		// parameters addresses the path.
		want[5], want[6] = ev.Resource, ev.Resource
		if got, want := authctx.RoutePath(ev.Resource, ev.PathParameters, ""), path.Clean(ev.Path); got != want {
			t.Errorf("resource %s with parameters %v addresses %s, want the path %s", ev.Resource, ev.PathParameters, got, want)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("methodArn, resource, path and requestContext disagree (-want +got):\n%s", diff)
	}
	if net.ParseIP(rc.Identity.SourceIP) == nil {
		t.Errorf("requestContext.identity.sourceIp %q is not an IP", rc.Identity.SourceIP)
	}
	for name, v := range ev.Headers {
		if mv := ev.MultiValueHeaders[name]; len(mv) == 0 || mv[len(mv)-1] != v {
			t.Errorf("header %s: headers %q and multiValueHeaders %q disagree", name, v, mv)
		}
	}
	if len(ev.Headers) != len(ev.MultiValueHeaders) {
		t.Errorf("headers has %d names, multiValueHeaders %d", len(ev.Headers), len(ev.MultiValueHeaders))
	}
}

// TestAuthorizerEventKeys checks what each keyed event is meant to show
// against the demo key file: the key's tier, or that it is unknown.
func TestAuthorizerEventKeys(t *testing.T) {
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: "events/demo-keys.json"})
	if err != nil {
		t.Fatalf("demo key file: %v", err)
	}
	tests := []struct {
		file     string
		tier     string // "" = no key
		notFound bool   // the key must not be accepted
		path     string
	}{
		{file: "authorizer-anonymous.json", path: "/predict"},
		{file: "authorizer-spoofed-forwarded-for.json", path: "/predict"},
		{file: "authorizer-authenticated-key.json", tier: "authenticated", path: "/predict"},
		{file: "authorizer-batch-route.json", tier: "authenticated", path: "/predict/batch"},
		{file: "authorizer-premium-key.json", tier: "premium", path: "/premium/predict"},
		{file: "authorizer-premium-route-authenticated.json", tier: "authenticated", path: "/premium/predict"},
		{file: "authorizer-unknown-key.json", notFound: true, path: "/predict"},
		{file: "authorizer-revoked-key.json", notFound: true, path: "/predict"},
		{file: "authorizer-malformed-key.json", notFound: true, path: "/predict"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("events", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
			if err := json.Unmarshal(data, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Path != tc.path {
				t.Errorf("path = %q, want %q", ev.Path, tc.path)
			}
			var key string
			for name, v := range ev.Headers {
				if strings.EqualFold(name, "X-Api-Key") {
					key = v
				}
			}
			switch {
			case tc.tier == "" && !tc.notFound:
				if key != "" {
					t.Errorf("anonymous event carries X-Api-Key")
				}
			case tc.notFound:
				if _, err := store.Lookup(context.Background(), key); !errors.Is(err, apikey.ErrNotFound) {
					t.Errorf("Lookup error = %v, want ErrNotFound", err)
				}
			default:
				rec, err := store.Lookup(context.Background(), key)
				if err != nil {
					t.Fatalf("Lookup: %v", err)
				}
				if rec.Tier != tc.tier {
					t.Errorf("tier = %q, want %q", rec.Tier, tc.tier)
				}
			}
		})
	}

	t.Run("spoofed forwarded-for names another address", func(t *testing.T) {
		data, err := os.ReadFile("events/authorizer-spoofed-forwarded-for.json")
		if err != nil {
			t.Fatal(err)
		}
		var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Fatal(err)
		}
		xff := ev.Headers["X-Forwarded-For"]
		if xff == "" || strings.Contains(xff, ev.RequestContext.Identity.SourceIP) {
			t.Errorf("X-Forwarded-For %q must be set and must not contain the source IP %s", xff, ev.RequestContext.Identity.SourceIP)
		}
	})

	t.Run("env.json points the authorizer at the demo keys", func(t *testing.T) {
		data, err := os.ReadFile("events/env.json")
		if err != nil {
			t.Fatal(err)
		}
		var env map[string]map[string]string
		if err := json.Unmarshal(data, &env); err != nil {
			t.Fatal(err)
		}
		if got := env["Parameters"]["API_KEYS_FILE"]; got != "events/demo-keys.json" {
			t.Errorf("Parameters.API_KEYS_FILE = %q, want events/demo-keys.json", got)
		}
		fns, err := loadTemplate(t).Functions(nil)
		if err != nil {
			t.Fatal(err)
		}
		for name := range env["Parameters"] {
			if _, ok := fns[authorizerID].Environment[name]; !ok {
				t.Errorf("env.json sets %s, which the authorizer does not declare (it would be ignored)", name)
			}
		}
	})
}
