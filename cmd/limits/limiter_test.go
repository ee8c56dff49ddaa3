package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// The authorizer's side of a change: limiters (containers) on the same
// server as the command, each with its own Upstash client and store, on a
// clock the test moves.

// container is one authorizer container's limiter.
func container(t *testing.T, env *upstashtest.Env, c *fakeclock.Clock) *limiter.Limiter {
	t.Helper()
	client, err := upstash.New(upstash.Config{URL: env.URL, Token: env.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.CloseIdleConnections)
	store, err := limiter.NewUpstashStore(limiter.UpstashConfig{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	l, err := limiter.New(limiter.Config{Upstash: store, Timeout: 5 * time.Second, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// tierBucket and globalBucket are how the authorizer scopes a caller's
// bucket and the global one; a fresh key per decision shows the capacity
// the live factors give (Result.Limit of a full bucket).
var seq int

func tierBucket(burst int64) limiter.Bucket {
	seq++
	return limiter.Bucket{Key: "caller-" + strconv.Itoa(seq), Limit: limiter.Limit{Rate: burst, Period: time.Hour, Burst: burst}, Scope: limiter.ScopeTier}
}

func globalBucket(burst int64) limiter.Bucket {
	seq++
	return limiter.Bucket{Key: "global-" + strconv.Itoa(seq), Limit: limiter.Limit{Rate: burst, Period: time.Hour, Burst: burst}, Scope: limiter.ScopeAll}
}

// capacity decides one request of tier on a fresh bucket and returns the
// bucket's capacity.
func capacity(t *testing.T, l *limiter.Limiter, tier string, b limiter.Bucket) int64 {
	t.Helper()
	r, err := l.Allow(context.Background(), limiter.Request{Buckets: []limiter.Bucket{b}, Cost: 1, Tier: tier})
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != limiter.SourceUpstash || !r.Allowed {
		t.Fatalf("decision from %s, allowed %v; want an allowed decision on Upstash", r.Source, r.Allowed)
	}
	return r.Limit
}

// TestRunningContainerPicksUpAChange: a container that read the settings
// at t0 keeps its factors until SettingsTTL has passed, then applies the
// change the command made — every limit's, or only its tier's.
func TestRunningContainerPicksUpAChange(t *testing.T) {
	env := upstashtest.Start(t)
	ttl := limiter.DefaultSettingsTTL
	tests := []struct {
		name   string
		cmds   [][]string // run after a clear
		tier   string
		bucket func(int64) limiter.Bucket
		want   int64 // capacity of a burst of 10 after the change
	}{
		{name: "every limit halved: a caller's bucket", cmds: [][]string{{"scale", "0.5"}}, tier: "premium", bucket: tierBucket, want: 5},
		{name: "every limit halved: the global bucket", cmds: [][]string{{"scale", "0.5"}}, tier: "premium", bucket: globalBucket, want: 5},
		{name: "premium doubled: a premium caller", cmds: [][]string{{"scale", "--tier", "premium", "2"}}, tier: "premium", bucket: tierBucket, want: 20},
		{name: "premium doubled: another tier", cmds: [][]string{{"scale", "--tier", "premium", "2"}}, tier: "authenticated", bucket: tierBucket, want: 10},
		{name: "premium doubled: the global bucket", cmds: [][]string{{"scale", "--tier", "premium", "2"}}, tier: "premium", bucket: globalBucket, want: 10},
		{name: "every limit and a tier's: they multiply", cmds: [][]string{{"scale", "0.5"}, {"scale", "--tier", "premium", "--for", "1h", "3"}},
			tier: "premium", bucket: tierBucket, want: 15},
	}
	c := fakeclock.New(t0)
	l := container(t, env, c)
	at := t0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustRun(t, env, at, "clear")
			c.Set(at)
			if got := capacity(t, l, tt.tier, tt.bucket(10)); got != 10 { // reads the settings: a TTL has passed
				t.Fatalf("capacity with no change = %d, want 10", got)
			}
			for _, cmd := range tt.cmds {
				mustRun(t, env, at, cmd...)
			}
			c.Set(at.Add(ttl - time.Millisecond))
			if got := capacity(t, l, tt.tier, tt.bucket(10)); got != 10 {
				t.Errorf("capacity %d before the settings are a TTL old, want the factors read at the last read (10)", got)
			}
			c.Set(at.Add(ttl))
			if got := capacity(t, l, tt.tier, tt.bucket(10)); got != tt.want {
				t.Errorf("capacity after SettingsTTL = %d, want %d", got, tt.want)
			}
			at = at.Add(2 * ttl)
		})
	}
}

// TestNewContainerPicksUpAChange: a container started after the change
// applies it on its first decision, in the one request that decision makes.
func TestNewContainerPicksUpAChange(t *testing.T) {
	env := upstashtest.Start(t)
	mustRun(t, env, t0, "scale", "--tier", "premium", "0.5")
	c := fakeclock.New(t0.Add(time.Second))
	capacity(t, container(t, env, c), "premium", tierBucket(10)) // another container loaded the script
	l := container(t, env, c)
	before := env.Server.Requests()
	if got, want := capacity(t, l, "premium", tierBucket(10)), int64(5); got != want {
		t.Errorf("first decision's capacity = %d, want %d", got, want)
	}
	if got := env.Server.Requests() - before; got != 1 {
		t.Errorf("the first decision made %d requests to Upstash, want 1 (the settings read inside it)", got)
	}
}

// commandStats returns Redis' per-command call counts since the last
// CONFIG RESETSTAT, leaving out the test's own INFO and CONFIG.
func commandStats(t *testing.T, rs *redistest.Server) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, line := range strings.Split(rs.Do(t, "INFO", "commandstats"), "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":")
		if !ok || name == "info" || strings.HasPrefix(name, "config") {
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

// TestAFactorCostsNoCommand: with a factor set, a decision costs what it
// costs without one — EVALSHA and one SET per bucket — once the settings
// were read; the read itself is one GET, once per SettingsTTL.
func TestAFactorCostsNoCommand(t *testing.T) {
	env := upstashtest.StartRedis(t)
	mustRun(t, env, t0, "scale", "--ramp", "10m", "0.5")
	mustRun(t, env, t0, "scale", "--tier", "premium", "2")
	c := fakeclock.New(t0)
	l := container(t, env, c)
	capacity(t, l, "premium", tierBucket(10)) // loads the script
	tests := []struct {
		name    string
		at      time.Duration
		buckets []limiter.Bucket
		want    map[string]int
	}{
		{name: "the settings are a TTL old: one GET reads them", at: limiter.DefaultSettingsTTL,
			buckets: []limiter.Bucket{tierBucket(10)}, want: map[string]int{"evalsha": 1, "get": 1, "set": 1}},
		{name: "one bucket", at: limiter.DefaultSettingsTTL + 10*time.Millisecond,
			buckets: []limiter.Bucket{tierBucket(10)}, want: map[string]int{"evalsha": 1, "set": 1}},
		{name: "a caller's bucket and the global one", at: limiter.DefaultSettingsTTL + 20*time.Millisecond,
			buckets: []limiter.Bucket{tierBucket(10), globalBucket(100)}, want: map[string]int{"evalsha": 1, "set": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Set(t0.Add(tt.at))
			env.Redis.Do(t, "CONFIG", "RESETSTAT")
			r, err := l.Allow(context.Background(), limiter.Request{Buckets: tt.buckets, Cost: 1, Tier: "premium"})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Allowed || r.Source != limiter.SourceUpstash {
				t.Fatalf("allowed %v from %s, want allowed on Upstash", r.Allowed, r.Source)
			}
			// 10 × 0.5 (ramping up: 0.5 at the start) × 2 = 10 for the
			// caller; 100 × 0.5 for the global bucket.
			if got := r.Buckets[0].Limit; got != 10 {
				t.Errorf("caller's capacity = %d, want 10 (both factors applied)", got)
			}
			if diff := cmp.Diff(tt.want, commandStats(t, env.Redis)); diff != "" {
				t.Errorf("Redis commands (-want +got):\n%s", diff)
			}
		})
	}
}
