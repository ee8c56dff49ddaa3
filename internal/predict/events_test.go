package predict

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"
)

// eventsDir holds the sample API Gateway events (cmd/local invoke uses them too).
const eventsDir = "../../events"

type event struct {
	file string
	req  events.APIGatewayProxyRequest
}

// loadEvents decodes every events/predict-*.json and events/model-info*.json
// into the aws-lambda-go type, rejecting fields the type does not know (a
// misspelt "httpmethod" would otherwise decode silently as empty).
func loadEvents(t testing.TB) []event {
	t.Helper()
	var files []string
	for _, pattern := range []string{"predict-*.json", "model-info*.json"} {
		m, err := filepath.Glob(filepath.Join(eventsDir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no events in %s", eventsDir)
	}
	evs := make([]event, 0, len(files))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		var req events.APIGatewayProxyRequest
		if err := dec.Decode(&req); err != nil {
			t.Fatalf("%s: not an API Gateway REST proxy event: %v", f, err)
		}
		evs = append(evs, event{file: filepath.Base(f), req: req})
	}
	return evs
}

func TestEventFixtures(t *testing.T) {
	authenticated := func(remaining, reset string) map[string]string {
		return withJSON(false,
			"X-RateLimit-Limit", "50", "X-RateLimit-Remaining", remaining, "X-RateLimit-Reset", reset,
			"X-RateLimit-Tier", "authenticated",
			"RateLimit-Policy", `"authenticated";q=50;w=100`, "RateLimit", `"authenticated";r=`+remaining+`;t=`+reset)
	}
	// Scores computed independently; see TestPredict.
	var (
		std1 = pred(0.672607, 1) // [0.5, -1.2, 2.0, 0.3]
		std2 = pred(0.375194, 0) // [-1.0, 0.4, -0.5, -0.8]
		std3 = pred(0.139434, 0) // [1.5, 0.2, 0.0, -0.3]
	)
	var batch []map[string]any
	for range 50 {
		batch = append(batch, std1, std2, std3)
	}
	tests := map[string]struct {
		status  int
		headers map[string]string
		body    any
		subset  bool // compare only the top-level fields listed in body
	}{
		"model-info.json": {200, withJSON(false),
			map[string]any{"name": "bucketgate-churn", "input_features": float64(4)}, true},
		"predict-valid.json": {200, authenticated("49", "2"),
			predictionsBody(StandardModel, "authenticated", std1, std2, std3), false},
		"predict-anonymous.json": {200,
			withJSON(false, "X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "9", "X-RateLimit-Reset", "10",
				"X-RateLimit-Tier", "anonymous", "RateLimit-Policy", `"anonymous";q=10;w=100`, "RateLimit", `"anonymous";r=9;t=10`),
			predictionsBody(StandardModel, "anonymous", std1), false},
		"predict-batch.json": {200, authenticated("44", "12"),
			predictionsBody(StandardModel, "authenticated", batch...), false},
		"predict-premium-allowed.json": {200,
			withJSON(false, "X-RateLimit-Limit", "200", "X-RateLimit-Remaining", "199", "X-RateLimit-Reset", "1",
				"X-RateLimit-Tier", "premium", "RateLimit-Policy", `"premium";q=200;w=100`, "RateLimit", `"premium";r=199;t=1`),
			predictionsBody(PremiumModel, "premium", pred(0.731059, 1), pred(0.864713, 1)), false},
		"predict-premium-forbidden.json": {403, withJSON(false, "X-RateLimit-Tier", "authenticated"),
			message("this route requires the premium tier"), false},
		"predict-invalid-json.json": {400, authenticated("49", "2"),
			message("invalid JSON at line 4, column 16: invalid character '-' after array element"), false},
		"predict-wrong-shape.json": {400, authenticated("49", "2"),
			message("row 0 (inputs[0]) must be an array of 4 numbers, got a number"), false},
		"predict-non-number.json": {400, authenticated("49", "2"),
			message("row 1, column 1 (inputs[1][1]): want a number, got a string"), false},
		"predict-wrong-feature-count.json": {400, authenticated("49", "2"),
			message("row 1 (inputs[1]) has 3 numbers, want 4 (input_features)"), false},
		"predict-empty-inputs.json": {400, authenticated("49", "2"),
			message(`"inputs" is empty: send at least one row of 4 numbers`), false},
		"predict-unknown-field.json": {400, authenticated("49", "2"),
			message(`unknown field "input": the only field is "inputs"`), false},
		"predict-number-out-of-range.json": {400, authenticated("49", "2"),
			message("row 0, column 3 (inputs[0][3]): number 1e400 is out of range (numbers must be finite float64 values)"), false},
		"predict-too-many-rows.json": {400, authenticated("49", "2"),
			message("too many rows: got 101, at most 100 per request on POST /predict (POST /predict/batch takes up to 1000)"), false},
		"predict-base64-body.json": {200, authenticated("49", "2"),
			predictionsBody(StandardModel, "authenticated", std2, std3), false},
		"predict-missing-authorizer-context.json": {200, withJSON(false),
			predictionsBody(StandardModel, nil, std1), false},
	}

	seen := map[string]bool{}
	for _, ev := range loadEvents(t) {
		seen[ev.file] = true
		t.Run(ev.file, func(t *testing.T) {
			tt, ok := tests[ev.file]
			if !ok {
				t.Fatalf("no expectation for %s: add one to this table", ev.file)
			}
			h, _ := newHandler(t)
			got := handle(t, h, ev.req)
			want := response{Status: tt.status, Headers: tt.headers, Body: mustJSON(t, mustMarshal(t, tt.body))}
			if tt.subset {
				gotBody, _ := got.Body.(map[string]any)
				sub := map[string]any{}
				for k := range tt.body.(map[string]any) {
					sub[k] = gotBody[k]
				}
				got.Body = sub
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
	for f := range tests {
		if !seen[f] {
			t.Errorf("expectation for %s, but no such file in %s", f, eventsDir)
		}
	}
}

// TestEventFixturesAreRealistic checks the fields API Gateway always sets,
// so that the fixtures stay usable with cmd/local invoke and sam.
func TestEventFixturesAreRealistic(t *testing.T) {
	for _, ev := range loadEvents(t) {
		t.Run(ev.file, func(t *testing.T) {
			r := ev.req
			rc := r.RequestContext
			switch {
			case r.Resource == "" || r.Path == "" || r.HTTPMethod == "":
				t.Error("resource, path and httpMethod must be set")
			case rc.ResourcePath != r.Resource || rc.HTTPMethod != r.HTTPMethod:
				t.Error("requestContext.resourcePath/httpMethod must match resource/httpMethod")
			case rc.RequestID == "" || rc.APIID == "" || rc.Stage == "" || rc.AccountID == "" || rc.Identity.SourceIP == "":
				t.Error("requestContext needs requestId, apiId, stage, accountId and identity.sourceIp")
			case len(r.Headers) != len(r.MultiValueHeaders):
				t.Error("headers and multiValueHeaders must list the same headers")
			}
			if a := rc.Authorizer; a != nil {
				if _, ok := a["principalId"]; !ok {
					t.Error("an authorizer context always has principalId")
				}
			}
		})
	}
}
