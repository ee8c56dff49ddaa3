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
			d:    Decision{Tier: "anonymous", Caller: "ip:198.51.100.7", Limit: 10, Remaining: 7, Reset: 30, Source: "upstash", Cost: 1, Window: 100},
			want: Echo{Tier: "anonymous", Headers: map[string]string{
				HeaderLimit: "10", HeaderRemaining: "7", HeaderReset: "30", HeaderTier: "anonymous",
				HeaderPolicy: `"anonymous";q=10;w=100`, HeaderRateLimit: `"anonymous";r=7;t=30`,
			}},
		},
		{
			name: "denied premium",
			d:    Decision{Tier: "premium", Caller: "k_abc", Limit: 200, Remaining: 0, Reset: 100, RetryAfter: 3, Source: "cache", Cost: 5, Window: 100},
			want: Echo{Tier: "premium", Headers: map[string]string{
				HeaderLimit: "200", HeaderRemaining: "0", HeaderReset: "100", HeaderTier: "premium",
				HeaderPolicy: `"premium";q=200;w=100`, HeaderRateLimit: `"premium";r=0;t=100`,
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
	d := Decision{Tier: "t", Limit: 5}
	if got, want := d.PolicyHeader(), `"t";q=5;w=1`; got != want {
		t.Errorf("PolicyHeader = %q, want %q", got, want)
	}
}
