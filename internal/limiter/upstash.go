package limiter

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/bucketgate/bucketgate/internal/upstash"
)

// ScriptSource is the decision script run on Upstash (decide.lua). It
// starts with Upstash's "#!lua flags=allow-key-locking" line; see the
// package documentation. Read it, never assign it.
//
//go:embed decide.lua
var ScriptSource string

var decideScript = upstash.NewScript(ScriptSource)

// ScriptSHA1 returns the hex SHA-1 of ScriptSource: the digest EVALSHA sends.
func ScriptSHA1() string { return decideScript.SHA1() }

// ErrBadReply is wrapped by the error for a script reply of the wrong shape
// (a script and code out of step, or a proxy mangling replies). The Limiter
// treats it like any other store failure.
var ErrBadReply = errors.New("unexpected decision script reply")

// Defaults of UpstashConfig.
const (
	DefaultPrefix       = "bg:"
	DefaultKnownKeys    = 50_000
	DefaultSettingsTTL  = time.Second
	settingsKeySuffix   = "limits"
	warmupKeySuffix     = "warmup"
	maxWarmupVersionLen = 128
)

// UpstashConfig configures an UpstashStore. Only Client is required.
type UpstashConfig struct {
	// Client talks to Upstash. Required.
	Client *upstash.Client
	// Prefix namespaces the Redis keys: bucket key K is stored under
	// Prefix+K, the live settings under Prefix+"limits". "" means
	// DefaultPrefix.
	Prefix string
	// KnownKeys bounds how many buckets the store remembers (for its guesses
	// and the deny cache, see known); 0 means DefaultKnownKeys, negative
	// remembers nothing (every decision then costs one more command, and
	// repeated denials go to Upstash).
	KnownKeys int
	// SettingsTTL is how long the live settings (cmd/limits) read from
	// Upstash are used before a decision reads them again, at the cost of
	// one GET; 0 means DefaultSettingsTTL. A change reaches every container
	// within SettingsTTL, a new container on its first decision.
	SettingsTTL time.Duration
	// Warmup, when not zero, lowers the limits of a new version (WARMUP).
	Warmup Warmup
}

// UpstashStore decides on buckets kept in Upstash Redis: one REST request
// (EVALSHA of ScriptSource) per decision, whatever the number of buckets.
// It remembers what it last saw of each bucket (see known) and the live
// settings.
//
// Safe for concurrent use.
type UpstashStore struct {
	client *upstash.Client
	prefix string
	known  *known
	ttl    int64 // settings TTL, ms
	warm   Warmup
	born   int64 // ms; the warm-up start until Upstash tells the shared one

	mu        sync.Mutex
	scales    []Scale
	readAt    int64 // when the settings were last read, ms; 0: never
	warmStart int64 // the shared warm-up start, ms; 0: unknown
}

// NewUpstashStore returns a store using cfg.Client. It does not contact
// Upstash (see Prime).
func NewUpstashStore(cfg UpstashConfig) (*UpstashStore, error) {
	switch {
	case cfg.Client == nil:
		return nil, invalid("upstash store: Client is nil")
	case cfg.SettingsTTL < 0:
		return nil, invalid("upstash store: SettingsTTL must not be negative")
	case len(cfg.Warmup.Version) > maxWarmupVersionLen || !plainText(cfg.Warmup.Version):
		return nil, invalid("upstash store: warm-up version must be at most %d letters, digits, '.', '_', ':' or '-'", maxWarmupVersionLen)
	}
	u := &UpstashStore{
		client: cfg.Client,
		prefix: orDefault(cfg.Prefix, DefaultPrefix),
		ttl:    orDefault(cfg.SettingsTTL, DefaultSettingsTTL).Milliseconds(),
		warm:   cfg.Warmup,
		born:   time.Now().UnixMilli(),
	}
	if cfg.KnownKeys >= 0 {
		u.known = newKnown(orDefault(cfg.KnownKeys, DefaultKnownKeys))
	}
	return u, nil
}

func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// Allow decides req at now (the caller's clock, sent to the script). The
// Result's Source is SourceUpstash. Errors: ErrInvalidRequest for a bad
// request (nothing sent); otherwise the client's *upstash.Error (use
// upstash.KindOf), or ErrBadReply. Errors never contain a bucket key.
func (u *UpstashStore) Allow(ctx context.Context, req Request, now time.Time) (Result, error) {
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	return u.decide(ctx, req, now, false)
}

// prime reads the live settings and the warm-up start in one request, so
// that the first decision needs neither and finds a connection open (see
// Limiter.Prime).
func (u *UpstashStore) prime(ctx context.Context, now time.Time) error {
	_, err := u.decide(ctx, Request{}, now, true)
	return err
}

// decide runs the script for a valid request (or none, to prime), reading
// the live settings when they are stale or when read is set.
func (u *UpstashStore) decide(ctx context.Context, req Request, now time.Time, read bool) (Result, error) {
	nowMs := now.UnixMilli()
	n := len(req.Buckets)
	u.mu.Lock()
	readSettings := read || !fresh(u.readAt, nowMs, u.ttl)
	scales, warmStart := u.scales, u.warmStart
	u.mu.Unlock()

	var ps [MaxBuckets]params
	resolve(req, unscaled, now, ps[:n])
	mode := 0
	keys := make([]string, n, n+2)
	for i, b := range req.Buckets {
		keys[i] = u.key(b, ps[i])
	}
	if readSettings {
		mode |= 1
		keys = append(keys, u.prefix+settingsKeySuffix)
	}
	warm := ""
	if !u.warm.IsZero() {
		start := ""
		if warmStart != 0 {
			start = strconv.FormatInt(warmStart, 10)
		} else if u.warm.Version != "" {
			mode |= 2
			keys = append(keys, u.prefix+warmupKeySuffix)
		} else {
			start = strconv.FormatInt(u.born, 10)
		}
		warm = fmt.Sprintf("%d,%d,%s,%s", toPPM(u.warm.Factor), u.warm.Duration.Milliseconds(), start, u.warm.Version)
	}
	all, tr := settingsPPM(scales, req.Tier, nowMs) // the script adds warm-up
	args := make([]any, 0, 9+4*n)
	args = append(args, nowMs, req.Cost, skewMs, n, mode, req.Tier, all, tr, warm)
	for i, b := range req.Buckets {
		kind := "q"
		if b.Quota.IsZero() {
			kind = [...]string{ScopeNone: "u", ScopeAll: "g", ScopeTier: "t"}[b.Scope]
		}
		args = append(args, kind, ps[i].cap, ps[i].perMs, u.known.guess(keys[i], ps[i], nowMs))
	}

	var reply []json.RawMessage
	start := time.Now()
	err := decideScript.Run(ctx, u.client, &reply, keys, args...)
	latency := time.Since(start)
	if err != nil {
		return Result{UpstashLatency: latency}, fmt.Errorf("limiter: decision script: %w", err)
	}
	rep, err := parseReply(reply, n)
	if err != nil {
		return Result{UpstashLatency: latency}, err
	}

	u.mu.Lock()
	if readSettings && rep.settings != nil {
		u.scales, u.readAt = ParseScales(*rep.settings), nowMs
	}
	if rep.warmStart != 0 {
		u.warmStart = rep.warmStart
	}
	u.mu.Unlock()

	// Report with the factors the script used.
	fr := factors{all: rep.ppmAll, tier: rep.ppmTier}
	var st [MaxBuckets]state
	for i, b := range req.Buckets {
		if !ps[i].quota {
			ps[i] = tokenParams(b.Limit, fr.of(b.Scope))
		}
		st[i] = rep.st[i]
		if ps[i].quota {
			st[i].at = ps[i].perMs
		}
		if err := checkState(st[i], ps[i]); err != nil {
			return Result{UpstashLatency: latency}, fmt.Errorf("limiter: %w: bucket %d: %w", ErrBadReply, i+1, err)
		}
		if u.known != nil {
			e := entry{fullAt: absent}
			if s, ok := decodeState(rep.stored[i], ps[i]); ok {
				if ps[i].quota {
					s.at = ps[i].perMs
				}
				e = entry{state: s, fullAt: expiresAt(s, ps[i])}
			}
			u.known.put(keys[i], e, nowMs)
		}
	}
	r := report(n, ps[:n], st[:n], rep.allowed, req.Cost, nowMs)
	r.Source = SourceUpstash
	r.UpstashLatency = latency
	return r, nil
}

// fresh reports whether settings read at readAt (ms; 0: never) are still
// to be used at now: for ttl ms, and never after the clock stepped back
// before the read.
func fresh(readAt, now, ttl int64) bool {
	return readAt != 0 && now >= readAt && now-readAt < ttl
}

// key is the Redis key of bucket b: a quota's names its window (by its end),
// so that each window counts afresh and clocks straddling the window's end
// each find their own.
func (u *UpstashStore) key(b Bucket, p params) string {
	if p.quota {
		return u.prefix + b.Key + ":" + strconv.FormatInt(p.perMs, 10)
	}
	return u.prefix + b.Key
}

// checkState rejects a reported state a correct script cannot produce.
func checkState(s state, p params) error {
	if s.units < 0 || (!p.quota && s.units > p.cap) {
		return fmt.Errorf("holds %d units", s.units)
	}
	return nil
}

// cached answers req from the remembered states when they prove that the
// store would deny it (see known), and the live settings are fresh.
func (u *UpstashStore) cached(req Request, now time.Time) (Result, bool) {
	if u.known == nil {
		return Result{}, false
	}
	nowMs := now.UnixMilli()
	u.mu.Lock()
	isFresh := fresh(u.readAt, nowMs, u.ttl)
	scales, warmStart := u.scales, u.warmStart
	u.mu.Unlock()
	// Live settings and warm-up scale token buckets of ScopeAll and
	// ScopeTier only: a request of unscaled buckets (ScopeNone, quotas)
	// reads the same numbers however stale they are.
	if !unscaledOnly(req) && (!isFresh || (!u.warm.IsZero() && warmStart == 0 && u.warm.Version != "")) {
		return Result{}, false
	}
	n := len(req.Buckets)
	var (
		ps [MaxBuckets]params
		st [MaxBuckets]state
	)
	resolve(req, u.factorsAt(scales, warmStart, req.Tier, nowMs), now, ps[:n])
	refuse := false
	for i, b := range req.Buckets {
		e, ok := u.known.get(u.key(b, ps[i]))
		live := ok && e.fullAt > nowMs
		switch {
		case !ok:
			return Result{}, false // the store knows more
		case !live && e.fullAt != absent && expiresAt(e.state, ps[i]) != e.fullAt:
			// Expired, but under other factors than today's: the key may
			// still be there.
			return Result{}, false
		}
		st[i], _ = current(e.state, live, ps[i], nowMs) // not live: full
		if !passes(st[i], ps[i], req.Cost) {
			refuse = true
		}
	}
	if !refuse {
		return Result{}, false
	}
	r := report(n, ps[:n], st[:n], false, req.Cost, nowMs)
	r.Source = SourceCache
	return r, true
}

// unscaledOnly reports whether no live factor or warm-up scales any of
// req's buckets.
func unscaledOnly(req Request) bool {
	for _, b := range req.Buckets {
		if b.Quota.IsZero() && b.Scope != ScopeNone {
			return false
		}
	}
	return true
}

// factors returns the factors for the memory fallback: the last live
// settings seen, and warm-up.
func (u *UpstashStore) factors(tier string, now int64) factors {
	u.mu.Lock()
	scales, warmStart := u.scales, u.warmStart
	u.mu.Unlock()
	return u.factorsAt(scales, warmStart, tier, now)
}

func (u *UpstashStore) factorsAt(scales []Scale, warmStart int64, tier string, now int64) factors {
	if warmStart == 0 {
		warmStart = u.born
	}
	return liveFactors(scales, tier, u.warm.ppmAt(warmStart, now), now)
}

// scriptReply is a parsed reply.
type scriptReply struct {
	allowed         bool
	settings        *string // nil: not read
	warmStart       int64   // 0: not read
	ppmTier, ppmAll int64
	st              [MaxBuckets]state
	stored          [MaxBuckets]string
}

// parseReply reads {allowed, settings, warm start, ppm t, ppm g, then per
// bucket units, at, stored}.
func parseReply(vals []json.RawMessage, n int) (scriptReply, error) {
	var r scriptReply
	bad := func(format string, args ...any) (scriptReply, error) {
		return scriptReply{}, fmt.Errorf("limiter: %w: %s", ErrBadReply, fmt.Sprintf(format, args...))
	}
	if len(vals) != 5+3*n {
		return bad("%d elements, want %d", len(vals), 5+3*n)
	}
	num := func(i int) (int64, error) {
		v, err := strconv.ParseInt(string(vals[i]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("limiter: %w: element %d is not an integer", ErrBadReply, i+1)
		}
		return v, nil
	}
	str := func(i int) (string, error) {
		var s string
		if err := json.Unmarshal(vals[i], &s); err != nil {
			return "", fmt.Errorf("limiter: %w: element %d is not a string", ErrBadReply, i+1)
		}
		return s, nil
	}
	var err error
	var flag int64
	if flag, err = num(0); err != nil {
		return scriptReply{}, err
	}
	if flag != 0 && flag != 1 {
		return bad("allowed flag is %d", flag)
	}
	r.allowed = flag == 1
	s, err := str(1)
	if err != nil {
		return scriptReply{}, err
	}
	if s != "-" {
		r.settings = &s
	}
	if w, err := str(2); err != nil {
		return scriptReply{}, err
	} else if w != "" {
		if r.warmStart, err = strconv.ParseInt(w, 10, 64); err != nil || r.warmStart <= 0 {
			return bad("warm-up start %q", w)
		}
	}
	if r.ppmTier, err = num(3); err != nil {
		return scriptReply{}, err
	}
	if r.ppmAll, err = num(4); err != nil {
		return scriptReply{}, err
	}
	if r.ppmTier < 1 || r.ppmTier > maxPPM || r.ppmAll < 1 || r.ppmAll > maxPPM {
		return bad("factors %d, %d out of range", r.ppmTier, r.ppmAll)
	}
	for i := 0; i < n; i++ {
		j := 5 + 3*i
		if r.st[i].units, err = num(j); err != nil {
			return scriptReply{}, err
		}
		if r.st[i].at, err = num(j + 1); err != nil {
			return scriptReply{}, err
		}
		if r.stored[i], err = str(j + 2); err != nil {
			return scriptReply{}, err
		}
	}
	return r, nil
}
