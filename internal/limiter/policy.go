package limiter

import (
	"strconv"
	"strings"
	"time"
)

// QuotaPeriod is the calendar window of a Quota, in UTC.
type QuotaPeriod int

// Quota periods. The zero value, NoQuota, means no quota.
const (
	NoQuota    QuotaPeriod = iota
	QuotaDay               // from 00:00 UTC to the next 00:00 UTC
	QuotaWeek              // from Monday 00:00 UTC, seven days
	QuotaMonth             // from the 1st 00:00 UTC to the next month's 1st
)

var quotaPeriodNames = [...]string{"none", "day", "week", "month"}

// String returns "day", "week" or "month" ("none" for NoQuota).
func (p QuotaPeriod) String() string {
	if p >= 0 && int(p) < len(quotaPeriodNames) {
		return quotaPeriodNames[p]
	}
	return "QuotaPeriod(" + strconv.Itoa(int(p)) + ")"
}

// Window returns the calendar window holding t, in UTC: [start, end).
// NoQuota gives two zero times.
func (p QuotaPeriod) Window(t time.Time) (start, end time.Time) {
	t = t.UTC()
	y, m, d := t.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	switch p {
	case QuotaDay:
		return day, day.AddDate(0, 0, 1)
	case QuotaWeek:
		back := (int(day.Weekday()) + 6) % 7 // days since Monday
		start = day.AddDate(0, 0, -back)
		return start, start.AddDate(0, 0, 7)
	case QuotaMonth:
		start = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	return time.Time{}, time.Time{}
}

// MaxQuota is the largest Quota.Limit, in tokens: counts stay exact in the
// Lua script's doubles.
const MaxQuota = maxUnits

// Quota caps the tokens a caller may spend per calendar window in UTC, like
// an API Gateway usage-plan quota. Unlike a token bucket it does not refill
// gradually: the whole Limit comes back when the window ends. A Quota is a
// small value type; the zero value is no quota.
type Quota struct {
	// Limit is the tokens one window allows, 1 to MaxQuota.
	Limit int64
	// Period is the window; NoQuota (the zero value) means no quota.
	Period QuotaPeriod
}

// IsZero reports whether q is no quota.
func (q Quota) IsZero() bool { return q.Period == NoQuota }

// String renders q as the quota option reads it, e.g. "10000/month"; ""
// for no quota.
func (q Quota) String() string {
	if q.IsZero() {
		return ""
	}
	return strconv.FormatInt(q.Limit, 10) + "/" + q.Period.String()
}

func parseQuota(s string) (Quota, error) {
	s = strings.TrimSpace(s)
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return Quota{}, invalid("quota %q: want N/day, N/week or N/month", s)
	}
	limit, err := parseCount("quota", n)
	if err != nil {
		return Quota{}, err
	}
	if limit > MaxQuota {
		return Quota{}, invalid("quota %d exceeds the maximum of %d", limit, MaxQuota)
	}
	per = strings.TrimSpace(per)
	for p := QuotaDay; p <= QuotaMonth; p++ {
		if strings.EqualFold(per, p.String()) {
			return Quota{Limit: limit, Period: p}, nil
		}
	}
	return Quota{}, invalid("unknown quota period %q (want day, week or month)", per)
}

// Policy is what one caller is allowed: a token bucket and, optionally, a
// quota per calendar window. It is what a TIER_LIMITS item and a key's own
// limit (ParsePolicy) hold. A small value type; the zero value is no policy.
type Policy struct {
	Limit Limit // the token bucket
	Quota Quota // the quota; zero for none
}

// IsZero reports whether p is the zero Policy (e.g. a key without a limit
// of its own).
func (p Policy) IsZero() bool { return p == Policy{} }

// String renders p as ParsePolicy reads it, e.g.
// "30/minute:burst=50:quota=10000/month"; "" for the zero Policy. For every
// Policy that ParsePolicy returns, ParsePolicy(p.String()) gives p back.
func (p Policy) String() string {
	if p.IsZero() {
		return ""
	}
	s := p.Limit.String()
	if !p.Quota.IsZero() {
		s += ":quota=" + p.Quota.String()
	}
	return s
}
