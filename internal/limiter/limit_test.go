package limiter

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseLimit(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Limit
		wantErr string
	}{
		{name: "rate and burst", in: "6/minute:burst=10", want: Limit{Rate: 6, Period: time.Minute, Burst: 10}},
		{name: "burst defaults to rate", in: "30/hour", want: Limit{Rate: 30, Period: time.Hour, Burst: 30}},
		{name: "every period", in: "1/second", want: Limit{Rate: 1, Period: time.Second, Burst: 1}},
		{name: "day", in: "1000/day:burst=5", want: Limit{Rate: 1000, Period: 24 * time.Hour, Burst: 5}},
		{name: "spaces and case", in: "  6 / Minute : BURST = 10 ", want: Limit{Rate: 6, Period: time.Minute, Burst: 10}},
		{name: "largest burst", in: "1/day:burst=52124995", want: Limit{Rate: 1, Period: 24 * time.Hour, Burst: MaxBurst}},
		{name: "unknown period", in: "12/fortnight", wantErr: `unknown period "fortnight" (want second, minute, hour or day)`},
		{name: "abbreviated period", in: "6/m", wantErr: `unknown period "m"`},
		{name: "no period", in: "6", wantErr: `want RATE/PERIOD[:burst=N] (e.g. 6/minute:burst=10), got "6"`},
		{name: "empty", in: "", wantErr: `want RATE/PERIOD`},
		{name: "zero rate", in: "0/minute", wantErr: "rate must be at least 1, got 0"},
		{name: "negative rate", in: "-5/minute", wantErr: "rate must be at least 1, got -5"},
		{name: "fractional rate", in: "1.5/minute", wantErr: `rate "1.5" is not a whole number`},
		{name: "missing rate", in: "/minute", wantErr: "rate is missing"},
		{name: "zero burst", in: "6/minute:burst=0", wantErr: "burst must be at least 1, got 0"},
		{name: "bad burst", in: "6/minute:burst=ten", wantErr: `burst "ten" is not a whole number`},
		{name: "unknown option", in: "6/minute:size=10", wantErr: `unknown option "size=10" (want burst=N)`},
		{name: "overflowing rate", in: "99999999999999999999/second", wantErr: `rate "99999999999999999999" is too large`},
		{name: "burst too big to count exactly", in: "1/day:burst=52124996", wantErr: "burst 52124996 exceeds the maximum of 52124995"},
		{name: "rate too big to count exactly", in: "60000000000/second:burst=1", wantErr: "rate 60000000000 per second is too high to count exactly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLimit(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLimit(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("error %v does not match ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLimit(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseLimit(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestLimitStringRoundTrips(t *testing.T) {
	tests := []struct {
		name  string
		limit Limit
		want  string
	}{
		{name: "with burst", limit: Limit{Rate: 6, Period: time.Minute, Burst: 10}, want: "6/minute:burst=10"},
		{name: "burst equals rate", limit: PerHour(30), want: "30/hour"},
		{name: "burst below rate", limit: PerSecond(100).WithBurst(5), want: "100/second:burst=5"},
		{name: "day", limit: PerDay(1), want: "1/day"},
		{name: "per minute constructor", limit: PerMinute(7), want: "7/minute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.limit.String()
			if got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			back, err := ParseLimit(got)
			if err != nil {
				t.Fatalf("ParseLimit(%q): %v", got, err)
			}
			if diff := cmp.Diff(tt.limit, back); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLimitValidate(t *testing.T) {
	tests := []struct {
		name    string
		limit   Limit
		wantErr string
	}{
		{name: "zero value", limit: Limit{}, wantErr: "rate must be at least 1"},
		{name: "sub-millisecond period", limit: Limit{Rate: 1, Period: time.Microsecond, Burst: 1}, wantErr: "whole number of milliseconds"},
		{name: "period not dividing a day", limit: Limit{Rate: 1, Period: 7 * time.Hour, Burst: 1}, wantErr: "dividing 24h"},
		{name: "period over a day", limit: Limit{Rate: 1, Period: 48 * time.Hour, Burst: 1}, wantErr: "dividing 24h"},
		{name: "unnamed period that divides a day", limit: Limit{Rate: 1, Period: 100 * time.Millisecond, Burst: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.limit.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLimitWindow(t *testing.T) {
	tests := []struct {
		name  string
		limit Limit
		want  time.Duration
	}{
		{name: "anonymous default", limit: Limit{Rate: 6, Period: time.Minute, Burst: 10}, want: 100 * time.Second},
		{name: "premium default", limit: Limit{Rate: 120, Period: time.Minute, Burst: 200}, want: 100 * time.Second},
		{name: "rounded up to a millisecond", limit: Limit{Rate: 7, Period: time.Hour, Burst: 1}, want: 514286 * time.Millisecond},
		{name: "invalid", limit: Limit{}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.limit.Window(); got != tt.want {
				t.Errorf("Window() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseTierLimits(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Tiers
		wantErr string
	}{
		{
			name: "design default",
			in:   "anonymous=6/minute:burst=10,authenticated=30/minute:burst=50,premium=120/minute:burst=200",
			want: Tiers{
				"anonymous":     {Limit: Limit{Rate: 6, Period: time.Minute, Burst: 10}},
				"authenticated": {Limit: Limit{Rate: 30, Period: time.Minute, Burst: 50}},
				"premium":       {Limit: Limit{Rate: 120, Period: time.Minute, Burst: 200}},
			},
		},
		{
			name: "whitespace and trailing comma",
			in:   " free = 1/second ,\n\tpaid=100/day:burst=5 , ",
			want: Tiers{
				"free": {Limit: Limit{Rate: 1, Period: time.Second, Burst: 1}},
				"paid": {Limit: Limit{Rate: 100, Period: 24 * time.Hour, Burst: 5}},
			},
		},
		{
			name: "quotas",
			in:   "free=1/second:quota=100/day,paid=100/day:burst=5:quota=3000/month",
			want: Tiers{
				"free": {Limit: Limit{Rate: 1, Period: time.Second, Burst: 1}, Quota: Quota{Limit: 100, Period: QuotaDay}},
				"paid": {Limit: Limit{Rate: 100, Period: 24 * time.Hour, Burst: 5}, Quota: Quota{Limit: 3000, Period: QuotaMonth}},
			},
		},
		{name: "unknown period names the item", in: "anonymous=6/minute,premium=12/fortnight",
			wantErr: `"premium=12/fortnight": unknown period "fortnight" (want second, minute, hour or day)`},
		{name: "duplicate tier", in: "a=1/second,a=2/second", wantErr: `"a=2/second": tier "a" is given twice`},
		{name: "missing equals", in: "premium", wantErr: `"premium": want tier=RATE/PERIOD[:burst=N][:quota=N/QPERIOD]`},
		{name: "empty name", in: "=1/second", wantErr: `"=1/second": tier name is empty`},
		{name: "bad name", in: "pre mium=1/second", wantErr: `tier name "pre mium" may only hold`},
		{name: "zero rate", in: "a=0/second", wantErr: `"a=0/second": rate must be at least 1, got 0`},
		{name: "burst below one", in: "a=5/second:burst=-1", wantErr: `"a=5/second:burst=-1": burst must be at least 1, got -1`},
		{name: "empty", in: " , ", wantErr: "no tiers given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTierLimits(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr && !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTierLimits(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("error %v does not match ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTierLimits(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			// The rendering parses back to the same tiers.
			back, err := ParseTierLimits(got.String())
			if err != nil {
				t.Fatalf("ParseTierLimits(String()): %v", err)
			}
			if diff := cmp.Diff(got, back); diff != "" {
				t.Errorf("String round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTierLimitsErrorIsExact(t *testing.T) {
	_, err := ParseTierLimits("premium=12/fortnight")
	want := `"premium=12/fortnight": unknown period "fortnight" (want second, minute, hour or day)`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestParseRouteCosts(t *testing.T) {
	type call struct {
		method, path string
		want         int64
	}
	tests := []struct {
		name    string
		in      string
		calls   []call
		wantErr string
	}{
		{
			name: "design default",
			in:   "POST /predict/batch=5",
			calls: []call{
				{"POST", "/predict/batch", 5},
				{"post", "/predict/batch", 5},
				{"GET", "/predict/batch", 1},
				{"POST", "/predict/batch/", 1},
				{"POST", "/predict", 1},
				{"POST", "/PREDICT/BATCH", 1},
			},
		},
		{
			name: "several, spaced, lower-case method",
			in:   " post  /a=2 , GET /b = 3,",
			calls: []call{
				{"POST", "/a", 2},
				{"GET", "/b", 3},
				{"Get", "/b", 3},
				{"GET", "/a", 1},
			},
		},
		{name: "empty is no routes", in: "", calls: []call{{"POST", "/predict/batch", 1}}},
		{name: "no cost", in: "POST /a", wantErr: `"POST /a": want METHOD PATH=N`},
		{name: "no method", in: "/a=2", wantErr: `"/a=2": want METHOD PATH=N`},
		{name: "path without slash", in: "POST a=2", wantErr: `"POST a=2": path "a" must start with '/'`},
		{name: "bad method", in: "P0ST /a=2", wantErr: `"P0ST /a=2": method "P0ST" is not an HTTP method`},
		{name: "zero cost", in: "POST /a=0", wantErr: `"POST /a=0": cost must be at least 1, got 0`},
		{name: "non-numeric cost", in: "POST /a=five", wantErr: `"POST /a=five": cost "five" is not a whole number`},
		{name: "absurd cost", in: "POST /a=99999999999", wantErr: `"POST /a=99999999999": cost 99999999999 exceeds the maximum`},
		{name: "duplicate", in: "POST /a=2,post /a=3", wantErr: `"post /a=3": route POST /a is given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, err := ParseRouteCosts(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRouteCosts(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("error %v does not match ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRouteCosts(%q): %v", tt.in, err)
			}
			for _, c := range tt.calls {
				if got := rc.Cost(c.method, c.path); got != c.want {
					t.Errorf("Cost(%q, %q) = %d, want %d", c.method, c.path, got, c.want)
				}
			}
			back, err := ParseRouteCosts(rc.String())
			if err != nil {
				t.Fatalf("ParseRouteCosts(String()=%q): %v", rc.String(), err)
			}
			if got, want := back.String(), rc.String(); got != want {
				t.Errorf("String round trip = %q, want %q", got, want)
			}
		})
	}
}

func TestRouteCostsZeroValueAndMax(t *testing.T) {
	var zero RouteCosts
	if got := zero.Cost("POST", "/predict/batch"); got != 1 {
		t.Errorf("zero RouteCosts Cost = %d, want 1", got)
	}
	if got := zero.Max(); got != 1 {
		t.Errorf("zero RouteCosts Max = %d, want 1", got)
	}
	rc, err := ParseRouteCosts("POST /a=5,POST /b=12")
	if err != nil {
		t.Fatal(err)
	}
	if got := rc.Max(); got != 12 {
		t.Errorf("Max = %d, want 12", got)
	}
	if got := rc.Len(); got != 2 {
		t.Errorf("Len = %d, want 2", got)
	}
}

func TestParseFailureMode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    FailureMode
		wantErr string
	}{
		{name: "fallback", in: "fallback", want: FailFallback},
		{name: "empty is the default", in: "", want: FailFallback},
		{name: "open", in: " Open ", want: FailOpen},
		{name: "closed", in: "CLOSED", want: FailClosed},
		{name: "unknown", in: "ajar", wantErr: `unknown failure mode "ajar" (want fallback, open or closed)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFailureMode(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("ParseFailureMode(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseFailureMode(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != strings.ToLower(strings.TrimSpace(tt.in)) && tt.in != "" {
				t.Errorf("String() = %q", s)
			}
		})
	}
}

func TestSourceString(t *testing.T) {
	tests := []struct {
		s    Source
		want string
	}{
		{SourceNone, "none"}, {SourceUpstash, "upstash"}, {SourceMemory, "memory"}, {SourceCache, "cache"},
		{SourceFailOpen, "fail-open"}, {SourceFailClosed, "fail-closed"}, {Source(42), "Source(42)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.s.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRequestValidate(t *testing.T) {
	l := PerMinute(6)
	long := strings.Repeat("k", MaxKeyLen+1)
	many := make([]Bucket, MaxBuckets+1)
	for i := range many {
		many[i] = Bucket{Key: string(rune('a' + i)), Limit: l}
	}
	tests := []struct {
		name    string
		req     Request
		wantErr string
	}{
		{name: "ok", req: Request{Buckets: []Bucket{{Key: "a", Limit: l}}, Cost: 1}},
		{name: "no buckets", req: Request{Cost: 1}, wantErr: "no buckets"},
		{name: "too many buckets", req: Request{Buckets: many, Cost: 1}, wantErr: "9 buckets, at most 8"},
		{name: "zero cost", req: Request{Buckets: []Bucket{{Key: "a", Limit: l}}}, wantErr: "cost 0 is outside"},
		{name: "empty key", req: Request{Buckets: []Bucket{{Limit: l}}, Cost: 1}, wantErr: "bucket 0: key length 0"},
		{name: "long key", req: Request{Buckets: []Bucket{{Key: long, Limit: l}}, Cost: 1}, wantErr: "bucket 0: key length 513"},
		{name: "bad limit", req: Request{Buckets: []Bucket{{Key: "a"}}, Cost: 1}, wantErr: "bucket 0: rate must be at least 1"},
		{name: "duplicate keys", req: Request{Buckets: []Bucket{{Key: "secret-ip", Limit: l}, {Key: "secret-ip", Limit: l}}, Cost: 1}, wantErr: "buckets 0 and 1 have the same key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("Validate() = %v, want an ErrInvalidRequest containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret-ip") {
				t.Errorf("error %q contains a bucket key", err)
			}
		})
	}
}
