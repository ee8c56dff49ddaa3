package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/dynamotest"
	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
	"github.com/bucketgate/bucketgate/internal/testutil/faultproxy"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// The key-store policy under test (package apikey's Cache, package
// authorizer's Handle):
//
//   - a key seen within HitTTL (60 s) is answered from the container's
//     cache, with no DynamoDB call: an outage is invisible to it;
//   - a key seen within HitTTL + MaxStale (15 min) whose refresh fails is
//     served stale (one failed refresh, bounded by the authorizer's
//     KeyTimeout, then ErrorBackoff of no backend calls);
//   - a key the container has not seen (or only longer ago) cannot be
//     checked: the authorizer returns an error that is not "Unauthorized",
//     so API Gateway answers with its authorizer-error gateway response
//     (503 Service Unavailable per template.yaml) rather than a 401 that
//     would tell a paying client its key is bad;
//   - a malformed key is refused (401) without a DynamoDB call, outage or
//     not.

// dynamoKeys is a keys table on dynalite reached through a fault proxy.
type dynamoKeys struct {
	px    *faultproxy.Server
	store *apikey.DynamoStore
	table string
}

func newDynamoKeys(t *testing.T, endpoint string) *dynamoKeys {
	t.Helper()
	px := faultproxy.Start(t, endpoint)
	client := dynamotest.Client(t, px.URL)
	table := dynamotest.KeysTable(t, client)
	ds, err := apikey.NewDynamoStore(apikey.DynamoConfig{Client: client, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	return &dynamoKeys{px: px, store: ds, table: table}
}

// issue creates a key of tier in the table and returns it.
func (d *dynamoKeys) issue(t *testing.T, tier string) string {
	t.Helper()
	key, rec, err := apikey.New("reliability", tier, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.store.Create(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return key
}

// dynamoThrottled answers as DynamoDB does when a table's capacity is
// exceeded: HTTP 400 with the JSON error body naming the exception (the
// AWS SDK reads the type from __type and retries it as a throttle).
func dynamoThrottled(exception, message string) faultproxy.Fault {
	body := fmt.Sprintf(`{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":%q}`, exception, message)
	return faultproxy.StatusBody(http.StatusBadRequest, []byte(body))
}

// The two throttling answers DynamoDB gives: a table (or index) over its
// provisioned capacity, and a control-plane or account-level rate limit.
var (
	throughputExceeded = dynamoThrottled("ProvisionedThroughputExceededException",
		"The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.")
	throttling = dynamoThrottled("ThrottlingException", "Rate of requests exceeds the allowed throughput.")
)

// keyStoreFaults are the DynamoDB failures the key-store tests inject.
var keyStoreFaults = []struct {
	name  string
	fault faultproxy.Fault
}{
	{"connection reset", faultproxy.Reset()},
	{"hang", faultproxy.Hang()},
	{"HTTP 500", faultproxy.Status(http.StatusInternalServerError)},
	{"ProvisionedThroughputExceededException", throughputExceeded},
	{"ThrottlingException", throttling},
}

// allowKey decides for key until the authorizer allows it (a healthy
// lookup, but one that may outlive the 1 s KeyTimeout on a loaded machine:
// a failed lookup caches nothing) and fails the test after 20 s.
func allowKey(t *testing.T, st *stack, key, what string) {
	t.Helper()
	var last decision
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if last = st.decide(authEvent(freshIP(), keyHeader(key))); last.Err == nil && last.Effect == "Allow" {
			return
		}
		if errors.Is(last.Err, authorizer.ErrUnauthorized) {
			break
		}
	}
	t.Fatalf("%s: %+v, want Allow", what, last)
}

func defaultTiers(t *testing.T) limiter.Tiers {
	t.Helper()
	tiers, err := limiter.ParseTierLimits(authorizer.DefaultTierLimits)
	if err != nil {
		t.Fatal(err)
	}
	return tiers
}

// TestKeyStoreDown: DynamoDB fails (connection reset, hang, HTTP 500,
// throttling: HTTP 400 ProvisionedThroughputExceededException or
// ThrottlingException) after a container has seen some keys. Known keys keep working; unknown keys
// get an error that is not Unauthorized, within KeyTimeout + margin;
// malformed keys are refused without a call; nothing is cached as a miss,
// so keys work again as soon as DynamoDB does.
func TestKeyStoreDown(t *testing.T) {
	endpoint := dynamotest.Start(t)
	for _, f := range keyStoreFaults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			dk := newDynamoKeys(t, endpoint)
			warm, cold := dk.issue(t, "authenticated"), dk.issue(t, "premium")
			clock := fakeclock.New(time.Now())
			lim, err := limiter.New(limiter.Config{})
			if err != nil {
				t.Fatal(err)
			}
			logs := &logSink{}
			h, err := authorizer.New(authorizer.Config{
				Keys:    apikey.NewCache(dk.store, apikey.CacheConfig{Now: clock.Now}),
				Limiter: lim,
				Tiers:   defaultTiers(t),
				Logger:  authorizer.NewLogger(logs, 0),
			})
			if err != nil {
				t.Fatal(err)
			}
			st := &stack{h: h, lim: lim, logs: logs}
			allowKey(t, st, warm, "before the outage")

			dk.px.Set(f.fault)
			bound := authorizer.DefaultKeyTimeout + margin
			tests := []struct {
				name       string
				key        string
				advance    time.Duration // of the cache's clock, before the request
				wantEffect string        // "" means an error
				wantCalls  bool          // whether DynamoDB is asked
			}{
				{"cached key within HitTTL", warm, 0, "Allow", false},
				{"cached key past HitTTL: one failed refresh, served stale", warm, apikey.DefaultHitTTL + time.Second, "Allow", true},
				{"stale key again: error backoff, no call", warm, time.Second, "Allow", false},
				{"key this container never saw", cold, 0, "", true},
				{"malformed key", "bg_not-a-real-key", 0, "", false},
				{"no key (anonymous)", "", 0, "Allow", false},
			}
			var maxLatency time.Duration
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					clock.Advance(tt.advance)
					var h map[string]string
					if tt.key != "" {
						h = keyHeader(tt.key)
					}
					calls := dk.px.Requests()
					d := st.decide(authEvent(freshIP(), h))
					maxLatency = max(maxLatency, d.Latency)
					if d.Latency > bound {
						t.Errorf("took %s, want at most %s", d.Latency, bound)
					}
					if gotCalls := dk.px.Requests() > calls; gotCalls != tt.wantCalls {
						t.Errorf("DynamoDB called: %v, want %v", gotCalls, tt.wantCalls)
					}
					switch {
					case tt.wantEffect != "":
						if d.Err != nil || d.Effect != tt.wantEffect {
							t.Errorf("got %+v, want %s", d, tt.wantEffect)
						}
					case tt.key == cold:
						if d.Err == nil || errors.Is(d.Err, authorizer.ErrUnauthorized) || d.Err.Error() == "Unauthorized" {
							t.Errorf("got %+v, want an error other than Unauthorized (API Gateway: 503, not 401)", d)
						}
					default:
						if !errors.Is(d.Err, authorizer.ErrUnauthorized) {
							t.Errorf("got %+v, want Unauthorized", d)
						}
					}
					if d.Err != nil && tt.key != "" && strings.Contains(d.Err.Error(), tt.key) {
						t.Errorf("error %q contains the key", d.Err)
					}
				})
			}
			if logged := logs.String(); strings.Contains(logged, warm) || strings.Contains(logged, cold) {
				t.Errorf("a key reached the log")
			}

			// DynamoDB is back: the unknown key was not cached as a miss.
			dk.px.Set(faultproxy.Pass())
			allowKey(t, st, cold, "after the outage, the key the outage hid")
			t.Logf("MEASURED keystore fault=%q slowest_decision=%s (KeyTimeout %s)", f.name, maxLatency.Round(time.Millisecond), authorizer.DefaultKeyTimeout)
		})
	}
}

// TestKeyStoreDownBuildWiring checks the same policy through
// authorizer.Build's DynamoDB wiring (AWS SDK default configuration with
// build.go's retryer: two attempts, backoff at most 50 ms; the default
// cache). The retry must fit in the KeyTimeout: for failures the SDK
// retries (reset, 5xx, throttling) both attempts reach DynamoDB — a count,
// not a timing — while a hang is cut by the KeyTimeout in the first.
func TestKeyStoreDownBuildWiring(t *testing.T) {
	endpoint := dynamotest.Start(t)
	dk := newDynamoKeys(t, endpoint)
	warm, cold := dk.issue(t, "authenticated"), dk.issue(t, "authenticated")
	dynamotest.SetEnv(t, dk.px.URL)
	s, err := authorizer.LoadSettings(func(k string) string {
		return map[string]string{"API_KEYS_TABLE": dk.table, "LOG_LEVEL": "debug"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logSink{}
	h, err := authorizer.Build(context.Background(), s, authorizer.NewLogger(logs, s.LogLevel), logs)
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{h: h}
	allowKey(t, st, warm, "before the outage")
	wantAttempts := map[string]uint64{"hang": 1} // every other fault: 2
	for _, f := range keyStoreFaults {
		t.Run(f.name, func(t *testing.T) {
			dk.px.Set(f.fault)
			t.Cleanup(func() { dk.px.Set(faultproxy.Pass()) })
			bound := authorizer.DefaultKeyTimeout + margin
			calls := dk.px.Requests()
			if d := st.decide(authEvent(freshIP(), keyHeader(warm))); d.Effect != "Allow" || d.Latency > bound {
				t.Errorf("cached key: %+v, want Allow within %s", d, bound)
			}
			if n := dk.px.Requests() - calls; n != 0 {
				t.Errorf("cached key: %d DynamoDB requests, want none", n)
			}
			calls = dk.px.Requests()
			d := st.decide(authEvent(freshIP(), keyHeader(cold)))
			if d.Err == nil || errors.Is(d.Err, authorizer.ErrUnauthorized) || d.Latency > bound {
				t.Errorf("unknown key: %+v, want a non-Unauthorized error within %s", d, bound)
			}
			want, ok := wantAttempts[f.name]
			if !ok {
				want = 2
			}
			if n := dk.px.Requests() - calls; n != want {
				t.Errorf("unknown key: %d DynamoDB requests, want %d (build.go's two attempts, the retry inside the KeyTimeout)", n, want)
			}
			if d.Err != nil && (strings.Contains(d.Err.Error(), cold) || strings.Contains(d.Err.Error(), warm)) {
				t.Errorf("error %q contains a key", d.Err)
			}
			t.Logf("MEASURED keystore wiring=Build fault=%s unknown_key_latency=%s attempts=%d", f.name, d.Latency.Round(time.Millisecond), dk.px.Requests()-calls)
		})
	}
	if out := logs.String(); strings.Contains(out, warm) || strings.Contains(out, cold) {
		t.Errorf("a key reached the log")
	} else if !strings.Contains(out, "key store failed") {
		t.Errorf("the key-store failures were not logged; log:\n%s", out)
	}
}

// TestHTTPKeyStoreDown: through start-api with DynamoDB failing (connection
// reset, or throttling: ProvisionedThroughputExceededException,
// ThrottlingException), a key the authorizer container has seen still gets
// 200; a key it has not seen gets 503 with Retry-After (the authorizer's
// error, mapped by template.yaml's gateway responses), never 401; a
// malformed key 401. No key reaches the gateway's or the functions' output.
func TestHTTPKeyStoreDown(t *testing.T) {
	endpoint := dynamotest.Start(t)
	dk := newDynamoKeys(t, endpoint)
	warm, cold := dk.issue(t, "authenticated"), dk.issue(t, "authenticated")
	up := upstashtest.Start(t)
	hostEnv := map[string]string{
		"AWS_ACCESS_KEY_ID":         "dynamotest",
		"AWS_SECRET_ACCESS_KEY":     "dynamotest",
		"AWS_ENDPOINT_URL_DYNAMODB": dk.px.URL,
	}
	api := startLocalAPIWith(t, map[string]string{
		"UPSTASH_REDIS_REST_URL":   up.URL,
		"UPSTASH_REDIS_REST_TOKEN": up.Token,
		"API_KEYS_TABLE":           dk.table,
		"API_KEYS_FILE":            "",
		"LOG_LEVEL":                "debug",
	}, 1, func(k string) string { return hostEnv[k] })
	c := clientFrom(freshLoopback())
	// Healthy, the key is looked up and cached; a loaded machine may make
	// that lookup outlive the KeyTimeout (503), so ask again until it
	// passes.
	for deadline := time.Now().Add(20 * time.Second); ; {
		r := api.predict(c, keyHeader(warm))
		if r.Status == http.StatusOK {
			break
		}
		if r.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("before the outage: %d %s", r.Status, r.Body)
		}
	}
	tests := []struct {
		name       string
		key        string
		wantStatus int
	}{
		{"key the container has seen", warm, http.StatusOK},
		{"key it has not seen", cold, http.StatusServiceUnavailable},
		{"malformed key", "bg_nope", http.StatusUnauthorized},
	}
	for _, f := range []struct {
		name  string
		fault faultproxy.Fault
	}{
		{"connection reset", faultproxy.Reset()},
		{"ProvisionedThroughputExceededException", throughputExceeded},
		{"ThrottlingException", throttling},
	} {
		t.Run(f.name, func(t *testing.T) {
			dk.px.Set(f.fault)
			t.Cleanup(func() { dk.px.Set(faultproxy.Pass()) })
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					r := api.predict(c, keyHeader(tt.key))
					if r.Status != tt.wantStatus {
						t.Errorf("got %d %s, want %d", r.Status, strings.TrimSpace(r.Body), tt.wantStatus)
						if r.Status == http.StatusInternalServerError {
							t.Logf("500 is API Gateway's AUTHORIZER_CONFIGURATION_ERROR: the authorizer's error reaches the " +
								"client as a 500 unless template.yaml maps that gateway response (not only AUTHORIZER_FAILURE) to 503")
						}
					}
					if tt.wantStatus == http.StatusServiceUnavailable && r.Status == tt.wantStatus && r.Header.Get("Retry-After") == "" {
						t.Errorf("503 without Retry-After")
					}
					t.Logf("MEASURED http keystore=%q case=%q status=%d latency=%s", f.name, tt.name, r.Status, r.Latency.Round(time.Millisecond))
				})
			}
		})
	}
	out := api.Logs.String()
	if strings.Contains(out, warm) || strings.Contains(out, cold) {
		t.Errorf("a key reached the start-api output (gateway or functions)")
	}
	if !strings.Contains(out, "key store failed") {
		t.Errorf("the authorizer did not log the key-store failures")
	}
}
