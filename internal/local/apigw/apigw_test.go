package apigw_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/local/apigw"
	"github.com/bucketgate/bucketgate/internal/local/lambdaemu"
	"github.com/bucketgate/bucketgate/internal/local/sam"
)

// handler is a fake function: it gets the event and returns a result.
type handler func(ctx context.Context, payload []byte) (lambdaemu.Result, error)

// fakeInvoker runs Go funcs in place of emulated functions and records the
// events each one received.
type fakeInvoker struct {
	mu       sync.Mutex
	handlers map[string]handler
	calls    map[string][][]byte
}

func (f *fakeInvoker) Invoke(ctx context.Context, id string, payload []byte) (lambdaemu.Result, error) {
	f.mu.Lock()
	h, ok := f.handlers[id]
	if f.calls == nil {
		f.calls = map[string][][]byte{}
	}
	f.calls[id] = append(f.calls[id], payload)
	f.mu.Unlock()
	if !ok {
		return lambdaemu.Result{}, errors.New("no such function")
	}
	return h(ctx, payload)
}

func (f *fakeInvoker) callCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls[id])
}

func (f *fakeInvoker) lastEvent(t *testing.T, id string, v any) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls[id]
	if len(c) == 0 {
		t.Fatalf("%s was not called", id)
	}
	if err := json.Unmarshal(c[len(c)-1], v); err != nil {
		t.Fatalf("decoding the event %s received: %v", id, err)
	}
}

// ok returns a function answering 200 with a JSON body naming fn.
func ok(fn string) handler {
	return func(context.Context, []byte) (lambdaemu.Result, error) {
		return jsonResult(events.APIGatewayProxyResponse{StatusCode: 200, Body: `{"fn":"` + fn + `"}`}), nil
	}
}

func jsonResult(v any) lambdaemu.Result {
	b, _ := json.Marshal(v)
	return lambdaemu.Result{Payload: b}
}

func fnError(msg string) handler {
	return func(context.Context, []byte) (lambdaemu.Result, error) {
		return lambdaemu.Result{Error: &lambdaemu.FunctionError{Message: msg, Type: "errorString"}}, nil
	}
}

var fixedNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// serve starts a Gateway over api with the given functions on a loopback
// test server.
func serve(t *testing.T, api sam.API, fns map[string]handler, tweak func(*apigw.Config)) (*httptest.Server, *fakeInvoker) {
	t.Helper()
	inv := &fakeInvoker{handlers: fns}
	cfg := apigw.Config{API: api, Invoker: inv, Now: func() time.Time { return fixedNow }}
	if tweak != nil {
		tweak(&cfg)
	}
	g, err := apigw.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv, inv
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, srv *httptest.Server, method, path string, body []byte, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func TestRouting(t *testing.T) {
	api := sam.API{StageName: "v1", Routes: []sam.Route{
		{Method: "GET", Path: "/", FunctionLogicalID: "Root"},
		{Method: "GET", Path: "/model-info", FunctionLogicalID: "Info"},
		{Method: "POST", Path: "/predict", FunctionLogicalID: "Predict"},
		{Method: "POST", Path: "/predict/batch", FunctionLogicalID: "Batch"},
		{Method: "GET", Path: "/items/{id}", FunctionLogicalID: "Item"},
		{Method: "GET", Path: "/items/special", FunctionLogicalID: "Special"},
		{Method: "ANY", Path: "/items/{id}", FunctionLogicalID: "AnyItem"},
		{Method: "ANY", Path: "/files/{proxy+}", FunctionLogicalID: "Files"},
	}}
	fns := map[string]handler{}
	for _, r := range api.Routes {
		fns[r.FunctionLogicalID] = ok(r.FunctionLogicalID)
	}
	srv, inv := serve(t, api, fns, nil)
	tests := []struct {
		name       string
		method     string
		path       string
		wantFn     string // "" = no function: 403 Missing Authentication Token
		wantParams map[string]string
	}{
		{name: "root", method: "GET", path: "/", wantFn: "Root"},
		{name: "literal", method: "GET", path: "/model-info", wantFn: "Info"},
		{name: "literal deeper", method: "POST", path: "/predict/batch", wantFn: "Batch"},
		{name: "literal wins over param", method: "GET", path: "/items/special", wantFn: "Special"},
		{name: "param", method: "GET", path: "/items/42", wantFn: "Item", wantParams: map[string]string{"id": "42"}},
		{name: "escaped param is decoded", method: "GET", path: "/items/a%20b", wantFn: "Item", wantParams: map[string]string{"id": "a b"}},
		{name: "ANY when the method has no route of its own", method: "DELETE", path: "/items/42", wantFn: "AnyItem", wantParams: map[string]string{"id": "42"}},
		{name: "greedy", method: "PUT", path: "/files/a/b/c.txt", wantFn: "Files", wantParams: map[string]string{"proxy": "a/b/c.txt"}},
		{name: "greedy needs a segment", method: "GET", path: "/files"},
		{name: "unknown path", method: "GET", path: "/nope"},
		{name: "known path, undefined method", method: "GET", path: "/predict"},
		{name: "trailing slash is another path", method: "GET", path: "/model-info/"},
		{name: "query string is not part of the path", method: "GET", path: "/model-info?x=1", wantFn: "Info"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := do(t, srv, tc.method, tc.path, nil, nil)
			if tc.wantFn == "" {
				if got.status != http.StatusForbidden || got.body != `{"message":"Missing Authentication Token"}` {
					t.Errorf("got %d %s, want 403 {\"message\":\"Missing Authentication Token\"}", got.status, got.body)
				}
				if et := got.header.Get("X-Amzn-ErrorType"); et != "MissingAuthenticationTokenException" {
					t.Errorf("x-amzn-ErrorType = %q", et)
				}
				return
			}
			if want := `{"fn":"` + tc.wantFn + `"}`; got.status != 200 || got.body != want {
				t.Fatalf("got %d %s, want 200 %s", got.status, got.body, want)
			}
			var ev events.APIGatewayProxyRequest
			inv.lastEvent(t, tc.wantFn, &ev)
			if diff := cmp.Diff(tc.wantParams, ev.PathParameters); diff != "" {
				t.Errorf("pathParameters (-want +got):\n%s", diff)
			}
		})
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestProxyEvent(t *testing.T) {
	api := sam.API{StageName: "v1", Routes: []sam.Route{{Method: "POST", Path: "/items/{id}", FunctionLogicalID: "Fn"}}}
	srv, inv := serve(t, api, map[string]handler{"Fn": ok("Fn")}, func(c *apigw.Config) {
		c.StageVariables = map[string]string{"env": "local"}
		c.BinaryMediaTypes = []string{"image/*"}
	})

	req, _ := http.NewRequest("POST", srv.URL+"/items/42?a=1&a=2&b=x", strings.NewReader(`{"inputs":[[1,2]]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	req.Header.Set("User-Agent", "apigw-test")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}

	var ev events.APIGatewayProxyRequest
	inv.lastEvent(t, "Fn", &ev)
	rc := ev.RequestContext
	if !uuidRE.MatchString(rc.RequestID) || resp.Header.Get("X-Amzn-Requestid") != rc.RequestID {
		t.Errorf("requestId %q (response header %q), want one UUID in both", rc.RequestID, resp.Header.Get("X-Amzn-Requestid"))
	}
	if len(rc.ResourceID) != 6 {
		t.Errorf("resourceId = %q, want 6 characters", rc.ResourceID)
	}
	got := map[string]any{
		"resource":         ev.Resource,
		"path":             ev.Path,
		"httpMethod":       ev.HTTPMethod,
		"query":            ev.QueryStringParameters,
		"multiQuery":       ev.MultiValueQueryStringParameters,
		"pathParameters":   ev.PathParameters,
		"stageVariables":   ev.StageVariables,
		"body":             ev.Body,
		"isBase64Encoded":  ev.IsBase64Encoded,
		"xff":              ev.Headers["X-Forwarded-For"],
		"multi":            ev.MultiValueHeaders["X-Multi"],
		"single":           ev.Headers["X-Multi"],
		"sourceIp":         rc.Identity.SourceIP,
		"userAgent":        rc.Identity.UserAgent,
		"ctxPath":          rc.Path,
		"stage":            rc.Stage,
		"resourcePath":     rc.ResourcePath,
		"ctxMethod":        rc.HTTPMethod,
		"apiId":            rc.APIID,
		"accountId":        rc.AccountID,
		"protocol":         rc.Protocol,
		"requestTime":      rc.RequestTime,
		"requestTimeEpoch": rc.RequestTimeEpoch,
		"authorizer":       rc.Authorizer,
	}
	want := map[string]any{
		"resource":         "/items/{id}",
		"path":             "/items/42",
		"httpMethod":       "POST",
		"query":            map[string]string{"a": "2", "b": "x"},
		"multiQuery":       map[string][]string{"a": {"1", "2"}, "b": {"x"}},
		"pathParameters":   map[string]string{"id": "42"},
		"stageVariables":   map[string]string{"env": "local"},
		"body":             `{"inputs":[[1,2]]}`,
		"isBase64Encoded":  false,
		"xff":              "6.6.6.6, 127.0.0.1", // the client's claim is kept, the peer appended
		"multi":            []string{"one", "two"},
		"single":           "two",
		"sourceIp":         "127.0.0.1", // the TCP peer, never X-Forwarded-For
		"userAgent":        "apigw-test",
		"ctxPath":          "/v1/items/42",
		"stage":            "v1",
		"resourcePath":     "/items/{id}",
		"ctxMethod":        "POST",
		"apiId":            apigw.DefaultAPIID,
		"accountId":        apigw.DefaultAccountID,
		"protocol":         "HTTP/1.1",
		"requestTime":      "04/Mar/2026:05:06:07 +0000",
		"requestTimeEpoch": fixedNow.UnixMilli(),
		"authorizer":       map[string]any(nil), // no authorizer on this route
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("event mismatch (-want +got):\n%s", diff)
	}

	t.Run("binary bodies are base64", func(t *testing.T) {
		tests := []struct {
			name        string
			contentType string
			body        []byte
			wantB64     bool
		}{
			{name: "binary media type", contentType: "image/png", body: []byte("PNG..."), wantB64: true},
			{name: "not valid UTF-8", contentType: "application/octet-stream", body: []byte{0xff, 0xfe, 0x00}, wantB64: true},
			{name: "text", contentType: "text/plain", body: []byte("héllo"), wantB64: false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				do(t, srv, "POST", "/items/1", tc.body, map[string]string{"Content-Type": tc.contentType})
				var ev events.APIGatewayProxyRequest
				inv.lastEvent(t, "Fn", &ev)
				if ev.IsBase64Encoded != tc.wantB64 {
					t.Fatalf("isBase64Encoded = %v, want %v", ev.IsBase64Encoded, tc.wantB64)
				}
				got := ev.Body
				if tc.wantB64 {
					b, err := base64Decode(ev.Body)
					if err != nil {
						t.Fatal(err)
					}
					got = string(b)
				}
				if got != string(tc.body) {
					t.Errorf("body = %q, want %q", got, tc.body)
				}
			})
		}
	})
}

func TestBodyLimit(t *testing.T) {
	api := sam.API{StageName: "v1", Routes: []sam.Route{{Method: "POST", Path: "/predict", FunctionLogicalID: "Fn"}}}
	tests := []struct {
		name       string
		limit      int64
		body       int
		wantStatus int
	}{
		{name: "at the configured limit", limit: 1024, body: 1024, wantStatus: 200},
		{name: "over the configured limit", limit: 1024, body: 1025, wantStatus: 413},
		{name: "over API Gateway's 10 MB", body: apigw.DefaultMaxBodyBytes + 1, wantStatus: 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, inv := serve(t, api, map[string]handler{"Fn": ok("Fn")}, func(c *apigw.Config) { c.MaxBodyBytes = tc.limit })
			got := do(t, srv, "POST", "/predict", bytes.Repeat([]byte("a"), tc.body), nil)
			if got.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", got.status, tc.wantStatus, got.body)
			}
			if tc.wantStatus == 413 {
				if got.body != `{"message":"Request Too Long"}` {
					t.Errorf("body = %s", got.body)
				}
				if n := inv.callCount("Fn"); n != 0 {
					t.Errorf("the function was called %d times for an oversized body", n)
				}
			}
		})
	}

	t.Run("over Lambda's 6 MB invocation limit", func(t *testing.T) {
		srv, _ := serve(t, api, map[string]handler{"Fn": func(ctx context.Context, p []byte) (lambdaemu.Result, error) {
			return lambdaemu.Result{}, lambdaemu.ErrPayloadTooLarge
		}}, nil)
		if got := do(t, srv, "POST", "/predict", []byte("{}"), nil); got.status != 413 {
			t.Errorf("status = %d, want 413", got.status)
		}
	})
}

func TestFunctionResults(t *testing.T) {
	api := sam.API{StageName: "v1", Routes: []sam.Route{{Method: "GET", Path: "/r", FunctionLogicalID: "Fn"}}}
	raw := func(s string) handler {
		return func(context.Context, []byte) (lambdaemu.Result, error) {
			return lambdaemu.Result{Payload: []byte(s)}, nil
		}
	}
	internal := `{"message": "Internal server error"}`
	tests := []struct {
		name       string
		fn         handler
		wantStatus int
		wantBody   string
		wantHeader map[string][]string
	}{
		{
			name: "headers merged, multi-value wins",
			fn: raw(`{"statusCode":201,"headers":{"X-One":"1","X-Both":"single","Content-Type":"text/plain"},` +
				`"multiValueHeaders":{"X-Both":["m1","m2"],"Set-Cookie":["a=1","b=2"]},"body":"made"}`),
			wantStatus: 201, wantBody: "made",
			wantHeader: map[string][]string{"X-One": {"1"}, "X-Both": {"m1", "m2"}, "Set-Cookie": {"a=1", "b=2"}, "Content-Type": {"text/plain"}},
		},
		{name: "default content type", fn: raw(`{"statusCode":200,"body":"{}"}`), wantStatus: 200, wantBody: "{}", wantHeader: map[string][]string{"Content-Type": {"application/json"}}},
		{name: "base64 body", fn: raw(`{"statusCode":200,"body":"aGVsbG8=","isBase64Encoded":true}`), wantStatus: 200, wantBody: "hello"},
		{name: "no body", fn: raw(`{"statusCode":204}`), wantStatus: 204, wantBody: ""},
		{name: "numeric header value", fn: raw(`{"statusCode":200,"headers":{"Retry-After":3},"body":""}`), wantStatus: 200, wantHeader: map[string][]string{"Retry-After": {"3"}}},
		{name: "function error", fn: fnError("boom"), wantStatus: 502, wantBody: internal},
		{name: "crash", fn: func(context.Context, []byte) (lambdaemu.Result, error) {
			return lambdaemu.Result{Error: &lambdaemu.FunctionError{Type: lambdaemu.ErrorTypeExit, Message: "exit status 2"}}, nil
		}, wantStatus: 502, wantBody: internal},
		{name: "function timeout", fn: func(context.Context, []byte) (lambdaemu.Result, error) {
			return lambdaemu.Result{Error: &lambdaemu.FunctionError{Type: lambdaemu.ErrorTypeTimeout, Message: "Task timed out after 3.00 seconds"}}, nil
		}, wantStatus: 502, wantBody: internal},
		{name: "integration timeout", fn: func(ctx context.Context, _ []byte) (lambdaemu.Result, error) {
			<-ctx.Done()
			return lambdaemu.Result{}, ctx.Err()
		}, wantStatus: 504, wantBody: `{"message": "Endpoint request timed out"}`},
		{name: "unknown field", fn: raw(`{"statusCode":200,"body":"x","extra":1}`), wantStatus: 502, wantBody: internal},
		{name: "missing statusCode", fn: raw(`{"body":"x"}`), wantStatus: 502, wantBody: internal},
		{name: "statusCode not a number", fn: raw(`{"statusCode":"200"}`), wantStatus: 502, wantBody: internal},
		{name: "body not a string", fn: raw(`{"statusCode":200,"body":{"a":1}}`), wantStatus: 502, wantBody: internal},
		{name: "not an object", fn: raw(`"hello"`), wantStatus: 502, wantBody: internal},
		{name: "null", fn: raw(`null`), wantStatus: 502, wantBody: internal},
		{name: "bad base64", fn: raw(`{"statusCode":200,"body":"%%%","isBase64Encoded":true}`), wantStatus: 502, wantBody: internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Only the case about it meets the integration timeout: a short
			// one for every case could fail them on a loaded machine.
			timeout := 30 * time.Second
			if tc.wantStatus == 504 {
				timeout = 100 * time.Millisecond
			}
			srv, _ := serve(t, api, map[string]handler{"Fn": tc.fn}, func(c *apigw.Config) { c.IntegrationTimeout = timeout })
			got := do(t, srv, "GET", "/r", nil, nil)
			if got.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", got.status, tc.wantStatus, got.body)
			}
			if tc.wantStatus >= 500 {
				// API Gateway's own error bodies are compact JSON; compare as JSON.
				assertJSONEqual(t, tc.wantBody, got.body)
			} else if got.body != tc.wantBody {
				t.Errorf("body = %q, want %q", got.body, tc.wantBody)
			}
			for k, want := range tc.wantHeader {
				if diff := cmp.Diff(want, got.header.Values(k)); diff != "" {
					t.Errorf("header %s (-want +got):\n%s", k, diff)
				}
			}
		})
	}
}

func assertJSONEqual(t *testing.T, want, got string) {
	t.Helper()
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q: %v", want, err)
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("JSON body (-want +got):\n%s", diff)
	}
}

func base64Decode(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(s)
}
