package limiter

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Live limit changes and warm-up: factors that multiply the rate and burst
// of token buckets (never quotas). Factors are integers in millionths (ppm)
// so that this file and decide.lua compute the same numbers: every product
// below is split so that no intermediate value reaches 2^53.

const (
	ppmOne = 1_000_000
	// MinFactor and MaxFactor bound a live factor or a warm-up factor.
	MinFactor = 0.001
	MaxFactor = 100.0
	minPPM    = ppmOne / 1000
	maxPPM    = 100 * ppmOne
	// MaxRamp bounds a ramp (cmd/limits --ramp, WARMUP's duration): the
	// ramp is computed in whole seconds, exactly.
	MaxRamp = 30 * 24 * time.Hour
)

// Scope says which factors scale a bucket.
type Scope uint8

// Scopes. The zero value, ScopeNone, is never scaled; quotas are never
// scaled whatever their Scope.
const (
	ScopeNone Scope = iota // fixed (e.g. the failed-key bucket)
	ScopeAll               // the factor for every limit, and warm-up (e.g. the global bucket)
	ScopeTier              // also the factor of the request's tier (the caller's buckets)
)

// scale is ⌊x·ppm/10^6⌋, clamped to [1, maxUnits].
func scale(x, ppm int64) int64 {
	if ppm == ppmOne {
		return x
	}
	hi := x / ppmOne
	lo := x - hi*ppmOne
	v := hi*ppm + lo*ppm/ppmOne
	return min(max(v, 1), maxUnits)
}

// mulPPM multiplies two factors in ppm, clamped to [1, maxPPM].
func mulPPM(a, b int64) int64 {
	hi := a / ppmOne
	lo := a - hi*ppmOne
	return min(max(hi*b+lo*b/ppmOne, 1), maxPPM)
}

// ramp is the factor at now of a change to ppm0 made at start that moves
// linearly back to 1 over dur ms (0: no ramp), in steps of whole seconds.
func ramp(ppm0, start, dur, now int64) int64 {
	if dur <= 0 {
		return ppm0
	}
	e := now - start
	switch {
	case e <= 0:
		return ppm0
	case e >= dur:
		return ppmOne
	}
	d, es, ds := ppmOne-ppm0, e/1000, dur/1000
	if d >= 0 {
		return ppm0 + d*es/ds
	}
	return ppm0 - (-d)*es/ds
}

// toPPM converts a factor to ppm, rounding to the nearest.
func toPPM(f float64) int64 { return int64(math.Round(f * ppmOne)) }

// Scale is one live limit change (cmd/limits scale): from Start, the rate
// and burst of every token bucket — or only those of Tier's callers — are
// multiplied by Factor; with a Ramp the factor moves linearly back to 1
// over Ramp; after Expires (when set) the change no longer applies.
type Scale struct {
	Tier    string        // "" for every limit
	Factor  float64       // MinFactor..MaxFactor (kept to 6 decimals)
	Start   time.Time     // when the change was made
	Ramp    time.Duration // 0: none; else whole seconds up to MaxRamp
	Expires time.Time     // zero: never
}

// Validate reports what is wrong with s, if anything.
func (s Scale) Validate() error {
	switch p := toPPM(s.Factor); {
	case math.IsNaN(s.Factor) || p < minPPM || p > maxPPM:
		return invalid("factor %v is outside %v..%v", s.Factor, MinFactor, MaxFactor)
	case s.Tier != "":
		if err := checkName("tier", s.Tier); err != nil {
			return err
		}
	}
	if s.Ramp < 0 || s.Ramp > MaxRamp || s.Ramp%time.Second != 0 {
		return invalid("ramp %s must be whole seconds up to %s", s.Ramp, MaxRamp)
	}
	if s.Start.IsZero() || (!s.Expires.IsZero() && !s.Expires.After(s.Start)) {
		return invalid("a change needs a start, and an expiry after it")
	}
	return nil
}

// FactorAt returns the factor s applies at now: 1 once it has expired or
// its ramp has ended.
func (s Scale) FactorAt(now time.Time) float64 {
	return float64(s.ppmAt(now.UnixMilli())) / ppmOne
}

func (s Scale) ppmAt(now int64) int64 {
	if !s.Expires.IsZero() && now >= s.Expires.UnixMilli() {
		return ppmOne
	}
	return ramp(toPPM(s.Factor), s.Start.UnixMilli(), s.Ramp.Milliseconds(), now)
}

// Over returns the instant after which s no longer changes anything (its
// expiry or the end of its ramp, the earlier), or the zero time when it
// applies forever.
func (s Scale) Over() time.Time {
	var end time.Time
	if s.Ramp > 0 {
		end = s.Start.Add(s.Ramp)
	}
	if !s.Expires.IsZero() && (end.IsZero() || s.Expires.Before(end)) {
		end = s.Expires
	}
	return end
}

// SettingsKey returns the Redis key that holds the live limit changes
// (FormatScales) for stores whose UpstashConfig.Prefix is prefix; "" means
// DefaultPrefix. cmd/limits writes it; the decision script reads it.
func SettingsKey(prefix string) string { return orDefault(prefix, DefaultPrefix) + settingsKeySuffix }

// WarmupKey returns the Redis key that holds the warm-up start instants,
// "version=startMs;..." (newest last), for stores whose prefix is prefix;
// "" means DefaultPrefix.
func WarmupKey(prefix string) string { return orDefault(prefix, DefaultPrefix) + warmupKeySuffix }

// settingsEntry is the stored form: "scope=ppm,startMs,rampMs,expiresMs",
// scope "*" for every limit; entries are joined by ';'. decide.lua reads
// it with the same pattern.
var settingsEntry = regexp.MustCompile(`([^;=]+)=([0-9]+),([0-9]+),([0-9]+),([0-9]+)`)

// FormatScales renders changes as they are stored in Upstash, one entry per
// scope (the last wins), sorted.
func FormatScales(scales []Scale) string {
	byScope := map[string]string{}
	for _, s := range scales {
		scope := s.Tier
		if scope == "" {
			scope = "*"
		}
		var exp int64
		if !s.Expires.IsZero() {
			exp = s.Expires.UnixMilli()
		}
		byScope[scope] = fmt.Sprintf("%s=%d,%d,%d,%d", scope, toPPM(s.Factor), s.Start.UnixMilli(), s.Ramp.Milliseconds(), exp)
	}
	out := make([]string, 0, len(byScope))
	for _, e := range byScope {
		out = append(out, e)
	}
	sort.Strings(out)
	return strings.Join(out, ";")
}

// ParseScales reads the stored form. Like the script, it skips what it
// cannot read: a factor outside the bounds, or text that is no entry.
func ParseScales(raw string) []Scale {
	var out []Scale
	for _, m := range settingsEntry.FindAllStringSubmatch(raw, -1) {
		var n [4]int64
		ok := true
		for i := range n {
			v, err := strconv.ParseInt(m[2+i], 10, 64)
			n[i], ok = v, ok && err == nil
		}
		if !ok || n[0] < minPPM || n[0] > maxPPM {
			continue
		}
		s := Scale{Factor: float64(n[0]) / ppmOne, Start: time.UnixMilli(n[1]).UTC(), Ramp: time.Duration(n[2]) * time.Millisecond}
		if m[1] != "*" {
			s.Tier = m[1]
		}
		if n[3] != 0 {
			s.Expires = time.UnixMilli(n[3]).UTC()
		}
		out = append(out, s)
	}
	return out
}

// factors is what scales a decision's buckets at one instant, in ppm.
type factors struct {
	all  int64 // ScopeAll buckets: the every-limit factor times warm-up
	tier int64 // ScopeTier buckets: also the tier's factor
}

// liveFactors computes factors at now from stored changes, the request's
// tier, and the warm-up factor (ppm).
func liveFactors(scales []Scale, tier string, warm, now int64) factors {
	all, tr := settingsPPM(scales, tier, now)
	a := mulPPM(all, warm)
	return factors{all: a, tier: mulPPM(a, tr)}
}

// settingsPPM returns the factors scales set at now for every limit and for
// tier (the last entry of each scope wins, as in the script).
func settingsPPM(scales []Scale, tier string, now int64) (all, tr int64) {
	all, tr = ppmOne, ppmOne
	for _, s := range scales {
		switch s.Tier {
		case "":
			all = s.ppmAt(now)
		case tier:
			tr = s.ppmAt(now)
		}
	}
	return all, tr
}

func (f factors) of(s Scope) int64 {
	switch s {
	case ScopeAll:
		return f.all
	case ScopeTier:
		return f.tier
	}
	return ppmOne
}

// Warmup lowers every token bucket's rate and burst when a new version of
// the authorizer first starts (WARMUP): by Factor at first, rising linearly
// to 1 over Duration from the instant the version's first container made
// its first decision, shared through Upstash so that every container agrees.
// The zero value is no warm-up.
type Warmup struct {
	Factor   float64       // MinFactor..<1
	Duration time.Duration // whole seconds, 1s..MaxRamp
	// Version names the deployed code; containers of one version share a
	// start instant. "" with a non-zero Factor: this container alone.
	Version string
}

// ParseWarmup parses WARMUP, "FACTOR/DURATION", e.g. "0.2/10m": FACTOR a
// decimal number in [0.001, 1), DURATION a Go duration of whole seconds
// from 1s to 720h. "" is no warm-up.
func ParseWarmup(s string) (Warmup, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Warmup{}, nil
	}
	fs, ds, ok := strings.Cut(s, "/")
	if !ok {
		return Warmup{}, invalid("want FACTOR/DURATION (e.g. 0.2/10m), got %q", s)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(fs), 64)
	if err != nil || math.IsNaN(f) || toPPM(f) < minPPM || toPPM(f) >= ppmOne {
		return Warmup{}, invalid("factor %q must be a number from %v to below 1", strings.TrimSpace(fs), MinFactor)
	}
	d, err := time.ParseDuration(strings.TrimSpace(ds))
	if err != nil || d < time.Second || d > MaxRamp || d%time.Second != 0 {
		return Warmup{}, invalid("duration %q must be whole seconds from 1s to %s (e.g. 10m)", strings.TrimSpace(ds), MaxRamp)
	}
	return Warmup{Factor: f, Duration: d}, nil
}

// IsZero reports whether w is no warm-up.
func (w Warmup) IsZero() bool { return w.Factor == 0 }

// String renders w as ParseWarmup reads it ("" for none).
func (w Warmup) String() string {
	if w.IsZero() {
		return ""
	}
	return strconv.FormatFloat(w.Factor, 'f', -1, 64) + "/" + w.Duration.String()
}

// ppmAt is the warm-up factor at now for a version that started at start.
func (w Warmup) ppmAt(start, now int64) int64 {
	if w.IsZero() {
		return ppmOne
	}
	return ramp(toPPM(w.Factor), start, w.Duration.Milliseconds(), now)
}
