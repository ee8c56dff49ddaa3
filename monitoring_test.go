package bucketgate_test

// Monitoring checked from a real run: template.yaml's dashboard and alarms
// read only metrics the authorizer emits, and start-api's /_local/metrics
// counts what clients saw. Both from traffic through start-api with the
// real functions, never from the code's constants.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
	"github.com/bucketgate/bucketgate/internal/local/startapi/dashboard"
	"github.com/bucketgate/bucketgate/internal/testutil/apitest"
	"github.com/bucketgate/bucketgate/internal/testutil/fnbuild"
	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fnbuild.Cleanup()
	os.Exit(code)
}

// localStack is template.yaml served by start-api (App.Handler: the API
// and /_local/) with the real functions.
type localStack struct {
	t    *testing.T
	base string
	logs *syncbuf.Buffer
	keys map[string]string // tier -> key
}

// startLocal serves the template with env (--env-vars "Parameters") on top
// of a key file with one key per keyed tier.
func startLocal(t *testing.T, env map[string]string) *localStack {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	s := &localStack{t: t, logs: &syncbuf.Buffer{}, keys: map[string]string{}}
	for _, tier := range []string{"authenticated", "premium"} {
		key, rec, err := apikey.New("monitoring "+tier, tier, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Create(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		s.keys[tier] = key
	}
	vars := map[string]string{"API_KEYS_FILE": keyFile, "API_KEYS_TABLE": "", "LIMITER_TIMEOUT": "2s"}
	for k, v := range env {
		vars[k] = v
	}
	_, srv := apitest.Serve(t, startapi.Options{
		Template: "template.yaml", Prebuilt: fnbuild.Binaries(t, "."), Logs: s.logs,
		EnvVars: startapi.EnvVars{"Parameters": vars},
	})
	s.base = srv.URL
	return s
}

// seen is what a client saw of the decided requests (the routes behind
// the authorizer): counts by status, by route and tier, and the 429s by
// the policy their body names.
type seen struct {
	statuses map[int]int64
	routes   map[string]map[int]int64
	tiers    map[string]map[int]int64
	policies map[string]int64
}

func newSeen() *seen {
	return &seen{statuses: map[int]int64{}, routes: map[string]map[int]int64{}, tiers: map[string]map[int]int64{}, policies: map[string]int64{}}
}

func (c *seen) counts(byStatus map[int]int64) dashboard.Counts {
	return dashboard.Counts{
		Requests: byStatus[200] + byStatus[429] + byStatus[403] + byStatus[401],
		Allowed:  byStatus[200], Denied: byStatus[429], Forbidden: byStatus[403], Unauthorized: byStatus[401],
	}
}

// send sends method path with key (none: anonymous) and n rows, records
// the reply in c when the route is decided by the authorizer, and returns
// the status.
func (s *localStack) send(c *seen, method, path, key string, rows int) int {
	s.t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		row := make([]string, rows)
		for i := range row {
			row[i] = "[1,2,3,4]"
		}
		body = strings.NewReader(`{"inputs":[` + strings.Join(row, ",") + `]}`)
	}
	req, err := http.NewRequest(method, s.base+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if path == "/model-info" || c == nil {
		return resp.StatusCode
	}
	st := resp.StatusCode
	switch st {
	case 200, 401, 403, 429:
	default:
		s.t.Fatalf("%s %s: %d %s", method, path, st, raw)
	}
	route := method + " " + path
	tier := resp.Header.Get("X-RateLimit-Tier")
	if st == 401 {
		tier = "none" // the authorizer knows no tier for a bad key
	}
	for _, by := range []struct {
		m map[string]map[int]int64
		k string
	}{{c.routes, route}, {c.tiers, tier}} {
		if by.m[by.k] == nil {
			by.m[by.k] = map[int]int64{}
		}
		by.m[by.k][st]++
	}
	c.statuses[st]++
	if st == 429 {
		var b struct{ Policy string }
		if err := json.Unmarshal(raw, &b); err != nil || b.Policy == "" {
			s.t.Fatalf("429 body %s names no policy", raw)
		}
		c.policies[b.Policy]++
	}
	return st
}

// emfLines returns the EMF lines the authorizer wrote, decoded.
func (s *localStack) emfLines() []map[string]any {
	s.t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "[AuthorizerFunction] ")
		if !ok || !strings.Contains(line, `"_aws"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			s.t.Fatalf("EMF line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// metricsWhen polls /_local/metrics until it has counted n decisions: the
// functions' output reaches start-api a moment after their replies.
func (s *localStack) metricsWhen(n int64) dashboard.Snapshot {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/_local/metrics")
		if err != nil {
			s.t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var snap dashboard.Snapshot
		if resp.StatusCode != 200 || json.Unmarshal(raw, &snap) != nil {
			s.t.Fatalf("GET /_local/metrics: %d %s", resp.StatusCode, raw)
		}
		if snap.Totals.Requests >= n || time.Now().After(deadline) {
			return snap
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// emitted returns the (namespace, metric, dimension set) triples that EMF
// lines declare, after checking each line against the EMF specification's
// rule that the root holds every member a directive names: a number per
// metric, a string per dimension.
func emitted(t *testing.T, lines []map[string]any) map[DashboardMetric]bool {
	t.Helper()
	out := map[DashboardMetric]bool{}
	problems := map[string]bool{}
	for _, l := range lines {
		aws, _ := l["_aws"].(map[string]any)
		directives, _ := aws["CloudWatchMetrics"].([]any)
		if _, ok := aws["Timestamp"].(float64); !ok || len(directives) == 0 {
			t.Errorf("EMF line without a Timestamp or directives: %v", l)
		}
		for _, d := range directives {
			dir, _ := d.(map[string]any)
			ns, _ := dir["Namespace"].(string)
			dimSets, _ := dir["Dimensions"].([]any)
			metrics, _ := dir["Metrics"].([]any)
			for _, m := range metrics {
				name, _ := m.(map[string]any)["Name"].(string)
				if _, ok := l[name].(float64); !ok {
					problems[fmt.Sprintf("declares metric %s but has no number for it (outcome %s)", name, outcome(l))] = true
				}
				for _, ds := range dimSets {
					var dims []string
					for _, dn := range ds.([]any) {
						dim, _ := dn.(string)
						if _, ok := l[dim].(string); !ok {
							problems[fmt.Sprintf("declares dimension %s but has no string for it", dim)] = true
						}
						dims = append(dims, dim)
					}
					sort.Strings(dims)
					out[DashboardMetric{Namespace: ns, Name: name, Dimensions: strings.Join(dims, ",")}] = true
				}
			}
		}
	}
	for _, p := range sortedKeys(problems) {
		t.Errorf("an EMF line %s: CloudWatch requires the root to hold every target member", p)
	}
	return out
}

// outcome names an EMF line's decision, for messages.
func outcome(l map[string]any) string {
	for _, k := range []string{"ShadowDenied", "Fallback", "Allowed", "Denied", "Forbidden", "Unauthorized"} {
		if v, _ := l[k].(float64); v > 0 {
			return k
		}
	}
	return "unknown"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// closedPort is a loopback URL nothing listens on: an Upstash that is down.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestMonitoringFromARealRun drives traffic through start-api with the
// real authorizer — allowed, denied by each kind of policy, forbidden,
// unauthorized, shadow-denied, decided without Upstash — and checks the
// template's dashboard and alarms against the EMF lines it produced, and
// /_local/metrics against what the client saw.
func TestMonitoringFromARealRun(t *testing.T) {
	up := upstashtest.Start(t)
	upstash := map[string]string{"UPSTASH_REDIS_REST_URL": up.URL, "UPSTASH_REDIS_REST_TOKEN": up.Token}
	with := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for _, m := range []map[string]string{upstash, extra} {
			for k, v := range m {
				env[k] = v
			}
		}
		return env
	}

	// Every policy, each made to deny once: the anonymous tier (burst 5),
	// the authenticated quota (6 a day), a route limit for premium (2),
	// the global limit (16, shared by all).
	policies := startLocal(t, with(map[string]string{
		"TIER_LIMITS":  "anonymous=1/hour:burst=5,authenticated=1/hour:burst=8:quota=6/day,premium=1/hour:burst=20",
		"ROUTE_LIMITS": "POST /predict@premium=1/hour:burst=2",
		"GLOBAL_LIMIT": "1/hour:burst=16",
	}))
	pc := newSeen()
	unknown, _, _, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	policies.send(pc, "GET", "/model-info", "", 0) // not decided: no EMF line
	for range 6 {
		policies.send(pc, "POST", "/predict", "", 1) // 5 allowed, then the tier denies
	}
	for range 7 {
		policies.send(pc, "POST", "/predict", policies.keys["authenticated"], 1) // 6 allowed, then the quota
	}
	for range 3 {
		policies.send(pc, "POST", "/predict", policies.keys["premium"], 1) // 2 allowed, then the route limit
	}
	policies.send(pc, "POST", "/predict/batch", policies.keys["premium"], 2) // 13 of 16 spent: the global limit
	policies.send(pc, "POST", "/premium/predict", policies.keys["authenticated"], 1)
	policies.send(pc, "POST", "/premium/predict", policies.keys["premium"], 1)
	policies.send(pc, "POST", "/predict", unknown, 1)
	policies.send(pc, "POST", "/predict", "not-a-key", 1)
	wantPolicies := map[string]int64{"anonymous": 1, "authenticated-quota": 1, "route:POST /predict": 1, "global": 1}
	if diff := cmp.Diff(wantPolicies, pc.policies); diff != "" {
		t.Fatalf("the traffic did not meet every policy (-want +got):\n%s", diff)
	}

	// Every burst is at least the batch route's cost (5), or the
	// authorizer refuses to start.
	// (Its own Upstash: 127.0.0.1's anonymous bucket is drained above.)
	up2 := upstashtest.Start(t)
	shadow := startLocal(t, map[string]string{"UPSTASH_REDIS_REST_URL": up2.URL, "UPSTASH_REDIS_REST_TOKEN": up2.Token,
		"LIMITER_SHADOW": "true", "TIER_LIMITS": "anonymous=1/hour:burst=5,authenticated=1/hour:burst=8,premium=1/hour:burst=20"})
	sc := newSeen()
	for range 7 {
		shadow.send(sc, "POST", "/predict", "", 1) // 5 allowed, 2 shadow-denied (200 too)
	}

	down := startLocal(t, map[string]string{
		"UPSTASH_REDIS_REST_URL": closedPort(t), "UPSTASH_REDIS_REST_TOKEN": "token", "LIMITER_TIMEOUT": "100ms",
		"TIER_LIMITS": "anonymous=1/hour:burst=5,authenticated=1/hour:burst=8,premium=1/hour:burst=20",
	})
	dc := newSeen()
	for range 6 {
		down.send(dc, "POST", "/predict", "", 1) // per-container memory buckets
	}
	if dc.statuses[200] == 0 {
		t.Fatalf("no request passed while Upstash was down: %v", dc.statuses)
	}

	runs := []struct {
		name  string
		stack *localStack
		seen  *seen
	}{{"policies", policies, pc}, {"shadow", shadow, sc}, {"upstash down", down, dc}}
	snaps := map[string]dashboard.Snapshot{}
	var lines []map[string]any
	for _, r := range runs {
		snaps[r.name] = r.stack.metricsWhen(r.seen.counts(r.seen.statuses).Requests)
		lines = append(lines, r.stack.emfLines()...)
	}

	t.Run("template metrics are emitted", func(t *testing.T) {
		got := emitted(t, lines)
		for _, m := range TemplateMetrics(t, nil) {
			switch {
			case m.Namespace == "Bucketgate":
				if !got[m] {
					t.Errorf("the dashboard or an alarm reads %s %s by [%s], which no EMF line of the run declares", m.Namespace, m.Name, m.Dimensions)
				}
			case m.Namespace == "AWS/ApiGateway" && m.Dimensions == "ApiName,Stage":
				// API Gateway's own metric, by the API and stage the template names.
			default:
				t.Errorf("the dashboard or an alarm reads %+v: neither the authorizer's nor API Gateway's by ApiName and Stage", m)
			}
		}
		// And the run did meet every outcome the dashboard graphs.
		var outcomes []string
		for _, l := range lines {
			outcomes = append(outcomes, outcome(l))
		}
		for _, o := range []string{"Allowed", "Denied", "Forbidden", "Unauthorized", "Fallback", "ShadowDenied"} {
			if !strings.Contains(strings.Join(outcomes, " "), o) {
				t.Errorf("no EMF line of the run counts %s", o)
			}
		}
	})

	t.Run("local metrics agree with the client", func(t *testing.T) {
		for _, r := range runs {
			snap := snaps[r.name]
			want := r.seen.counts(r.seen.statuses)
			want.ShadowDenied = snap.Totals.ShadowDenied // checked below
			if r.name == "upstash down" {
				want.Fallback = want.Requests
			}
			if diff := cmp.Diff(want, snap.Totals); diff != "" {
				t.Errorf("%s: totals (-client saw +/_local/metrics):\n%s", r.name, diff)
			}
			for _, by := range []struct {
				what   string
				client map[string]map[int]int64
				local  map[string]dashboard.Counts
			}{{"route", r.seen.routes, snap.Routes}, {"tier", r.seen.tiers, snap.Tiers}} {
				gotBy := map[string]dashboard.Counts{}
				for k, c := range by.local {
					c.Fallback, c.ShadowDenied = 0, 0
					gotBy[k] = c
				}
				wantBy := map[string]dashboard.Counts{}
				for k, st := range by.client {
					wantBy[k] = r.seen.counts(st)
				}
				if diff := cmp.Diff(wantBy, gotBy); diff != "" {
					t.Errorf("%s: counts per %s (-client saw +/_local/metrics):\n%s", r.name, by.what, diff)
				}
			}
			if diff := cmp.Diff(r.seen.policies, orEmpty(snap.Policies)); diff != "" {
				t.Errorf("%s: 429s per policy (-client saw +/_local/metrics):\n%s", r.name, diff)
			}
		}
		if got := snaps["shadow"].Totals.ShadowDenied; got != 2 {
			t.Errorf("shadow run: %d shadow denials counted, want 2", got)
		}
	})
}

func orEmpty(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}
