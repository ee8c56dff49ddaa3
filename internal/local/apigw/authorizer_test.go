package apigw_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/local/apigw"
	"github.com/bucketgate/bucketgate/internal/local/lambdaemu"
	"github.com/bucketgate/bucketgate/internal/local/sam"
)

const arnPrefix = "arn:aws:execute-api:us-east-1:123456789012:" + apigw.DefaultAPIID + "/v1/"

// authorizedAPI is shaped like template.yaml: a default REQUEST authorizer
// without identity sources or caching, an open /model-info route.
func authorizedAPI() sam.API {
	return sam.API{
		StageName:         "v1",
		DefaultAuthorizer: "BucketAuth",
		Authorizers: map[string]sam.Authorizer{
			"BucketAuth": {Name: "BucketAuth", FunctionLogicalID: "Auth", PayloadType: "REQUEST"},
		},
		Routes: []sam.Route{
			{Method: "GET", Path: "/model-info", FunctionLogicalID: "Fn"},
			{Method: "POST", Path: "/predict", FunctionLogicalID: "Fn", Authorizer: "BucketAuth"},
			{Method: "POST", Path: "/premium/predict", FunctionLogicalID: "Fn", Authorizer: "BucketAuth"},
		},
		GatewayResponses: map[string]sam.GatewayResponse{},
	}
}

// policy builds an authorizer output.
func policy(effect string, resources []string, ctx map[string]any) handler {
	return func(context.Context, []byte) (lambdaemu.Result, error) {
		return jsonResult(map[string]any{
			"principalId": "caller-1",
			"policyDocument": map[string]any{
				"Version": "2012-10-17",
				"Statement": []map[string]any{{
					"Action": "execute-api:Invoke", "Effect": effect, "Resource": resources,
				}},
			},
			"context": ctx,
		}), nil
	}
}

func TestAuthorizerEvent(t *testing.T) {
	srv, inv := serve(t, authorizedAPI(), map[string]handler{
		"Auth": policy("Allow", []string{arnPrefix + "*"}, nil),
		"Fn":   ok("Fn"),
	}, nil)
	got := do(t, srv, "POST", "/predict?mode=fast", []byte(`{}`), map[string]string{
		"X-Api-Key":       "bg_secret",
		"X-Forwarded-For": "203.0.113.9",
	})
	if got.status != 200 {
		t.Fatalf("status %d: %s", got.status, got.body)
	}
	var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
	inv.lastEvent(t, "Auth", &ev)
	gotFields := map[string]any{
		"type":      ev.Type,
		"methodArn": ev.MethodArn,
		"resource":  ev.Resource,
		"path":      ev.Path,
		"method":    ev.HTTPMethod,
		"apiKey":    ev.Headers["X-Api-Key"],
		"xff":       ev.Headers["X-Forwarded-For"],
		"query":     ev.QueryStringParameters,
		"sourceIp":  ev.RequestContext.Identity.SourceIP,
		"ctxPath":   ev.RequestContext.Path,
		"stage":     ev.RequestContext.Stage,
		"apiId":     ev.RequestContext.APIID,
		"account":   ev.RequestContext.AccountID,
		"resPath":   ev.RequestContext.ResourcePath,
	}
	want := map[string]any{
		"type":      "REQUEST",
		"methodArn": "arn:aws:execute-api:us-east-1:123456789012:localapi01/v1/POST/predict",
		"resource":  "/predict",
		"path":      "/predict",
		"method":    "POST",
		"apiKey":    "bg_secret",
		"xff":       "203.0.113.9, 127.0.0.1",
		"query":     map[string]string{"mode": "fast"},
		"sourceIp":  "127.0.0.1",
		"ctxPath":   "/v1/predict",
		"stage":     "v1",
		"apiId":     apigw.DefaultAPIID,
		"account":   apigw.DefaultAccountID,
		"resPath":   "/predict",
	}
	if diff := cmp.Diff(want, gotFields); diff != "" {
		t.Errorf("authorizer event (-want +got):\n%s", diff)
	}
	var proxied events.APIGatewayProxyRequest
	inv.lastEvent(t, "Fn", &proxied)
	if proxied.RequestContext.RequestID != ev.RequestContext.RequestID {
		t.Errorf("authorizer and integration saw different request IDs: %q, %q", ev.RequestContext.RequestID, proxied.RequestContext.RequestID)
	}

	if do(t, srv, "GET", "/model-info", nil, nil).status != 200 {
		t.Fatal("open route failed")
	}
	if n := inv.callCount("Auth"); n != 1 {
		t.Errorf("authorizer called %d times; the open route must not call it", n)
	}
}

func TestAuthorizerOutcomes(t *testing.T) {
	ctx := map[string]any{"tier": "anonymous", "remaining": 3, "flag": true, "ratio": 0.5}
	tests := []struct {
		name        string
		auth        handler
		wantStatus  int
		wantBody    string // compared as JSON
		wantFnCalls int
		wantErrType string
	}{
		{name: "allow exact method ARN", auth: policy("Allow", []string{arnPrefix + "POST/predict"}, ctx), wantStatus: 200, wantBody: `{"fn":"Fn"}`, wantFnCalls: 1},
		{name: "allow wildcard", auth: policy("Allow", []string{"arn:aws:execute-api:*:*:*/v1/*/*"}, ctx), wantStatus: 200, wantBody: `{"fn":"Fn"}`, wantFnCalls: 1},
		{name: "allow for another method is an implicit deny", auth: policy("Allow", []string{arnPrefix + "GET/predict"}, ctx), wantStatus: 403,
			wantBody: `{"message":"User is not authorized to access this resource"}`, wantErrType: "AccessDeniedException"},
		{name: "explicit deny", auth: policy("Deny", []string{arnPrefix + "*"}, ctx), wantStatus: 403,
			wantBody: `{"Message":"User is not authorized to access this resource with an explicit deny"}`, wantErrType: "AccessDeniedException"},
		{name: "Unauthorized error", auth: fnError("Unauthorized"), wantStatus: 401, wantBody: `{"message":"Unauthorized"}`, wantErrType: "UnauthorizedException"},
		{name: "other error", auth: fnError("key store down"), wantStatus: 500, wantBody: `{"message":null}`, wantErrType: "AuthorizerConfigurationException"},
		{name: "Unauthorized with more text is an error", auth: fnError("Unauthorized: bad key"), wantStatus: 500, wantBody: `{"message":null}`},
		{name: "timeout", auth: func(context.Context, []byte) (lambdaemu.Result, error) {
			return lambdaemu.Result{Error: &lambdaemu.FunctionError{Type: lambdaemu.ErrorTypeTimeout, Message: "Task timed out"}}, nil
		}, wantStatus: 500, wantBody: `{"message":null}`},
		{name: "invoke failed", auth: func(context.Context, []byte) (lambdaemu.Result, error) {
			return lambdaemu.Result{}, errors.New("emulator closed")
		}, wantStatus: 500, wantBody: `{"message":null}`},
		{name: "no policy document", auth: func(context.Context, []byte) (lambdaemu.Result, error) {
			return jsonResult(map[string]any{"principalId": "x"}), nil
		}, wantStatus: 500, wantBody: `{"message":null}`},
		{name: "object in context", auth: policy("Allow", []string{arnPrefix + "*"}, map[string]any{"nested": map[string]any{"a": 1}}), wantStatus: 500, wantBody: `{"message":null}`},
		{name: "null output", auth: func(context.Context, []byte) (lambdaemu.Result, error) {
			return lambdaemu.Result{Payload: []byte("null")}, nil
		}, wantStatus: 500, wantBody: `{"message":null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, inv := serve(t, authorizedAPI(), map[string]handler{"Auth": tc.auth, "Fn": ok("Fn")}, nil)
			got := do(t, srv, "POST", "/predict", []byte(`{}`), nil)
			if got.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", got.status, tc.wantStatus, got.body)
			}
			assertJSONEqual(t, tc.wantBody, got.body)
			if n := inv.callCount("Fn"); n != tc.wantFnCalls {
				t.Errorf("function called %d times, want %d", n, tc.wantFnCalls)
			}
			if tc.wantErrType != "" && got.header.Get("X-Amzn-ErrorType") != tc.wantErrType {
				t.Errorf("x-amzn-ErrorType = %q, want %q", got.header.Get("X-Amzn-ErrorType"), tc.wantErrType)
			}
			if tc.wantFnCalls == 1 {
				var ev events.APIGatewayProxyRequest
				inv.lastEvent(t, "Fn", &ev)
				a := ev.RequestContext.Authorizer
				wantCtx := map[string]any{"tier": "anonymous", "remaining": "3", "flag": "true", "ratio": "0.5", "principalId": "caller-1"}
				delete(a, "integrationLatency")
				if diff := cmp.Diff(wantCtx, a); diff != "" {
					t.Errorf("requestContext.authorizer (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// rateLimitedAPI maps ACCESS_DENIED to 429 the way template.yaml does.
func rateLimitedAPI() sam.API {
	api := authorizedAPI()
	api.GatewayResponses = map[string]sam.GatewayResponse{
		"ACCESS_DENIED": {
			StatusCode: 429,
			Headers: map[string]string{
				"Retry-After":       "context.authorizer.retryAfter",
				"X-RateLimit-Limit": "context.authorizer.limit",
				"X-RateLimit-Tier":  "context.authorizer.tier",
				"X-Missing":         "context.authorizer.notThere",
				"X-Static":          "'fixed value'",
				"X-Echo-Header":     "method.request.header.X-Trace",
				"X-Echo-Query":      "method.request.querystring.q",
				"X-Stage":           "stageVariables.env",
				"X-Request":         "context.requestId",
			},
			Templates: map[string]string{
				"application/json": `{"message":"Too Many Requests","retryAfter":$context.authorizer.retryAfter,` +
					`"tier":"${context.authorizer.tier}","requestId":"$context.requestId","type":"$context.error.responseType",` +
					`"error":$context.error.messageString,"raw":"$context.error.message","principal":"$context.authorizer.principalId"}`,
			},
		},
		"DEFAULT_4XX": {
			Headers:   map[string]string{"Access-Control-Allow-Origin": "'*'"},
			Templates: map[string]string{"application/json": `{"error":"$context.error.responseType","message":$context.error.messageString}`},
		},
		"DEFAULT_5XX": {
			StatusCode: 503,
			Headers:    map[string]string{"Retry-After": "'1'"},
		},
	}
	return api
}

func TestGatewayResponses(t *testing.T) {
	denyCtx := map[string]any{"tier": "anonymous", "retryAfter": "7", "limit": "10"}
	tests := []struct {
		name        string
		path        string
		auth        handler
		wantStatus  int
		wantHeaders map[string]string // "" = must be absent
		wantBody    func(requestID string) string
	}{
		{
			name:       "customized ACCESS_DENIED",
			path:       "/predict?q=query-value",
			auth:       policy("Deny", []string{arnPrefix + "*"}, denyCtx),
			wantStatus: 429,
			wantHeaders: map[string]string{
				"Retry-After": "7", "X-RateLimit-Limit": "10", "X-RateLimit-Tier": "anonymous", "X-Missing": "",
				"X-Static": "fixed value", "X-Echo-Header": "trace-me", "X-Echo-Query": "query-value", "X-Stage": "local",
				"Content-Type": "application/json", "Access-Control-Allow-Origin": "",
			},
			wantBody: func(id string) string {
				return `{"message":"Too Many Requests","retryAfter":7,"tier":"anonymous","requestId":"` + id + `","type":"ACCESS_DENIED",` +
					`"error":"User is not authorized to access this resource with an explicit deny","raw":"User is not authorized to access this resource with an explicit deny","principal":"caller-1"}`
			},
		},
		{
			name:        "UNAUTHORIZED falls back to DEFAULT_4XX, keeping 401",
			path:        "/predict",
			auth:        fnError("Unauthorized"),
			wantStatus:  401,
			wantHeaders: map[string]string{"Access-Control-Allow-Origin": "*", "Retry-After": ""},
			wantBody:    func(string) string { return `{"error":"UNAUTHORIZED","message":"Unauthorized"}` },
		},
		{
			name:        "missing route falls back to DEFAULT_4XX",
			path:        "/nope",
			wantStatus:  403,
			wantHeaders: map[string]string{"Access-Control-Allow-Origin": "*"},
			wantBody: func(string) string {
				return `{"error":"MISSING_AUTHENTICATION_TOKEN","message":"Missing Authentication Token"}`
			},
		},
		{
			name:        "authorizer failure falls back to DEFAULT_5XX with its status",
			path:        "/predict",
			auth:        fnError("boom"),
			wantStatus:  503,
			wantHeaders: map[string]string{"Retry-After": "1"},
			wantBody:    func(string) string { return `{"message":null}` },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := serve(t, rateLimitedAPI(), map[string]handler{"Auth": tc.auth, "Fn": ok("Fn")}, func(c *apigw.Config) {
				c.StageVariables = map[string]string{"env": "local"}
			})
			got := do(t, srv, "POST", tc.path, []byte(`{}`), map[string]string{"X-Trace": "trace-me"})
			if got.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", got.status, tc.wantStatus, got.body)
			}
			for k, want := range tc.wantHeaders {
				if _, present := got.header[http.CanonicalHeaderKey(k)]; want == "" && present {
					t.Errorf("header %s = %q, want it absent", k, got.header.Get(k))
				} else if want != "" && got.header.Get(k) != want {
					t.Errorf("header %s = %q, want %q", k, got.header.Get(k), want)
				}
			}
			assertJSONEqual(t, tc.wantBody(got.header.Get("X-Amzn-Requestid")), got.body)
		})
	}
}

func TestIdentitySourcesAndCaching(t *testing.T) {
	now := fixedNow
	api := authorizedAPI()
	api.Authorizers["BucketAuth"] = sam.Authorizer{
		Name: "BucketAuth", FunctionLogicalID: "Auth", PayloadType: "REQUEST",
		IdentityHeaders: []string{"X-Token"}, ReauthorizeEvery: 300,
	}
	srv, inv := serve(t, api, map[string]handler{
		"Auth": policy("Allow", []string{arnPrefix + "*"}, map[string]any{"tier": "t"}),
		"Fn":   ok("Fn"),
	}, func(c *apigw.Config) { c.Now = func() time.Time { return now } })

	if got := do(t, srv, "POST", "/predict", nil, nil); got.status != 401 || got.body != `{"message":"Unauthorized"}` {
		t.Errorf("without the identity header: %d %s, want 401 Unauthorized", got.status, got.body)
	}
	if n := inv.callCount("Auth"); n != 0 {
		t.Errorf("authorizer called %d times for a request without its identity source", n)
	}
	steps := []struct {
		name      string
		advance   time.Duration
		token     string
		wantCalls int
	}{
		{name: "first request", token: "a", wantCalls: 1},
		{name: "same identity is cached", advance: time.Minute, token: "a", wantCalls: 1},
		{name: "another identity", token: "b", wantCalls: 2},
		{name: "cache expires after ReauthorizeEvery", advance: 300 * time.Second, token: "a", wantCalls: 3},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if got := do(t, srv, "POST", "/predict", nil, map[string]string{"X-Token": s.token}); got.status != 200 {
			t.Fatalf("%s: status %d %s", s.name, got.status, got.body)
		}
		if n := inv.callCount("Auth"); n != s.wantCalls {
			t.Errorf("%s: authorizer calls = %d, want %d", s.name, n, s.wantCalls)
		}
	}
}

func TestNoCachingWhenReauthorizeEveryIsZero(t *testing.T) {
	srv, inv := serve(t, authorizedAPI(), map[string]handler{
		"Auth": policy("Allow", []string{arnPrefix + "*"}, nil),
		"Fn":   ok("Fn"),
	}, nil)
	for range 3 {
		do(t, srv, "POST", "/predict", nil, map[string]string{"X-Api-Key": "same"})
	}
	if n := inv.callCount("Auth"); n != 3 {
		t.Errorf("authorizer calls = %d, want 3 (every request decided)", n)
	}
}

func TestTokenAuthorizer(t *testing.T) {
	api := authorizedAPI()
	api.Authorizers["BucketAuth"] = sam.Authorizer{Name: "BucketAuth", FunctionLogicalID: "Auth", PayloadType: "TOKEN", IdentityHeaders: []string{"Authorization"}}
	srv, inv := serve(t, api, map[string]handler{
		"Auth": policy("Allow", []string{arnPrefix + "*"}, nil),
		"Fn":   ok("Fn"),
	}, nil)
	if got := do(t, srv, "POST", "/predict", nil, map[string]string{"Authorization": "Bearer t0k"}); got.status != 200 {
		t.Fatalf("status %d %s", got.status, got.body)
	}
	var ev events.APIGatewayCustomAuthorizerRequest
	inv.lastEvent(t, "Auth", &ev)
	want := events.APIGatewayCustomAuthorizerRequest{Type: "TOKEN", AuthorizationToken: "Bearer t0k", MethodArn: arnPrefix + "POST/predict"}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("TOKEN event (-want +got):\n%s", diff)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	inv := &fakeInvoker{}
	withRoute := func(r sam.Route) sam.API {
		a := authorizedAPI()
		a.Routes = []sam.Route{r}
		return a
	}
	withResponse := func(typ string, g sam.GatewayResponse) sam.API {
		a := authorizedAPI()
		a.GatewayResponses = map[string]sam.GatewayResponse{typ: g}
		return a
	}
	outside := authorizedAPI()
	outside.Authorizers["BucketAuth"] = sam.Authorizer{Name: "BucketAuth", FunctionArn: "arn:aws:lambda:us-east-1:1:function:elsewhere", PayloadType: "REQUEST"}
	tests := []struct {
		name    string
		cfg     apigw.Config
		wantErr string
	}{
		{name: "no invoker", cfg: apigw.Config{API: authorizedAPI()}, wantErr: "Invoker is nil"},
		{name: "bad method", cfg: apigw.Config{Invoker: inv, API: withRoute(sam.Route{Method: "FETCH", Path: "/a", FunctionLogicalID: "Fn"})}, wantErr: `unsupported method "FETCH"`},
		{name: "relative path", cfg: apigw.Config{Invoker: inv, API: withRoute(sam.Route{Method: "GET", Path: "a", FunctionLogicalID: "Fn"})}, wantErr: "must start with /"},
		{name: "greedy not last", cfg: apigw.Config{Invoker: inv, API: withRoute(sam.Route{Method: "GET", Path: "/{p+}/x", FunctionLogicalID: "Fn"})}, wantErr: "must be the last segment"},
		{name: "mixed segment", cfg: apigw.Config{Invoker: inv, API: withRoute(sam.Route{Method: "GET", Path: "/a{b}", FunctionLogicalID: "Fn"})}, wantErr: "mixes text"},
		{name: "unknown authorizer", cfg: apigw.Config{Invoker: inv, API: withRoute(sam.Route{Method: "GET", Path: "/a", FunctionLogicalID: "Fn", Authorizer: "Nope"})}, wantErr: `authorizer "Nope"`},
		{name: "authorizer outside the template", cfg: apigw.Config{Invoker: inv, API: outside}, wantErr: "outside the template"},
		{name: "unknown response type", cfg: apigw.Config{Invoker: inv, API: withResponse("TOO_MANY", sam.GatewayResponse{})}, wantErr: "unknown response type"},
		{name: "bad header mapping", cfg: apigw.Config{Invoker: inv, API: withResponse("ACCESS_DENIED", sam.GatewayResponse{Headers: map[string]string{"X": "integration.response.body"}})}, wantErr: "header X"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := apigw.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestRoutesAreSorted(t *testing.T) {
	g, err := apigw.New(apigw.Config{API: authorizedAPI(), Invoker: &fakeInvoker{}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range g.Routes() {
		got = append(got, r.Method+" "+r.Path)
	}
	want := []string{"GET /model-info", "POST /predict", "POST /premium/predict"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Routes (-want +got):\n%s", diff)
	}
}
