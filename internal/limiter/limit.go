package limiter

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidConfig matches (errors.Is) every error about malformed or
// out-of-range configuration: a limit, tier list, route-cost list, failure
// mode or Config field. The error text itself is only the description of
// what is wrong, quoting the bad part.
var ErrInvalidConfig = errors.New("invalid limiter configuration")

// limitError is a configuration error whose text is only the description of
// what is wrong (no prefix), yet matches ErrInvalidConfig.
type limitError struct{ msg string }

func (e *limitError) Error() string        { return e.msg }
func (e *limitError) Is(target error) bool { return target == ErrInvalidConfig }

func invalid(format string, args ...any) error {
	return &limitError{msg: fmt.Sprintf(format, args...)}
}

// Bounds of what a Limit may hold. They keep the token arithmetic exact: a
// bucket's state is an integer count of token units (unitsPerToken per token)
// that must stay below 2^53 so that Lua's doubles represent it exactly.
const (
	// MaxBurst is the largest capacity a bucket may have, in whole tokens
	// (about 52 million).
	MaxBurst = maxUnits / unitsPerToken
	// MaxCost is the largest cost of one request, in whole tokens. It equals
	// MaxBurst: a larger cost could never pass any bucket.
	MaxCost = MaxBurst
)

// periodNames are the named periods ParseLimit accepts, in ascending order.
var periodNames = []struct {
	name string
	d    time.Duration
}{
	{"second", time.Second},
	{"minute", time.Minute},
	{"hour", time.Hour},
	{"day", 24 * time.Hour},
}

// Limit is a token bucket's shape: Rate tokens are added every Period, up to
// Burst tokens. A full bucket lets Burst tokens' worth of requests through at
// once; after that requests pass at Rate per Period.
//
// The zero value is not a usable limit (Validate reports why). A Limit is a
// small value type; copy it freely.
type Limit struct {
	// Rate is how many tokens are added every Period. At least 1.
	Rate int64
	// Period is the refill period. It must be a whole number of milliseconds
	// that divides 24 hours evenly (every named period — second, minute,
	// hour, day — does; so do e.g. 100ms and 10s).
	Period time.Duration
	// Burst is the bucket's capacity in tokens, at least 1 and at most
	// MaxBurst. ParseLimit defaults it to Rate.
	Burst int64
}

// PerSecond returns a limit of rate tokens per second with a burst of rate.
func PerSecond(rate int64) Limit { return Limit{Rate: rate, Period: time.Second, Burst: rate} }

// PerMinute returns a limit of rate tokens per minute with a burst of rate.
func PerMinute(rate int64) Limit { return Limit{Rate: rate, Period: time.Minute, Burst: rate} }

// PerHour returns a limit of rate tokens per hour with a burst of rate.
func PerHour(rate int64) Limit { return Limit{Rate: rate, Period: time.Hour, Burst: rate} }

// PerDay returns a limit of rate tokens per day with a burst of rate.
func PerDay(rate int64) Limit { return Limit{Rate: rate, Period: 24 * time.Hour, Burst: rate} }

// WithBurst returns l with its capacity set to burst tokens.
func (l Limit) WithBurst(burst int64) Limit { l.Burst = burst; return l }

// Validate reports whether l can be used, naming the offending field.
func (l Limit) Validate() error {
	switch {
	case l.Rate < 1:
		return invalid("rate must be at least 1, got %d", l.Rate)
	case l.Burst < 1:
		return invalid("burst must be at least 1, got %d", l.Burst)
	case l.Burst > MaxBurst:
		return invalid("burst %d exceeds the maximum of %d", l.Burst, MaxBurst)
	}
	per := unitsPerMs(l.Period)
	if per == 0 {
		return invalid("period %s must be a whole number of milliseconds dividing 24h", l.Period)
	}
	// per ≤ unitsPerToken, so maxUnits/per is at least MaxBurst: the
	// division only runs for rates that high.
	if l.Rate > MaxBurst && l.Rate > maxUnits/per {
		return invalid("rate %d per %s is too high to count exactly", l.Rate, periodString(l.Period))
	}
	return nil
}

// plainParams is the common case of Validate and resolve in one step: a
// token bucket (no quota) with cost, key, rate and burst in range. It
// resolves b unscaled, and is false for anything else, valid or not (a
// quota, a rate above MaxBurst), which takes the general path.
func plainParams(b *Bucket, cost int64) (params, bool) {
	l := &b.Limit
	if cost < 1 || cost > MaxCost || uint(len(b.Key)-1) >= MaxKeyLen || b.Quota.Period != NoQuota ||
		l.Rate < 1 || l.Rate > MaxBurst || l.Burst < 1 || l.Burst > MaxBurst {
		return params{}, false
	}
	per := unitsPerMs(l.Period)
	if per == 0 {
		return params{}, false
	}
	return params{cap: l.Burst * unitsPerToken, perMs: l.Rate * per}, true
}

// unitsPerMs is the refill, in token units per millisecond, of one token
// per period; 0 when the period is not a whole number of milliseconds
// dividing a day. The named periods take no division.
func unitsPerMs(period time.Duration) int64 {
	const day = 24 * time.Hour
	switch period {
	case time.Second:
		return unitsPerToken / 1000
	case time.Minute:
		return unitsPerToken / 60_000
	case time.Hour:
		return unitsPerToken / 3_600_000
	case day:
		return 1
	}
	if period <= 0 || period%time.Millisecond != 0 || period > day || day%period != 0 {
		return 0
	}
	return unitsPerToken / period.Milliseconds()
}

// Window is how long an empty bucket takes to fill up: Burst/Rate periods,
// rounded up to a whole millisecond. It is the w of the RateLimit-Policy
// header. Window is 0 for an invalid limit, and at most the longest
// Duration (about 292 years).
func (l Limit) Window() time.Duration {
	if l.Validate() != nil {
		return 0
	}
	p := tokenParams(l, ppmOne)
	return msDuration(ceilDiv(p.cap, p.perMs))
}

// String renders l as ParseLimit reads it: "6/minute:burst=10", or
// "6/minute" when the burst equals the rate. For every Limit that
// ParseLimit returns, ParseLimit(l.String()) gives l back. A period without a
// name is rendered as a Go duration ("5/100ms"), which ParseLimit rejects.
func (l Limit) String() string {
	s := strconv.FormatInt(l.Rate, 10) + "/" + periodString(l.Period)
	if l.Burst != l.Rate {
		s += ":burst=" + strconv.FormatInt(l.Burst, 10)
	}
	return s
}

func periodString(d time.Duration) string {
	for _, p := range periodNames {
		if p.d == d {
			return p.name
		}
	}
	return d.String()
}

// ParseLimit parses "RATE/PERIOD[:burst=N]", e.g. "6/minute:burst=10".
//
// RATE and N are whole numbers of tokens; PERIOD is one of second, minute,
// hour or day, in any letter case (abbreviations such as "m" or "min" are
// rejected: they are ambiguous to readers). Spaces around each part are
// ignored. Without a burst the capacity equals RATE. The error names the
// bad part; it does not name the variable, which the caller adds.
func ParseLimit(s string) (Limit, error) {
	p, err := parsePolicy(s, false)
	return p.Limit, err
}

// ParsePolicy parses "RATE/PERIOD[:burst=N][:quota=N/QPERIOD]", e.g.
// "30/minute:burst=50:quota=10000/month": a token bucket as ParseLimit
// reads it, and an optional quota of N tokens per calendar window in UTC
// (QPERIOD day, week or month). Options may come in either order, each at
// most once.
func ParsePolicy(s string) (Policy, error) { return parsePolicy(s, true) }

func parsePolicy(s string, quotaOK bool) (Policy, error) {
	want, opts := "RATE/PERIOD[:burst=N]", "burst=N"
	if quotaOK {
		want, opts = "RATE/PERIOD[:burst=N][:quota=N/QPERIOD]", "burst=N or quota=N/QPERIOD"
	}
	spec := strings.TrimSpace(s)
	parts := strings.Split(spec, ":")
	rateStr, periodStr, ok := strings.Cut(parts[0], "/")
	if !ok {
		return Policy{}, invalid("want %s (e.g. 6/minute:burst=10), got %q", want, spec)
	}
	rate, err := parseCount("rate", rateStr)
	if err != nil {
		return Policy{}, err
	}
	period, err := parsePeriod(periodStr)
	if err != nil {
		return Policy{}, err
	}
	p := Policy{Limit: Limit{Rate: rate, Period: period, Burst: rate}}
	seen := map[string]bool{}
	for _, opt := range parts[1:] {
		name, val, ok := strings.Cut(opt, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		switch {
		case !ok || (name != "burst" && (name != "quota" || !quotaOK)):
			return Policy{}, invalid("unknown option %q (want %s)", strings.TrimSpace(opt), opts)
		case seen[name]:
			return Policy{}, invalid("option %s is given twice", name)
		}
		seen[name] = true
		if name == "burst" {
			if p.Limit.Burst, err = parseCount("burst", val); err != nil {
				return Policy{}, err
			}
			continue
		}
		if p.Quota, err = parseQuota(val); err != nil {
			return Policy{}, err
		}
	}
	if err := p.Limit.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

func parseCount(what, s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, invalid("%s is missing", what)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, invalid("%s %q is too large", what, s)
		}
		return 0, invalid("%s %q is not a whole number", what, s)
	}
	if n < 1 {
		return 0, invalid("%s must be at least 1, got %d", what, n)
	}
	return n, nil
}

func parsePeriod(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for _, p := range periodNames {
		if strings.EqualFold(s, p.name) {
			return p.d, nil
		}
	}
	return 0, invalid("unknown period %q (want second, minute, hour or day)", s)
}

// Tiers maps a tier name to its policy. It is what ParseTierLimits returns.
type Tiers map[string]Policy

// String renders the tiers as ParseTierLimits reads them, sorted by name.
func (t Tiers) String() string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n + "=" + t[n].String())
	}
	return b.String()
}

// ParseTierLimits parses TIER_LIMITS: comma-separated
// "tier=RATE/PERIOD[:burst=N][:quota=N/QPERIOD]" items, e.g.
// "anonymous=6/minute:burst=10,premium=120/minute:burst=200:quota=100000/month".
//
// Spaces around items and parts are ignored, and so are empty items (a
// trailing comma). Tier names are case-sensitive and made of letters, digits,
// '-', '_' and '.'. At least one tier is required; a tier given twice is an
// error. Errors quote the offending item, e.g.
//
//	"premium=12/fortnight": unknown period "fortnight" (want second, minute, hour or day)
//
// and the caller prefixes the variable's name.
func ParseTierLimits(s string) (Tiers, error) {
	tiers := make(Tiers)
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, spec, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok {
			return nil, invalid("%q: want tier=RATE/PERIOD[:burst=N][:quota=N/QPERIOD]", item)
		}
		if err := checkName("tier", name); err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		if _, dup := tiers[name]; dup {
			return nil, invalid("%q: tier %q is given twice", item, name)
		}
		p, err := ParsePolicy(spec)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		tiers[name] = p
	}
	if len(tiers) == 0 {
		return nil, invalid("no tiers given (want tier=RATE/PERIOD[:burst=N],...)")
	}
	return tiers, nil
}

func checkName(what, name string) error {
	if name == "" {
		return invalid("%s name is empty", what)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return invalid("%s name %q may only hold letters, digits, '-', '_' and '.'", what, name)
		}
	}
	return nil
}
