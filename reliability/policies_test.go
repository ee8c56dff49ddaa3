package reliability_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// Several policies on one shared set of buckets: one caller's tier bucket,
// its quota, a route limit and the global limit, drawn from concurrently by
// several containers (goroutines) or several authorizer processes (behind
// start-api). Whatever the interleaving, at every instant the caller has
// been allowed no more than the tightest policy allows, burst + rate ×
// elapsed, and never more than its quota.

// The policies. The global bucket binds first (small burst), the route's
// after about 0.8 s (smaller rate), the quota after about 2 s; the tier's
// never does. A request costs 1.
var sharedPolicies = []tokenPolicy{
	{name: "authenticated", rate: 200, burst: 50},
	{name: "route:POST /predict", rate: 20, burst: 60},
	{name: "global", rate: 80, burst: 10},
}

const (
	sharedQuota     = 100 // per day
	policyEnvTiers  = "anonymous=200/second:burst=50,authenticated=200/second:burst=50:quota=100/day,premium=120/minute:burst=200"
	policyEnvRoute  = "POST /predict=20/second:burst=60"
	policyEnvGlobal = "80/second:burst=10"
)

// tokenPolicy is one token bucket: tokens per second and capacity.
type tokenPolicy struct {
	name        string
	rate, burst float64
}

// timedDecision is one decision as its client saw it: it began and ended
// at these instants, and the limiter read its clock in between.
type timedDecision struct {
	begin, end time.Time
	allowed    bool
}

// policyEnv is the environment of every container or process.
func policyEnv(url, token string, keys *keySet) map[string]string {
	return upstashEnv(url, token, keys,
		"TIER_LIMITS", policyEnvTiers, "ROUTE_LIMITS", policyEnvRoute, "GLOBAL_LIMIT", policyEnvGlobal,
		"LIMITER_TIMEOUT", "2s") // accuracy, not fallback, is tested: see TestSharedBucketAcrossContainers
}

// checkPolicyBounds asserts, for every allowed decision in order of its
// end, that the allowed decisions that ended by then number no more than
// min over policies of (burst + rate × (that end − the first allowed
// decision's beginning + 2 ms)) + 1, and no more than quota in all. The
// buckets were full when the first allowed decision read its clock, which
// was after it began; a decision that ended by E read its clock by E.
// (+ 2 ms: the script's clock is whole milliseconds; + 1: one decision in
// flight.) It returns the number allowed and the least slack (bound −
// allowed) over the run, with the policy that set it: how close the
// admissions came to the bound.
func checkPolicyBounds(t *testing.T, what string, decs []timedDecision, policies []tokenPolicy, quota int) (allowed int, slack float64, tightest string) {
	t.Helper()
	var ends []time.Time
	var first time.Time
	for _, d := range decs {
		if !d.allowed {
			continue
		}
		ends = append(ends, d.end)
		if first.IsZero() || d.begin.Before(first) {
			first = d.begin
		}
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	bounds := func(e time.Time) (float64, string) {
		el := (e.Sub(first) + 2*time.Millisecond).Seconds()
		b, name := math.Inf(1), ""
		for _, p := range policies {
			if v := p.burst + p.rate*el + 1; v < b {
				b, name = v, p.name
			}
		}
		return b, name
	}
	failures := 0
	slack = math.Inf(1)
	for i, e := range ends {
		b, name := bounds(e)
		if float64(i+1) > b && failures < 3 {
			failures++
			t.Errorf("%s: %d allowed by %s after the first, more than %s allows (%.1f, one in flight included)", what, i+1, e.Sub(first), name, b)
		}
		if b-float64(i+1) < slack {
			slack, tightest = b-float64(i+1), name
		}
	}
	if len(ends) > quota {
		t.Errorf("%s: %d allowed, more than the quota of %d", what, len(ends), quota)
	}
	return len(ends), slack, tightest
}

// nearMidnightUTC skips a test whose daily quota window could end while it
// runs (a new window would rightly allow another quota).
func nearMidnightUTC(t *testing.T) {
	t.Helper()
	now := time.Now().UTC()
	if next := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC); next.Sub(now) < 2*time.Minute {
		t.Skip("the daily quota window ends within 2 minutes: run again after 00:00 UTC")
	}
}

// newPolicyStack is a container wired as authorizer.Build wires it in
// Lambda, every policy variable included.
func newPolicyStack(t *testing.T, env map[string]string) *stack {
	t.Helper()
	s, err := authorizer.LoadSettings(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("LoadSettings: %v", err)
	}
	st := &stack{logs: &logSink{}, metrics: &logSink{}, timeout: s.Timeout}
	if st.h, err = authorizer.Build(context.Background(), s, authorizer.NewLogger(st.logs, s.LogLevel), st.metrics); err != nil {
		t.Fatalf("Build: %v", err)
	}
	return st
}

// addKey adds an authenticated key to keys: a caller none of whose buckets
// were touched.
func addKey(t *testing.T, keys *keySet) (key, id string) {
	t.Helper()
	key, rec, err := apikey.New("policies", "authenticated", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Store.Create(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return key, rec.ID
}

// TestSeveralPoliciesAcrossContainers: 4 containers × 4 goroutines.
func TestSeveralPoliciesAcrossContainers(t *testing.T) {
	nearMidnightUTC(t)
	env := upstashtest.Start(t)
	keys := newKeySet(t)
	warmKey, _ := addKey(t, keys)
	key, _ := addKey(t, keys)
	const containers, goroutines = 4, 4
	stacks := make([]*stack, containers)
	for i := range stacks {
		stacks[i] = newPolicyStack(t, policyEnv(env.URL, env.Token, keys))
		// A connection open and the script loaded: steady-state decisions.
		// (Another caller: the measured one's buckets stay untouched; the
		// global bucket refills 10 tokens in 125 ms.)
		decideOnUpstash(t, stacks[i], authEvent(freshIP(), keyHeader(warmKey)), "warm-up")
	}
	time.Sleep(200 * time.Millisecond) // the global bucket full again
	var ta tally
	var mu sync.Mutex
	var decs []timedDecision
	stop := time.Now().Add(loadDuration)
	var wg sync.WaitGroup
	for _, st := range stacks {
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					d := st.decide(authEvent(freshIP(), keyHeader(key)))
					ta.add(d)
					mu.Lock()
					decs = append(decs, timedDecision{begin: d.Start, end: d.Start.Add(d.Latency), allowed: d.Effect == "Allow"})
					mu.Unlock()
					time.Sleep(time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	ta.check(t, "several policies", stacks[0].timeout+margin)
	if n := ta.bySource["memory"]; n != 0 {
		t.Errorf("%d decisions fell back to memory with a healthy Upstash", n)
	}
	allowed, slack, tightest := checkPolicyBounds(t, "4 containers × 4 goroutines", decs, sharedPolicies, sharedQuota)
	t.Logf("MEASURED several-policies containers=%d goroutines=%d attempts=%d allowed=%d quota=%d least_slack=%.1f (%s) sources=[%s]",
		containers, containers*goroutines, len(decs), allowed, sharedQuota, slack, tightest, ta.sources())
}

// TestSeveralPoliciesAcrossProcesses: 16 HTTP clients through start-api,
// whose authorizer runs up to 4 processes.
func TestSeveralPoliciesAcrossProcesses(t *testing.T) {
	nearMidnightUTC(t)
	env := upstashtest.Start(t)
	keys := newKeySet(t)
	warmKey, _ := addKey(t, keys)
	key, id := addKey(t, keys)
	api := startLocalAPI(t, policyEnv(env.URL, env.Token, keys), 4)
	const clients = 16
	// Warm every process: concurrent requests until 4 run.
	fn := api.App.Functions["AuthorizerFunction"]
	for i := 0; i < 20 && fn.Stats().Starts < 4; i++ {
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				api.predict(clientFrom(freshLoopback()), keyHeader(warmKey))
			}()
		}
		wg.Wait()
	}
	if n := fn.Stats().Starts; n < 2 {
		t.Fatalf("the authorizer ran %d process(es): the test needs several", n)
	}
	time.Sleep(200 * time.Millisecond) // the global bucket full again
	var ht httpTally
	var mu sync.Mutex
	var decs []timedDecision
	stop := time.Now().Add(loadDuration)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clientFrom(freshLoopback())
			defer c.CloseIdleConnections()
			for time.Now().Before(stop) {
				begin := time.Now()
				r := api.predict(c, keyHeader(key))
				ht.add(r)
				mu.Lock()
				decs = append(decs, timedDecision{begin: begin, end: begin.Add(r.Latency), allowed: r.Status == http.StatusOK})
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	ht.check(t, "several policies over HTTP", 2*time.Second+margin)
	sources := map[string]int{}
	for _, l := range api.functionLines(t, "AuthorizerFunction") {
		if l["msg"] == "decision" && l["caller"] == id {
			sources[str(l["source"])]++
		}
	}
	if sources["memory"] != 0 {
		t.Errorf("%d decisions fell back to memory with a healthy Upstash", sources["memory"])
	}
	allowed, slack, tightest := checkPolicyBounds(t, fmt.Sprintf("%d clients, %d processes", clients, fn.Stats().Starts), decs, sharedPolicies, sharedQuota)
	t.Logf("MEASURED several-policies-http clients=%d processes=%d attempts=%d allowed=%d quota=%d least_slack=%.1f (%s) replies=[%s] sources=%v",
		clients, fn.Stats().Starts, len(decs), allowed, sharedQuota, slack, tightest, &ht, sources)
}
