package limiter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

func newClock() *fakeclock.Clock { return fakeclock.New(t0) }

// faultServer stands between the client and the Upstash-compatible server
// (real Lua on redis-server) and injects faults: a fault handles the HTTP
// request itself instead of passing it on. It counts requests.
type faultServer struct {
	next  http.Handler
	calls atomic.Int64

	mu    sync.Mutex
	fault func(w http.ResponseWriter, r *http.Request) // nil: healthy
}

func (f *faultServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	f.mu.Lock()
	fault := f.fault
	f.mu.Unlock()
	if fault != nil {
		// Read the body first: the server notices a client that gave up
		// (and cancels r.Context()) only once the body is read. A fault
		// may still pass the request on.
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		fault(w, r)
		return
	}
	f.next.ServeHTTP(w, r)
}

func (f *faultServer) setFault(fn func(w http.ResponseWriter, r *http.Request)) {
	f.mu.Lock()
	f.fault = fn
	f.mu.Unlock()
}

// Faults.
var (
	// errTransport drops the connection without an answer.
	errTransport = func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	// errAuth answers as Upstash does for a wrong token.
	errAuth = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"WRONGPASS invalid or missing auth token"}`)
	}
	// blockUntilGone hangs, as a dead network would, until the client gives up.
	blockUntilGone = func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
)

// logRecorder is a slog.Handler keeping every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []logLine
}

type logLine struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	l := logLine{Level: rec.Level, Msg: rec.Message, Attrs: map[string]string{}}
	rec.Attrs(func(a slog.Attr) bool { l.Attrs[a.Key] = a.Value.String(); return true })
	r.mu.Lock()
	r.recs = append(r.recs, l)
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) lines() []logLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]logLine(nil), r.recs...)
}

// withReason returns the lines whose reason attribute is reason.
func (r *logRecorder) withReason(reason string) []logLine {
	var out []logLine
	for _, l := range r.lines() {
		if l.Attrs["reason"] == reason {
			out = append(out, l)
		}
	}
	return out
}

// harness is a Limiter on a real Upstash store behind a faultServer, with
// an injected clock and a log recorder.
type harness struct {
	env    *upstashtest.Env
	l      *Limiter
	shared *faultServer
	store  *UpstashStore
	clock  *fakeclock.Clock
	logs   *logRecorder
}

func newHarness(t *testing.T, cfg Config) *harness {
	return newHarnessWith(t, cfg, UpstashConfig{})
}

func newHarnessWith(t *testing.T, cfg Config, ucfg UpstashConfig) *harness {
	t.Helper()
	env := upstashtest.Start(t)
	h := &harness{env: env, shared: &faultServer{next: env.Server}, clock: newClock(), logs: &logRecorder{}}
	srv := httptest.NewServer(h.shared)
	t.Cleanup(srv.Close)
	c, err := upstash.New(upstash.Config{URL: srv.URL, Token: env.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	ucfg.Client = c
	if h.store, err = NewUpstashStore(ucfg); err != nil {
		t.Fatal(err)
	}
	// Load the script once: every decision below is one request.
	if _, err := h.store.Allow(context.Background(), Request{Buckets: []Bucket{{Key: "warm", Limit: perTen}}, Cost: 1}, t0); err != nil {
		t.Fatal(err)
	}
	h.shared.calls.Store(0)
	cfg.Upstash = h.store
	cfg.Now = h.clock.Now
	if cfg.Timeout == 0 {
		// Tests about accuracy must not fall back because a loaded machine
		// answered slowly; tests about timeouts set their own.
		cfg.Timeout = 10 * time.Second
	}
	cfg.Logger = slog.New(h.logs)
	if h.l, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) allow(t *testing.T, key string, l Limit, cost int64) Result {
	t.Helper()
	r, err := h.l.Allow(context.Background(), Request{Buckets: []Bucket{{Key: key, Limit: l}}, Cost: cost})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewLimiterConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero value", cfg: Config{}},
		{name: "negative timeout", cfg: Config{Timeout: -time.Second}, wantErr: "Timeout must not be negative"},
		{name: "long cooldown", cfg: Config{BreakerCooldown: 6 * time.Second}, wantErr: "BreakerCooldown 6s is outside 0..5s"},
		{name: "negative failures", cfg: Config{BreakerFailures: -1}, wantErr: "BreakerFailures"},
		{name: "unknown mode", cfg: Config{FailureMode: 7}, wantErr: "unknown FailureMode 7"},
		{name: "negative log interval", cfg: Config{LogInterval: -1}, wantErr: "LogInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New error = %v, want ErrInvalidConfig containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLimiterMemoryOnly(t *testing.T) {
	c := newClock()
	l, err := New(Config{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Buckets: []Bucket{{Key: "ip:203.0.113.7", Limit: perTen}}, Cost: 1}
	for i := 0; i < 11; i++ {
		if _, err := l.Allow(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Allow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := denied(perTen, 0, 100*time.Second, 10*time.Second)
	want.Source = SourceMemory
	if diff := cmp.Diff(want, viewOf(got)); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Memory: 12, Denied: 2}, l.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if _, err := l.Allow(context.Background(), Request{Cost: 1}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("invalid request: error = %v, want ErrInvalidRequest", err)
	}
}

func TestLimiterFailureModes(t *testing.T) {
	l := perTen
	tests := []struct {
		name      string
		mode      FailureMode
		cost      int64
		want      view
		wantStats Stats
	}{
		{
			name: "fallback decides on this container's bucket", mode: FailFallback, cost: 3,
			want:      view{Allowed: true, Limit: 10, Remaining: 7, ResetAfter: 30 * time.Second, Window: 100 * time.Second, Source: SourceMemory},
			wantStats: Stats{Memory: 1, Errors: 1},
		},
		{
			name: "open allows as if the bucket were full", mode: FailOpen, cost: 3,
			want:      view{Allowed: true, Limit: 10, Remaining: 7, ResetAfter: 30 * time.Second, Window: 100 * time.Second, Source: SourceFailOpen},
			wantStats: Stats{FailOpen: 1, Errors: 1},
		},
		{
			name: "open allows even a cost above the burst", mode: FailOpen, cost: 12,
			want:      view{Allowed: true, Limit: 10, Remaining: 0, ResetAfter: 100 * time.Second, Window: 100 * time.Second, Source: SourceFailOpen},
			wantStats: Stats{FailOpen: 1, Errors: 1},
		},
		{
			name: "fallback refuses a cost above the burst", mode: FailFallback, cost: 12,
			want:      tooBig(perTen, 10, 0),
			wantStats: Stats{Memory: 1, Denied: 1, Errors: 1},
		},
		{
			name: "closed denies for a second", mode: FailClosed, cost: 1,
			want: view{Limit: 10, ResetAfter: time.Second, RetryAfter: time.Second, Window: 100 * time.Second,
				Source: SourceFailClosed, Reason: ReasonUnavailable},
			wantStats: Stats{FailClosed: 1, Denied: 1, Errors: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{FailureMode: tt.mode})
			h.shared.setFault(errTransport)
			got := h.allow(t, "k", l, tt.cost)
			if tt.want.Source == SourceNone {
				tt.want.Source = SourceMemory
			}
			if diff := cmp.Diff(tt.want, viewOf(got)); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStats, h.l.Stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			warn := h.logs.withReason("error")
			if len(warn) != 1 || warn[0].Level != slog.LevelWarn || warn[0].Attrs["failure_mode"] != tt.mode.String() {
				t.Errorf("logs = %+v, want one WARN with reason error and failure_mode %s", h.logs.lines(), tt.mode)
			}
		})
	}
}

// TestLimiterTimeoutFallsBackWithinBudget: a store that never answers is
// given Timeout (the server sees the client wait at least that long, and
// give up), then the failure mode decides.
func TestLimiterTimeoutFallsBackWithinBudget(t *testing.T) {
	const timeout = 50 * time.Millisecond
	h := newHarness(t, Config{Timeout: timeout})
	waited := make(chan time.Duration, 1)
	h.shared.setFault(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		<-r.Context().Done()
		waited <- time.Since(start)
	})
	got := h.allow(t, "k", perTen, 1)
	if got.Source != SourceMemory || !got.Allowed {
		t.Errorf("result = %+v, want an allowed memory decision", got)
	}
	// A lower bound only: the client gave up no earlier than Timeout.
	if w := <-waited; w < timeout-5*time.Millisecond {
		t.Errorf("the client gave up after %v, before its Timeout %v", w, timeout)
	}
	if s := h.l.Stats(); s.Timeouts != 1 || s.Memory != 1 {
		t.Errorf("stats = %+v, want 1 timeout and 1 memory decision", s)
	}
	if lines := h.logs.withReason("timeout"); len(lines) != 1 {
		t.Errorf("timeout log lines = %+v, want 1", h.logs.lines())
	}
}

// TestLimiterCallerDeadlineIsKept: a request whose own deadline is shorter
// than Timeout keeps it (else this test would wait an hour).
func TestLimiterCallerDeadlineIsKept(t *testing.T) {
	h := newHarness(t, Config{Timeout: time.Hour})
	h.shared.setFault(blockUntilGone)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r, err := h.l.Allow(ctx, Request{Buckets: []Bucket{{Key: "k", Limit: perTen}}, Cost: 1})
	if err != nil || r.Source != SourceMemory {
		t.Fatalf("result %+v, %v; want a memory decision", r, err)
	}
	if s := h.l.Stats(); s.BreakerIsOpen || s.Timeouts+s.Canceled != 1 {
		t.Errorf("stats = %+v, want one timeout or cancellation, breaker closed", s)
	}
}

// TestBreaker walks the breaker through open, half-open and closed with an
// injected clock.
func TestBreaker(t *testing.T) {
	h := newHarness(t, Config{BreakerFailures: 3, BreakerCooldown: 2 * time.Second})
	type step struct {
		advance    time.Duration
		fault      func(http.ResponseWriter, *http.Request) // nil: healthy
		wantCalls  int64                                    // store calls so far
		wantSource Source
		wantOpen   bool
	}
	steps := []step{
		{fault: errTransport, wantCalls: 1, wantSource: SourceMemory},
		{fault: errTransport, wantCalls: 2, wantSource: SourceMemory},
		{fault: errTransport, wantCalls: 3, wantSource: SourceMemory, wantOpen: true}, // third failure opens it
		{fault: nil, wantCalls: 3, wantSource: SourceMemory, wantOpen: true},          // open: the store is skipped, healthy or not
		{advance: 1999 * time.Millisecond, wantCalls: 3, wantSource: SourceMemory, wantOpen: true},
		{advance: time.Millisecond, fault: errTransport, wantCalls: 4, wantSource: SourceMemory, wantOpen: true}, // probe fails: another cooldown
		{advance: time.Second, wantCalls: 4, wantSource: SourceMemory, wantOpen: true},
		{advance: time.Second, wantCalls: 5, wantSource: SourceUpstash}, // probe succeeds: closed
		{wantCalls: 6, wantSource: SourceUpstash},
		{fault: errTransport, wantCalls: 7, wantSource: SourceMemory}, // one failure does not open it
		{wantCalls: 8, wantSource: SourceUpstash},                     // and a success resets the count
		{fault: errTransport, wantCalls: 9, wantSource: SourceMemory},
		{fault: errTransport, wantCalls: 10, wantSource: SourceMemory},
		{fault: errTransport, wantCalls: 11, wantSource: SourceMemory, wantOpen: true},
	}
	for i, s := range steps {
		h.clock.Advance(s.advance)
		h.shared.setFault(s.fault) // a nil fault: healthy
		got := h.allow(t, "k", PerSecond(1000), 1)
		if got.Source != s.wantSource || h.shared.calls.Load() != s.wantCalls || h.l.Stats().BreakerIsOpen != s.wantOpen {
			t.Fatalf("step %d: source %v, store calls %d, open %v; want %v, %d, %v",
				i, got.Source, h.shared.calls.Load(), h.l.Stats().BreakerIsOpen, s.wantSource, s.wantCalls, s.wantOpen)
		}
	}
	s := h.l.Stats()
	if s.BreakerOpened != 2 || s.CircuitOpen != 3 || s.Errors != 8 {
		t.Errorf("stats = %+v, want BreakerOpened 2, CircuitOpen 3, Errors 8", s)
	}
	if got := len(h.logs.withReason("breaker_closed")); got != 1 {
		t.Errorf("breaker_closed log lines = %d, want 1", got)
	}
}

// TestRecoveryWithinTenSeconds: README promises decisions return to the
// shared store within 10 s of it recovering, whenever the recovery happens.
func TestRecoveryWithinTenSeconds(t *testing.T) {
	const every = 100 * time.Millisecond // one request per 100 ms
	tests := []struct {
		name       string
		recoversAt time.Duration // after the outage began
	}{
		{name: "right after the breaker opened", recoversAt: 300 * time.Millisecond},
		{name: "just before a probe", recoversAt: 2200 * time.Millisecond},
		{name: "just after a failed probe", recoversAt: 2400 * time.Millisecond},
		{name: "after a long outage", recoversAt: 3 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.shared.setFault(errTransport)
			for elapsed := time.Duration(0); ; elapsed += every {
				if elapsed == tt.recoversAt {
					h.shared.setFault(nil)
				}
				r := h.allow(t, "k", PerSecond(1000), 1)
				if r.Source == SourceUpstash {
					if elapsed < tt.recoversAt {
						t.Fatalf("upstash decision at %v, before recovery at %v", elapsed, tt.recoversAt)
					}
					if lag := elapsed - tt.recoversAt; lag > 10*time.Second {
						t.Errorf("back on upstash %v after recovery, want ≤ 10s", lag)
					}
					return
				}
				if elapsed > tt.recoversAt+time.Minute {
					t.Fatalf("still not back on upstash %v after recovery", elapsed-tt.recoversAt)
				}
				h.clock.Advance(every)
			}
		})
	}
}

// TestHalfOpenLetsOneProbeThrough: while the probe is in flight, other
// callers keep skipping the store.
func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	h := newHarness(t, Config{BreakerFailures: 1, BreakerCooldown: time.Second})
	h.shared.setFault(errTransport)
	h.allow(t, "k", PerSecond(1000), 1) // opens the breaker
	h.clock.Advance(time.Second)

	entered, release := make(chan struct{}), make(chan struct{})
	h.shared.setFault(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		h.shared.next.ServeHTTP(w, r)
	})
	probe := make(chan Result)
	go func() {
		r, _ := h.l.Allow(context.Background(), Request{Buckets: []Bucket{{Key: "k", Limit: PerSecond(1000)}}, Cost: 1})
		probe <- r
	}()
	<-entered
	if r := h.allow(t, "other", PerSecond(1000), 1); r.Source != SourceMemory {
		t.Errorf("second caller during the probe: source %v, want memory", r.Source)
	}
	if got := h.shared.calls.Load(); got != 2 {
		t.Errorf("store calls = %d, want 2 (the failure and the probe)", got)
	}
	close(release)
	if r := <-probe; r.Source != SourceUpstash {
		t.Errorf("probe source = %v, want upstash", r.Source)
	}
	h.shared.setFault(nil)
	if r := h.allow(t, "other", PerSecond(1000), 1); r.Source != SourceUpstash {
		t.Errorf("after the probe: source %v, want upstash", r.Source)
	}
}

func TestAuthErrorIsAnErrorLevelMisconfiguration(t *testing.T) {
	h := newHarness(t, Config{})
	h.shared.setFault(errAuth)
	r := h.allow(t, "k", perTen, 1)
	if !r.Allowed || r.Source != SourceMemory {
		t.Errorf("result = %+v, want an allowed memory decision (availability first)", r)
	}
	lines := h.logs.withReason("auth")
	if len(lines) != 1 || lines[0].Level != slog.LevelError || !strings.Contains(lines[0].Msg, "misconfiguration") {
		t.Errorf("auth log lines = %+v, want one ERROR about a misconfiguration", lines)
	}
	if s := h.l.Stats(); s.AuthErrors != 1 {
		t.Errorf("AuthErrors = %d, want 1", s.AuthErrors)
	}
}

// TestFailureLogsAreRateLimited: a burst of failures logs one line per
// reason per interval, then a line reporting how many were suppressed.
func TestFailureLogsAreRateLimited(t *testing.T) {
	h := newHarness(t, Config{BreakerFailures: 1000, LogInterval: 10 * time.Second})
	h.shared.setFault(errTransport)
	const key = "ip:203.0.113.7"
	for i := 0; i < 100; i++ { // 100 failures over 9.9 s
		h.allow(t, key, PerSecond(1000), 1)
		h.clock.Advance(99 * time.Millisecond)
	}
	if got := len(h.logs.withReason("error")); got != 1 {
		t.Fatalf("log lines for 100 failures in 10 s = %d, want 1", got)
	}
	h.clock.Advance(time.Second)
	h.allow(t, key, PerSecond(1000), 1)
	lines := h.logs.withReason("error")
	if len(lines) != 2 || lines[1].Attrs["suppressed"] != "99" {
		t.Fatalf("log lines = %+v, want a second line with suppressed=99", lines)
	}
	if got := h.l.Stats().Memory; got != 101 {
		t.Errorf("every decision is counted: Memory = %d, want 101", got)
	}
	for _, l := range h.logs.lines() {
		for _, v := range l.Attrs {
			if strings.Contains(v, "203.0.113.7") || strings.Contains(l.Msg, "203.0.113.7") {
				t.Errorf("log line %+v names a bucket key", l)
			}
		}
	}
}

// TestCanceledCallerDoesNotOpenBreaker: a request abandoned by its caller
// says nothing about the store's health.
func TestCanceledCallerDoesNotOpenBreaker(t *testing.T) {
	h := newHarness(t, Config{BreakerFailures: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 3; i++ {
		r, err := h.l.Allow(ctx, Request{Buckets: []Bucket{{Key: "k", Limit: perTen}}, Cost: 1})
		if err != nil || r.Source != SourceMemory {
			t.Fatalf("result %+v, %v; want a memory decision", r, err)
		}
	}
	if s := h.l.Stats(); s.BreakerIsOpen || s.Canceled != 3 {
		t.Errorf("stats = %+v, want breaker closed and 3 canceled", s)
	}
}

// TestDenyCache: repeats of a denied request are answered from memory
// until they could pass; a cheaper request the bucket can pay goes through.
func TestDenyCache(t *testing.T) {
	// Settings that stay fresh for the whole test: stale settings send a
	// denial to Upstash (see TestDenyCacheRefreshesSettings).
	h := newHarnessWith(t, Config{}, UpstashConfig{SettingsTTL: time.Hour})
	for i := 0; i < 8; i++ {
		h.allow(t, "k", perTen, 1)
	}
	type step struct {
		advance    time.Duration
		cost       int64
		want       view  // Source included
		wantCalls  int64 // store calls so far
		wantCached int   // buckets remembered ("warm" and "k")
	}
	up := func(r view) view { r.Source = SourceUpstash; return r }
	cached := func(r view) view { r.Source = SourceCache; return r }
	steps := []step{
		// Every bucket decided is remembered: the first denial is answered
		// here already.
		{cost: 4, want: cached(denied(perTen, 2, 80*time.Second, 20*time.Second)), wantCalls: 8, wantCached: 2},
		{cost: 4, want: cached(denied(perTen, 2, 80*time.Second, 20*time.Second)), wantCalls: 8, wantCached: 2},
		{advance: 10 * time.Second, cost: 5, want: cached(denied(perTen, 3, 70*time.Second, 20*time.Second)), wantCalls: 8, wantCached: 2},
		// Cheaper: the cached state could pay it, so the store decides.
		{cost: 2, want: up(ok(perTen, 1, 90*time.Second)), wantCalls: 9, wantCached: 2},
		// The cache learnt the charge: cost 2 is now refused from memory.
		{cost: 2, want: cached(denied(perTen, 1, 90*time.Second, 10*time.Second)), wantCalls: 9, wantCached: 2},
		{advance: 9999 * time.Millisecond, cost: 2, want: cached(denied(perTen, 1, 80001*time.Millisecond, time.Millisecond)), wantCalls: 9, wantCached: 2},
		// At exactly RetryAfter the store is asked again, and allows.
		{advance: time.Millisecond, cost: 2, want: up(ok(perTen, 0, 100*time.Second)), wantCalls: 10, wantCached: 2},
	}
	for i, s := range steps {
		h.clock.Advance(s.advance)
		got := h.allow(t, "k", perTen, s.cost)
		if diff := cmp.Diff(s.want, viewOf(got)); diff != "" {
			t.Fatalf("step %d mismatch (-want +got):\n%s", i, diff)
		}
		if c := h.shared.calls.Load(); c != s.wantCalls {
			t.Fatalf("step %d: store calls = %d, want %d", i, c, s.wantCalls)
		}
		if n := h.store.known.t.len(); n != s.wantCached {
			t.Fatalf("step %d: cached buckets = %d, want %d", i, n, s.wantCached)
		}
	}
	// A cost above the burst never passes: the store says so once (the
	// cache does not know the bucket yet), then the cache.
	for i, want := range []Source{SourceUpstash, SourceCache} {
		if got := h.allow(t, "fresh", perTen, 11); got.Source != want || got.Reason != ReasonCostExceedsBurst {
			t.Errorf("cost above burst, call %d: %+v, want %v cost_exceeds_burst", i, got, want)
		}
	}
	if s := h.l.Stats(); s.Cache != 6 || s.Upstash != 11 {
		t.Errorf("stats = %+v, want Cache 6, Upstash 11", s)
	}
	// An allowed decision that takes a bucket's last tokens is remembered
	// too: a flood costs one call per allowed request and none for denials.
	calls := h.shared.calls.Load()
	for i := 0; i < 10; i++ {
		if r := h.allow(t, "flood", perTen, 1); r.Source != SourceUpstash || !r.Allowed {
			t.Fatalf("flood request %d: %+v, want allowed by upstash", i, r)
		}
	}
	for i := 0; i < 100; i++ {
		if r := h.allow(t, "flood", perTen, 1); r.Source != SourceCache || r.Allowed {
			t.Fatalf("flood request %d after the burst: %+v, want denied from the cache", i, r)
		}
	}
	if got := h.shared.calls.Load() - calls; got != 10 {
		t.Errorf("store calls for a flood of 110 = %d, want 10", got)
	}
}

// TestDenyCacheNeverDeniesWhatTheStoreAllows runs one random sequence
// through a Limiter (cache in front of store A) and straight into an
// identical store B. Every decision must match: the cache may only save
// calls, never change an answer.
func TestDenyCacheNeverDeniesWhatTheStoreAllows(t *testing.T) {
	h := newHarnessWith(t, Config{}, UpstashConfig{SettingsTTL: time.Hour})
	bare := newMemory(t, MemoryConfig{})
	limits := map[string]Limit{"a": perTen, "b": global3, "c": oddRate, "d": odd7}
	names := []string{"a", "b", "c", "d"}
	rng := rand.New(rand.NewPCG(3, 4))
	cacheHits := 0
	for i := 0; i < 3000; i++ {
		if rng.IntN(3) == 0 {
			h.clock.Advance(time.Duration(rng.IntN(8000)) * time.Millisecond)
		}
		perm := rng.Perm(len(names))[:1+rng.IntN(2)]
		req := Request{Cost: 1 + rng.Int64N(4)}
		for _, p := range perm {
			req.Buckets = append(req.Buckets, Bucket{Key: names[p], Limit: limits[names[p]]})
		}
		got, err := h.l.Allow(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		want, err := bare.Allow(req, h.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got.Source == SourceCache {
			cacheHits++
		}
		want.Source = got.Source
		if diff := cmp.Diff(viewOf(want), viewOf(got)); diff != "" {
			t.Fatalf("step %d (cost %d, buckets %v): limiter differs from the bare store (-store +limiter):\n%s", i, req.Cost, perm, diff)
		}
	}
	if cacheHits == 0 {
		t.Error("the sequence never hit the cache; the test proves nothing")
	}
	t.Logf("%d of 3000 decisions answered from the cache", cacheHits)
}

func TestDenyCacheIsBounded(t *testing.T) {
	h := newHarnessWith(t, Config{}, UpstashConfig{KnownKeys: 32})
	for i := 0; i < 500; i++ {
		key := fmt.Sprintf("k%d", i)
		h.allow(t, key, PerMinute(1), 1)
		if r := h.allow(t, key, PerMinute(1), 1); r.Allowed {
			t.Fatal("second request allowed")
		}
	}
	if n := h.store.known.t.len(); n > 32 {
		t.Errorf("deny cache holds %d buckets, want ≤ 32", n)
	}
}

func TestDenyCacheCanBeDisabled(t *testing.T) {
	h := newHarnessWith(t, Config{}, UpstashConfig{KnownKeys: -1})
	for i := 0; i < 5; i++ {
		if r := h.allow(t, "k", PerMinute(1), 1); r.Source != SourceUpstash {
			t.Fatalf("call %d: source %v, want upstash", i, r.Source)
		}
	}
	if h.store.known != nil {
		t.Error("the store remembers buckets")
	}
}

// TestLimiterOnUpstash runs the Limiter over the real script: one HTTP
// request per decision, none for a cached denial.
func TestLimiterOnUpstash(t *testing.T) {
	store, env := newTestUpstash(t, UpstashConfig{SettingsTTL: time.Minute})
	c := newClock()
	l, err := New(Config{Upstash: store, Now: c.Now, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Buckets: []Bucket{{Key: "caller", Limit: perTen}, {Key: "global", Limit: PerSecond(100)}}, Cost: 1}
	// The first call loads the script (EVALSHA, NOSCRIPT, EVAL: 2 requests);
	// the steady state below is one request per decision.
	if _, err := store.Allow(context.Background(), Request{Buckets: []Bucket{{Key: "warm", Limit: perTen}}, Cost: 1}, t0); err != nil {
		t.Fatal(err)
	}
	type step struct {
		advance      time.Duration
		wantAllowed  bool
		wantSource   Source
		wantRequests uint64
	}
	var steps []step
	for i := 0; i < 10; i++ {
		steps = append(steps, step{wantAllowed: true, wantSource: SourceUpstash, wantRequests: 1})
	}
	steps = append(steps,
		// The 10th allowed decision reported the bucket empty: the first
		// denial already comes from the cache.
		step{wantSource: SourceCache, wantRequests: 0},
		step{wantSource: SourceCache, wantRequests: 0},
		step{advance: 9 * time.Second, wantSource: SourceCache, wantRequests: 0},
		step{advance: time.Second, wantAllowed: true, wantSource: SourceUpstash, wantRequests: 1},
	)
	for i, s := range steps {
		c.Advance(s.advance)
		before := env.Server.Requests()
		r, err := l.Allow(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if got := env.Server.Requests() - before; r.Allowed != s.wantAllowed || r.Source != s.wantSource || got != s.wantRequests {
			t.Fatalf("step %d: allowed %v source %v requests %d, want %v %v %d", i, r.Allowed, r.Source, got, s.wantAllowed, s.wantSource, s.wantRequests)
		}
	}
}

// TestLimiterSurvivesUpstashRestart: a real outage (redis-server down) falls
// back, and once it is back decisions return to it.
func TestLimiterSurvivesUpstashRestart(t *testing.T) {
	store, env := newTestUpstash(t, UpstashConfig{})
	needRedis(t, env)
	c := newClock()
	l, err := New(Config{Upstash: store, Now: c.Now, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Buckets: []Bucket{{Key: "caller", Limit: PerSecond(100)}}, Cost: 1}
	allow := func() Result {
		t.Helper()
		r, err := l.Allow(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := allow(); r.Source != SourceUpstash {
		t.Fatalf("source %v, want upstash", r.Source)
	}
	env.Redis.Stop()
	for i := 0; i < 3; i++ {
		if r := allow(); r.Source != SourceMemory || !r.Allowed {
			t.Fatalf("during the outage: %+v, want an allowed memory decision", r)
		}
	}
	env.Redis.Restart(t) // empty data set, no scripts cached
	c.Advance(DefaultBreakerCooldown)
	if r := allow(); r.Source != SourceUpstash {
		t.Fatalf("after recovery: source %v, want upstash", r.Source)
	}
	if s := l.Stats(); s.Errors+s.Timeouts != 3 || s.BreakerOpened != 1 {
		t.Errorf("stats = %+v, want 3 failures and one breaker opening", s)
	}
}

// TestLogGateOrdering: decisions running concurrently read the clock before
// they reach the gate, so lines may arrive slightly out of order; that is
// still one burst. A clock stepped back by a whole interval logs again.
func TestLogGateOrdering(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		steps []time.Duration // offsets from t0, in arrival order
		want  []bool
	}{
		{"in order", []time.Duration{0, time.Second, 9 * time.Second, 10 * time.Second}, []bool{true, false, false, true}},
		{"slightly out of order", []time.Duration{time.Second, 999 * time.Millisecond, 0, 2 * time.Second}, []bool{true, false, false, false}},
		{"stepped back a whole interval", []time.Duration{20 * time.Second, 10 * time.Second}, []bool{true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &logGate{every: 10 * time.Second}
			var got []bool
			for _, d := range tt.steps {
				ok, _ := g.take(failError, t0.Add(d))
				got = append(got, ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("logged (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPrime: a new container reads the live settings and the warm-up start
// in one request at init, so its first decision reads neither; with
// Upstash down, Prime fails and decisions go on.
func TestPrime(t *testing.T) {
	h := newHarnessWith(t, Config{Warmup: Warmup{Factor: 0.5, Duration: time.Minute, Version: "v7"}}, UpstashConfig{})
	rs := needRedis(t, h.env)
	rs.Do(t, "SET", DefaultPrefix+settingsKeySuffix, FormatScales([]Scale{{Factor: 2, Start: t0.Add(-time.Hour)}}))
	if err := h.l.Prime(context.Background()); err != nil {
		t.Fatalf("Prime: %v", err)
	}
	if got := h.shared.calls.Load(); got != 1 {
		t.Errorf("Prime made %d requests, want 1", got)
	}
	if got := rs.Do(t, "GET", DefaultPrefix+warmupKeySuffix); got != "v7="+strconv.FormatInt(t0.UnixMilli(), 10) {
		t.Errorf("warm-up key = %q, want this version's start", got)
	}
	rs.Do(t, "CONFIG", "RESETSTAT")
	r, err := h.l.Allow(context.Background(), Request{Cost: 1, Buckets: []Bucket{{Key: "primed", Limit: perTen, Scope: ScopeAll}}})
	if err != nil {
		t.Fatal(err)
	}
	// Factor 2 (read by Prime), warm-up 0.5 at its start: the burst of 10
	// stays 10. Without the factor it would be 5, without the warm-up 20.
	if r.Source != SourceUpstash || r.Limit != 10 || r.Remaining != 9 {
		t.Errorf("first decision %+v, want upstash, limit 10, remaining 9", viewOf(r))
	}
	if diff := cmp.Diff(map[string]int{"evalsha": 1, "set": 1}, commandStats(t, rs)); diff != "" {
		t.Errorf("the first decision read more than its bucket (-want +got):\n%s", diff)
	}

	down := newHarness(t, Config{})
	down.shared.setFault(errTransport)
	if err := down.l.Prime(context.Background()); err == nil {
		t.Error("Prime with Upstash down: no error")
	}
	if r := down.allow(t, "k", perTen, 1); !r.Allowed || r.Source != SourceMemory {
		t.Errorf("decision after a failed Prime: %+v, want an allowed fallback", viewOf(r))
	}

	// Upstash takes the connection and never answers: Prime waits its
	// timeout once, and the breaker spares the first decisions the same wait.
	hung := newHarness(t, Config{Timeout: 50 * time.Millisecond})
	hung.shared.setFault(blockUntilGone)
	if err := hung.l.Prime(context.Background()); err == nil {
		t.Fatal("Prime with Upstash hanging: no error")
	}
	calls := hung.shared.calls.Load()
	for i := 0; i < 3; i++ {
		if r := hung.allow(t, "k", perTen, 1); r.Source != SourceMemory {
			t.Fatalf("decision %d after a hung Prime: source %v, want memory", i, r.Source)
		}
	}
	if got := hung.shared.calls.Load() - calls; got != 0 {
		t.Errorf("%d requests to a hung Upstash after Prime, want 0 during the cooldown", got)
	}
	if s := hung.l.Stats(); !s.BreakerIsOpen || s.CircuitOpen != 3 {
		t.Errorf("stats %+v, want the breaker open and 3 decisions skipping Upstash", s)
	}
}
