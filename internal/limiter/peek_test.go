package limiter

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// failedKeys is a bucket like the authorizer's failed-key bucket: fixed
// (ScopeNone), 1 token per 10 s, burst 10.
func failedKeys(key string) Request {
	return Request{Buckets: []Bucket{{Key: key, Limit: perTen, Scope: ScopeNone}}, Cost: 1}
}

// TestPeek: Peek refuses what Allow would refuse, from what this container
// holds, without a request to Upstash and without charging; it never
// refuses what it cannot prove.
func TestPeek(t *testing.T) {
	type step struct {
		name      string
		advance   time.Duration
		fault     bool    // Upstash resets connections from this step on
		allow     int     // Allow calls first (cost 1 each)
		req       Request // what Peek is asked
		wantOK    bool
		want      view // when wantOK
		wantCalls int64
	}
	drained := denied(perTen, 0, 100*time.Second, 10*time.Second)
	cached := func(v view) view { v.Source = SourceCache; return v }
	memory := func(v view) view { v.Source = SourceMemory; return v }
	tier := Request{Buckets: []Bucket{{Key: "t", Limit: perTen, Scope: ScopeTier}}, Cost: 1, Tier: "x"}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "upstash: a drained bucket is refused from what the store last said",
			steps: []step{
				{name: "never seen", req: failedKeys("af"), wantCalls: 0},
				{name: "full", allow: 1, req: failedKeys("af"), wantCalls: 1},
				{name: "drained", allow: 9, req: failedKeys("af"), wantOK: true, want: cached(drained), wantCalls: 10},
				{name: "repeated: still free", req: failedKeys("af"), wantOK: true, want: cached(drained), wantCalls: 10},
				// The live settings (SettingsTTL 1 s) were read 9 s ago:
				// an unscaled bucket does not need them.
				{name: "stale settings", advance: 9 * time.Second, req: failedKeys("af"), wantOK: true,
					want: cached(denied(perTen, 0, 91*time.Second, time.Second)), wantCalls: 10},
				{name: "refilled one token", advance: time.Second, req: failedKeys("af"), wantCalls: 10},
				{name: "peeking charged nothing", allow: 1, req: failedKeys("af"), wantOK: true, want: cached(drained), wantCalls: 11},
			},
		},
		{
			name: "upstash: scaled buckets need fresh settings",
			steps: []step{
				{name: "drained", allow: 10, req: tier, wantOK: true, want: cached(drained), wantCalls: 10},
				{name: "settings stale", advance: 2 * time.Second, req: tier, wantCalls: 10},
			},
		},
		{
			name: "upstash down, breaker open: the memory fallback's bucket",
			steps: []step{
				{name: "fallback drains memory", fault: true, allow: 10, req: failedKeys("af"), wantOK: true, want: memory(drained), wantCalls: 3},
				// Once the cooldown has passed the next Allow probes
				// Upstash: Peek looks at what Upstash said, which is
				// nothing for this bucket.
				{name: "cooldown over", advance: 2 * time.Second, req: failedKeys("af"), wantCalls: 3},
			},
		},
		{
			name: "invalid request",
			steps: []step{
				{name: "no buckets", req: Request{Cost: 1}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarnessWith(t, Config{}, UpstashConfig{SettingsTTL: time.Second})
			for _, s := range tt.steps {
				h.clock.Advance(s.advance)
				if s.fault {
					h.shared.setFault(errTransport)
				}
				for range s.allow {
					if _, err := h.l.Allow(context.Background(), s.req); err != nil {
						t.Fatal(err)
					}
				}
				before := h.l.Stats()
				got, ok := h.l.Peek(s.req)
				if ok != s.wantOK {
					t.Fatalf("%s: Peek ok = %v, want %v (%+v)", s.name, ok, s.wantOK, viewOf(got))
				}
				if ok {
					if diff := cmp.Diff(s.want, viewOf(got)); diff != "" {
						t.Errorf("%s: Peek (-want +got):\n%s", s.name, diff)
					}
					if after := h.l.Stats(); after.Denied != before.Denied+1 {
						t.Errorf("%s: Stats().Denied %d -> %d, want one more for a refusal", s.name, before.Denied, after.Denied)
					}
				}
				if c := h.shared.calls.Load(); c != s.wantCalls {
					t.Errorf("%s: Upstash requests = %d, want %d (Peek makes none)", s.name, c, s.wantCalls)
				}
			}
		})
	}
}

// TestPeekMemoryOnly: without Upstash, Peek reads the memory store.
func TestPeekMemoryOnly(t *testing.T) {
	c := newClock()
	l, err := New(Config{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	req := failedKeys("af:ip:203.0.113.7")
	if _, ok := l.Peek(req); ok {
		t.Fatal("Peek refused a bucket never used")
	}
	for range 10 {
		if r, err := l.Allow(context.Background(), req); err != nil || !r.Allowed {
			t.Fatalf("Allow = %+v, %v; want allowed", r, err)
		}
	}
	got, ok := l.Peek(req)
	want := denied(perTen, 0, 100*time.Second, 10*time.Second)
	want.Source = SourceMemory
	if !ok {
		t.Fatal("Peek did not refuse a drained bucket")
	}
	if diff := cmp.Diff(want, viewOf(got)); diff != "" {
		t.Errorf("Peek (-want +got):\n%s", diff)
	}
	c.Advance(10 * time.Second)
	if _, ok := l.Peek(req); ok {
		t.Error("Peek refused a bucket holding a token again")
	}
	if r, _ := l.Allow(context.Background(), req); !r.Allowed {
		t.Errorf("Allow after peeking = %+v, want allowed: Peek must charge nothing", viewOf(r))
	}
}
