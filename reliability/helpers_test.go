package reliability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authctx"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// margin is what a decision (or a reply through start-api) may take beyond
// LIMITER_TIMEOUT (or the key lookup's KeyTimeout) before a test fails:
// the check is that a decision does not wait for the fault, not how fast it
// is. The margin is generous because the machine running the suite may be
// loaded (a 2-core CI runner, the race detector, several redis-servers and
// function processes; a reply through start-api was seen to take 1.18 s
// during a hang with a 150 ms LIMITER_TIMEOUT), and it stays well below
// what waiting for a fault would cost: slowFault's 10 s, or a hang's
// forever. The measured maxima are logged (MEASURED lines) and documented.
const margin = 3 * time.Second

// slowFault is how long the "slow" scenarios delay Upstash: far longer than
// LIMITER_TIMEOUT + margin, so a decision that waited for it fails.
const slowFault = 10 * time.Second

// recoveryBound is README's promise ("Failure policy"): decisions return to Upstash within
// 10 s of it recovering.
const recoveryBound = 10 * time.Second

const testMethodArn = "arn:aws:execute-api:us-east-1:123456789012:reliab1234/v1/POST/predict"

// logSink is a concurrency-safe writer collecting JSON log (or EMF) lines.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns everything written so far.
func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Mark returns a position to pass to Since.
func (s *logSink) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

// Since returns the JSON lines written after mark, decoded.
func (s *logSink) Since(t *testing.T, mark int) []map[string]any {
	t.Helper()
	s.mu.Lock()
	text := s.buf.String()[mark:]
	s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		out = append(out, m)
	}
	return out
}

// limiterLines are the log lines other than the per-decision ones: what the
// limiter logs about failures and its breaker.
func limiterLines(lines []map[string]any) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] != "decision" {
			out = append(out, l)
		}
	}
	return out
}

// keySet is an API key file with one key per tier and a revoked key.
type keySet struct {
	Path    string
	Store   *apikey.FileStore
	Auth    string // an authenticated key
	Premium string // a premium key
	Revoked string // a revoked authenticated key
	Recs    map[string]apikey.Record
}

// newKeySet writes a key file in a temporary directory.
func newKeySet(t *testing.T) *keySet {
	t.Helper()
	ks := &keySet{Path: filepath.Join(t.TempDir(), "keys.json"), Recs: map[string]apikey.Record{}}
	fs, err := apikey.NewFileStore(apikey.FileConfig{Path: ks.Path})
	if err != nil {
		t.Fatal(err)
	}
	ks.Store = fs
	for _, k := range []struct {
		dst        *string
		name, tier string
	}{{&ks.Auth, "auth", "authenticated"}, {&ks.Premium, "prem", "premium"}, {&ks.Revoked, "revoked", "authenticated"}} {
		key, rec, err := apikey.New(k.name, k.tier, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.Create(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		*k.dst = key
		ks.Recs[key] = rec
	}
	if err := fs.Revoke(context.Background(), ks.Recs[ks.Revoked].ID); err != nil {
		t.Fatal(err)
	}
	return ks
}

// stack is one "container": the authorizer wired as authorizer.Build wires
// it (settings from environment variables, the Upstash client, the
// limiter, the file key store behind the cache), keeping the limiter so
// that tests can read its Stats.
type stack struct {
	h       *authorizer.Handler
	lim     *limiter.Limiter
	logs    *logSink // the functions' JSON log (authorizer and limiter)
	metrics *logSink // EMF lines
	timeout time.Duration
}

// newStack builds a container from env (variable → value; unset ones take
// their defaults).
func newStack(t *testing.T, env map[string]string) *stack {
	t.Helper()
	s, err := authorizer.LoadSettings(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("LoadSettings: %v", err)
	}
	st := &stack{logs: &logSink{}, metrics: &logSink{}, timeout: s.Timeout}
	log := authorizer.NewLogger(st.logs, s.LogLevel)
	lcfg := limiter.Config{Timeout: s.Timeout, FailureMode: s.FailureMode, Logger: log}
	if s.UpstashConfigured {
		client, err := upstash.New(s.Upstash)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(client.CloseIdleConnections)
		store, err := limiter.NewUpstashStore(limiter.UpstashConfig{Client: client})
		if err != nil {
			t.Fatal(err)
		}
		lcfg.Upstash = store
	}
	if st.lim, err = limiter.New(lcfg); err != nil {
		t.Fatal(err)
	}
	fs, err := apikey.NewFileStore(apikey.FileConfig{Path: s.KeysFile})
	if err != nil {
		t.Fatal(err)
	}
	st.h, err = authorizer.New(authorizer.Config{
		Keys:          apikey.NewCache(fs, apikey.CacheConfig{}),
		Limiter:       st.lim,
		Tiers:         s.Tiers,
		Costs:         s.Costs,
		PremiumRoutes: s.PremiumRoutes,
		Logger:        log,
		Metrics:       st.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// upstashEnv is the environment of a container talking to url with token,
// reading keys from keys.
func upstashEnv(url, token string, keys *keySet, extra ...string) map[string]string {
	env := map[string]string{
		"UPSTASH_REDIS_REST_URL":   url,
		"UPSTASH_REDIS_REST_TOKEN": token,
		"API_KEYS_FILE":            keys.Path,
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// authEvent is an authorizer event for POST /predict from sourceIP with
// the given headers.
func authEvent(sourceIP string, headers map[string]string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	e := events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type: "REQUEST", MethodArn: testMethodArn, Resource: "/predict", Path: "/predict",
		HTTPMethod: "POST", Headers: headers,
	}
	e.RequestContext.Identity.SourceIP = sourceIP
	e.RequestContext.RequestID = fmt.Sprintf("req-%d", reqSeq.Add(1))
	e.RequestContext.Stage = "v1"
	return e
}

var reqSeq, ipSeq atomic.Int64

// freshIP returns an address no other decision in this test binary used:
// a caller whose bucket is full everywhere.
func freshIP() string {
	n := ipSeq.Add(1)
	return fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
}

func keyHeader(key string) map[string]string { return map[string]string{"X-Api-Key": key} }

// decision is one Handle call as a client of the authorizer sees it.
type decision struct {
	Effect  string // "Allow" or "Deny"; "" when Err is set
	Source  string // context "source"
	Caller  string // context "caller"
	Retry   string // context "retryAfter"
	Start   time.Time
	Latency time.Duration
	Err     error
}

func (st *stack) decide(ev events.APIGatewayCustomAuthorizerRequestTypeRequest) decision {
	start := time.Now()
	res, err := st.h.Handle(context.Background(), ev)
	d := decision{Start: start, Latency: time.Since(start), Err: err}
	if err != nil {
		return d
	}
	if len(res.PolicyDocument.Statement) == 1 {
		d.Effect = res.PolicyDocument.Statement[0].Effect
	}
	d.Source, _ = res.Context[authctx.KeySource].(string)
	d.Caller, _ = res.Context[authctx.KeyCaller].(string)
	d.Retry, _ = res.Context[authctx.KeyRetryAfter].(string)
	return d
}

// tally aggregates decisions; safe for concurrent use.
type tally struct {
	mu         sync.Mutex
	n          int
	allowed    int
	denied     int
	errs       []error
	bySource   map[string]int
	maxLatency time.Duration
}

func (ta *tally) add(d decision) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.n++
	if ta.bySource == nil {
		ta.bySource = map[string]int{}
	}
	switch {
	case d.Err != nil:
		ta.errs = append(ta.errs, d.Err)
	case d.Effect == "Allow":
		ta.allowed++
	default:
		ta.denied++
	}
	if d.Err == nil {
		ta.bySource[d.Source]++
	}
	ta.maxLatency = max(ta.maxLatency, d.Latency)
}

// sources renders bySource in a stable order, e.g. "memory=24 upstash=3".
func (ta *tally) sources() string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	names := make([]string, 0, len(ta.bySource))
	for n := range ta.bySource {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", n, ta.bySource[n]))
	}
	return strings.Join(parts, " ")
}

// check fails the test for any decision that was an error (a 5xx through
// API Gateway) or slower than limit.
func (ta *tally) check(t *testing.T, what string, limit time.Duration) {
	t.Helper()
	ta.mu.Lock()
	defer ta.mu.Unlock()
	for i, err := range ta.errs {
		if i == 3 {
			t.Errorf("%s: ... %d errors in all", what, len(ta.errs))
			break
		}
		t.Errorf("%s: Handle returned an error (API Gateway would answer 5xx): %v", what, err)
	}
	if ta.maxLatency > limit {
		t.Errorf("%s: slowest decision took %s, want at most %s", what, ta.maxLatency, limit)
	}
}

// quietLogger discards everything; for components whose logs a test does
// not inspect.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
