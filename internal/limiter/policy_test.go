package limiter

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Policy
		wantErr string
	}{
		{name: "bucket only", in: "6/minute:burst=10", want: Policy{Limit: PerMinute(6).WithBurst(10)}},
		{name: "quota", in: "30/minute:burst=50:quota=10000/month",
			want: Policy{Limit: PerMinute(30).WithBurst(50), Quota: Quota{Limit: 10000, Period: QuotaMonth}}},
		{name: "quota first, spaces, case", in: " 30/Minute : Quota = 7/WEEK : burst=50 ",
			want: Policy{Limit: PerMinute(30).WithBurst(50), Quota: Quota{Limit: 7, Period: QuotaWeek}}},
		{name: "daily quota without burst", in: "1/second:quota=100/day",
			want: Policy{Limit: PerSecond(1), Quota: Quota{Limit: 100, Period: QuotaDay}}},
		{name: "bad quota period", in: "1/second:quota=100/year", wantErr: `unknown quota period "year" (want day, week or month)`},
		{name: "quota without period", in: "1/second:quota=100", wantErr: `quota "100": want N/day, N/week or N/month`},
		{name: "quota zero", in: "1/second:quota=0/day", wantErr: "quota must be at least 1, got 0"},
		{name: "quota twice", in: "1/second:quota=1/day:quota=2/day", wantErr: "option quota is given twice"},
		{name: "burst twice", in: "1/second:burst=1:burst=2", wantErr: "option burst is given twice"},
		{name: "unknown option", in: "1/second:size=3", wantErr: `unknown option "size=3" (want burst=N or quota=N/QPERIOD)`},
		{name: "quota too large", in: "1/second:quota=9007199254740993/day", wantErr: "quota 9007199254740993 exceeds the maximum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePolicy(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("ParsePolicy(%q) = %v, %v; want an ErrInvalidConfig containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePolicy(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("ParsePolicy(%q) (-want +got):\n%s", tt.in, diff)
			}
			back, err := ParsePolicy(got.String())
			if err != nil || back != got {
				t.Fatalf("ParsePolicy(%q.String() = %q) = %v, %v; want the same policy", tt.in, got.String(), back, err)
			}
		})
	}
}

func TestParseLimitRefusesQuota(t *testing.T) {
	if _, err := ParseLimit("1/second:quota=5/day"); err == nil || !strings.Contains(err.Error(), `unknown option "quota=5/day" (want burst=N)`) {
		t.Fatalf("ParseLimit with a quota: err = %v, want unknown option", err)
	}
}

func TestQuotaWindow(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		period     QuotaPeriod
		now        string
		start, end string
	}{
		{QuotaDay, "2026-12-03T07:45:16.5Z", "2026-12-03T00:00:00Z", "2026-12-04T00:00:00Z"},
		{QuotaDay, "2026-12-03T00:00:00Z", "2026-12-03T00:00:00Z", "2026-12-04T00:00:00Z"},
		{QuotaDay, "2026-12-03T23:59:59.999Z", "2026-12-03T00:00:00Z", "2026-12-04T00:00:00Z"},
		{QuotaDay, "2026-12-03T01:30:00+05:00", "2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z"}, // UTC, not local
		{QuotaWeek, "2026-12-03T07:45:16Z", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"},     // a Thursday
		{QuotaWeek, "2026-11-30T00:00:00Z", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"},     // Monday 00:00
		{QuotaWeek, "2026-12-06T23:59:59Z", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"},     // Sunday
		{QuotaMonth, "2026-12-03T07:45:16Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{QuotaMonth, "2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.period.String()+" "+tt.now, func(t *testing.T) {
			start, end := tt.period.Window(at(tt.now))
			if !start.Equal(at(tt.start)) || !end.Equal(at(tt.end)) {
				t.Fatalf("Window(%s) = [%s, %s), want [%s, %s)", tt.now, start, end, tt.start, tt.end)
			}
		})
	}
}
