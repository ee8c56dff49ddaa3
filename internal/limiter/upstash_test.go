package limiter

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

func TestScriptSHA1MatchesEmbeddedSource(t *testing.T) {
	sum := sha1.Sum([]byte(ScriptSource))
	if got, want := ScriptSHA1(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("ScriptSHA1() = %s, want sha1(tokenbucket.lua) = %s", got, want)
	}
	if !strings.HasPrefix(ScriptSource, "#!lua flags=allow-key-locking\n") {
		t.Errorf("script does not start with Upstash's allow-key-locking shebang")
	}
}

// commandStats returns Redis' per-command call counts (INFO commandstats),
// e.g. {"evalsha": 1, "mget": 1, "set": 1}, leaving out the test's own
// INFO and CONFIG calls.
func commandStats(t testing.TB, rs *redistest.Server) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, line := range strings.Split(rs.Do(t, "INFO", "commandstats"), "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") || name == "info" || strings.HasPrefix(name, "config") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("INFO commandstats line %q: %v", line, err)
		}
		out[name] = n
	}
	return out
}

// TestCommandBudget counts the Redis commands one decision costs, which is
// what Upstash bills: ≤ 3 for an allowed single-bucket decision and ≤ 2 for
// a denial, the EVALSHA included; one HTTP request per decision.
func TestCommandBudget(t *testing.T) {
	store, env := newTestUpstashRedis(t)
	one := []Bucket{{Key: "budget:a", Limit: PerMinute(1)}}
	two := []Bucket{{Key: "budget:b", Limit: PerMinute(5)}, {Key: "budget:global", Limit: PerMinute(100)}}
	// Load the script once, so the counts below are the steady state.
	if _, err := store.Allow(context.Background(), Request{Buckets: []Bucket{{Key: "budget:warm", Limit: PerMinute(1)}}, Cost: 1}, t0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		req         Request
		wantAllowed bool
		want        map[string]int
	}{
		{name: "allowed, one bucket", req: Request{Buckets: one, Cost: 1}, wantAllowed: true, want: map[string]int{"evalsha": 1, "mget": 1, "set": 1}},
		{name: "denied, one bucket", req: Request{Buckets: one, Cost: 1}, want: map[string]int{"evalsha": 1, "mget": 1}},
		{name: "allowed, two buckets", req: Request{Buckets: two, Cost: 1}, wantAllowed: true, want: map[string]int{"evalsha": 1, "mget": 1, "set": 2}},
		{name: "denied, two buckets", req: Request{Buckets: two, Cost: 6}, want: map[string]int{"evalsha": 1, "mget": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.Redis.Do(t, "CONFIG", "RESETSTAT")
			before := env.Server.Requests()
			r, err := store.Allow(context.Background(), tt.req, t0)
			if err != nil {
				t.Fatal(err)
			}
			if r.Allowed != tt.wantAllowed {
				t.Fatalf("Allowed = %v, want %v", r.Allowed, tt.wantAllowed)
			}
			if diff := cmp.Diff(tt.want, commandStats(t, env.Redis)); diff != "" {
				t.Errorf("Redis commands (-want +got):\n%s", diff)
			}
			if got := env.Server.Requests() - before; got != 1 {
				t.Errorf("HTTP requests = %d, want 1", got)
			}
		})
	}
}

// TestKeysExpireWhenFull checks each key's TTL is the time its bucket takes
// to be full again, so idle callers cost no memory.
func TestKeysExpireWhenFull(t *testing.T) {
	store, env := newTestUpstashRedis(t)
	tests := []struct {
		name string
		key  string
		l    Limit
		cost int64
		want time.Duration // time to full after the charge
	}{
		{name: "one token of ten", key: "ttl:a", l: perTen, cost: 1, want: 10 * time.Second},
		{name: "four tokens", key: "ttl:b", l: perTen, cost: 4, want: 40 * time.Second},
		{name: "daily limit", key: "ttl:c", l: PerDay(24), cost: 2, want: 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := Request{Buckets: []Bucket{{Key: tt.key, Limit: tt.l}}, Cost: tt.cost}
			if _, err := store.Allow(context.Background(), req, t0); err != nil {
				t.Fatal(err)
			}
			pttl, err := strconv.ParseInt(env.Redis.Do(t, "PTTL", DefaultPrefix+tt.key), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			// PTTL counts down in real time from the SET; allow for the
			// round trip in between (this bounds a value, it times nothing).
			got := time.Duration(pttl) * time.Millisecond
			if got > tt.want || got < tt.want-5*time.Second {
				t.Errorf("PTTL = %v, want about %v (and never more)", got, tt.want)
			}
		})
	}
}

func TestKeysAreNamespaced(t *testing.T) {
	store, env := newTestUpstashRedis(t)
	c, err := upstash.New(upstash.Config{URL: env.URL, Token: env.Token})
	if err != nil {
		t.Fatal(err)
	}
	custom, err := NewUpstashStore(UpstashConfig{Client: c, Prefix: "custom:"})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Buckets: []Bucket{{Key: "caller", Limit: perTen}}, Cost: 1}
	for _, s := range []*UpstashStore{store, custom} {
		if _, err := s.Allow(context.Background(), req, t0); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Split(env.Redis.Do(t, "KEYS", "*"), "\n")
	slices.Sort(got)
	want := []string{"bg:caller", "custom:caller"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	// The state is one string: units and the caller's ms clock.
	if got, want := env.Redis.Do(t, "GET", "bg:caller"), "777600000:"+strconv.FormatInt(t0.UnixMilli(), 10); got != want {
		t.Errorf("stored state = %q, want %q", got, want)
	}
}

// TestScriptFlushMidRun: after SCRIPT FLUSH (or a Redis restart) the next
// decision still works — EVALSHA gets NOSCRIPT and the client sends EVAL —
// and later ones use EVALSHA again.
func TestScriptFlushMidRun(t *testing.T) {
	store, env := newTestUpstashRedis(t)
	req := Request{Buckets: []Bucket{{Key: "flush", Limit: perTen}}, Cost: 1}
	for i := 0; i < 3; i++ {
		if _, err := store.Allow(context.Background(), req, t0); err != nil {
			t.Fatal(err)
		}
	}
	env.Redis.Do(t, "SCRIPT", "FLUSH")
	env.Redis.Do(t, "CONFIG", "RESETSTAT")
	got, err := store.Allow(context.Background(), req, t0)
	if err != nil {
		t.Fatalf("decision after SCRIPT FLUSH: %v", err)
	}
	if diff := cmp.Diff(ok(perTen, 6, 40*time.Second), got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Source" }, cmp.Ignore())); diff != "" {
		t.Errorf("decision after SCRIPT FLUSH (-want +got):\n%s", diff)
	}
	if _, err := store.Allow(context.Background(), req, t0); err != nil {
		t.Fatal(err)
	}
	stats := commandStats(t, env.Redis)
	if stats["eval"] != 1 || stats["mget"] != 2 {
		t.Errorf("commands after SCRIPT FLUSH = %v, want one EVAL (then EVALSHA again) and 2 MGETs", stats)
	}
}

// fakeRunner is a scriptRunner returning a fixed reply (the script's
// result as JSON) or error.
type fakeRunner struct {
	v   string
	err error
}

func (f fakeRunner) Run(context.Context, []string, ...any) (json.RawMessage, error) {
	return json.RawMessage(f.v), f.err
}

func TestUpstashStoreBadReplies(t *testing.T) {
	req := Request{Buckets: []Bucket{{Key: "secret-caller", Limit: perTen}}, Cost: 1}
	tests := []struct {
		name    string
		v       string
		err     error
		wantErr string
		wantIs  error
	}{
		{name: "not an array", v: `"OK"`, wantErr: "unexpected token-bucket script reply: not an array", wantIs: ErrBadReply},
		{name: "nil", v: `null`, wantIs: ErrBadReply},
		{name: "too short", v: `[1,5]`, wantErr: "2 elements, want 3", wantIs: ErrBadReply},
		{name: "not integers", v: `[1,"x",5]`, wantErr: "element 2 is not an integer", wantIs: ErrBadReply},
		{name: "integer in a string", v: `[1,"5",5]`, wantErr: "element 2 is not an integer", wantIs: ErrBadReply},
		{name: "bad flag", v: `[7,1,5]`, wantErr: "allowed flag is 7", wantIs: ErrBadReply},
		{name: "negative units", v: `[1,-1,5]`, wantErr: "holds -1 units", wantIs: ErrBadReply},
		{name: "float units", v: `[1,1.5,5]`, wantIs: ErrBadReply},
		{name: "more units than the capacity", v: fmt.Sprintf("[1,%d,5]", perTen.Burst*unitsPerToken+1), wantErr: "units", wantIs: ErrBadReply},
		{name: "client error passes through", err: &upstash.Error{Kind: upstash.KindServer, StatusCode: 502, Message: "bad gateway"},
			wantErr: "limiter: token-bucket script: upstash: server error (HTTP 502): bad gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newUpstashStore(fakeRunner{v: tt.v, err: tt.err}, UpstashConfig{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Allow(context.Background(), req, t0)
			if err == nil {
				t.Fatal("Allow succeeded, want an error")
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if tt.err != nil && upstash.KindOf(err) != upstash.KindServer {
				t.Errorf("KindOf(%v) = %v, want server", err, upstash.KindOf(err))
			}
			if strings.Contains(err.Error(), "secret-caller") {
				t.Errorf("error %q contains the bucket key", err)
			}
		})
	}
}

func TestNewUpstashStoreConfig(t *testing.T) {
	if _, err := NewUpstashStore(UpstashConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil client: error = %v, want ErrInvalidConfig", err)
	}
	if _, err := newUpstashStore(fakeRunner{}, UpstashConfig{MaxClockSkew: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("negative skew: error = %v, want ErrInvalidConfig", err)
	}
}

// TestUpstashUnreadableStateIsAFullBucket: a key holding something that is
// not "units:at" (hand-edited, or an older format) reads as full and is
// overwritten, rather than failing every decision until it expires.
func TestUpstashUnreadableStateIsAFullBucket(t *testing.T) {
	store, env := newTestUpstashRedis(t)
	env.Redis.Do(t, "SET", "bg:junk", "hello")
	got, err := store.Allow(context.Background(), Request{Buckets: []Bucket{{Key: "junk", Limit: perTen}}, Cost: 1}, t0)
	if err != nil {
		t.Fatal(err)
	}
	want := ok(perTen, 9, 10*time.Second)
	want.Source = SourceUpstash
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}
