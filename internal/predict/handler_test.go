package predict

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/authctx"
)

// testKey is an API key as a client would send it; it must never reach a log.
const testKey = "bg_TESTKEY-must-never-be-logged-0123456789abcdefghijkl"

// newHandler returns a Handler logging JSON (debug and up) into the returned
// buffer, on a clock that advances 1.5 ms per reading.
func newHandler(t testing.TB) (*Handler, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clock := time.Date(2026, 11, 23, 19, 3, 55, 0, time.UTC)
	now := func() time.Time {
		clock = clock.Add(1500 * time.Microsecond)
		return clock
	}
	return New(Config{Logger: logger, Now: now}), &buf
}

// decision is an allowed authenticated request, as the authorizer reports it.
var decision = authctx.Decision{
	Tier: "authenticated", Caller: "key_7f3a9c2e", Source: "upstash", Cost: 1,
	Policies: []authctx.Policy{{Name: "authenticated", Limit: 50, Remaining: 49, Reset: 2, Window: 100}},
}

// rateLimitHeaders are the headers echoed for decision.
var rateLimitHeaders = map[string]string{
	"X-RateLimit-Limit":     "50",
	"X-RateLimit-Remaining": "49",
	"X-RateLimit-Reset":     "2",
	"X-RateLimit-Tier":      "authenticated",
	"RateLimit-Policy":      `"authenticated";q=50;w=100`,
	"RateLimit":             `"authenticated";r=49;t=2`,
}

// withJSON returns rateLimitHeaders (or none, when rl is false) plus the
// Content-Type and the extra pairs given.
func withJSON(rl bool, kv ...string) map[string]string {
	h := map[string]string{"Content-Type": "application/json"}
	if rl {
		for k, v := range rateLimitHeaders {
			h[k] = v
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// authorizerContext returns d's context as API Gateway delivers it: through
// JSON.
func authorizerContext(t testing.TB, d authctx.Decision) map[string]interface{} {
	t.Helper()
	raw, err := json.Marshal(d.Map())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]interface{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["principalId"] = d.Caller
	m["integrationLatency"] = float64(38)
	return m
}

// proxyRequest builds a request as API Gateway would for resource, carrying
// the test key and authorizer context (nil: none).
func proxyRequest(method, resource, body string, authorizer map[string]interface{}) events.APIGatewayProxyRequest {
	return events.APIGatewayProxyRequest{
		Resource:          resource,
		Path:              resource,
		HTTPMethod:        method,
		Headers:           map[string]string{"Content-Type": "application/json", "X-Api-Key": testKey},
		MultiValueHeaders: map[string][]string{"Content-Type": {"application/json"}, "X-Api-Key": {testKey}},
		Body:              body,
		RequestContext: events.APIGatewayProxyRequestContext{
			RequestID:    "req-1",
			Stage:        "Prod",
			ResourcePath: resource,
			HTTPMethod:   method,
			Path:         "/Prod" + resource,
			Identity:     events.APIGatewayRequestIdentity{SourceIP: "203.0.113.42", UserAgent: "curl/8.5.0"},
			Authorizer:   authorizer,
		},
	}
}

// response is the part of a proxy response a client sees, with the body
// decoded so that comparisons ignore formatting.
type response struct {
	Status  int
	Headers map[string]string
	Body    any
}

func decodeResponse(t testing.TB, r events.APIGatewayProxyResponse) response {
	t.Helper()
	var body any
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
		t.Fatalf("response body is not JSON: %v\n%s", err, r.Body)
	}
	if len(r.MultiValueHeaders) != 0 {
		t.Errorf("MultiValueHeaders = %v, want none", r.MultiValueHeaders)
	}
	if r.IsBase64Encoded {
		t.Errorf("IsBase64Encoded = true, want false")
	}
	return response{Status: r.StatusCode, Headers: r.Headers, Body: body}
}

func handle(t testing.TB, h *Handler, req events.APIGatewayProxyRequest) response {
	t.Helper()
	r, err := h.Handle(context.Background(), req)
	if err != nil {
		t.Fatalf("Handle returned error %v; a proxy function must answer instead", err)
	}
	return decodeResponse(t, r)
}

func message(s string) map[string]any { return map[string]any{"message": s} }

// mustJSON decodes a JSON literal of the test table.
func mustJSON(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON in test table: %v\n%s", err, s)
	}
	return v
}

// rowsBody returns {"inputs": [...]} with n copies of the row.
func rowsBody(n int, row string) string {
	rows := make([]string, n)
	for i := range rows {
		rows[i] = row
	}
	return `{"inputs": [` + strings.Join(rows, ",") + `]}`
}

// predictionsBody returns the expected 200 body.
func predictionsBody(m Model, tier any, preds ...map[string]any) map[string]any {
	ps := make([]any, len(preds))
	for i, p := range preds {
		ps[i] = p
	}
	return map[string]any{
		"predictions": ps,
		"model":       map[string]any{"name": m.Name, "version": m.Version},
		"tier":        tier,
	}
}

func pred(score float64, label int) map[string]any {
	return map[string]any{"score": score, "label": float64(label)}
}

func repeat(n int, p map[string]any) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = p
	}
	return out
}

const (
	row1 = "[0.5, -1.2, 2.0, 0.3]"   // standard 0.672607/1, premium 0.731059/1
	row2 = "[-1.0, 0.4, -0.5, -0.8]" // standard 0.375194/0, premium 0.320821/0
)

func TestHandleValidation(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		name     string
		resource string // default PathPredict
		body     string
		want     string // the message of the 400
		reason   string // logged
	}{
		{name: "empty body", body: "", want: `request body is empty: send {"inputs": [[4 numbers], ...]}`, reason: "empty_body"},
		{name: "whitespace body", body: " \n\t ", want: `request body is empty: send {"inputs": [[4 numbers], ...]}`, reason: "empty_body"},
		{name: "truncated", body: `{"inputs": [[1,2,3,4]]`, want: "invalid JSON at line 1, column 23: unexpected end of JSON input", reason: "invalid_json"},
		{name: "missing comma on line 3", body: "{\n  \"inputs\": [\n    [1, 2 3, 4]\n  ]\n}", want: "invalid JSON at line 3, column 11: invalid character '3' after array element", reason: "invalid_json"},
		{name: "trailing data", body: `{"inputs": [[1,2,3,4]]}}`, want: "invalid JSON at line 1, column 24: invalid character '}' after top-level value", reason: "invalid_json"},
		{name: "syntax error wins over an earlier shape error", body: `{"inputs": [[1,"a",3,4]], oops}`, want: "invalid JSON at line 1, column 27: invalid character 'o' looking for beginning of object key string", reason: "invalid_json"},
		{name: "single quotes", body: `{'inputs': []}`, want: "invalid JSON at line 1, column 2: invalid character '\\'' looking for beginning of object key string", reason: "invalid_json"},
		{name: "leading zero", body: `{"inputs": [[01,2,3,4]]}`, want: "invalid JSON at line 1, column 15: invalid character '1' after array element", reason: "invalid_json"},
		{name: "plus sign", body: `{"inputs": [[+1,2,3,4]]}`, want: "invalid JSON at line 1, column 14: invalid character '+' looking for beginning of value", reason: "invalid_json"},
		{name: "bare dot", body: `{"inputs": [[1.,2,3,4]]}`, want: "invalid JSON at line 1, column 16: invalid character ',' after decimal point in numeric literal", reason: "invalid_json"},
		{name: "NaN literal", body: `{"inputs": [[NaN,2,3,4]]}`, want: "invalid JSON at line 1, column 14: invalid character 'N' looking for beginning of value", reason: "invalid_json"},
		{name: "Infinity literal", body: `{"inputs": [[-Infinity,2,3,4]]}`, want: "invalid JSON at line 1, column 15: invalid character 'I' in numeric literal", reason: "invalid_json"},
		{name: "bad escape in key", body: `{"\x": 1}`, want: "invalid JSON at line 1, column 4: invalid character 'x' in string escape code", reason: "invalid_json"},
		{name: "body is an array", body: `[[1,2,3,4]]`, want: `request body must be a JSON object like {"inputs": [[4 numbers], ...]}, got an array`, reason: "wrong_shape"},
		{name: "body is a string", body: `"hello"`, want: `request body must be a JSON object like {"inputs": [[4 numbers], ...]}, got a string`, reason: "wrong_shape"},
		{name: "body is null", body: `null`, want: `request body must be a JSON object like {"inputs": [[4 numbers], ...]}, got null`, reason: "wrong_shape"},
		{name: "missing inputs", body: `{}`, want: `missing field "inputs": send {"inputs": [[4 numbers], ...]}`, reason: "wrong_shape"},
		{name: "misspelt field", body: `{"input": [[1,2,3,4]]}`, want: `unknown field "input": the only field is "inputs"`, reason: "unknown_field"},
		{name: "field names are case-sensitive", body: `{"Inputs": [[1,2,3,4]]}`, want: `unknown field "Inputs": the only field is "inputs"`, reason: "unknown_field"},
		{name: "extra field", body: `{"inputs": [[1,2,3,4]], "model": "v2"}`, want: `unknown field "model": the only field is "inputs"`, reason: "unknown_field"},
		{name: "long unknown field is cut", body: `{"` + long + `": 1}`, want: `unknown field "` + long[:64] + `"...: the only field is "inputs"`, reason: "unknown_field"},
		{name: "duplicate inputs", body: `{"inputs": [[1,2,3,4]], "inputs": [[1,2,3,4]]}`, want: `duplicate field "inputs"`, reason: "wrong_shape"},
		{name: "inputs is an object", body: `{"inputs": {"a": [1,2,3,4]}}`, want: `"inputs" must be an array of rows, each an array of 4 numbers, got an object`, reason: "wrong_shape"},
		{name: "inputs is null", body: `{"inputs": null}`, want: `"inputs" must be an array of rows, each an array of 4 numbers, got null`, reason: "wrong_shape"},
		{name: "inputs is one flat row", body: `{"inputs": [1,2,3,4]}`, want: "row 0 (inputs[0]) must be an array of 4 numbers, got a number", reason: "wrong_shape"},
		{name: "second row is an object", body: `{"inputs": [[1,2,3,4], {"x": 1}]}`, want: "row 1 (inputs[1]) must be an array of 4 numbers, got an object", reason: "wrong_shape"},
		{name: "string number", body: `{"inputs": [[1,2,3,4], [1,"2",3,4]]}`, want: "row 1, column 1 (inputs[1][1]): want a number, got a string", reason: "not_a_number"},
		{name: "boolean", body: `{"inputs": [[true,2,3,4]]}`, want: "row 0, column 0 (inputs[0][0]): want a number, got a boolean", reason: "not_a_number"},
		{name: "null value", body: `{"inputs": [[1,2,3,null]]}`, want: "row 0, column 3 (inputs[0][3]): want a number, got null", reason: "not_a_number"},
		{name: "nested array", body: `{"inputs": [[1,[2],3,4]]}`, want: "row 0, column 1 (inputs[0][1]): want a number, got an array", reason: "not_a_number"},
		{name: "object value", body: `{"inputs": [[1,2,{},4]]}`, want: "row 0, column 2 (inputs[0][2]): want a number, got an object", reason: "not_a_number"},
		{name: "too few features", body: `{"inputs": [[1,2,3,4], [1,2,3]]}`, want: "row 1 (inputs[1]) has 3 numbers, want 4 (input_features)", reason: "wrong_feature_count"},
		{name: "too many features", body: `{"inputs": [[1,2,3,4,5]]}`, want: "row 0 (inputs[0]) has 5 numbers, want 4 (input_features)", reason: "wrong_feature_count"},
		{name: "empty row", body: `{"inputs": [[]]}`, want: "row 0 (inputs[0]) has 0 numbers, want 4 (input_features)", reason: "wrong_feature_count"},
		{name: "empty inputs", body: `{"inputs": []}`, want: `"inputs" is empty: send at least one row of 4 numbers`, reason: "empty_inputs"},
		{name: "number too large", body: `{"inputs": [[1,2,3,1e400]]}`, want: "row 0, column 3 (inputs[0][3]): number 1e400 is out of range (numbers must be finite float64 values)", reason: "not_finite"},
		{name: "negative number too large", body: `{"inputs": [[1,2,3,4],[-2e308,2,3,4]]}`, want: "row 1, column 0 (inputs[1][0]): number -2e308 is out of range (numbers must be finite float64 values)", reason: "not_finite"},
		{name: "long out-of-range number is cut", body: `{"inputs": [[1` + strings.Repeat("0", 400) + `,2,3,4]]}`, want: "row 0, column 0 (inputs[0][0]): number 1" + strings.Repeat("0", 31) + "... is out of range (numbers must be finite float64 values)", reason: "not_finite"},
		{name: "101 rows on predict", body: rowsBody(101, row1), want: "too many rows: got 101, at most 100 per request on POST /predict (POST /predict/batch takes up to 1000)", reason: "too_many_rows"},
		{name: "101 rows on premium", resource: PathPremiumPredict, body: rowsBody(101, row1), want: "too many rows: got 101, at most 100 per request on POST /premium/predict", reason: "too_many_rows"},
		{name: "1001 rows on batch", resource: PathPredictBatch, body: rowsBody(1001, row1), want: "too many rows: got 1001, at most 1000 per request on POST /predict/batch", reason: "too_many_rows"},
		{name: "a bad row after the limit is still found", body: rowsBody(150, row1)[:len(rowsBody(150, row1))-2] + `,[1,2]]}`, want: "row 150 (inputs[150]) has 2 numbers, want 4 (input_features)", reason: "wrong_feature_count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resource := tt.resource
			if resource == "" {
				resource = PathPredict
			}
			h, logs := newHandler(t)
			d := decision
			if resource == PathPremiumPredict {
				d.Tier = "premium"
			}
			got := handle(t, h, proxyRequest(http.MethodPost, resource, tt.body, authorizerContext(t, d)))
			want := response{Status: http.StatusBadRequest, Headers: got.Headers, Body: message(tt.want)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			if rec := lastLog(t, logs); rec["reason"] != tt.reason || rec["status"] != float64(400) {
				t.Errorf("log: reason %v, status %v; want %q, 400", rec["reason"], rec["status"], tt.reason)
			}
		})
	}
}

func TestHandlePredictions(t *testing.T) {
	tests := []struct {
		name     string
		resource string
		body     string
		tier     string
		want     map[string]any
	}{
		{
			name: "two rows", resource: PathPredict, body: `{"inputs": [` + row1 + `,` + row2 + `]}`, tier: "authenticated",
			want: predictionsBody(StandardModel, "authenticated", pred(0.672607, 1), pred(0.375194, 0)),
		},
		{
			name: "premium model on the premium route", resource: PathPremiumPredict, body: `{"inputs": [` + row1 + `,` + row2 + `]}`, tier: "premium",
			want: predictionsBody(PremiumModel, "premium", pred(0.731059, 1), pred(0.320821, 0)),
		},
		{
			name: "exactly 100 rows on predict", resource: PathPredict, body: rowsBody(100, row2), tier: "anonymous",
			want: predictionsBody(StandardModel, "anonymous", repeat(100, pred(0.375194, 0))...),
		},
		{
			name: "exactly 1000 rows on batch", resource: PathPredictBatch, body: rowsBody(1000, row1), tier: "authenticated",
			want: predictionsBody(StandardModel, "authenticated", repeat(1000, pred(0.672607, 1))...),
		},
		{
			name: "escaped key, exponents, negative zero, whitespace", resource: PathPredict,
			body: " \r\n{ \"\\u0069nputs\" :\t[ [ 5E-1 , -1.2e0 , 2 , 0.3 ] , [-0, 0.0, 0e5, -0.0] ] } \n", tier: "authenticated",
			want: predictionsBody(StandardModel, "authenticated", pred(0.672607, 1), pred(0.377541, 0)),
		},
		{
			name: "largest finite numbers", resource: PathPredict, body: `{"inputs": [[-1.7976931348623157e308, 0, 1.7976931348623157e308, 0]]}`, tier: "authenticated",
			want: predictionsBody(StandardModel, "authenticated", pred(1, 1)),
		},
		{
			name: "tier that needs escaping", resource: PathPredict, body: `{"inputs": [` + row1 + `]}`, tier: `gold "<&>"`,
			want: predictionsBody(StandardModel, `gold "<&>"`, pred(0.672607, 1)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, logs := newHandler(t)
			d := decision
			d.Tier = tt.tier
			got := handle(t, h, proxyRequest(http.MethodPost, tt.resource, tt.body, authorizerContext(t, d)))
			if diff := cmp.Diff(mustJSON(t, mustMarshal(t, tt.want)), got.Body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if got.Status != http.StatusOK {
				t.Errorf("status = %d, want 200", got.Status)
			}
			rows := len(tt.want["predictions"].([]any))
			if rec := lastLog(t, logs); rec["rows"] != float64(rows) || rec["reason"] != "" {
				t.Errorf("log: rows %v, reason %q; want %d, empty", rec["rows"], rec["reason"], rows)
			}
		})
	}
}

func mustMarshal(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandleBodyLimits(t *testing.T) {
	valid := `{"inputs": [` + row1 + `]}`
	// pad returns a valid body of exactly n bytes (whitespace is valid JSON).
	pad := func(n int) string { return valid + strings.Repeat(" ", n-len(valid)) }
	b64 := base64.StdEncoding.EncodeToString
	ok := predictionsBody(StandardModel, "authenticated", pred(0.672607, 1))
	tests := []struct {
		name   string
		body   string
		base64 bool
		want   response
	}{
		{name: "exactly 1 MiB", body: pad(MaxBodyBytes), want: response{200, withJSON(true), ok}},
		{name: "1 MiB + 1 byte", body: pad(MaxBodyBytes + 1),
			want: response{413, withJSON(true), message("request body is too large: 1048577 bytes, at most 1048576 (1 MiB)")}},
		{name: "1 MiB + 1 byte of garbage is a 413, not a 400", body: strings.Repeat("x", MaxBodyBytes+1),
			want: response{413, withJSON(true), message("request body is too large: 1048577 bytes, at most 1048576 (1 MiB)")}},
		{name: "base64 body", body: b64([]byte(valid)), base64: true, want: response{200, withJSON(true), ok}},
		{name: "base64 of exactly 1 MiB", body: b64([]byte(pad(MaxBodyBytes))), base64: true, want: response{200, withJSON(true), ok}},
		{name: "base64 of 1 MiB + 1 byte: the decoded size counts", body: b64([]byte(pad(MaxBodyBytes + 1))), base64: true,
			want: response{413, withJSON(true), message("request body is too large: 1048577 bytes, at most 1048576 (1 MiB)")}},
		{name: "the size is checked before decoding: huge invalid base64 is a 413", body: strings.Repeat("*", 2*MaxBodyBytes), base64: true,
			want: response{413, withJSON(true), message("request body is too large: 1572864 bytes, at most 1048576 (1 MiB)")}},
		{name: "base64 with MIME line breaks: they do not count", body: mimeLines(b64([]byte(pad(MaxBodyBytes)))), base64: true,
			want: response{200, withJSON(true), ok}},
		{name: "base64 with MIME line breaks of 1 MiB + 1 byte", body: mimeLines(b64([]byte(pad(MaxBodyBytes + 1)))), base64: true,
			want: response{413, withJSON(true), message("request body is too large: 1048577 bytes, at most 1048576 (1 MiB)")}},
		{name: "invalid base64", body: "eyJpbnB1dHMiOi*=", base64: true,
			want: response{400, withJSON(true), message("request body is marked base64-encoded (isBase64Encoded) but is not valid base64")}},
		{name: "base64 of invalid JSON", body: b64([]byte(`{"inputs": [[1,2,3,4]`)), base64: true,
			want: response{400, withJSON(true), message("invalid JSON at line 1, column 22: unexpected end of JSON input")}},
		{name: "plain body that happens to be base64 is JSON-parsed", body: b64([]byte(valid)),
			want: response{400, withJSON(true), message("invalid JSON at line 1, column 1: invalid character 'e' looking for beginning of value")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newHandler(t)
			req := proxyRequest(http.MethodPost, PathPredict, tt.body, authorizerContext(t, decision))
			req.IsBase64Encoded = tt.base64
			got := handle(t, h, req)
			if diff := cmp.Diff(response{tt.want.Status, tt.want.Headers, mustJSON(t, mustMarshal(t, tt.want.Body))}, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}

// mimeLines breaks s into 76-character lines, as MIME encoders do.
func mimeLines(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76])
		b.WriteString("\r\n")
		s = s[76:]
	}
	b.WriteString(s)
	b.WriteString("\r\n")
	return b.String()
}

func TestBase64Len(t *testing.T) {
	for n := range 9 {
		src := bytes.Repeat([]byte{0xfb}, n)
		enc := base64.StdEncoding.EncodeToString(src)
		for _, text := range []string{enc, enc + "\r\n", mimeLines(enc), strings.Join(strings.Split(enc, ""), "\n")} {
			t.Run(fmt.Sprintf("%q", text), func(t *testing.T) {
				dec, err := base64.StdEncoding.DecodeString(text)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := base64Len(text), len(dec); got != want {
					t.Errorf("base64Len = %d, want %d (the decoded length)", got, want)
				}
			})
		}
	}
}

func TestHandleRoutes(t *testing.T) {
	valid := `{"inputs": [` + row1 + `]}`
	ok := predictionsBody(StandardModel, "authenticated", pred(0.672607, 1))
	notFound := message("no such route; routes: GET /model-info, POST /predict, POST /predict/batch, POST /premium/predict")
	tests := []struct {
		name string
		req  func(events.APIGatewayProxyRequest) events.APIGatewayProxyRequest
		want response
		log  map[string]any // expected route and reason in the log line
	}{
		{
			name: "by resource",
			req:  func(r events.APIGatewayProxyRequest) events.APIGatewayProxyRequest { return r },
			want: response{200, withJSON(true), ok},
			log:  map[string]any{"route": "POST /predict", "reason": ""},
		},
		{
			name: "proxy resource falls back to the path",
			req: func(r events.APIGatewayProxyRequest) events.APIGatewayProxyRequest {
				r.Resource = "/{proxy+}"
				r.PathParameters = map[string]string{"proxy": "predict"}
				return r
			},
			want: response{200, withJSON(true), ok},
			log:  map[string]any{"route": "POST /predict", "reason": ""},
		},
		{
			name: "trailing slash",
			req: func(r events.APIGatewayProxyRequest) events.APIGatewayProxyRequest {
				r.Resource, r.Path = "/{proxy+}", "/predict/"
				return r
			},
			want: response{200, withJSON(true), ok},
			log:  map[string]any{"route": "POST /predict", "reason": ""},
		},
		{
			name: "method from the request context",
			req: func(r events.APIGatewayProxyRequest) events.APIGatewayProxyRequest {
				r.HTTPMethod = ""
				return r
			},
			want: response{200, withJSON(true), ok},
			log:  map[string]any{"route": "POST /predict", "reason": ""},
		},
		{
			name: "unknown path",
			req: func(r events.APIGatewayProxyRequest) events.APIGatewayProxyRequest {
				r.Resource, r.Path = "/{proxy+}", "/predict/v2/"+testKey
				return r
			},
			want: response{404, withJSON(true), notFound},
			log:  map[string]any{"route": "unknown", "reason": "not_found"},
		},
		{
			name: "the root",
			req: func(r events.APIGatewayProxyRequest) events.APIGatewayProxyRequest {
				r.Resource, r.Path = "/", "/"
				return r
			},
			want: response{404, withJSON(true), notFound},
			log:  map[string]any{"route": "unknown", "reason": "not_found"},
		},
		{
			name: "GET on predict",
			req: func(r events.APIGatewayProxyRequest) events.APIGatewayProxyRequest {
				r.HTTPMethod = http.MethodGet
				return r
			},
			want: response{405, withJSON(true, "Allow", "POST"), message("method not allowed: /predict takes POST")},
			log:  map[string]any{"route": "POST /predict", "reason": "method_not_allowed"},
		},
		{
			name: "POST on model-info",
			req: func(r events.APIGatewayProxyRequest) events.APIGatewayProxyRequest {
				r.Resource, r.Path = PathModelInfo, PathModelInfo
				return r
			},
			want: response{405, withJSON(true, "Allow", "GET"), message("method not allowed: /model-info takes GET")},
			log:  map[string]any{"route": "GET /model-info", "reason": "method_not_allowed"},
		},
		{
			name: "methods are case-sensitive",
			req: func(r events.APIGatewayProxyRequest) events.APIGatewayProxyRequest {
				r.HTTPMethod = "post"
				return r
			},
			want: response{405, withJSON(true, "Allow", "POST"), message("method not allowed: /predict takes POST")},
			log:  map[string]any{"route": "POST /predict", "reason": "method_not_allowed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, logs := newHandler(t)
			req := tt.req(proxyRequest(http.MethodPost, PathPredict, valid, authorizerContext(t, decision)))
			got := handle(t, h, req)
			if diff := cmp.Diff(response{tt.want.Status, tt.want.Headers, mustJSON(t, mustMarshal(t, tt.want.Body))}, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			rec := lastLog(t, logs)
			gotLog := map[string]any{"route": rec["route"], "reason": rec["reason"]}
			if diff := cmp.Diff(tt.log, gotLog); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHandleModelInfo(t *testing.T) {
	h, logs := newHandler(t)
	req := proxyRequest(http.MethodGet, PathModelInfo, "", nil)
	req.Headers, req.MultiValueHeaders = nil, nil
	got := handle(t, h, req)
	if got.Status != http.StatusOK {
		t.Fatalf("status = %d, want 200", got.Status)
	}
	if diff := cmp.Diff(withJSON(false), got.Headers); diff != "" {
		t.Errorf("headers: no rate-limit headers without an authorizer (-want +got):\n%s", diff)
	}
	var info struct {
		Name          string   `json:"name"`
		Version       string   `json:"version"`
		InputFeatures int      `json:"input_features"`
		FeatureNames  []string `json:"feature_names"`
		MaxBodyBytes  int      `json:"max_body_bytes"`
		Example       struct {
			Inputs [][]float64 `json:"inputs"`
		} `json:"example_request"`
		Routes []routeInfo `json:"routes"`
		Models []modelDesc `json:"models"`
	}
	dec := json.NewDecoder(strings.NewReader(mustMarshal(t, got.Body)))
	if err := dec.Decode(&info); err != nil {
		t.Fatal(err)
	}
	if info.Name != StandardModel.Name || info.Version != StandardModel.Version {
		t.Errorf("name, version = %q, %q; want %q, %q", info.Name, info.Version, StandardModel.Name, StandardModel.Version)
	}
	if info.InputFeatures != NumFeatures || len(info.FeatureNames) != NumFeatures || info.MaxBodyBytes != MaxBodyBytes {
		t.Errorf("input_features %d, feature_names %v, max_body_bytes %d; want %d, %d names, %d",
			info.InputFeatures, info.FeatureNames, info.MaxBodyBytes, NumFeatures, NumFeatures, MaxBodyBytes)
	}
	wantRoutes := []routeInfo{
		{Method: "GET", Path: "/model-info", Tier: "any"},
		{Method: "POST", Path: "/predict", MaxRows: 100, Model: StandardModel.Name, Tier: "any", RateLimited: true},
		{Method: "POST", Path: "/predict/batch", MaxRows: 1000, Model: StandardModel.Name, Tier: "any", RateLimited: true},
		{Method: "POST", Path: "/premium/predict", MaxRows: 100, Model: PremiumModel.Name, Tier: "premium", RateLimited: true},
	}
	if diff := cmp.Diff(wantRoutes, info.Routes); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	wantModels := []modelDesc{
		{Name: StandardModel.Name, Version: StandardModel.Version, Weights: StandardModel.Weights[:], Bias: StandardModel.Bias},
		{Name: PremiumModel.Name, Version: PremiumModel.Version, Weights: PremiumModel.Weights[:], Bias: PremiumModel.Bias},
	}
	if diff := cmp.Diff(wantModels, info.Models); diff != "" {
		t.Errorf("models (-want +got):\n%s", diff)
	}

	// The advertised example is a valid request.
	resp := handle(t, h, proxyRequest(http.MethodPost, PathPredict, mustMarshal(t, info.Example), authorizerContext(t, decision)))
	if resp.Status != http.StatusOK {
		t.Errorf("example_request answered %d %v, want 200", resp.Status, resp.Body)
	}
	if strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("model-info has no authorizer by design; got a warning:\n%s", logs)
	}
}

func TestHandleEchoesRateLimitHeaders(t *testing.T) {
	// With an authorizer context, every answer carries its headers, whatever
	// the status; the values are passed through unchanged.
	tests := []struct {
		name       string
		method     string
		resource   string
		body       string
		wantStatus int
	}{
		{"200", "POST", PathPredict, `{"inputs": [` + row1 + `]}`, 200},
		{"400", "POST", PathPredict, `{"inputs": 1}`, 400},
		{"413", "POST", PathPredict, strings.Repeat(" ", MaxBodyBytes+1), 413},
		{"404", "POST", "/nope", "", 404},
		{"405", "GET", PathPredictBatch, "", 405},
		{"model-info behind an authorizer after all", "GET", PathModelInfo, "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newHandler(t)
			got := handle(t, h, proxyRequest(tt.method, tt.resource, tt.body, authorizerContext(t, decision)))
			if got.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d", got.Status, tt.wantStatus)
			}
			for k, v := range rateLimitHeaders {
				if got.Headers[k] != v {
					t.Errorf("header %s = %q, want %q", k, got.Headers[k], v)
				}
			}
		})
	}
}

func TestHandleForbidden(t *testing.T) {
	valid := `{"inputs": [` + row1 + `]}`
	forbidden := authctx.Decision{Tier: "authenticated", Caller: "key_7f3a9c2e", Source: "none", Cost: 1,
		Forbidden: true, RequiredTier: "premium", ForbiddenReason: "POST /premium/predict requires the premium tier"}
	noReason := forbidden
	noReason.ForbiddenReason = ""
	bare := noReason
	bare.RequiredTier = ""
	premium := decision
	premium.Tier = "premium"
	premium.Policies = []authctx.Policy{{Name: "premium", Limit: 50, Remaining: 49, Reset: 2, Window: 100}}
	tierOnly := withJSON(false, "X-RateLimit-Tier", "authenticated")
	tests := []struct {
		name       string
		resource   string
		body       string
		authorizer authctx.Decision
		noContext  bool
		want       response
		reason     string
	}{
		{name: "authorizer says forbidden", resource: PathPremiumPredict, body: valid, authorizer: forbidden,
			want: response{403, tierOnly, message("POST /premium/predict requires the premium tier")}, reason: "forbidden"},
		{name: "forbidden without a reason names the tier", resource: PathPremiumPredict, body: valid, authorizer: noReason,
			want: response{403, tierOnly, message("this route requires the premium tier")}, reason: "forbidden"},
		{name: "forbidden with nothing else", resource: PathPremiumPredict, body: valid, authorizer: bare,
			want: response{403, tierOnly, message("Forbidden")}, reason: "forbidden"},
		{name: "forbidden comes before body validation", resource: PathPremiumPredict, body: "{not json", authorizer: forbidden,
			want: response{403, tierOnly, message("POST /premium/predict requires the premium tier")}, reason: "forbidden"},
		{name: "forbidden on another route (PREMIUM_ROUTES decides)", resource: PathPredictBatch, body: valid, authorizer: forbidden,
			want: response{403, tierOnly, message("POST /premium/predict requires the premium tier")}, reason: "forbidden"},
		{name: "premium caller", resource: PathPremiumPredict, body: valid, authorizer: premium,
			want: response{200, withJSON(false,
				"X-RateLimit-Limit", "50", "X-RateLimit-Remaining", "49", "X-RateLimit-Reset", "2", "X-RateLimit-Tier", "premium",
				"RateLimit-Policy", `"premium";q=50;w=100`, "RateLimit", `"premium";r=49;t=2`),
				predictionsBody(PremiumModel, "premium", pred(0.731059, 1))}},
		{name: "premium route without authorizer context fails closed", resource: PathPremiumPredict, body: valid, noContext: true,
			want:   response{403, withJSON(false), message("this route requires the premium tier, and the request carries no authorizer verdict")},
			reason: "no_authorizer_context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, logs := newHandler(t)
			var ctx map[string]interface{}
			if !tt.noContext {
				ctx = authorizerContext(t, tt.authorizer)
			}
			got := handle(t, h, proxyRequest(http.MethodPost, tt.resource, tt.body, ctx))
			if diff := cmp.Diff(response{tt.want.Status, tt.want.Headers, mustJSON(t, mustMarshal(t, tt.want.Body))}, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			if rec := lastLog(t, logs); rec["reason"] != tt.reason {
				t.Errorf("logged reason %v, want %q", rec["reason"], tt.reason)
			}
		})
	}
}

func TestHandleMissingAuthorizerContext(t *testing.T) {
	tests := []struct {
		name       string
		authorizer map[string]interface{}
	}{
		{"no authorizer", nil},
		{"empty authorizer", map[string]interface{}{}},
		{"authorizer without a tier", map[string]interface{}{"principalId": "x", "limit": "50"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, logs := newHandler(t)
			got := handle(t, h, proxyRequest(http.MethodPost, PathPredict, `{"inputs": [`+row1+`]}`, tt.authorizer))
			want := response{200, withJSON(false), mustJSON(t, mustMarshal(t, predictionsBody(StandardModel, nil, pred(0.672607, 1))))}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			recs := logRecords(t, logs)
			if len(recs) != 2 {
				t.Fatalf("got %d log lines, want a warning and the request line:\n%s", len(recs), logs)
			}
			warn := recs[0]
			if warn["level"] != "WARN" || warn["route"] != "POST /predict" || warn["requestId"] != "req-1" {
				t.Errorf("warning = %v, want level WARN, route POST /predict, requestId req-1", warn)
			}
		})
	}
}

func TestHandleLogLine(t *testing.T) {
	h, logs := newHandler(t)
	d := decision
	d.Tier = "premium"
	handle(t, h, proxyRequest(http.MethodPost, PathPremiumPredict, `{"inputs": [`+row1+`,`+row2+`]}`, authorizerContext(t, d)))
	recs := logRecords(t, logs)
	if len(recs) != 1 {
		t.Fatalf("got %d log lines, want 1:\n%s", len(recs), logs)
	}
	got := recs[0]
	delete(got, "time")
	want := map[string]any{
		"level":     "INFO",
		"msg":       "request",
		"requestId": "req-1",
		"method":    "POST",
		"route":     "POST /premium/predict",
		"status":    float64(200),
		"tier":      "premium",
		"rows":      float64(2),
		"reason":    "",
		"latencyMs": 1.5, // the test clock advances 1.5 ms per reading
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line (-want +got):\n%s", diff)
	}
}

func TestAPIKeyNeverLogged(t *testing.T) {
	// The X-Api-Key header reaches this function. Whatever the route and
	// outcome, and wherever else the client puts the key (path, field name,
	// body, query string), it must not reach the logs.
	h, logs := newHandler(t)
	reqs := []events.APIGatewayProxyRequest{
		proxyRequest("POST", PathPredict, `{"inputs": [`+row1+`]}`, authorizerContext(t, decision)),
		proxyRequest("POST", PathPredict, `{"`+testKey+`": 1}`, authorizerContext(t, decision)),
		proxyRequest("POST", PathPredict, `{"inputs": [["`+testKey+`",2,3,4]]}`, authorizerContext(t, decision)),
		proxyRequest("POST", PathPredict, testKey, authorizerContext(t, decision)),
		proxyRequest("POST", PathPredict, `{"inputs": [`+row1+`]}`, nil),
		proxyRequest("POST", PathPremiumPredict, `{"inputs": [`+row1+`]}`, nil),
		proxyRequest("POST", PathPremiumPredict, `{"inputs": [`+row1+`]}`, authorizerContext(t, authctx.Decision{Tier: "anonymous", Forbidden: true})),
		proxyRequest("GET", PathModelInfo, "", nil),
		proxyRequest("GET", PathPredict, "", authorizerContext(t, decision)),
		proxyRequest("POST", "/"+testKey, "", authorizerContext(t, decision)),
		proxyRequest(testKey, PathPredict, "", authorizerContext(t, decision)),
	}
	q := proxyRequest("POST", PathPredict, strings.Repeat(" ", MaxBodyBytes+1), authorizerContext(t, decision))
	q.QueryStringParameters = map[string]string{"api_key": testKey}
	reqs = append(reqs, q)
	b := proxyRequest("POST", PathPredict, base64.StdEncoding.EncodeToString([]byte(testKey)), authorizerContext(t, decision))
	b.IsBase64Encoded = true
	reqs = append(reqs, b)
	for _, ev := range loadEvents(t) {
		reqs = append(reqs, ev.req)
	}
	for _, req := range reqs {
		if _, err := h.Handle(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{testKey}
	for _, ev := range loadEvents(t) {
		if k := ev.req.Headers["X-Api-Key"]; k != "" {
			keys = append(keys, k)
		}
	}
	if got := len(logRecords(t, logs)); got < len(reqs) {
		t.Fatalf("got %d log lines for %d requests: the test checks nothing", got, len(reqs))
	}
	for _, k := range keys {
		if strings.Contains(logs.String(), k) {
			t.Errorf("the API key %q appears in the logs:\n%s", k, logs)
		}
	}
}

// logRecords decodes the JSON log lines in buf.
func logRecords(t testing.TB, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var recs []map[string]any
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("log is not JSON lines: %v\n%s", err, buf)
		}
		recs = append(recs, m)
	}
	return recs
}

func lastLog(t testing.TB, buf *bytes.Buffer) map[string]any {
	t.Helper()
	recs := logRecords(t, buf)
	if len(recs) == 0 {
		t.Fatal("nothing logged")
	}
	return recs[len(recs)-1]
}

func TestNewZeroConfig(t *testing.T) {
	// The zero Config works: logs are discarded and the real clock is used.
	h := New(Config{})
	r, err := h.Handle(context.Background(), proxyRequest("POST", PathPredict, `{"inputs": [`+row1+`]}`, nil))
	if err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("Handle = %d, %v; want 200, nil", r.StatusCode, err)
	}
}

func BenchmarkHandle(b *testing.B) {
	row := "[0.5, -1.2, 2.0, 0.3]"
	benches := []struct {
		name     string
		method   string
		resource string
		body     string
	}{
		{"predict-100-rows", "POST", PathPredict, rowsBody(MaxRowsPredict, row)},
		{"batch-1000-rows", "POST", PathPredictBatch, rowsBody(MaxRowsBatch, row)},
		{"invalid-json", "POST", PathPredict, `{"inputs": [[1,2,3,4]`},
		{"model-info", "GET", PathModelInfo, ""},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			// A JSON logger to io.Discard still formats every line, as in Lambda.
			h := New(Config{Logger: slog.New(slog.NewJSONHandler(discard{}, nil))})
			req := proxyRequest(bb.method, bb.resource, bb.body, authorizerContext(b, decision))
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.Handle(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
