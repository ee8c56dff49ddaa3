package dashboard

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// line is an authorizer EMF line with the given fields (the _aws header
// and Requests: 1 added).
func line(fields string) string {
	head := `{"_aws":{"Timestamp":1733212800123,"CloudWatchMetrics":[{"Namespace":"Bucketgate","Dimensions":[["Tier"],["Route"]],"Metrics":[{"Name":"Requests","Unit":"Count"}]}]},"Requests":1`
	if fields == "" {
		return head + "}"
	}
	return head + "," + fields + "}"
}

const (
	allowedA   = `"Tier":"anonymous","Route":"POST /predict","Source":"upstash","Allowed":1,"DecisionLatency":0.4,"UpstashLatency":0.3,"Caller":"ip:203.0.113.7","Limit":10,"Remaining":9,"ResetMs":6000`
	deniedA    = `"Tier":"anonymous","Route":"POST /predict","Policy":"anonymous","Source":"cache","Denied":1,"DecisionLatency":0.1,"Caller":"ip:203.0.113.7","Limit":10,"Remaining":0,"ResetMs":60000`
	quotaKey   = `"Tier":"authenticated","Route":"POST /predict/batch","Policy":"authenticated-quota","Source":"upstash","Denied":1,"DecisionLatency":0.5,"UpstashLatency":0.4,"Caller":"key_abc","Limit":50,"Remaining":2,"ResetMs":3600000`
	forbidden  = `"Tier":"authenticated","Route":"POST /premium/predict","Source":"none","Forbidden":1,"DecisionLatency":0.2,"Caller":"key_abc"`
	unauth     = `"Tier":"none","Route":"POST /predict","Source":"none","Unauthorized":1,"DecisionLatency":0.3`
	fallback   = `"Tier":"premium","Route":"POST /predict","Source":"memory","Allowed":1,"Fallback":1,"DecisionLatency":150.2,"Caller":"key_prem","Limit":200,"Remaining":199,"ResetMs":500`
	shadowOnly = `"Tier":"anonymous","Route":"POST /predict","Policy":"global","Source":"upstash","Allowed":1,"ShadowDenied":1,"DecisionLatency":0.4,"UpstashLatency":0.3,"Caller":"ip:198.51.100.1","Limit":5,"Remaining":0,"ResetMs":1000`
)

func TestObserveIgnoresOtherLines(t *testing.T) {
	tests := []struct {
		name, line string
	}{
		{name: "plain log line", line: `level=INFO msg=decision tier=anonymous`},
		{name: "JSON log record", line: `{"level":"INFO","msg":"decision","_awsish":1}`},
		{name: "empty", line: ``},
		{name: "other namespace", line: `{"_aws":{"CloudWatchMetrics":[{"Namespace":"Other"}]},"Allowed":1}`},
		{name: "no directives", line: `{"_aws":{"Timestamp":1},"Allowed":1}`},
		{name: "malformed", line: `{"_aws":{"CloudWatchMetrics":[{"Namespace":"Bucketgate"}]},"Allowed":}`},
		{name: "not an object", line: `["_aws"]`},
		{name: "START line", line: `START RequestId: 1 Version: $LATEST`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New(t0)
			if m.Observe(t0, []byte(tc.line)) {
				t.Errorf("Observe(%q) = true, want false", tc.line)
			}
			if got := m.Snapshot(t0).Totals; got != (Counts{}) {
				t.Errorf("totals = %+v after an ignored line", got)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	m := New(t0)
	lines := []struct {
		at     time.Duration
		fields string
	}{
		{0, allowedA},
		{100 * time.Millisecond, deniedA},
		{1 * time.Second, quotaKey},
		{1 * time.Second, forbidden},
		{2 * time.Second, unauth},
		{2 * time.Second, fallback},
		{3 * time.Second, shadowOnly},
	}
	for _, l := range lines {
		if !m.Observe(t0.Add(l.at), []byte(line(l.fields))) {
			t.Fatalf("Observe(%s) = false", l.fields)
		}
	}
	now := t0.Add(4 * time.Second)
	got := m.Snapshot(now)

	c := func(req, al, de, fo, un, fb, sh int64) Counts {
		return Counts{Requests: req, Allowed: al, Denied: de, Forbidden: fo, Unauthorized: un, Fallback: fb, ShadowDenied: sh}
	}
	want := Snapshot{
		Totals: c(7, 3, 2, 1, 1, 1, 1),
		Routes: map[string]Counts{
			"POST /predict":         c(5, 3, 1, 0, 1, 1, 1),
			"POST /predict/batch":   c(1, 0, 1, 0, 0, 0, 0),
			"POST /premium/predict": c(1, 0, 0, 1, 0, 0, 0),
		},
		Tiers: map[string]Counts{
			"anonymous":     c(3, 2, 1, 0, 0, 0, 1),
			"authenticated": c(2, 0, 1, 1, 0, 0, 0),
			"none":          c(1, 0, 0, 0, 1, 0, 0),
			"premium":       c(1, 1, 0, 0, 0, 1, 0),
		},
		// Only denials count: the shadow denial by "global" let the request pass.
		Policies: map[string]int64{"anonymous": 1, "authenticated-quota": 1},
		Sources:  map[string]int64{"upstash": 3, "cache": 1, "none": 2, "memory": 1},
		Latency: Latency{
			P50: 0.4, P99: 150.2, Samples: 7,
			UpstashP50: 0.3, UpstashP99: 0.4, UpstashSamples: 3,
		},
		Since: t0.UnixMilli(),
		Now:   now.UnixMilli(),
	}
	// Busiest recently first: ip:203.0.113.7 and key_abc made two requests
	// each (the more recent pair decays less), the others one.
	want.Callers = []Caller{
		{Caller: "key_abc", Tier: "authenticated", Remaining: 2, Limit: 50, ResetMs: 3600000, At: t0.Add(time.Second).UnixMilli(), Requests: 2, Denied: 1},
		{Caller: "ip:203.0.113.7", Tier: "anonymous", Remaining: 0, Limit: 10, ResetMs: 60000, At: t0.Add(100 * time.Millisecond).UnixMilli(), Requests: 2, Denied: 1},
		{Caller: "ip:198.51.100.1", Tier: "anonymous", Remaining: 0, Limit: 5, ResetMs: 1000, At: t0.Add(3 * time.Second).UnixMilli(), Requests: 1},
		{Caller: "key_prem", Tier: "premium", Remaining: 199, Limit: 200, ResetMs: 500, At: t0.Add(2 * time.Second).UnixMilli(), Requests: 1},
	}
	series := got.Series
	got.Series = nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}

	// The series: 300 whole seconds before now, oldest first.
	if len(series) != seriesSeconds || series[0].T != now.Add(-300*time.Second).UnixMilli() || series[len(series)-1].T != now.Add(-time.Second).UnixMilli() {
		t.Fatalf("series spans %d seconds from %d to %d", len(series), series[0].T, series[len(series)-1].T)
	}
	wantLast := []Second{
		{T: t0.UnixMilli(), Allowed: 1, Denied: 1},
		{T: t0.Add(time.Second).UnixMilli(), Denied: 1, Forbidden: 1},
		{T: t0.Add(2 * time.Second).UnixMilli(), Allowed: 1, Unauthorized: 1, Fallback: 1},
		{T: t0.Add(3 * time.Second).UnixMilli(), Allowed: 1},
	}
	if diff := cmp.Diff(wantLast, series[len(series)-4:]); diff != "" {
		t.Errorf("last seconds of the series (-want +got):\n%s", diff)
	}

	// Five minutes later the series has moved on; the totals have not.
	later := m.Snapshot(now.Add(10 * time.Minute))
	for _, s := range later.Series {
		if s.Allowed+s.Denied+s.Forbidden+s.Unauthorized+s.Fallback != 0 {
			t.Fatalf("second %d still holds %+v ten minutes later", s.T, s)
		}
	}
	if later.Totals != want.Totals {
		t.Errorf("totals changed with time: %+v", later.Totals)
	}
}

func TestBucketsOfForbiddenDecisionsAreKept(t *testing.T) {
	m := New(t0)
	m.Observe(t0, []byte(line(quotaKey)))
	m.Observe(t0.Add(time.Second), []byte(line(forbidden))) // no Limit/Remaining/ResetMs
	got := m.Snapshot(t0.Add(time.Second)).Callers
	want := []Caller{{Caller: "key_abc", Tier: "authenticated", Remaining: 2, Limit: 50, ResetMs: 3600000, At: t0.Add(time.Second).UnixMilli(), Requests: 2, Denied: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("callers (-want +got):\n%s", diff)
	}
}

func TestCallersAreSafeAndBounded(t *testing.T) {
	t.Run("only key IDs and IP callers are shown", func(t *testing.T) {
		m := New(t0)
		for _, caller := range []string{"bg_live_0123456789abcdefghijklmnopqrstuv", "someone", "key_" + strings.Repeat("x", 100), "key_ok", "ip:192.0.2.1"} {
			m.Observe(t0, []byte(line(`"Tier":"t","Allowed":1,"Caller":`+fmt.Sprintf("%q", caller))))
		}
		var got []string
		for _, c := range m.Snapshot(t0).Callers {
			got = append(got, c.Caller)
		}
		if diff := cmp.Diff([]string{"ip:192.0.2.1", "key_ok"}, got); diff != "" {
			t.Errorf("callers (-want +got):\n%s", diff)
		}
	})
	t.Run("the most recently active are kept", func(t *testing.T) {
		m := New(t0)
		at := t0
		for i := range maxCallers + 500 {
			at = t0.Add(time.Duration(i) * time.Millisecond)
			m.Observe(at, []byte(line(fmt.Sprintf(`"Tier":"t","Allowed":1,"Caller":"ip:10.0.%d.%d"`, i/256, i%256))))
		}
		if n := len(m.callers); n > maxCallers {
			t.Errorf("%d callers tracked, want at most %d", n, maxCallers)
		}
		s := m.Snapshot(at)
		if len(s.Callers) != shownCallers {
			t.Fatalf("%d callers shown, want %d", len(s.Callers), shownCallers)
		}
		last := maxCallers + 499
		if want := fmt.Sprintf("ip:10.0.%d.%d", last/256, last%256); s.Callers[0].Caller != want {
			t.Errorf("busiest caller = %s, want the latest, %s", s.Callers[0].Caller, want)
		}
	})
}

func TestNamesAreBounded(t *testing.T) {
	m := New(t0)
	for i := range maxNames + 20 {
		m.Observe(t0, []byte(line(fmt.Sprintf(`"Tier":"tier%d","Route":"GET /r%d","Policy":"p%d","Source":"s%d","Denied":1`, i, i, i, i))))
	}
	s := m.Snapshot(t0)
	for name, n := range map[string]int{"routes": len(s.Routes), "tiers": len(s.Tiers), "policies": len(s.Policies), "sources": len(s.Sources)} {
		if n != maxNames {
			t.Errorf("%d %s, want %d (with %q)", n, name, maxNames, other)
		}
	}
	if got, want := s.Routes[other].Requests, int64(21); got != want {
		t.Errorf("routes[other].requests = %d, want %d", got, want)
	}
	if got, want := s.Policies[other], int64(21); got != want {
		t.Errorf("policies[other] = %d, want %d", got, want)
	}
	if s.Totals.Requests != maxNames+20 {
		t.Errorf("totals.requests = %d", s.Totals.Requests)
	}
}

func TestLatencyKeepsTheLatestSamples(t *testing.T) {
	m := New(t0)
	for i := range latencySamples {
		m.Observe(t0, []byte(line(fmt.Sprintf(`"Allowed":1,"DecisionLatency":%d`, 1000+i)))) // slow, then pushed out
	}
	for i := range latencySamples {
		m.Observe(t0, []byte(line(fmt.Sprintf(`"Allowed":1,"DecisionLatency":%g`, float64(i%100)/100))))
	}
	l := m.Snapshot(t0).Latency
	if l.Samples != latencySamples || l.P50 >= 1 || l.P99 >= 1 || l.UpstashSamples != 0 {
		t.Errorf("latency = %+v, want %d samples, all below 1 ms, no Upstash samples", l, latencySamples)
	}
}

func TestHandler(t *testing.T) {
	m := New(t0)
	m.Observe(t0, []byte(line(deniedA)))
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantType           string
		check              func(t *testing.T, body []byte)
	}{
		{name: "metrics", method: "GET", path: "/_local/metrics", wantStatus: 200, wantType: "application/json", check: func(t *testing.T, body []byte) {
			var s Snapshot
			if err := json.Unmarshal(body, &s); err != nil {
				t.Fatal(err)
			}
			if s.Totals.Denied != 1 || s.Policies["anonymous"] != 1 || len(s.Series) != seriesSeconds {
				t.Errorf("snapshot = %+v", s)
			}
		}},
		{name: "page", method: "GET", path: "/_local/", wantStatus: 200, wantType: "text/html; charset=utf-8", check: func(t *testing.T, body []byte) {
			// Self-contained: nothing is loaded from elsewhere (the SVG
			// namespace is a name, not a download).
			page := strings.ReplaceAll(string(body), "http://www.w3.org/2000/svg", "")
			for _, external := range []string{"http://", "https://", " src=", "@import", "url("} {
				if strings.Contains(page, external) {
					t.Errorf("the page refers to something outside it: %q", external)
				}
			}
			if !strings.Contains(string(body), `fetch("metrics"`) {
				t.Error("the page does not poll metrics")
			}
		}},
		{name: "redirect to the page", method: "GET", path: "/_local", wantStatus: 301},
		{name: "unknown", method: "GET", path: "/_local/nope", wantStatus: 404, wantType: "application/json"},
		{name: "other methods", method: "POST", path: "/_local/metrics", wantStatus: 405, wantType: "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantType != "" && resp.Header.Get("Content-Type") != tc.wantType {
				t.Errorf("Content-Type = %q, want %q", resp.Header.Get("Content-Type"), tc.wantType)
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}
}

// FuzzObserve feeds arbitrary lines: Observe never panics, counts only
// lines in the namespace, keeps its bounds, and the snapshot stays
// encodable.
func FuzzObserve(f *testing.F) {
	for _, s := range []string{allowedA, deniedA, quotaKey, forbidden, unauth, fallback, shadowOnly, `"Requests":-1,"Allowed":1e300,"Limit":-5,"Remaining":1e20`, `"DecisionLatency":"x"`} {
		f.Add(line(s))
	}
	f.Add(`{"_aws":{"CloudWatchMetrics":[{"Namespace":"Bucketgate"}]}}`)
	f.Add(`not json`)
	f.Fuzz(func(t *testing.T, l string) {
		m := New(t0)
		counted := m.Observe(t0, []byte(l))
		s := m.Snapshot(t0)
		if !counted && s.Totals != (Counts{}) {
			t.Fatalf("an ignored line changed the totals: %+v", s.Totals)
		}
		if s.Totals.Requests > 1e6 || s.Totals.Allowed > 1e6 || len(s.Callers) > 1 {
			t.Fatalf("one line gave %+v and %d callers", s.Totals, len(s.Callers))
		}
		for _, c := range s.Callers {
			if !validCaller(c.Caller) || c.Remaining > c.Limit || c.Remaining < 0 {
				t.Fatalf("caller %+v", c)
			}
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("snapshot does not encode: %v", err)
		}
	})
}
