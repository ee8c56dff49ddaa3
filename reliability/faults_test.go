package reliability_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/faultproxy"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// faultHold is how long each fault lasts while requests keep coming: longer
// than the breaker's cooldown, so that a probe fails during the fault and
// the recovery measured afterwards starts from a freshly reopened breaker
// (close to the worst case).
const faultHold = limiter.DefaultBreakerCooldown + 500*time.Millisecond

// anonBurst is the anonymous tier's burst in README's default
// TIER_LIMITS (6/minute:burst=10): with a per-minute rate, a test's few
// seconds refill less than one token.
const anonBurst = 10

// TestUpstashFaults injects each fault between the authorizer and the
// Upstash-compatible server (real redis-server behind it) and checks the
// failure policy end to end: every request is decided (Allow or Deny, never
// an error, which API Gateway would turn into a 5xx) within
// LIMITER_TIMEOUT + margin; limits still hold, from this container's memory;
// every fallback decision is counted (limiter Stats, EMF Fallback metric)
// and logged without flooding; and decisions are back on Upstash within
// 10 s of the fault ending.
func TestUpstashFaults(t *testing.T) {
	tests := []struct {
		name       string
		fault      faultproxy.Fault
		wantReason string // the limiter's log reason for the failures
		wantLevel  string // and its level
	}{
		{"hang", faultproxy.Hang(), "timeout", "WARN"},
		{"slow", faultproxy.Slow(slowFault), "timeout", "WARN"},
		{"HTTP 500", faultproxy.Status(http.StatusInternalServerError), "error", "WARN"},
		{"HTTP 503", faultproxy.Status(http.StatusServiceUnavailable), "error", "WARN"},
		{"garbage body", faultproxy.Garbage(), "error", "WARN"},
		{"truncated body", faultproxy.Truncate(), "error", "WARN"},
		{"connection reset", faultproxy.Reset(), "error", "WARN"},
		{"HTTP 401", faultproxy.Status(http.StatusUnauthorized), "auth", "ERROR"},
	}
	keys := newKeySet(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := upstashtest.Start(t)
			px := faultproxy.Start(t, env.URL)
			st := newStack(t, upstashEnv(px.URL, env.Token, keys))
			bound := st.timeout + margin

			// Healthy: decisions come from Upstash.
			for i := 0; i < 3; i++ {
				decideOnUpstash(t, st, authEvent("198.51.100.1", nil), "before the fault")
			}
			before := st.lim.Stats()
			logMark, emfMark := st.logs.Mark(), st.metrics.Mark()

			px.Set(tt.fault)
			faultStart := time.Now()
			var all tally

			// A burst from one caller, from 4 goroutines at once: exactly the
			// tier's burst passes, from this container's memory.
			burstIP := freshIP()
			var burst tally
			var wg sync.WaitGroup
			for g := 0; g < 4; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 6; i++ {
						d := st.decide(authEvent(burstIP, nil))
						burst.add(d)
						all.add(d)
					}
				}()
			}
			wg.Wait()
			if burst.allowed != anonBurst || burst.denied != 24-anonBurst {
				t.Errorf("burst of 24 during the fault: %d allowed, %d denied; want %d and %d", burst.allowed, burst.denied, anonBurst, 24-anonBurst)
			}
			if got := burst.sources(); got != "memory=24" {
				t.Errorf("burst during the fault decided by %s, want memory=24", got)
			}
			// A keyed caller is served too (the key file is local).
			if d := st.decide(authEvent("198.51.100.2", keyHeader(keys.Auth))); d.Effect != "Allow" || d.Source != "memory" {
				t.Errorf("keyed caller during the fault: %+v, want Allow from memory", d)
			} else {
				all.add(d)
			}
			// Steady traffic until the fault has outlived a breaker cooldown.
			for time.Since(faultStart) < faultHold {
				all.add(st.decide(authEvent(freshIP(), nil)))
				time.Sleep(20 * time.Millisecond) // pacing the load, not moving a bucket
			}
			all.check(t, "during "+tt.fault.String(), bound)
			if n := all.bySource["memory"]; n != all.n {
				t.Errorf("during the fault: sources %s, want all %d from memory", all.sources(), all.n)
			}

			// Counted: every fallback decision, in Stats and in the EMF metric.
			after := st.lim.Stats()
			if got := after.Memory - before.Memory; got != uint64(all.n) {
				t.Errorf("Stats().Memory grew by %d, want %d (one per decision)", got, all.n)
			}
			if got := after.Upstash - before.Upstash; got != 0 {
				t.Errorf("Stats().Upstash grew by %d during the fault", got)
			}
			failures := (after.Timeouts - before.Timeouts) + (after.Errors - before.Errors) + (after.AuthErrors - before.AuthErrors)
			if failures == 0 || after.BreakerOpened-before.BreakerOpened != 1 {
				t.Errorf("Stats: %d failed calls, breaker opened %d times; want some and once", failures, after.BreakerOpened-before.BreakerOpened)
			}
			if failures+(after.CircuitOpen-before.CircuitOpen) != uint64(all.n) {
				t.Errorf("Stats: %d failed calls + %d skipped by the open breaker != %d decisions",
					failures, after.CircuitOpen-before.CircuitOpen, all.n)
			}
			fallbacks := 0
			for _, m := range st.metrics.Since(t, emfMark) {
				if m["Fallback"] == 1.0 {
					fallbacks++
				}
			}
			if fallbacks != all.n {
				t.Errorf("EMF Fallback lines: %d, want %d", fallbacks, all.n)
			}

			// Logged without flooding: a handful of lines for the whole fault.
			// The limiter logs each reason at most once per 10 s; decisions
			// in flight at the same instant (the burst's 4 goroutines) may
			// each get one line through, hence at most 4 per reason.
			lines := limiterLines(st.logs.Since(t, logMark))
			perReason := map[string]int{}
			wanted := false
			for _, l := range lines {
				r := str(l["reason"])
				perReason[r]++
				if r == tt.wantReason && l["level"] == tt.wantLevel {
					wanted = true
				}
				if strings.Contains(str(l["msg"])+" "+str(l["error"]), env.Token) {
					t.Errorf("log line contains the Upstash token: %v", l)
				}
			}
			for r, n := range perReason {
				if n > 4 {
					t.Errorf("%d lines with reason %q for %d fallback decisions, want at most 4", n, r, all.n)
				}
			}
			if len(lines) == 0 || len(perReason) > 4 {
				t.Errorf("limiter logged %d lines (reasons %v) for %d fallback decisions, want 1 or more, of at most 4 reasons", len(lines), perReason, all.n)
			}
			if !wanted {
				t.Errorf("no %s line with reason %q among %v", tt.wantLevel, tt.wantReason, lines)
			}

			// Recovery: back on Upstash within 10 s.
			px.Set(faultproxy.Pass())
			recovered, rec := awaitUpstash(t, st, "")
			if recovered > recoveryBound {
				t.Errorf("back on upstash %s after the fault ended, want at most %s", recovered, recoveryBound)
			}
			rec.check(t, "recovery", bound)
			// The fallback charged nothing on Upstash: the burst caller's
			// shared bucket is still full.
			if d := decideOnUpstash(t, st, authEvent(burstIP, nil), "burst caller after recovery"); d.Effect != "Allow" {
				t.Errorf("burst caller after recovery: %+v, want Allow from upstash", d)
			}
			t.Logf("MEASURED fault=%s decisions=%d allowed=%d denied=%d sources=[%s] max_latency=%s limiter_log_lines=%d failed_calls=%d circuit_open=%d recovery=%s",
				tt.fault, all.n, all.allowed, all.denied, all.sources(), all.maxLatency.Round(time.Millisecond), len(lines),
				failures, after.CircuitOpen-before.CircuitOpen, recovered.Round(time.Millisecond))
		})
	}
}

func str(v any) string { s, _ := v.(string); return s }

// decideOnUpstash decides ev until Upstash decides it, and returns that
// decision. On a loaded machine a healthy call may outlive a short
// LIMITER_TIMEOUT and be decided by the failure mode instead; such
// decisions charge nothing on Upstash (the memory fallback's bucket is its
// own), so retrying does not change what the Upstash decision sees. It
// fails the test after 10 s or on an error.
func decideOnUpstash(t *testing.T, st *stack, ev events.APIGatewayCustomAuthorizerRequestTypeRequest, what string) decision {
	t.Helper()
	var tried []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		d := st.decide(ev)
		if d.Err != nil {
			t.Fatalf("%s: %v", what, d.Err)
		}
		if d.Source == "upstash" {
			if len(tried) > 0 {
				t.Logf("%s: decided by upstash after %d attempt(s) decided otherwise (%s): a loaded machine", what, len(tried), strings.Join(tried, ", "))
			}
			return d
		}
		tried = append(tried, fmt.Sprintf("%s from %s in %s", d.Effect, d.Source, d.Latency.Round(time.Millisecond)))
		if time.Now().After(deadline) {
			t.Fatalf("%s: no decision from upstash in 10 s: %s", what, strings.Join(tried, ", "))
		}
	}
}

// awaitUpstash sends a decision for a fresh caller every 20 ms until one comes
// from Upstash, and returns how long that took (at most 12 s, then it
// fails the test). key, when set, is sent as X-Api-Key.
func awaitUpstash(t *testing.T, st *stack, key string) (time.Duration, *tally) {
	t.Helper()
	start := time.Now()
	var ta tally
	for {
		var h map[string]string
		if key != "" {
			h = keyHeader(key)
		}
		d := st.decide(authEvent(freshIP(), h))
		ta.add(d)
		if d.Err == nil && d.Source == "upstash" {
			return time.Since(start), &ta
		}
		if time.Since(start) > recoveryBound+2*time.Second {
			t.Fatalf("still not on upstash %s after recovery (sources %s)", time.Since(start), ta.sources())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNoScriptAfterScriptFlush: after SCRIPT FLUSH (as after a failover)
// the next decision gets NOSCRIPT for its EVALSHA and sends EVAL once, in
// the same decision; nothing falls back and later decisions use EVALSHA
// again.
func TestNoScriptAfterScriptFlush(t *testing.T) {
	env := upstashtest.StartRedis(t)
	px := faultproxy.Start(t, env.URL)
	// A generous LIMITER_TIMEOUT: this test is about NOSCRIPT handling (two
	// round trips in one decision), not the timeout; with the default
	// 150 ms a loaded machine could turn it into a fallback test.
	st := newStack(t, upstashEnv(px.URL, env.Token, newKeySet(t), "LIMITER_TIMEOUT", "5s"))
	ip := freshIP()
	requestsFor := func(what string) uint64 {
		t.Helper()
		n := px.Requests()
		if d := st.decide(authEvent(ip, nil)); d.Err != nil || d.Source != "upstash" || d.Effect != "Allow" {
			t.Fatalf("%s: %+v, want Allow from upstash", what, d)
		}
		return px.Requests() - n
	}
	requestsFor("first decision (loads the script)")
	tests := []struct {
		name  string
		flush bool
		want  uint64 // HTTP requests to Upstash for the decision
	}{
		{"script cached: EVALSHA", false, 1},
		{"after SCRIPT FLUSH: EVALSHA, NOSCRIPT, EVAL", true, 2},
		{"cached again: EVALSHA", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.flush {
				env.Redis.Do(t, "SCRIPT", "FLUSH")
			}
			if got := requestsFor(tt.name); got != tt.want {
				t.Errorf("%d requests, want %d", got, tt.want)
			}
		})
	}
	// Concurrent decisions right after a flush all succeed on Upstash.
	env.Redis.Do(t, "SCRIPT", "FLUSH")
	var ta tally
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ta.add(st.decide(authEvent(freshIP(), nil)))
		}()
	}
	wg.Wait()
	ta.check(t, "concurrent decisions after SCRIPT FLUSH", st.timeout+margin)
	if got := ta.sources(); got != "upstash=8" {
		t.Errorf("concurrent decisions after SCRIPT FLUSH: %s, want upstash=8", got)
	}
	if s := st.lim.Stats(); s.Memory != 0 || s.Errors != 0 || s.Timeouts != 0 {
		t.Errorf("Stats = %+v, want no fallback and no failures", s)
	}
}

// TestRedisRestartUnderLoad restarts redis-server (empty data set, empty
// script cache) while four goroutines keep deciding: once at once, and once
// after a second of downtime. Every request is decided in time, and
// decisions return to Upstash within 10 s of the restart.
func TestRedisRestartUnderLoad(t *testing.T) {
	tests := []struct {
		name     string
		downtime time.Duration // between stopping and starting redis-server
	}{
		{"immediate restart", 0},
		{"restart after 1s down", time.Second},
	}
	keys := newKeySet(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			restartUnderLoad(t, keys, tt.downtime)
		})
	}
}

func restartUnderLoad(t *testing.T, keys *keySet, downtime time.Duration) {
	env := upstashtest.StartRedis(t)
	st := newStack(t, upstashEnv(env.URL, env.Token, keys))
	bound := st.timeout + margin

	var ta tally
	var mu sync.Mutex
	var decisions []decision
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := st.decide(authEvent(freshIP(), nil))
				ta.add(d)
				mu.Lock()
				decisions = append(decisions, d)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond) // pacing the load
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // let the load run before the restart
	stopped := time.Now()
	env.Redis.Stop()
	time.Sleep(downtime) // the outage, under load
	env.Redis.Restart(t)
	restarted := time.Now()
	// Wait until a decision that started after the restart came from
	// Upstash.
	var recovered time.Duration
	for recovered == 0 {
		mu.Lock()
		for _, d := range decisions {
			if d.Err == nil && d.Source == "upstash" && d.Start.After(restarted) {
				recovered = d.Start.Add(d.Latency).Sub(restarted)
				break
			}
		}
		mu.Unlock()
		if time.Since(restarted) > recoveryBound+2*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a little load after recovery
	close(stop)
	wg.Wait()

	ta.check(t, "redis-server restart under load", bound)
	if recovered == 0 || recovered > recoveryBound {
		t.Errorf("not back on upstash within %s of the restart (sources %s)", recoveryBound, ta.sources())
	}
	// The restarted server had no script cached: the client's EVALSHA got
	// NOSCRIPT and it loaded the script with EVAL.
	if stats := env.Redis.Do(t, "INFO", "commandstats"); !strings.Contains(stats, "cmdstat_eval:") {
		t.Errorf("no EVAL on the restarted redis-server; commandstats:\n%s", stats)
	}
	s := st.lim.Stats()
	t.Logf("MEASURED fault=redis-restart downtime=%s (stop to serving again %s) decisions=%d sources=[%s] max_latency=%s failed_calls=%d breaker_opened=%d recovery_after_restart=%s",
		downtime, restarted.Sub(stopped).Round(time.Millisecond), ta.n, ta.sources(), ta.maxLatency.Round(time.Millisecond),
		s.Errors+s.Timeouts, s.BreakerOpened, recovered.Round(time.Millisecond))
}

// TestFailureModesUnderHang: with LIMITER_FAILURE_MODE open or closed, a
// hanging Upstash makes every decision allow (fail-open) or deny for a
// second (fail-closed), in time and without errors.
func TestFailureModesUnderHang(t *testing.T) {
	keys := newKeySet(t)
	tests := []struct {
		mode       string
		wantEffect string
		wantSource string
		wantRetry  string
	}{
		{"open", "Allow", "fail-open", "0"},
		{"closed", "Deny", "fail-closed", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			env := upstashtest.Start(t)
			px := faultproxy.Start(t, env.URL)
			st := newStack(t, upstashEnv(px.URL, env.Token, keys, "LIMITER_FAILURE_MODE", tt.mode))
			px.Set(faultproxy.Hang())
			var ta tally
			ip := freshIP()
			for i := 0; i < 2*anonBurst; i++ {
				d := st.decide(authEvent(ip, nil))
				ta.add(d)
				if d.Err == nil && (d.Effect != tt.wantEffect || d.Source != tt.wantSource || d.Retry != tt.wantRetry) {
					t.Errorf("decision %d: effect %s, source %s, retryAfter %s; want %s, %s, %s",
						i, d.Effect, d.Source, d.Retry, tt.wantEffect, tt.wantSource, tt.wantRetry)
				}
			}
			ta.check(t, "mode "+tt.mode, st.timeout+margin)
			px.Set(faultproxy.Pass())
			recovered, _ := awaitUpstash(t, st, "")
			if recovered > recoveryBound {
				t.Errorf("back on upstash after %s, want at most %s", recovered, recoveryBound)
			}
			t.Logf("MEASURED fault=hang mode=%s decisions=%d sources=[%s] max_latency=%s recovery=%s",
				tt.mode, ta.n, ta.sources(), ta.maxLatency.Round(time.Millisecond), recovered.Round(time.Millisecond))
		})
	}
}

// TestBuildWiringUnderFault checks the production wiring (authorizer.Build,
// as functions/authorizer calls it) rather than the test's stack. It
// honours LIMITER_TIMEOUT — shown by outcomes, not by timing: with a 2 s
// LIMITER_TIMEOUT, an Upstash slowed by 250 ms still decides (the default
// 150 ms would have fallen back) — and, with LIMITER_TIMEOUT=80ms, falls
// back to memory under a hang with the burst holding, and returns to
// Upstash.
func TestBuildWiringUnderFault(t *testing.T) {
	keys := newKeySet(t)
	env := upstashtest.Start(t)
	px := faultproxy.Start(t, env.URL)
	build := func(timeout time.Duration) *stack {
		t.Helper()
		vars := upstashEnv(px.URL, env.Token, keys, "LIMITER_TIMEOUT", timeout.String())
		s, err := authorizer.LoadSettings(func(k string) string { return vars[k] })
		if err != nil {
			t.Fatal(err)
		}
		h, err := authorizer.Build(context.Background(), s, quietLogger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		st := &stack{h: h, timeout: timeout}
		if d := decideOnUpstash(t, st, authEvent(freshIP(), keyHeader(keys.Premium)), "healthy"); d.Effect != "Allow" {
			t.Fatalf("healthy: %+v, want Allow from upstash", d)
		}
		return st
	}

	const slow = 250 * time.Millisecond
	if slow <= limiter.DefaultTimeout {
		t.Fatalf("the slow fault (%s) must outlast the default LIMITER_TIMEOUT (%s)", slow, limiter.DefaultTimeout)
	}
	patient := build(2 * time.Second)
	px.Set(faultproxy.Slow(slow))
	if d := patient.decide(authEvent(freshIP(), nil)); d.Err != nil || d.Source != "upstash" || d.Effect != "Allow" {
		t.Errorf("Upstash %s slower than the default timeout, LIMITER_TIMEOUT=2s: %+v, want Allow from upstash", slow, d)
	}
	px.Set(faultproxy.Pass())

	const timeout = 80 * time.Millisecond
	st := build(timeout)
	px.Set(faultproxy.Hang())
	var ta tally
	ip := freshIP()
	for i := 0; i < anonBurst+5; i++ {
		ta.add(st.decide(authEvent(ip, nil)))
	}
	ta.check(t, "Build under hang", timeout+margin)
	if ta.allowed != anonBurst || ta.bySource["memory"] != anonBurst+5 {
		t.Errorf("Build under hang: %d allowed, sources %s; want %d allowed, all memory", ta.allowed, ta.sources(), anonBurst)
	}
	px.Set(faultproxy.Pass())
	if recovered, _ := awaitUpstash(t, st, ""); recovered > recoveryBound {
		t.Errorf("back on upstash after %s", recovered)
	}
	t.Logf("MEASURED fault=hang wiring=Build limiter_timeout=%s max_latency=%s", timeout, ta.maxLatency.Round(time.Millisecond))
}
