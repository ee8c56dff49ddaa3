package authctx

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHeadersRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		d    Decision
		want Echo
	}{
		{
			name: "allowed anonymous",
			d: Decision{Tier: "anonymous", Caller: "ip:198.51.100.7", Source: "upstash", Cost: 1,
				Policies: []Policy{{Name: "anonymous", Limit: 10, Remaining: 7, Reset: 30, Window: 100}}},
			want: Echo{Tier: "anonymous", Headers: map[string]string{
				HeaderLimit: "10", HeaderRemaining: "7", HeaderReset: "30", HeaderTier: "anonymous",
				HeaderPolicy: `"anonymous";q=10;w=100`, HeaderRateLimit: `"anonymous";r=7;t=30`,
			}},
		},
		{
			name: "denied premium",
			d: Decision{Tier: "premium", Caller: "k_abc", RetryAfter: 3, Source: "cache", Cost: 5,
				Policies: []Policy{{Name: "premium", Limit: 200, Remaining: 0, Reset: 100, Window: 100}}},
			want: Echo{Tier: "premium", Headers: map[string]string{
				HeaderLimit: "200", HeaderRemaining: "0", HeaderReset: "100", HeaderTier: "premium",
				HeaderPolicy: `"premium";q=200;w=100`, HeaderRateLimit: `"premium";r=0;t=100`,
			}},
		},
		{
			name: "several policies: headers list all, X-RateLimit-* the deciding one",
			d: Decision{Tier: "authenticated", Caller: "key_x", RetryAfter: 40, Source: "upstash", Cost: 1, Deciding: 2,
				Policies: []Policy{
					{Name: "authenticated", Limit: 50, Remaining: 12, Reset: 76, Window: 100},
					{Name: "authenticated-quota", Limit: 1000, Remaining: 500, Reset: 3600, Window: 86400},
					{Name: "route:POST /predict", Limit: 3, Remaining: 0, Reset: 60, Window: 60},
				}},
			want: Echo{Tier: "authenticated", Headers: map[string]string{
				HeaderLimit: "3", HeaderRemaining: "0", HeaderReset: "60", HeaderTier: "authenticated",
				HeaderPolicy:    `"authenticated";q=50;w=100, "authenticated-quota";q=1000;w=86400, "route:POST /predict";q=3;w=60`,
				HeaderRateLimit: `"authenticated";r=12;t=76, "authenticated-quota";r=500;t=3600, "route:POST /predict";r=0;t=60`,
			}},
		},
		{
			name: "forbidden carries no numbers",
			d:    Decision{Tier: "authenticated", Caller: "k_x", Source: "none", Cost: 1, Forbidden: true, RequiredTier: "premium", ForbiddenReason: "route needs premium"},
			want: Echo{Tier: "authenticated", Headers: map[string]string{HeaderTier: "authenticated"},
				Forbidden: true, RequiredTier: "premium", ForbiddenReason: "route needs premium"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Through JSON, as API Gateway delivers it.
			raw, err := json.Marshal(tt.d.Map())
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]interface{}
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			got, err := FromRequest(m)
			if err != nil {
				t.Fatalf("FromRequest: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("echo mismatch (-want +got):\n%s", diff)
			}
			h := http.Header{}
			got.SetHeaders(h)
			if h.Get(HeaderTier) != tt.d.Tier {
				t.Errorf("SetHeaders: %s = %q, want %q", HeaderTier, h.Get(HeaderTier), tt.d.Tier)
			}
		})
	}
}

func TestFromRequestAcceptsNonStrings(t *testing.T) {
	got, err := FromRequest(map[string]interface{}{KeyTier: "premium", KeyLimit: float64(200), KeyRemaining: int64(3), KeyForbidden: false})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{HeaderLimit: "200", HeaderRemaining: "3", HeaderTier: "premium"}
	if diff := cmp.Diff(want, got.Headers); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func TestFromRequestMissing(t *testing.T) {
	for _, m := range []map[string]interface{}{nil, {}, {KeyLimit: "3"}} {
		if _, err := FromRequest(m); !errors.Is(err, ErrMissing) {
			t.Errorf("FromRequest(%v) error = %v, want ErrMissing", m, err)
		}
	}
}

func TestPolicyWindowAtLeastOne(t *testing.T) {
	d := Decision{Tier: "t", Policies: []Policy{{Name: "t", Limit: 5}}}
	if got, want := d.PolicyHeader(), `"t";q=5;w=1`; got != want {
		t.Errorf("PolicyHeader = %q, want %q", got, want)
	}
}

func TestDenialCarriesPolicyMessageAndShadow(t *testing.T) {
	d := Decision{Tier: "anonymous", Caller: "ip:192.0.2.1", RetryAfter: 7, Source: "upstash", Cost: 1,
		Message: `Slow down \"anonymous\"`, ShadowDenied: true,
		Policies: []Policy{{Name: "anonymous-quota", Limit: 100, Remaining: 0, Reset: 7, Window: 86400}}}
	m := d.Map()
	for k, want := range map[string]string{KeyPolicyName: "anonymous-quota", KeyMessage: `Slow down \"anonymous\"`, KeyShadowDenied: "true", KeyRetryAfter: "7"} {
		if got := m[k]; got != want {
			t.Errorf("context %s = %v, want %q", k, got, want)
		}
	}
	if _, ok := (Decision{Tier: "t", Policies: []Policy{{Name: "t"}}}).Map()[KeyShadowDenied]; ok {
		t.Errorf("a decision outside shadow mode carries %s", KeyShadowDenied)
	}
}
