package benchmarks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/benchmarks/charts"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
	"github.com/google/go-cmp/cmp"
)

// policyMix is one row of the "policies" figure: the authorizer's
// configuration and the buckets each decision charges.
type policyMix struct {
	name       string
	buckets    int // per decision: the tier's, quota, route, global
	containers int // round robin; callers stay on one container (see policySteps)
	env        map[string]string
}

// Policy mixes' limits: nothing drains or expires during a run, so that
// the figure shows the commands of the policies alone.
const (
	policyTier   = "anonymous=1/second:burst=100000"
	policyQuota  = ":quota=1000000/day"
	policyRoute  = "POST /predict=1/second:burst=100000"
	policyGlobal = "10/second:burst=1000000"
)

func policyMixes() []policyMix {
	return []policyMix{
		{"tier only", 1, 1, map[string]string{"TIER_LIMITS": policyTier}},
		{"tier + quota", 2, 1, map[string]string{"TIER_LIMITS": policyTier + policyQuota}},
		{"tier + route", 2, 1, map[string]string{"TIER_LIMITS": policyTier, "ROUTE_LIMITS": policyRoute}},
		{"tier + route + global", 3, 1, map[string]string{"TIER_LIMITS": policyTier, "ROUTE_LIMITS": policyRoute, "GLOBAL_LIMIT": policyGlobal}},
		{"tier + quota + route + global", 4, 1, map[string]string{"TIER_LIMITS": policyTier + policyQuota, "ROUTE_LIMITS": policyRoute, "GLOBAL_LIMIT": policyGlobal}},
		{"tier + global, 4 containers", 2, 4, map[string]string{"TIER_LIMITS": policyTier, "GLOBAL_LIMIT": policyGlobal}},
	}
}

// policySteps is callers × rounds decisions, round robin over the callers,
// caller c always on container c % containers (callers is a multiple of
// containers): each caller's own buckets are guessed right, and only the
// buckets callers share — the global one — meet other containers' writes.
func policySteps(callers, rounds, containers int) trafficMix {
	m := trafficMix{containers: containers}
	for r := 0; r < rounds; r++ {
		for c := 0; c < callers; c++ {
			m.steps = append(m.steps, step{caller: c, container: c % containers})
		}
	}
	return m
}

// setLiveFactor stores a live limit change (what cmd/limits scale writes):
// every limit times factor from now on, for the authorizers' next read.
func setLiveFactor(t testing.TB, up *upstashtest.Env, factor float64) {
	t.Helper()
	up.Redis.Do(t, "SET", limiter.DefaultPrefix+"limits", limiter.FormatScales([]limiter.Scale{{Factor: factor, Start: time.Now()}}))
}

// commandParts splits a run's commands per decision into the parts the
// policies chart stacks: EVALSHA; the first SET ... GET of each bucket;
// the SETs that repair a wrong guess; other commands (MGET, DEL); and the
// live-settings reads.
func commandParts(r costRun, buckets int) (evalsha, setget, repair, other, settings float64) {
	n := float64(r.calls)
	sets := r.commands["set"]
	first := min(sets, int64(buckets*r.allowed))
	evalsha = float64(r.commands["evalsha"]) / n
	setget = float64(first) / n
	repair = float64(sets-first) / n
	settings = float64(r.settingsReads()) / n
	other = float64(r.commands.total())/n - evalsha - setget - repair - settings
	return
}

// TestSmokePolicies checks the policies figure's premise on a few
// decisions: with guesses right, an allowed decision on N buckets costs
// 1+N commands and one request, live settings read or not; a global bucket
// shared by 4 containers costs one repair SET more each time another
// container wrote it last.
func TestSmokePolicies(t *testing.T) {
	up := upstashtest.StartRedis(t)
	setLiveFactor(t, up, 2)
	mixes := policyMixes()
	tests := []struct {
		mix  policyMix
		want commandStats
	}{
		{mixes[0], commandStats{"evalsha": 8, "set": 8}},
		{mixes[1], commandStats{"evalsha": 8, "set": 16}},
		{mixes[3], commandStats{"evalsha": 8, "set": 24}},
		{mixes[4], commandStats{"evalsha": 8, "set": 32}},
		// Callers 0-3 on containers 0-3, twice: every decision finds the
		// global key as another container left it (container 3's warm-up
		// wrote it last before the first).
		{mixes[5], commandStats{"evalsha": 8, "set": 16 + 8}},
	}
	for i, tt := range tests {
		t.Run(tt.mix.name, func(t *testing.T) {
			got := ourMix(t, up, tt.mix.env, policySteps(4, 2, tt.mix.containers), 50+i)
			if got.requests != uint64(got.calls) || got.allowed != got.calls {
				t.Errorf("%d requests and %d allowed for %d decisions, want one request each, all allowed", got.requests, got.allowed, got.calls)
			}
			if diff := cmp.Diff(tt.want, withoutSettings(got.commands)); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
		})
	}
}

// benchPolicies is the "policies" figure: commands per allowed decision by
// policy mix, one request each, with a live factor set; then what the
// live-settings reads add at a container's decision rate.
func benchPolicies(t *testing.T) {
	up := upstashtest.StartRedis(t)
	rep := newReport(t, "Commands per decision, by policy mix")
	setLiveFactor(t, up, 2)

	type row struct {
		mix policyMix
		run costRun
	}
	var rows []row
	for i, m := range policyMixes() {
		rows = append(rows, row{m, ourMix(t, up, m.env, policySteps(100, 10, m.containers), 60+i)})
	}

	rep.line("Measured with `%s`; %s.", benchCommand("policies"), rep.machine)
	rep.line("Authorizers built as the Lambda builds them, with a live factor set (`%s` = `*` × 2, what `cmd/limits scale 2`", limiter.DefaultPrefix+"limits")
	rep.line("stores), 100 anonymous callers × 10 requests round robin, all allowed. Limits: tier `%s`, quota `%s`,", policyTier, policyQuota[1:])
	rep.line("route `ROUTE_LIMITS=%s`, `GLOBAL_LIMIT=%s` — nothing drains or expires during a run. With 4 containers", policyRoute, policyGlobal)
	rep.line("caller c always lands on container c mod 4, so only the shared global bucket meets other containers' writes.")
	rep.line("Live-settings reads (GET) are counted apart: once per second per warm container.")
	rep.line("")
	var table [][]string
	for _, r := range rows {
		n := float64(r.run.calls)
		table = append(table, []string{r.mix.name, fmt.Sprintf("%d", r.mix.buckets), fmt.Sprintf("%d", r.mix.containers),
			fmt.Sprintf("%d / %d", r.run.allowed, r.run.calls), fmt.Sprintf("**%.3f**", float64(r.run.requests)/n),
			r.run.commands.String(), fmt.Sprintf("**%.3f**", r.run.perAllowed()), fmt.Sprintf("%d", 1+r.mix.buckets),
			fmt.Sprintf("%d in %.2f s", r.run.settingsReads(), r.run.elapsed.Seconds()),
			fmt.Sprintf("$%.2f", dollarsPerMillion(r.run.perAllowed()))})
	}
	rep.table([]string{"policies", "buckets", "containers", "allowed", "HTTP requests / decision", "Redis commands", "commands / allowed decision", "1+N", "live-settings GETs", "$ per 1M allowed"}, table)

	c := charts.Chart{
		File: "policies.svg", Kind: charts.KindStacked, Format: "%.2f",
		Title:  "Redis commands per allowed decision, by policy mix",
		Note:   "One HTTP request per decision in every row; live factor set. Live-settings reads (1 per second per container) drawn\nat their share in this run. " + rep.machine,
		Axis:   "Redis commands per allowed decision",
		Series: []string{"EVALSHA", "SET … GET, one per bucket", "repair SET (another container wrote)", "other", "GET live settings"},
	}
	for _, r := range rows {
		e, sg, rp, o, st := commandParts(r.run, r.mix.buckets)
		c.Groups = append(c.Groups, charts.Group{Label: r.mix.name, Sub: plural(r.mix.buckets, "bucket") + " · " + plural(r.mix.containers, "container"),
			Values: []float64{e, sg, rp, max(o, 0), st}})
	}
	addChart(t, c)

	// The live-settings reads at a container's decision rate: the store's
	// clock advanced by 1/rate per decision (new callers: 2 commands each).
	rates := []float64{0.5, 2, 10, 100, 1000}
	var arows [][]string
	for _, rate := range rates {
		got := settingsAtRate(t, up, rate, 400)
		n := float64(got.calls)
		arows = append(arows, []string{fmt.Sprintf("%g", rate), fmt.Sprintf("%d", got.calls), got.commands.String(),
			fmt.Sprintf("%.3f", float64(got.settingsReads())/n), fmt.Sprintf("%.3f", float64(got.commands.total())/n)})
	}
	rep.line("What the live-settings reads add per decision at a container's decision rate: `limiter.UpstashStore.Allow` with its")
	rep.line("clock argument advanced by 1/rate per decision (a new caller each time), default SettingsTTL (1 s).")
	rep.line("")
	rep.table([]string{"decisions / s per container", "decisions", "Redis commands", "GETs / decision", "commands / decision"}, arows)
}

// settingsAtRate makes n decisions for new callers on a fresh store whose
// clock advances 1/rate seconds per decision, and meters them.
func settingsAtRate(t testing.TB, up *upstashtest.Env, rate float64, n int) costRun {
	t.Helper()
	c, err := upstash.New(upstash.Config{URL: up.URL, Token: up.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	store, err := limiter.NewUpstashStore(limiter.UpstashConfig{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	l, err := limiter.ParseLimit("100/second:burst=100")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Now()
	step := time.Duration(float64(time.Second) / rate)
	if _, err := store.Allow(ctx, limiter.Request{Buckets: []limiter.Bucket{{Key: fmt.Sprintf("rate-%g:warm", rate), Limit: l}}, Cost: 1}, at); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	run := costRun{}
	m := startMeter(t, up)
	for i := range n {
		at = at.Add(step)
		r, err := store.Allow(ctx, limiter.Request{Buckets: []limiter.Bucket{{Key: fmt.Sprintf("rate-%g:%d", rate, i), Limit: l}}, Cost: 1}, at)
		if err != nil {
			t.Fatalf("decision %d: %v", i, err)
		}
		run.calls++
		if r.Allowed {
			run.allowed++
		}
	}
	run.requests, run.commands = m.stop(t)
	return run
}

// plural renders "1 bucket", "2 buckets".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
