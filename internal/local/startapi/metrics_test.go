package startapi_test

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/local/startapi"
	"github.com/bucketgate/bucketgate/internal/local/startapi/dashboard"
)

// serveApp is startAPI served through App.Handler: the API with /_local/
// in front, as cmd/local serves it. One process per function, so the test
// authorizer's in-memory buckets behave as one.
func serveApp(t *testing.T) *httptest.Server {
	t.Helper()
	_, srv, _ := startAPI(t, startapi.Options{MaxProcs: 1})
	return srv
}

// traffic is a request to the guarded route with the test authorizer's
// headers (see testdata/fns/auth), sent n times.
type traffic struct {
	method string
	header map[string]string
	n      int
}

// send sends every request in order and counts the responses by status.
func send(t *testing.T, srv *httptest.Server, reqs []traffic) map[int]int64 {
	t.Helper()
	statuses := map[int]int64{}
	for _, r := range reqs {
		for range r.n {
			status, _, body := get(t, srv, r.method, "/guarded/1", r.header)
			if status != 200 && status != 401 && status != 403 && status != 429 {
				t.Fatalf("%s /guarded/1 %v: %d %s", r.method, r.header, status, body)
			}
			statuses[status]++
		}
	}
	return statuses
}

// metricsWhen polls /_local/metrics until ready accepts the snapshot. The
// functions' output reaches start-api through pipes, a moment after their
// responses: this waits for it, and fails after a generous deadline.
func metricsWhen(t *testing.T, srv *httptest.Server, ready func(dashboard.Snapshot) bool) dashboard.Snapshot {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := srv.Client().Get(srv.URL + "/_local/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var s dashboard.Snapshot
		if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil {
			t.Fatalf("GET /_local/metrics: %d %s", resp.StatusCode, body)
		}
		if ready(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never caught up: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsAgreeWithTheClient sends a known mix (allowed, 429 from a
// drained bucket and from a Deny, 401, 403, a fallback decision) and
// checks that /_local/metrics counts what the client saw.
func TestMetricsAgreeWithTheClient(t *testing.T) {
	srv := serveApp(t)
	limited := map[string]string{"X-Test-Caller": "key_limited", "X-Test-Tier": "authenticated", "X-Test-Limit": "3"}
	mix := []traffic{
		{method: "POST", header: limited, n: 5},
		{method: "GET", header: map[string]string{"X-Test-Auth": "deny"}, n: 1},
		{method: "GET", header: map[string]string{"X-Test-Auth": "unauthorized"}, n: 2},
		{method: "POST", header: map[string]string{"X-Test-Auth": "forbidden", "X-Test-Caller": "key_basic"}, n: 2},
		{method: "GET", header: map[string]string{"X-Test-Fallback": "1"}, n: 1},
	}
	statuses := send(t, srv, mix)
	if statuses[429] < 2 {
		t.Fatalf("statuses %v: the limited caller was never limited", statuses)
	}
	var sent int64
	for _, n := range statuses {
		sent += n
	}
	s := metricsWhen(t, srv, func(s dashboard.Snapshot) bool { return s.Totals.Requests >= sent })

	want := dashboard.Counts{
		Requests: sent, Allowed: statuses[200], Denied: statuses[429], Forbidden: statuses[403], Unauthorized: statuses[401],
		Fallback: 1,
	}
	if diff := cmp.Diff(want, s.Totals); diff != "" {
		t.Errorf("totals (-client saw +metrics):\n%s", diff)
	}
	wantPolicies := map[string]int64{"authenticated": statuses[429] - 1, "test-deny": 1}
	if diff := cmp.Diff(wantPolicies, s.Policies); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	wantRoutes := map[string]int64{"POST /guarded/{id}": 7, "GET /guarded/{id}": 4}
	gotRoutes := map[string]int64{}
	for r, c := range s.Routes {
		gotRoutes[r] = c.Requests
	}
	if diff := cmp.Diff(wantRoutes, gotRoutes); diff != "" {
		t.Errorf("requests per route (-want +got):\n%s", diff)
	}
	var limitedCaller *dashboard.Caller
	for i, c := range s.Callers {
		if c.Caller == "key_limited" {
			limitedCaller = &s.Callers[i]
		}
	}
	if limitedCaller == nil || limitedCaller.Limit != 3 || limitedCaller.Remaining != 0 || limitedCaller.Requests != 5 || limitedCaller.Denied != statuses[429]-1 {
		t.Errorf("key_limited = %+v, want limit 3, none remaining, 5 requests, %d denied", limitedCaller, statuses[429]-1)
	}
}
