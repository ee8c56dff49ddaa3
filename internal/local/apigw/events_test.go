package apigw

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/local/sam"
)

// The reference forms of the events: the aws-lambda-go structs, filled in
// the way API Gateway fills them, for encoding/json. The gateway appends
// the same bytes by hand (events.go); these tests hold it to that.

func (g *Gateway) authorizerEvent(rc *requestCtx, methodArn string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	single, multi := headerMaps(rc.headers)
	q, mq := queryMaps(rc.query)
	return events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type:                            "REQUEST",
		MethodArn:                       methodArn,
		Resource:                        rc.route.Path,
		Path:                            rc.r.URL.Path,
		HTTPMethod:                      rc.r.Method,
		Headers:                         single,
		MultiValueHeaders:               multi,
		QueryStringParameters:           q,
		MultiValueQueryStringParameters: mq,
		PathParameters:                  rc.pathParams,
		StageVariables:                  rc.stageVariables,
		RequestContext: events.APIGatewayCustomAuthorizerRequestTypeRequestContext{
			Path:         "/" + rc.stage + rc.r.URL.Path,
			AccountID:    rc.accountID,
			ResourceID:   resourceID(rc.route.Path),
			Stage:        rc.stage,
			RequestID:    rc.requestID,
			Identity:     events.APIGatewayCustomAuthorizerRequestTypeRequestIdentity{SourceIP: rc.sourceIP},
			ResourcePath: rc.route.Path,
			HTTPMethod:   rc.r.Method,
			APIID:        rc.apiID,
		},
	}
}

func (g *Gateway) proxyEvent(rc *requestCtx, body []byte, authLatency time.Duration) events.APIGatewayProxyRequest {
	single, multi := headerMaps(rc.headers)
	q, mq := queryMaps(rc.query)
	ev := events.APIGatewayProxyRequest{
		Resource:                        rc.route.Path,
		Path:                            rc.r.URL.Path,
		HTTPMethod:                      rc.r.Method,
		Headers:                         single,
		MultiValueHeaders:               multi,
		QueryStringParameters:           q,
		MultiValueQueryStringParameters: mq,
		PathParameters:                  rc.pathParams,
		StageVariables:                  rc.stageVariables,
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID:         rc.accountID,
			ResourceID:        resourceID(rc.route.Path),
			Stage:             rc.stage,
			DomainName:        rc.r.Host,
			DomainPrefix:      strings.SplitN(rc.r.Host, ".", 2)[0],
			RequestID:         rc.requestID,
			ExtendedRequestID: rc.requestID,
			Protocol:          rc.r.Proto,
			Identity: events.APIGatewayRequestIdentity{
				SourceIP:  rc.sourceIP,
				UserAgent: rc.r.UserAgent(),
			},
			ResourcePath:     rc.route.Path,
			Path:             "/" + rc.stage + rc.r.URL.Path,
			HTTPMethod:       rc.r.Method,
			RequestTime:      rc.start.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			RequestTimeEpoch: rc.start.UnixMilli(),
			APIID:            rc.apiID,
		},
	}
	if rc.principalID != nil {
		a := make(map[string]interface{}, len(rc.authorizer)+2)
		for k, v := range rc.authorizer {
			a[k] = v
		}
		a["principalId"] = *rc.principalID
		a["integrationLatency"] = authLatency.Milliseconds()
		ev.RequestContext.Authorizer = a
	}
	if len(body) > 0 {
		if g.binary(rc.r.Header.Get("Content-Type")) || !utf8.Valid(body) {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		} else {
			ev.Body = string(body)
		}
	}
	return ev
}

// headerMaps renders headers in both event forms: the last value per name,
// and all values. Both are nil when there are no headers.
func headerMaps(h http.Header) (map[string]string, map[string][]string) {
	if len(h) == 0 {
		return nil, nil
	}
	single := make(map[string]string, len(h))
	multi := make(map[string][]string, len(h))
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		single[k] = vs[len(vs)-1]
		multi[k] = append([]string(nil), vs...)
	}
	return single, multi
}

// queryMaps renders the query string in both event forms; nil when empty.
func queryMaps(q map[string][]string) (map[string]string, map[string][]string) {
	return headerMaps(q)
}

// eventGateway is a gateway with a literal, a parameter and a greedy route
// and binary media types.
func eventGateway(t testing.TB, stageVars map[string]string) *Gateway {
	t.Helper()
	g, err := New(Config{
		API: sam.API{StageName: "v1", Routes: []sam.Route{
			{Method: "POST", Path: "/predict", FunctionLogicalID: "Fn"},
			{Method: "ANY", Path: "/items/{id}/{proxy+}", FunctionLogicalID: "Fn"},
		}},
		Invoker:          Functions{},
		StageVariables:   stageVars,
		BinaryMediaTypes: []string{"image/*"},
		Now:              func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 890e6, time.FixedZone("X", 3600)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// eventRequest is one request as the gateway sees it, up to the events.
type eventRequest struct {
	method, target, host string
	header               http.Header
	body                 string
	authorizer           map[string]string // with principalID: the authorizer's context
	principalID          *string
}

func (er eventRequest) ctx(t testing.TB, g *Gateway) (*requestCtx, bool) {
	t.Helper()
	u, err := url.ParseRequestURI(er.target)
	if err != nil {
		return nil, false
	}
	r := httptest.NewRequest(er.method, "/", strings.NewReader(er.body))
	r.URL, r.RequestURI, r.Host = u, er.target, er.host
	for k, vs := range er.header {
		r.Header[k] = vs
	}
	rc := g.newRequestCtx(r)
	rt, params, _ := match(g.routes, r.Method, r.URL.EscapedPath())
	if rt == nil {
		return nil, false
	}
	rc.route, rc.pathParams = rt, params
	rc.authorizer, rc.principalID = er.authorizer, er.principalID
	return rc, true
}

func ptr(s string) *string { return &s }

func TestEventsMatchEncodingJSON(t *testing.T) {
	tests := []struct {
		name      string
		stageVars map[string]string
		req       eventRequest
	}{
		{
			name: "usual POST",
			req: eventRequest{method: "POST", target: "/predict", host: "127.0.0.1:3000", body: `{"inputs": [[0.5, -1.2]]}`,
				header: http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Go-http-client/1.1"}, "Accept-Encoding": {"gzip"}}},
		},
		{
			name: "API key, forwarded-for, repeated headers",
			req: eventRequest{method: "POST", target: "/predict", host: "api.example.com", body: `{}`,
				header: http.Header{"X-Api-Key": {"bg_secret"}, "X-Forwarded-For": {"203.0.113.9", "198.51.100.1"}, "Accept": {"a", "b", "c"}}},
		},
		{
			name: "query string: repeated, empty, escaped, unicode",
			req:  eventRequest{method: "POST", target: "/predict?a=1&a=2&b=&c&d=%3Cx%3E%26%22&e=%E2%80%A8&f=%C3%A9&g=%FF", host: "h"},
		},
		{
			name:      "strings needing escapes",
			stageVars: map[string]string{"env": "<prod> & \"quoted\"", "tab": "a\tb\nc\r\b\f\x01\x7f", "bad": "\xff\xfe", "sep": "x\u2028y\u2029z", "é": "ü"},
			req: eventRequest{method: "POST", target: "/predict", host: "h.example",
				header: http.Header{"X-Weird": {"<script>&amp;</script>", `back\slash "quote"`, "\x00\x1f", "\xc3\x28", "日本語", "\u2028"}, "X-Empty": {""}}},
		},
		{
			name: "path parameters, greedy, escaped",
			req:  eventRequest{method: "GET", target: "/items/a%20b/c/d%2Fe/%3C", host: "h", header: http.Header{"User-Agent": {"ua<1>"}}},
		},
		{
			name: "name without values and no user agent",
			req:  eventRequest{method: "DELETE", target: "/items/1/2", host: "", header: http.Header{"X-None": {}}},
		},
		{
			name: "authorizer context",
			req: eventRequest{method: "POST", target: "/predict", host: "h", body: "x",
				authorizer:  map[string]string{"tier": "anonymous", "limit": "10", "rateLimit": `"anonymous";r=9;t=10`, "z<": "&"},
				principalID: ptr("ip:127.0.0.1")},
		},
		{
			name: "authorizer context naming principalId and integrationLatency",
			req: eventRequest{method: "POST", target: "/predict", host: "h",
				authorizer: map[string]string{"principalId": "spoof", "integrationLatency": "spoof", "a": "b"}, principalID: ptr("")},
		},
		{
			name: "empty authorizer context",
			req:  eventRequest{method: "POST", target: "/predict", host: "h", authorizer: map[string]string{}, principalID: ptr("p")},
		},
		{
			name: "binary media type body",
			req:  eventRequest{method: "POST", target: "/predict", host: "h", body: "PNG\x00\x01", header: http.Header{"Content-Type": {"image/png"}}},
		},
		{
			name: "body that is not UTF-8",
			req:  eventRequest{method: "POST", target: "/predict", host: "h", body: "\xff\xfe\xfd"},
		},
		{
			name: "body needing escapes",
			req:  eventRequest{method: "POST", target: "/predict", host: "h", body: "{\"a\":\"<b>&\u2028\"}\n\t"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := eventGateway(t, tc.stageVars)
			rc, ok := tc.req.ctx(t, g)
			if !ok {
				t.Fatalf("no route for %s %s", tc.req.method, tc.req.target)
			}
			checkEvents(t, g, rc, []byte(tc.req.body))
		})
	}
}

// checkEvents compares both hand-appended events with encoding/json's
// encoding of the reference structs.
func checkEvents(t *testing.T, g *Gateway, rc *requestCtx, body []byte) {
	t.Helper()
	arn := g.methodArn(rc)
	want, err := json.Marshal(g.authorizerEvent(rc, arn))
	if err != nil {
		t.Fatal(err)
	}
	if got := g.appendAuthorizerEvent(nil, rc, arn); !bytes.Equal(got, want) {
		t.Errorf("authorizer event:\n got %s\nwant %s", got, want)
	}
	const latency = 1234567 * time.Microsecond
	want, err = json.Marshal(g.proxyEvent(rc, body, latency))
	if err != nil {
		t.Fatal(err)
	}
	if got := g.appendProxyEvent([]byte("prefix kept"), rc, body, latency); !bytes.Equal(got, append([]byte("prefix kept"), want...)) {
		t.Errorf("proxy event:\n got %s\nwant prefix kept%s", got, want)
	}
}

func FuzzEventsMatchEncodingJSON(f *testing.F) {
	f.Add("/predict", "a=1&a=2", "X-Api-Key", "bg_key", "body", "tier", "anonymous")
	f.Add("/items/%E2%80%A8/x", "<>=&", "X", "\xff\u2028<", "\xff", "principalId", "\x00")
	f.Fuzz(func(t *testing.T, path, query, hname, hvalue, body, ckey, cvalue string) {
		g := eventGateway(t, map[string]string{hname: hvalue})
		er := eventRequest{method: "POST", target: path + "?" + query, host: hvalue, body: body,
			header: http.Header{hname: {hvalue, cvalue}}, authorizer: map[string]string{ckey: cvalue}, principalID: &hvalue}
		rc, ok := er.ctx(t, g)
		if !ok {
			return
		}
		checkEvents(t, g, rc, []byte(body))
	})
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `"\`, "<>&", "\x00\b\f\n\r\t\x1f\x7f", "\u2028\u2029", "\xff", "é日本", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// Real outputs: the authorizer's (template.yaml's authorizer as
// `cmd/local invoke` prints it) and the predict function's.
const (
	realAuthorizerOutput = `{"principalId":"ip:198.51.100.7","policyDocument":{"Version":"2012-10-17","Statement":[{"Action":["execute-api:Invoke"],"Effect":"Allow","Resource":["arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/POST/predict"]}]},"context":{"caller":"ip:198.51.100.7","cost":"1","forbidden":"false","limit":"10","rateLimit":"\"anonymous\";r=9;t=10","rateLimitPolicy":"\"anonymous\";q=10;w=100","remaining":"9","reset":"10","retryAfter":"0","source":"upstash","tier":"anonymous"}}`
	realProxyResponse    = `{"statusCode":200,"headers":{"Content-Type":"application/json","RateLimit":"\"authenticated\";r=49;t=2","RateLimit-Policy":"\"authenticated\";q=50;w=100","X-RateLimit-Limit":"50","X-RateLimit-Remaining":"49","X-RateLimit-Reset":"2","X-RateLimit-Tier":"authenticated"},"multiValueHeaders":null,"body":"{\"predictions\":[{\"score\":0.672607,\"label\":1}],\"model\":{\"name\":\"bucketgate-churn\",\"version\":\"1.0.0\"},\"tier\":\"authenticated\"}"}`
)

var authorizerOutputSeeds = []string{
	realAuthorizerOutput,
	`{"principalId":"p","policyDocument":{"Statement":{"Effect":"Deny","Action":"execute-api:Invoke","Resource":"*"}},"context":{"n":-1.5e+3,"t":true,"f":false,"z":null,"s":"a\\b\/c\n"},"usageIdentifierKey":"k"}`,
	`{"principalId":"p","policyDocument":{"Version":"1","Statement":[]},"context":null}`,
	` { "principalId" : "p" , "policyDocument" : { "Statement" : [ { "Effect" : "Allow" , "Action" : [ "a" , "b" ] , "Resource" : [ "r" ] } ] } } `,
	`{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Allow","Action":"a","Resource":"r"}]},"context":{"k":"v","k":"w"}}`,
	// Outside the fast subset (the encoding/json path decides):
	`{"PrincipalId":"p","policyDocument":{"Statement":[{"Effect":"Allow","Action":"a","Resource":"r"}]}}`,
	`{"principalId":"\u0070","policyDocument":{"Statement":[{"Effect":"Allow","Action":"a","Resource":"r"}]}}`,
	`{"principalId":"p","principalId":"q","policyDocument":{"Statement":[{"Effect":"Allow","Action":"a","Resource":"r"}]}}`,
	`{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Allow","Action":["a",null],"Resource":"r"}]}}`,
	`{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Allow","Action":[],"Resource":"r"}]}}`,
	`{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Maybe","Action":"a","Resource":"r"}]}}`,
	`{"principalId":"p","policyDocument":{"Statement":[{"Sid":"1","Effect":"Allow","Action":"a","Resource":"r"}]}}`,
	`{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Allow","Action":"a","Resource":"r"}]},"context":{"o":{}}}`,
	`{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Allow","Action":"a","Resource":"r"}]},"context":{"n":01}}`,
	`{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Allow","Action":"a","Resource":"r"}]}} x`,
	`{"principalId":"p","policyDocument":null}`,
	`{"principalId":1,"policyDocument":{"Statement":[]}}`,
	"{\"principalId\":\"p\xff\",\"policyDocument\":{\"Statement\":[]}}",
	`{"principalId":"p","policyDocument":{"Statement":[]},"extra":1}`,
	`null`, `[]`, `{}`, ``, `{"principalId":"p"`,
}

var proxyResponseSeeds = []string{
	realProxyResponse,
	`{"statusCode":429,"headers":{"Retry-After":7,"X-B":true,"X-N":null},"multiValueHeaders":{"Set-Cookie":["a=1","b=2"],"X-Empty":[]},"body":"aGk=","isBase64Encoded":true}`,
	`{"statusCode":204,"headers":null,"body":null,"isBase64Encoded":false}`,
	`{"statusCode":200}`,
	` {"statusCode" : 200 , "body" : "a\"b\\c\/\b\f\n\r\t"} `,
	// Outside the fast subset:
	`{"statusCode":"200"}`,
	`{"statusCode":200.0}`,
	`{"statusCode":99}`,
	`{"statusCode":200,"body":"!!!","isBase64Encoded":true}`,
	`{"statusCode":200,"StatusCode":201}`,
	`{"statusCode":200,"cookies":[]}`,
	`{"statusCode":200,"headers":{"X":{}}}`,
	`{"statusCode":200,"multiValueHeaders":{"X":null}}`,
	`{"statusCode":200,"multiValueHeaders":{"X":["a",null]}}`,
	`{"statusCode":200,"isBase64Encoded":null}`,
	`{"statusCode":200,"body":"\u00e9"}`,
	`{"statusCode":200} {}`,
	`null`, `{}`, `[]`, `{"statusCode":200`,
}

func FuzzParseAuthorizerOutput(f *testing.F) {
	for _, s := range authorizerOutputSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, ok := fastAuthorizerOutput(payload)
		if !ok {
			return
		}
		want, err := parseAuthorizerOutput(payload)
		if err != nil {
			t.Fatalf("fast parser accepted %q, encoding/json path: %v", payload, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q (-encoding/json +fast):\n%s", payload, diff)
		}
	})
}

func FuzzParseProxyResponse(f *testing.F) {
	for _, s := range proxyResponseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, ok := fastProxyResponse(payload)
		if !ok {
			return
		}
		want, err := parseProxyResponseJSON(payload)
		if err != nil {
			t.Fatalf("fast parser accepted %q, encoding/json path: %v", payload, err)
		}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(parsedProxy{})); diff != "" {
			t.Errorf("%q (-encoding/json +fast):\n%s", payload, diff)
		}
	})
}

// TestFastParsersTakeTheUsualShapes: the fast paths must accept what the
// functions actually send, or the gateway silently falls back to the slow
// path on every request.
func TestFastParsersTakeTheUsualShapes(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		parse   func([]byte) bool
	}{
		{name: "authorizer output", payload: realAuthorizerOutput, parse: func(b []byte) bool { _, ok := fastAuthorizerOutput(b); return ok }},
		{name: "deny with a single statement object", payload: authorizerOutputSeeds[1], parse: func(b []byte) bool { _, ok := fastAuthorizerOutput(b); return ok }},
		{name: "proxy response", payload: realProxyResponse, parse: func(b []byte) bool { _, ok := fastProxyResponse(b); return ok }},
		{name: "proxy response, base64 and multi-value headers", payload: proxyResponseSeeds[1], parse: func(b []byte) bool { _, ok := fastProxyResponse(b); return ok }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.parse([]byte(tc.payload)) {
				t.Errorf("fast path refused %s", tc.payload)
			}
		})
	}
}

// BenchmarkAuthorizerRoundTrip is the gateway's JSON work around one
// authorizer call: append the event, parse the output.
func BenchmarkAuthorizerRoundTrip(b *testing.B) {
	g := eventGateway(b, nil)
	rc, _ := eventRequest{method: "POST", target: "/predict", host: "127.0.0.1:3000", body: `{}`,
		header: http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Go-http-client/1.1"}, "Accept-Encoding": {"gzip"}}}.ctx(b, g)
	arn := g.methodArn(rc)
	out := []byte(realAuthorizerOutput)
	b.ReportAllocs()
	for b.Loop() {
		_ = g.appendAuthorizerEvent(make([]byte, 0, 2048), rc, arn)
		if _, err := ParseAuthorizerOutput(out); err != nil {
			b.Fatal(err)
		}
	}
}
