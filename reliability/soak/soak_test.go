//go:build linux

package soak_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
	"github.com/bucketgate/bucketgate/internal/testutil/dynamotest"
	"github.com/bucketgate/bucketgate/internal/testutil/faultproxy"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

const (
	// soakTiers are limits the traffic meets: every flow but the premium
	// one asks for more than its rate.
	soakTiers = "anonymous=2/second:burst=6,authenticated=3/second:burst=10,premium=10/second:burst=30"
	// clockSkew is the soak build's skew: processes run -1 s, 0 or +1 s
	// from the real clock.
	clockSkew = time.Second
	// limiterTimeout is LIMITER_TIMEOUT for the run: the default.
	limiterTimeout = limiter.DefaultTimeout
	// cycle is the fault schedule's period.
	cycle = time.Minute
	// keyStoreGrace is how long after a key-store fault a 503 may still
	// come from it: one lookup's KeyTimeout.
	keyStoreGrace = authorizer.DefaultKeyTimeout + time.Second
)

// Caps on resident memory (VmRSS): the function processes must fit the
// template's 256 MB Lambdas with room to spare.
var rssCaps = map[string]int64{
	"authorizer":   96 << 20,
	"predict":      96 << 20,
	"redis-server": 64 << 20,
	"node":         512 << 20, // dynalite
	"self":         1 << 30,   // the test: gateway, Upstash server, proxies, collectors
}

// soakDuration is the run's length: SOAK_DURATION, else 10 minutes (one
// minute with -short). The test is skipped unless BUCKETGATE_SOAK=1.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	if os.Getenv("BUCKETGATE_SOAK") != "1" {
		t.Skip("a soak run takes minutes: set BUCKETGATE_SOAK=1 (make soak)")
	}
	d := 10 * time.Minute
	if testing.Short() {
		d = time.Minute
	}
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < 30*time.Second {
			t.Fatalf("SOAK_DURATION=%q: want a duration of at least 30s", v)
		}
	}
	return d
}

// buildSoak builds the authorizer with the soak tag (skewed clocks, pid in
// its logs) and the predict function, for this machine.
func buildSoak(t *testing.T) map[string]string {
	t.Helper()
	redistest.Need(t, "go")
	dir := t.TempDir()
	out := map[string]string{"AuthorizerFunction": filepath.Join(dir, "authorizer"), "PredictFunction": filepath.Join(dir, "predict")}
	for _, b := range []struct{ exe, tags, pkg, ldflags string }{
		{out["AuthorizerFunction"], "lambda.norpc,soak", "./functions/authorizer", "-X main.clockSkew=" + clockSkew.String()},
		{out["PredictFunction"], "lambda.norpc", "./functions/predict", ""},
	} {
		cmd := exec.Command("go", "build", "-tags", b.tags, "-ldflags", b.ldflags, "-o", b.exe, b.pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, msg)
		}
	}
	return out
}

// soakEnv is the running system.
type soakEnv struct {
	upstash  *upstashtest.Env
	upProxy  *faultproxy.Server // authorizer → Upstash
	keyProxy *faultproxy.Server // authorizer → DynamoDB
	app      *startapi.App
	base     string
	keys     soakKeys
	col      *collector
	warns    *syncbuf.Buffer // start-api's own warnings
}

func startSoak(t *testing.T) *soakEnv {
	t.Helper()
	exes := buildSoak(t)
	e := &soakEnv{col: &collector{}, warns: &syncbuf.Buffer{}}
	e.upstash = upstashtest.StartRedis(t)
	e.upProxy = faultproxy.Start(t, e.upstash.URL)
	endpoint := dynamotest.Start(t)
	direct := dynamotest.Client(t, endpoint)
	table := dynamotest.KeysTable(t, direct)
	store, err := apikey.NewDynamoStore(apikey.DynamoConfig{Client: direct, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(tier string) string {
		key, rec, err := apikey.New("soak "+tier, tier, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Create(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		return key
	}
	for i := range e.keys.auth {
		e.keys.auth[i] = issue("authenticated")
	}
	for i := range e.keys.premium {
		e.keys.premium[i] = issue("premium")
	}
	e.keyProxy = faultproxy.Start(t, endpoint)
	host := map[string]string{
		"AWS_ACCESS_KEY_ID":         "dynamotest",
		"AWS_SECRET_ACCESS_KEY":     "dynamotest",
		"AWS_ENDPOINT_URL_DYNAMODB": e.keyProxy.URL,
	}
	e.app, err = startapi.StartAPI(context.Background(), startapi.Options{
		Template: "../../template.yaml",
		Prebuilt: exes,
		Logs:     e.col,
		Logger:   slog.New(slog.NewTextHandler(e.warns, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxProcs: 4,
		EnvVars: startapi.EnvVars{"Parameters": {
			"UPSTASH_REDIS_REST_URL":   e.upProxy.URL,
			"UPSTASH_REDIS_REST_TOKEN": e.upstash.Token,
			"API_KEYS_TABLE":           table,
			"API_KEYS_FILE":            "",
			"TIER_LIMITS":              soakTiers,
			"LIMITER_TIMEOUT":          limiterTimeout.String(),
		}},
		Getenv: func(k string) string { return host[k] },
	})
	if err != nil {
		t.Fatalf("StartAPI: %v", err)
	}
	srv := httptest.NewServer(e.app.Gateway)
	t.Cleanup(func() {
		srv.Close()
		if err := e.app.Close(); err != nil {
			t.Errorf("closing the app: %v", err)
		}
	})
	e.base = srv.URL
	return e
}

// schedule runs the fault schedule from start until ctx ends and returns
// what it did: fault windows (instantaneous events have Start == End) and
// the instants the shared store lost its data.
func (e *soakEnv) schedule(ctx context.Context, t *testing.T, start time.Time, dur time.Duration) (faults []window, dataLoss []time.Time) {
	t.Helper()
	type event struct {
		at time.Duration
		do func()
	}
	modes := []struct {
		kind  string
		fault faultproxy.Fault
	}{
		{"upstash hang", faultproxy.Hang()},
		{"upstash 500", faultproxy.Status(http.StatusInternalServerError)},
		{"upstash reset", faultproxy.Reset()},
	}
	var mu sync.Mutex
	open := map[string]time.Time{}
	begin := func(kind string) {
		mu.Lock()
		open[kind] = time.Now()
		mu.Unlock()
	}
	end := func(kind string, upstash, keyStore bool) {
		mu.Lock()
		faults = append(faults, window{Kind: kind, Start: open[kind], End: time.Now(), Upstash: upstash, KeyStore: keyStore})
		delete(open, kind)
		mu.Unlock()
	}
	instant := func(kind string) {
		now := time.Now()
		mu.Lock()
		faults = append(faults, window{Kind: kind, Start: now, End: now})
		mu.Unlock()
	}
	killOne := func(comm, kind string) {
		kids, err := children()
		if err != nil {
			t.Errorf("listing processes: %v", err)
			return
		}
		var cand []child
		for _, c := range kids {
			if c.Comm == comm {
				cand = append(cand, c)
			}
		}
		if len(cand) == 0 {
			return
		}
		c := cand[rand.IntN(len(cand))]
		if err := kill(c); err == nil {
			instant(kind)
		}
	}
	proxyFault := func(m int) (func(), func()) {
		mode := modes[m%len(modes)]
		return func() { begin(mode.kind); e.upProxy.Set(mode.fault) },
			func() { e.upProxy.Set(faultproxy.Pass()); end(mode.kind, true, false) }
	}
	var events []event
	for k := 0; time.Duration(k)*cycle < dur; k++ {
		c := time.Duration(k) * cycle
		s := func(sec float64) time.Duration { return c + time.Duration(sec*float64(time.Second)) }
		aStart, aEnd := proxyFault(k)
		bStart, bEnd := proxyFault(k + 1)
		events = append(events,
			event{s(5), aStart}, event{s(13), aEnd},
			event{s(10), func() { begin("key store reset"); e.keyProxy.Set(faultproxy.Reset()) }},
			event{s(20), func() { e.keyProxy.Set(faultproxy.Pass()); end("key store reset", false, true) }},
			event{s(25), func() { e.upstash.Redis.Do(t, "SCRIPT", "FLUSH"); instant("SCRIPT FLUSH") }},
			event{s(30), func() { begin("redis-server down"); e.upstash.Redis.Stop() }},
			event{s(31), func() { killOne("authorizer", "kill authorizer") }},
			event{s(33), func() {
				e.upstash.Redis.Restart(t)
				end("redis-server down", true, false)
				dataLoss = append(dataLoss, time.Now())
			}},
			event{s(40), bStart}, event{s(42), func() { killOne("predict", "kill predict") }}, event{s(46), bEnd},
			event{s(50), func() { killOne("authorizer", "kill authorizer") }},
			event{s(52), func() { killOne("predict", "kill predict") }},
		)
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].at < events[j].at })
	for _, ev := range events {
		if ev.at >= dur-2*time.Second {
			break
		}
		select {
		case <-ctx.Done():
			return faults, dataLoss
		case <-time.After(time.Until(start.Add(ev.at))):
		}
		ev.do()
	}
	<-ctx.Done()
	return faults, dataLoss
}

// TestSoak runs the system under mixed traffic and rolling faults for
// SOAK_DURATION and checks the invariants listed in the package
// documentation; every figure is logged on a line starting with SOAK.
func TestSoak(t *testing.T) {
	dur := soakDuration(t)
	// The Upstash-compatible server's Redis client logs every failed dial
	// while redis-server is down: count those lines instead.
	var redisLog countingLogger
	redis.SetLogger(&redisLog)
	e := startSoak(t)
	tiers, err := limiter.ParseTierLimits(soakTiers)
	if err != nil {
		t.Fatal(err)
	}
	failures, err := limiter.ParseLimit(authorizer.DefaultAuthFailures)
	if err != nil {
		t.Fatal(err)
	}
	rss := startRSS(5 * time.Second)
	rec := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, f := range flows(e.keys) {
		wg.Add(1)
		go f.run(ctx, e.base, rec, &wg)
	}
	faults, dataLoss := e.schedule(ctx, t, start, dur)
	wg.Wait()
	end := time.Now()
	rssSamples := rss.Stop()

	// The processes' output travels through pipes: wait for it to settle.
	var decisions []decision
	var keyFailed, other []logLine
	for last, stable := -1, 0; stable < 5; {
		time.Sleep(200 * time.Millisecond)
		decisions, keyFailed, other = e.col.snapshot()
		if len(decisions) == last {
			stable++
		} else {
			last, stable = len(decisions), 0
		}
	}
	samples := rec.all()
	sort.Slice(faults, func(i, j int) bool { return faults[i].Start.Before(faults[j].Start) })

	r := report{t: t}
	r.logf("run: %s (%s to %s), %d requests, %d authorizer decisions, %d faults and events",
		end.Sub(start).Round(time.Second), start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), len(samples), len(decisions), len(faults))
	checkBounds(&r, decisions, tiers, failures, dataLoss)
	checkReplies(&r, samples, faults)
	checkRecovery(&r, decisions, faults)
	checkLogs(&r, decisions, keyFailed, other)
	checkRSS(&r, rssSamples)
	summarize(&r, samples, decisions, e)

	if path := os.Getenv("SOAK_SVG"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		var errs []time.Time
		for _, s := range samples {
			if s.Status >= 500 || s.Status == 0 {
				errs = append(errs, s.At)
			}
		}
		title := fmt.Sprintf("bucketgate soak, %s: authorizer decisions by source, faults shaded", end.Sub(start).Round(time.Second))
		if err := plotSVG(f, plotData{Start: start, End: end, Decisions: decisions, Errors: errs, Faults: faults, Title: title}); err != nil {
			t.Error(err)
		}
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		r.logf("plot: %s", path)
	}
	r.logf("the Upstash-compatible server's Redis client logged %d lines (failed dials while redis-server was down)", redisLog.n.Load())
	if w := e.warns.String(); w != "" {
		r.logf("start-api warnings:\n%s", w)
	}
}

// countingLogger is a go-redis logger that counts lines.
type countingLogger struct{ n atomic.Int64 }

func (c *countingLogger) Printf(context.Context, string, ...any) { c.n.Add(1) }

// report logs SOAK lines and fails the test on a broken invariant.
type report struct{ t *testing.T }

func (r *report) logf(format string, a ...any) {
	r.t.Helper()
	r.t.Logf("SOAK "+format, a...)
}

// invariant logs one invariant's verdict.
func (r *report) invariant(name string, ok bool, format string, a ...any) {
	r.t.Helper()
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
		r.t.Errorf("invariant %q broken: %s", name, fmt.Sprintf(format, a...))
	}
	r.t.Logf("SOAK invariant %-28s %s  %s", name, verdict, fmt.Sprintf(format, a...))
}

func spec(l limiter.Limit) bucketSpec {
	return bucketSpec{Burst: float64(l.Burst), Rate: float64(l.Rate) / l.Period.Seconds()}
}

// checkBounds: no caller's bucket admitted more than its bound, on the
// shared store or any process's memory; the failed-key bucket included.
func checkBounds(r *report, decisions []decision, tiers limiter.Tiers, failures limiter.Limit, dataLoss []time.Time) {
	type key struct{ bucket, caller string }
	adm := map[key][]admission{}
	specs := map[key]bucketSpec{}
	for _, d := range decisions {
		shared := d.Source == "upstash"
		if !shared && d.Source != "memory" {
			continue
		}
		a := admission{At: d.At, Latency: d.Latency, Cost: float64(d.Cost), Shared: shared, PID: d.PID}
		switch {
		case d.Decision == "allowed":
			p, ok := tiers[d.Tier]
			if !ok {
				r.invariant("bucket bounds", false, "decision for unknown tier %q", d.Tier)
				return
			}
			k := key{d.Tier, d.Caller}
			adm[k], specs[k] = append(adm[k], a), spec(p.Limit)
		case d.Decision == "unauthorized" && d.Policy == authorizer.FailuresPolicy:
			a.Cost = 1
			k := key{authorizer.FailuresPolicy, d.Caller}
			adm[k], specs[k] = append(adm[k], a), spec(failures)
		}
	}
	allow := allowances{Skew: 2 * clockSkew, DataLoss: dataLoss}
	var over []overAdmission
	worst, worstCaller := 0.0, ""
	for k, as := range adm {
		over = append(over, checkAdmissions(k.bucket+" "+k.caller, specs[k], as, allow)...)
		// The tightest shared bucket: admitted / (burst + rate × span + allowances).
		var n float64
		var first, last time.Time
		for _, a := range as {
			if a.Shared {
				n += a.Cost
				if first.IsZero() {
					first = a.At
				}
				last = a.At
			}
		}
		if n > 0 {
			s := specs[k]
			bound := s.Burst*float64(1+len(dataLoss)) + s.Rate*(last.Sub(first)+allow.Skew).Seconds()
			if ratio := n / bound; ratio > worst {
				worst, worstCaller = ratio, fmt.Sprintf("%s %s (%.0f of %.1f)", k.bucket, k.caller, n, bound)
			}
		}
	}
	detail := ""
	for i, o := range over {
		if i == 5 {
			detail += fmt.Sprintf("; … %d in all", len(over))
			break
		}
		detail += fmt.Sprintf("; %s %s at %s: %.2f tokens over", o.Caller, o.Where, o.At.Format("15:04:05.000"), o.Excess)
	}
	r.invariant("bucket bounds", len(over) == 0,
		"%d buckets checked over every interval (burst + rate × elapsed + rate × %s skew, + a burst per data loss (%d), per-process memory buckets apart); over-admissions: %d; closest to its whole-run bound: %s%s",
		len(adm), allow.Skew, len(dataLoss), len(over), worstCaller, detail)
}

// checkReplies: every reply is well formed, no valid key is ever refused
// as unknown, and every 5xx is a documented one: a 503 for a keyed request
// while the key store failed, or one failed invocation of a killed process
// (503 for the authorizer, 502 for the function).
func checkReplies(r *report, samples []sample, faults []window) {
	var authKills, predictKills []time.Time
	for _, f := range faults {
		switch f.Kind {
		case "kill authorizer":
			authKills = append(authKills, f.Start)
		case "kill predict":
			predictKills = append(predictKills, f.Start)
		}
	}
	claim := func(kills []time.Time, s sample) bool {
		for i, k := range kills {
			if !k.IsZero() && !k.Before(s.At.Add(-100*time.Millisecond)) && !k.After(s.At.Add(s.Latency+100*time.Millisecond)) {
				kills[i] = time.Time{}
				return true
			}
		}
		return false
	}
	var keyStore503, kill503, kill502 int
	var bad []string
	for _, s := range samples {
		switch {
		case s.Status == http.StatusServiceUnavailable && s.Keyed && duringKeyStoreFault(s, faults):
			keyStore503++
		case s.Status == http.StatusServiceUnavailable && claim(authKills, s):
			kill503++
		case s.Status == http.StatusBadGateway && claim(predictKills, s):
			kill502++
		case s.Status >= 500 || s.Status == 0:
			bad = append(bad, fmt.Sprintf("%s %s %d %q at %s", s.Source, s.Path, s.Status, s.Problem, s.At.Format("15:04:05.000")))
		case s.Valid && s.Status == http.StatusUnauthorized:
			bad = append(bad, fmt.Sprintf("valid key refused 401 (%s) at %s", s.Source, s.At.Format("15:04:05.000")))
		case s.Problem != "":
			bad = append(bad, fmt.Sprintf("%s %d: %s", s.Source, s.Status, s.Problem))
		}
	}
	if len(bad) > 5 {
		bad = append(bad[:5], fmt.Sprintf("… %d in all", len(bad)))
	}
	r.invariant("no undocumented 5xx", len(bad) == 0,
		"%d replies; 503 during key-store faults: %d; 503 from a killed authorizer: %d (of %d kills); 502 from a killed predict: %d (of %d kills); other problems: %v",
		len(samples), keyStore503, kill503, countKind(faults, "kill authorizer"), kill502, countKind(faults, "kill predict"), bad)
}

func duringKeyStoreFault(s sample, faults []window) bool {
	for _, f := range faults {
		if f.KeyStore && !s.At.Before(f.Start.Add(-time.Second)) && !s.At.After(f.End.Add(keyStoreGrace)) {
			return true
		}
	}
	return false
}

func countKind(faults []window, kind string) int {
	n := 0
	for _, f := range faults {
		if f.Kind == kind {
			n++
		}
	}
	return n
}

// checkRecovery: every fallback decision began while an Upstash fault was
// under way or within 10 s of one's end.
func checkRecovery(r *report, decisions []decision, faults []window) {
	var spans []span
	for _, d := range decisions {
		if d.Source == "memory" {
			spans = append(spans, span{d.Start(), d.At})
		}
	}
	late := lateFallbacks(spans, faults)
	recs := recoveries(spans, faults)
	worst := time.Duration(0)
	for _, d := range recs {
		worst = max(worst, d)
	}
	var shown []string
	for i, s := range late {
		if i == 5 {
			shown = append(shown, fmt.Sprintf("… %d in all", len(late)))
			break
		}
		shown = append(shown, s.Format("15:04:05.000"))
	}
	r.invariant("back on Upstash within 10s", len(late) == 0 && worst <= recoveryBound,
		"%d fallback decisions; %d stretches of Upstash faults, last fallback after each ended: %v (worst %s); fallbacks no fault explains: %v",
		len(spans), len(recs), roundAll(recs), worst.Round(time.Millisecond), shown)
}

func roundAll(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond).String()
	}
	return out
}

// checkLogs: besides one line per decision (or per 503), each authorizer
// process writes a bounded number of lines: at start, and per kind of
// event at most one per 10 s.
func checkLogs(r *report, decisions []decision, keyFailed, other []logLine) {
	first, last := map[int]time.Time{}, map[int]time.Time{}
	see := func(pid int, t time.Time) {
		if f, ok := first[pid]; !ok || t.Before(f) {
			first[pid] = t
		}
		if t.After(last[pid]) {
			last[pid] = t
		}
	}
	for _, d := range decisions {
		see(d.PID, d.At)
	}
	for _, l := range append(append([]logLine(nil), keyFailed...), other...) {
		see(l.PID, l.At)
	}
	perPID := map[int]int{}
	msgs := map[string]int{}
	for _, l := range other {
		perPID[l.PID]++
		msgs[l.Msg]++
	}
	const kinds = 7 // the limiter's reasons and breaker transitions
	var flooded []string
	most, mostBound := 0, 0
	for pid, n := range perPID {
		life := last[pid].Sub(first[pid])
		bound := 3 + kinds*(int(life/(10*time.Second))+1)
		if n > most {
			most, mostBound = n, bound
		}
		if n > bound {
			flooded = append(flooded, fmt.Sprintf("pid %d: %d lines in %s (bound %d)", pid, n, life.Round(time.Second), bound))
		}
	}
	keys := make([]string, 0, len(msgs))
	for m := range msgs {
		keys = append(keys, m)
	}
	sort.Strings(keys)
	var byMsg []string
	for _, m := range keys {
		byMsg = append(byMsg, fmt.Sprintf("%q=%d", m, msgs[m]))
	}
	r.invariant("no log flood", len(flooded) == 0,
		"%d decision lines, %d key-store failure lines (one per 503); %d other lines from %d processes (most: %d, bound %d): %s %v",
		len(decisions), len(keyFailed), len(other), len(perPID), most, mostBound, strings.Join(byMsg, " "), flooded)
}

// checkRSS: every process's resident memory stayed under its cap.
func checkRSS(r *report, samples []rssSample) {
	peak := map[string]int64{}
	pids := map[string]map[int]bool{}
	for _, s := range samples {
		comm := s.Comm
		peak[comm] = max(peak[comm], s.RSS)
		if pids[comm] == nil {
			pids[comm] = map[int]bool{}
		}
		pids[comm][s.PID] = true
	}
	names := make([]string, 0, len(peak))
	for n := range peak {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts, over []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s(%d) %.1f MiB", n, len(pids[n]), float64(peak[n])/(1<<20)))
		if c, ok := rssCaps[n]; ok && peak[n] > c {
			over = append(over, fmt.Sprintf("%s %.1f MiB > %.0f MiB", n, float64(peak[n])/(1<<20), float64(c)/(1<<20)))
		}
	}
	r.invariant("RSS bounded", len(over) == 0 && len(samples) > 0,
		"%d samples; peak by process (processes seen): %s; over the cap: %v", len(samples), strings.Join(parts, ", "), over)
}

// summarize logs the run's figures: replies by traffic source, decisions
// by source, Upstash requests and key-store reads.
func summarize(r *report, samples []sample, decisions []decision, e *soakEnv) {
	bySource := map[string]map[int]int{}
	policies := map[string]map[string]int{} // 429s by the body's policy
	lat := map[string][]float64{}
	for _, s := range samples {
		if bySource[s.Source] == nil {
			bySource[s.Source] = map[int]int{}
			policies[s.Source] = map[string]int{}
		}
		bySource[s.Source][s.Status]++
		if s.Status == http.StatusTooManyRequests {
			policies[s.Source][s.Policy]++
		}
		lat[s.Source] = append(lat[s.Source], float64(s.Latency.Microseconds())/1000)
	}
	names := make([]string, 0, len(bySource))
	for n := range bySource {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		codes := make([]int, 0, len(bySource[n]))
		for c := range bySource[n] {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d=%d", c, bySource[n][c]))
		}
		l := lat[n]
		slices.Sort(l)
		r.logf("traffic %-10s %s (429 by policy %v)  latency p50 %.1f ms, p99 %.1f ms, max %.0f ms", n, strings.Join(parts, " "),
			policies[n], l[len(l)/2], l[min(len(l)-1, len(l)*99/100)], l[len(l)-1])
	}
	src := map[string]int{}
	dec := map[string]int{}
	offsets := map[int64]int{}
	pids := map[int]bool{}
	for _, d := range decisions {
		src[d.Source]++
		dec[d.Decision]++
		offsets[d.OffsetMs]++
		pids[d.PID] = true
	}
	r.logf("decisions by source %v; by outcome %v; by clock offset (ms) %v; from %d authorizer processes", src, dec, offsets, len(pids))
	attempts := bySource["attacker"]
	r.logf("failed keys: %d made-up keys sent, %d × 401, %d × 429 (auth-failures), %d × 503; key-store reads in all (valid keys included): %d; the valid key from the same address: %v",
		sumCodes(attempts), attempts[401], attempts[429], attempts[503], e.keyProxy.Requests(), bySource["neighbour"])
	r.logf("Upstash requests through the proxy: %d for %d decisions (%.3f per decision; deny-cache answers and Prime calls included)",
		e.upProxy.Requests(), len(decisions), float64(e.upProxy.Requests())/float64(max(len(decisions), 1)))
	st := e.app.Functions["AuthorizerFunction"].Stats()
	ps := e.app.Functions["PredictFunction"].Stats()
	r.logf("processes: authorizer %d started, %d crashed (killed), peak %d at once; predict %d started, %d crashed, peak %d",
		st.Starts, st.Crashes, st.PeakRunning, ps.Starts, ps.Crashes, ps.PeakRunning)
}

func sumCodes(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
