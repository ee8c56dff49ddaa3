package limiter

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

func TestScriptSHA1MatchesEmbeddedSource(t *testing.T) {
	sum := sha1.Sum([]byte(ScriptSource))
	if got, want := ScriptSHA1(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("ScriptSHA1() = %s, want sha1(decide.lua) = %s", got, want)
	}
	if !strings.HasPrefix(ScriptSource, "#!lua flags=allow-key-locking\n") {
		t.Errorf("script does not start with Upstash's allow-key-locking shebang")
	}
}

// needRedis returns the real redis-server behind env, skipping the test
// when env runs on the embedded store (no INFO commandstats there).
func needRedis(t testing.TB, env *upstashtest.Env) *redistest.Server {
	t.Helper()
	if env.Redis == nil {
		t.Skip("needs redis-server (INFO commandstats, PTTL)")
	}
	return env.Redis
}

// commandStats returns Redis' per-command call counts (INFO commandstats),
// e.g. {"evalsha": 1, "set": 1}, leaving out the test's own INFO, CONFIG,
// GET and PTTL calls made through redistest (which the caller must not
// interleave with a measured decision).
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

// snapshot is what Redis holds for some keys: value and remaining TTL.
func snapshot(t testing.TB, rs *redistest.Server, keys []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range keys {
		out[k] = rs.Do(t, "GET", k)
	}
	return out
}

// TestCommandBudget counts the Redis commands each kind of decision costs —
// what Upstash bills, the EVALSHA included — and checks that every decision
// is one HTTP request and that no denial changes what is stored.
func TestCommandBudget(t *testing.T) {
	store, env := newTestUpstash(t, UpstashConfig{})
	rs := needRedis(t, env)
	other, _ := newStoreOn(t, env, UpstashConfig{}) // a second container
	day := Quota{Limit: 1000, Period: QuotaDay}
	caller := func(k string) Bucket { return Bucket{Key: k, Limit: PerMinute(3), Scope: ScopeTier} }
	quota := func(k string) Bucket { return Bucket{Key: "q:" + k, Quota: day} }
	route := func(k string) Bucket { return Bucket{Key: "r:" + k, Limit: PerMinute(100), Scope: ScopeTier} }
	// Slow enough that no key expires in the real time the test takes
	// (the test's clock is fixed; Redis expires keys in real time).
	global := Bucket{Key: "global", Limit: Limit{Rate: 1000, Period: time.Hour, Burst: 1000}, Scope: ScopeAll}
	// Load the script and read the settings once: the steady state below.
	if _, err := store.Allow(context.Background(), Request{Buckets: []Bucket{caller("warm")}, Cost: 1}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Allow(context.Background(), Request{Buckets: []Bucket{caller("warm2")}, Cost: 1}, t0); err != nil {
		t.Fatal(err)
	}
	type step struct {
		name        string
		before      func() // run before counting (e.g. another container's decision)
		s           *UpstashStore
		at          time.Duration
		req         Request
		wantAllowed bool
		want        map[string]int
	}
	steps := []step{
		{name: "allowed, idle caller (no key yet)", req: Request{Buckets: []Bucket{caller("a")}, Cost: 1}, wantAllowed: true,
			want: map[string]int{"evalsha": 1, "set": 1}},
		{name: "allowed, this container wrote last", req: Request{Buckets: []Bucket{caller("a")}, Cost: 1}, wantAllowed: true,
			want: map[string]int{"evalsha": 1, "set": 1}},
	}
	steps = append(steps,
		step{name: "allowed, another container wrote last (guess missed)",
			before: func() { mustDecide(t, other, Request{Buckets: []Bucket{caller("c")}, Cost: 1}, t0) },
			req:    Request{Buckets: []Bucket{caller("c")}, Cost: 1}, wantAllowed: true,
			want: map[string]int{"evalsha": 1, "set": 2}},
		step{name: "denied, the guess says so (bucket drained here)",
			before: func() { mustDecide(t, store, Request{Buckets: []Bucket{caller("d")}, Cost: 3}, t0) },
			req:    Request{Buckets: []Bucket{caller("d")}, Cost: 1},
			want:   map[string]int{"evalsha": 1, "mget": 1}},
		step{name: "denied, guess missed (drained by another container)",
			before: func() {
				mustDecide(t, store, Request{Buckets: []Bucket{caller("e")}, Cost: 1}, t0)
				mustDecide(t, other, Request{Buckets: []Bucket{caller("e")}, Cost: 2}, t0)
			},
			req:  Request{Buckets: []Bucket{caller("e")}, Cost: 1},
			want: map[string]int{"evalsha": 1, "set": 2}},
		step{name: "denied, never seen, by a bucket another container drained",
			before: func() { mustDecide(t, other, Request{Buckets: []Bucket{caller("f")}, Cost: 3}, t0) },
			req:    Request{Buckets: []Bucket{caller("f")}, Cost: 1},
			want:   map[string]int{"evalsha": 1, "set": 2}},
		step{name: "allowed, tier + quota", req: Request{Buckets: []Bucket{caller("g"), quota("g")}, Cost: 1}, wantAllowed: true,
			want: map[string]int{"evalsha": 1, "set": 2}},
		step{name: "allowed, tier + route", req: Request{Buckets: []Bucket{caller("h"), route("h")}, Cost: 1}, wantAllowed: true,
			want: map[string]int{"evalsha": 1, "set": 2}},
		step{name: "allowed, tier + route + global", req: Request{Buckets: []Bucket{caller("i"), route("i"), global}, Cost: 1}, wantAllowed: true,
			want: map[string]int{"evalsha": 1, "set": 3}},
		step{name: "allowed, tier + route + global, the global bucket last written by this container",
			req: Request{Buckets: []Bucket{caller("i"), route("i"), global}, Cost: 1}, wantAllowed: true,
			want: map[string]int{"evalsha": 1, "set": 3}},
		step{name: "a live factor is set: read once the settings are a second old",
			before: func() {
				rs.Do(t, "SET", DefaultPrefix+settingsKeySuffix, FormatScales([]Scale{{Factor: 2, Start: t0}}))
			},
			at: DefaultSettingsTTL, req: Request{Buckets: []Bucket{caller("j")}, Cost: 1}, wantAllowed: true,
			want: map[string]int{"evalsha": 1, "get": 1, "set": 1}},
		step{name: "a live factor is set: then no change",
			at: DefaultSettingsTTL, req: Request{Buckets: []Bucket{caller("j")}, Cost: 1}, wantAllowed: true,
			want: map[string]int{"evalsha": 1, "set": 1}},
	)
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before()
			}
			st := s.s
			if st == nil {
				st = store
			}
			var keys []string
			for _, b := range s.req.Buckets {
				keys = append(keys, DefaultPrefix+b.Key)
			}
			was := snapshot(t, rs, keys)
			rs.Do(t, "CONFIG", "RESETSTAT")
			reqs := env.Server.Requests()
			r, err := st.Allow(context.Background(), s.req, t0.Add(s.at))
			if err != nil {
				t.Fatal(err)
			}
			if got := env.Server.Requests() - reqs; got != 1 {
				t.Errorf("HTTP requests = %d, want 1", got)
			}
			if diff := cmp.Diff(s.want, commandStats(t, rs)); diff != "" {
				t.Errorf("Redis commands (-want +got):\n%s", diff)
			}
			if r.Allowed != s.wantAllowed {
				t.Fatalf("Allowed = %v, want %v", r.Allowed, s.wantAllowed)
			}
			if !r.Allowed {
				if diff := cmp.Diff(was, snapshot(t, rs, keys)); diff != "" {
					t.Errorf("a denial changed what is stored (-before +after):\n%s", diff)
				}
			}
		})
	}
}

// newStoreOn returns another store (another container) on env's server.
func newStoreOn(t testing.TB, env *upstashtest.Env, cfg UpstashConfig) (*UpstashStore, *upstash.Client) {
	t.Helper()
	c, err := upstash.New(upstash.Config{URL: env.URL, Token: env.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	cfg.Client = c
	s, err := NewUpstashStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func mustDecide(t testing.TB, s *UpstashStore, req Request, now time.Time) Result {
	t.Helper()
	r, err := s.Allow(context.Background(), req, now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWrongGuessesAreInvisible drives two containers on one bucket, so
// that guesses keep missing, and checks after every denial that Redis holds
// exactly what it held before (value and expiry), and after every decision
// that the stored state is what a store without guesses would hold.
func TestWrongGuessesAreInvisible(t *testing.T) {
	a, env := newTestUpstash(t, UpstashConfig{})
	rs := needRedis(t, env)
	b, _ := newStoreOn(t, env, UpstashConfig{})
	l := Limit{Rate: 6, Period: time.Minute, Burst: 4}
	q := Quota{Limit: 7, Period: QuotaDay}
	req := func(cost int64) Request {
		return Request{Buckets: []Bucket{{Key: "shared", Limit: l}, {Key: "q:shared", Quota: q}}, Cost: cost}
	}
	keys := []string{DefaultPrefix + "shared", DefaultPrefix + "q:shared"}
	now := t0
	pttl := func(k string) int64 {
		n, err := strconv.ParseInt(rs.Do(t, "PTTL", k), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var writtenAt time.Time // the test's clock at the bucket's last write
	denials := 0
	for i := 0; i < 40; i++ {
		s := a
		if i%3 != 0 {
			s = b
		}
		now = now.Add(time.Duration(i%4) * 3 * time.Second)
		was := snapshot(t, rs, keys)
		ttl0 := pttl(keys[0])
		r := mustDecide(t, s, req(1+int64(i%2)), now)
		if r.Allowed {
			writtenAt = now
			continue
		}
		denials++
		if diff := cmp.Diff(was, snapshot(t, rs, keys)); diff != "" {
			t.Fatalf("step %d: a denial changed what is stored (-before +after):\n%s", i, diff)
		}
		// Untouched, or put back to expire when it would have. Redis counts
		// TTLs in real time while this test's clock jumps: on the test's
		// clock the key was due ttl0 - (now - writtenAt) after now.
		want := ttl0 - now.Sub(writtenAt).Milliseconds()
		near := func(a, b int64) bool { return a-b <= 1000 && b-a <= 1000 }
		if ttl1 := pttl(keys[0]); ttl1 > ttl0 || !(near(ttl1, ttl0) || near(ttl1, want)) {
			t.Fatalf("step %d: a denial moved the expiry: PTTL %d before, %d after, want about %d (or unchanged)", i, ttl0, ttl1, want)
		}
	}
	if denials < 10 {
		t.Fatalf("only %d denials: the sequence does not test what it should", denials)
	}
}

// TestKeysExpireWhenFull checks each key's TTL is the time its bucket takes
// to be full again (a quota's: its window's end plus the clock-skew
// allowance), so idle callers cost no memory.
func TestKeysExpireWhenFull(t *testing.T) {
	store, env := newTestUpstash(t, UpstashConfig{})
	rs := needRedis(t, env)
	_, dayEnd := QuotaDay.Window(t0)
	tests := []struct {
		name string
		b    Bucket
		cost int64
		want time.Duration // time to full after the charge
	}{
		{name: "one token of ten", b: Bucket{Key: "ttl:a", Limit: perTen}, cost: 1, want: 10 * time.Second},
		{name: "four tokens", b: Bucket{Key: "ttl:b", Limit: perTen}, cost: 4, want: 40 * time.Second},
		{name: "daily limit", b: Bucket{Key: "ttl:c", Limit: PerDay(24)}, cost: 2, want: 2 * time.Hour},
		{name: "daily quota", b: Bucket{Key: "ttl:q", Quota: Quota{Limit: 5, Period: QuotaDay}}, cost: 2, want: dayEnd.Sub(t0) + MaxClockSkew},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustDecide(t, store, Request{Buckets: []Bucket{tt.b}, Cost: tt.cost}, t0)
			var ps [1]params
			resolve(Request{Buckets: []Bucket{tt.b}}, unscaled, t0, ps[:])
			pttl, err := strconv.ParseInt(rs.Do(t, "PTTL", store.key(tt.b, ps[0])), 10, 64)
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
	store, env := newTestUpstash(t, UpstashConfig{})
	rs := needRedis(t, env)
	custom, _ := newStoreOn(t, env, UpstashConfig{Prefix: "custom:"})
	req := Request{Buckets: []Bucket{{Key: "caller", Limit: perTen}}, Cost: 1}
	for _, s := range []*UpstashStore{store, custom} {
		mustDecide(t, s, req, t0)
	}
	got := strings.Split(rs.Do(t, "KEYS", "*"), "\n")
	slices.Sort(got)
	want := []string{"bg:caller", "custom:caller"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	// The state is one string: units and the caller's ms clock.
	if got, want := rs.Do(t, "GET", "bg:caller"), "777600000:"+strconv.FormatInt(t0.UnixMilli(), 10); got != want {
		t.Errorf("stored state = %q, want %q", got, want)
	}
}

// TestScriptFlushMidRun: after SCRIPT FLUSH (or a Redis restart) the next
// decision still works — EVALSHA gets NOSCRIPT and the client sends EVAL —
// and later ones use EVALSHA again.
func TestScriptFlushMidRun(t *testing.T) {
	store, env := newTestUpstash(t, UpstashConfig{})
	rs := needRedis(t, env)
	req := Request{Buckets: []Bucket{{Key: "flush", Limit: perTen}}, Cost: 1}
	for i := 0; i < 3; i++ {
		mustDecide(t, store, req, t0)
	}
	rs.Do(t, "SCRIPT", "FLUSH")
	rs.Do(t, "CONFIG", "RESETSTAT")
	got := mustDecide(t, store, req, t0)
	want := ok(perTen, 6, 40*time.Second)
	want.Source = SourceUpstash
	if diff := cmp.Diff(want, viewOf(got)); diff != "" {
		t.Errorf("decision after SCRIPT FLUSH (-want +got):\n%s", diff)
	}
	mustDecide(t, store, req, t0)
	if stats := commandStats(t, rs); stats["eval"] != 1 || stats["evalsha"] != 2 || stats["set"] != 2 {
		t.Errorf("commands after SCRIPT FLUSH = %v, want one EVAL (then EVALSHA again) and 2 SETs", stats)
	}
}

// replyServer answers every request with body and status, for malformed
// replies a correct script never gives.
func replyServer(t *testing.T, status int, body string) *upstash.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := upstash.New(upstash.Config{URL: srv.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUpstashStoreBadReplies(t *testing.T) {
	req := Request{Buckets: []Bucket{{Key: "secret-caller", Limit: perTen}}, Cost: 1}
	tests := []struct {
		name    string
		body    string
		wantErr string
	}{
		{name: "not an array", body: `{"result":"OK"}`},
		{name: "too short", body: `{"result":[1,"-",""]}`, wantErr: "3 elements, want 8"},
		{name: "bad flag", body: `{"result":[2,"-","",1000000,1000000,0,0,""]}`, wantErr: "allowed flag is 2"},
		{name: "factor out of range", body: `{"result":[1,"-","",0,1000000,0,0,""]}`, wantErr: "factors 0, 1000000 out of range"},
		{name: "units above the capacity", body: `{"result":[1,"-","",1000000,1000000,864000001,0,""]}`, wantErr: "holds 864000001 units"},
		{name: "negative units", body: `{"result":[1,"-","",1000000,1000000,-5,0,""]}`, wantErr: "holds -5 units"},
		{name: "stored is a number", body: `{"result":[1,"-","",1000000,1000000,5,0,7]}`, wantErr: "element 8 is not a string"},
		{name: "bad warm-up start", body: `{"result":[1,"-","x",1000000,1000000,5,0,""]}`, wantErr: `warm-up start "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewUpstashStore(UpstashConfig{Client: replyServer(t, http.StatusOK, tt.body)})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Allow(context.Background(), req, t0)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if tt.wantErr != "" && !errors.Is(err, ErrBadReply) {
				t.Errorf("error %v is not ErrBadReply", err)
			}
			if strings.Contains(err.Error(), "secret-caller") {
				t.Errorf("error %q names the bucket key", err)
			}
		})
	}
}

func TestNewUpstashStoreConfig(t *testing.T) {
	c := replyServer(t, http.StatusOK, `{}`)
	tests := []struct {
		name    string
		cfg     UpstashConfig
		wantErr string
	}{
		{name: "no client", cfg: UpstashConfig{}, wantErr: "Client is nil"},
		{name: "negative TTL", cfg: UpstashConfig{Client: c, SettingsTTL: -1}, wantErr: "SettingsTTL must not be negative"},
		{name: "fine", cfg: UpstashConfig{Client: c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewUpstashStore(tt.cfg)
			if (err == nil) != (tt.wantErr == "") || (err != nil && (!strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidConfig))) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestUpstashUnreadableStateIsAFullBucket: a key holding something the
// script cannot read counts as a full bucket, and is overwritten when
// charged.
func TestUpstashUnreadableStateIsAFullBucket(t *testing.T) {
	store, env := newTestUpstash(t, UpstashConfig{})
	rs := needRedis(t, env)
	rs.Do(t, "SET", DefaultPrefix+"junk", "not-a-state")
	got := mustDecide(t, store, Request{Buckets: []Bucket{{Key: "junk", Limit: perTen}}, Cost: 1}, t0)
	want := ok(perTen, 9, 10*time.Second)
	want.Source = SourceUpstash
	if diff := cmp.Diff(want, viewOf(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
