package limiter

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/bucketgate/bucketgate/internal/upstash"
)

// Defaults applied by New.
const (
	// DefaultTimeout is Config.Timeout's default: LIMITER_TIMEOUT's.
	DefaultTimeout = 150 * time.Millisecond
	// DefaultBreakerFailures is Config.BreakerFailures' default.
	DefaultBreakerFailures = 3
	// DefaultBreakerCooldown is Config.BreakerCooldown's default.
	DefaultBreakerCooldown = 2 * time.Second
	// MaxBreakerCooldown bounds Config.BreakerCooldown so that decisions
	// return to the shared store within 10 s of it recovering (a cooldown,
	// then one probe of at most Timeout).
	MaxBreakerCooldown = 5 * time.Second
	// DefaultDenyCacheSize is Config.DenyCacheSize's default.
	DefaultDenyCacheSize = 10_000
	// DefaultLogInterval is Config.LogInterval's default.
	DefaultLogInterval = 10 * time.Second
)

// Config configures a Limiter. The zero value is a memory-only limiter.
type Config struct {
	// Shared is the store all containers share: an *UpstashStore. nil
	// means memory-only: every decision is made on Local (Source "memory")
	// and none counts as a failure.
	Shared Store
	// Local is this container's store, used in memory-only mode and by
	// FailFallback. nil: a MemoryStore with default settings.
	Local Store
	// Timeout bounds each call to Shared (LIMITER_TIMEOUT); the request's
	// own deadline applies too. 0 means DefaultTimeout.
	Timeout time.Duration
	// FailureMode is what to do when Shared fails, times out or its breaker
	// is open (LIMITER_FAILURE_MODE). The zero value is FailFallback.
	FailureMode FailureMode
	// BreakerFailures is how many consecutive failures of Shared open the
	// circuit breaker; 0 means DefaultBreakerFailures.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before it lets one
	// probe through; 0 means DefaultBreakerCooldown, at most
	// MaxBreakerCooldown.
	BreakerCooldown time.Duration
	// DenyCacheSize bounds how many buckets the deny cache remembers; 0
	// means DefaultDenyCacheSize, negative disables the cache.
	DenyCacheSize int
	// MaxClockSkew is used when reading cached bucket states; give it the
	// value the Shared store uses. 0 means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// Logger receives the limiter's logs; nil discards them. Bucket keys are
	// never logged.
	Logger *slog.Logger
	// LogInterval is the least time between two log lines for the same
	// reason (e.g. "timeout"); the next line reports how many were
	// suppressed. 0 means DefaultLogInterval.
	LogInterval time.Duration
	// Now is the clock; nil means time.Now. Every decision, breaker and
	// log-throttling step reads it once per call.
	Now func() time.Time
}

// Limiter is the authorizer's rate limiter: the shared store first, with a
// short deadline; on failure, timeout or an open circuit breaker, the
// FailureMode. Repeated denials are answered from a small cache of bucket
// states without calling the shared store.
//
// Safe for concurrent use. It starts no goroutine: everything happens
// inside Allow.
type Limiter struct {
	shared  Store
	sharedS stateStore // shared, when it reports bucket states (for the deny cache)
	local   Store
	timeout time.Duration
	mode    FailureMode
	cache   *denyCache
	breaker *breaker
	log     *slog.Logger
	gate    *logGate
	now     func() time.Time
	stats   counters
}

// stateStore is a Store that also reports the buckets' states after a
// decision (both stores of this package do). The deny cache feeds on them.
type stateStore interface {
	allowState(ctx context.Context, req Request, now time.Time, st []state) (Result, error)
}

var (
	_ stateStore = (*UpstashStore)(nil)
	_ stateStore = (*MemoryStore)(nil)
)

// New returns a Limiter, applying cfg's defaults. Errors wrap
// ErrInvalidConfig.
func New(cfg Config) (*Limiter, error) {
	switch {
	case cfg.Timeout < 0:
		return nil, invalid("limiter: Timeout must not be negative")
	case cfg.BreakerFailures < 0:
		return nil, invalid("limiter: BreakerFailures must not be negative")
	case cfg.BreakerCooldown < 0 || cfg.BreakerCooldown > MaxBreakerCooldown:
		return nil, invalid("limiter: BreakerCooldown %s is outside 0..%s", cfg.BreakerCooldown, MaxBreakerCooldown)
	case cfg.LogInterval < 0, cfg.MaxClockSkew < 0:
		return nil, invalid("limiter: LogInterval and MaxClockSkew must not be negative")
	case cfg.FailureMode < FailFallback || cfg.FailureMode > FailClosed:
		return nil, invalid("limiter: unknown FailureMode %d", int(cfg.FailureMode))
	}
	l := &Limiter{
		shared:  cfg.Shared,
		local:   cfg.Local,
		timeout: orDefault(cfg.Timeout, DefaultTimeout),
		mode:    cfg.FailureMode,
		log:     cfg.Logger,
		now:     cfg.Now,
		breaker: &breaker{
			threshold: orDefault(cfg.BreakerFailures, DefaultBreakerFailures),
			cooldown:  orDefault(cfg.BreakerCooldown, DefaultBreakerCooldown),
		},
		gate: &logGate{every: orDefault(cfg.LogInterval, DefaultLogInterval)},
	}
	if l.local == nil {
		m, err := NewMemoryStore(MemoryConfig{MaxClockSkew: cfg.MaxClockSkew})
		if err != nil {
			return nil, err
		}
		l.local = m
	}
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if l.now == nil {
		l.now = time.Now
	}
	if ss, ok := cfg.Shared.(stateStore); ok && cfg.DenyCacheSize >= 0 {
		l.sharedS = ss
		l.cache = newDenyCache(orDefault(cfg.DenyCacheSize, DefaultDenyCacheSize), orDefault(cfg.MaxClockSkew, DefaultMaxClockSkew))
	}
	return l, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Allow decides req: Cost tokens from every bucket, or none. The error is
// non-nil only for an invalid request (wrapping ErrInvalidRequest, nothing
// charged) or when the Local store fails; a failing shared store is never
// an error — the FailureMode decides instead, and Result.Source says so.
func (l *Limiter) Allow(ctx context.Context, req Request) (Result, error) {
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	now := l.now()
	if l.shared == nil {
		return l.decideLocal(ctx, req, now)
	}
	if l.cache != nil {
		if r, ok := l.cache.check(req, now.UnixMilli()); ok {
			l.stats.count(r)
			return r, nil
		}
	}
	probe, ok := l.breaker.allow(now)
	if !ok {
		l.stats.circuitOpen.Add(1)
		return l.fail(ctx, req, now, failCircuitOpen, nil)
	}
	r, err := l.callShared(ctx, req, now)
	if err == nil {
		if l.breaker.success(probe) {
			l.logEvent(now, eventBreakerClosed, nil)
		}
		l.stats.count(r)
		return r, nil
	}
	why := classify(err)
	switch why {
	case failTimeout:
		l.stats.timeouts.Add(1)
	case failAuth:
		l.stats.authErrors.Add(1)
	case failCanceled:
		l.stats.canceled.Add(1)
	default:
		l.stats.errors.Add(1)
	}
	if why == failCanceled || ctx.Err() != nil {
		// The caller gave up (or its own deadline passed): that says
		// nothing about the store's health.
		l.breaker.abandon(probe)
	} else if l.breaker.failure(now, probe) {
		l.stats.breakerOpened.Add(1)
		l.logEvent(now, eventBreakerOpened, err)
	}
	return l.fail(ctx, req, now, why, err)
}

// callShared asks the shared store within the timeout, and feeds the deny
// cache from the answer.
func (l *Limiter) callShared(ctx context.Context, req Request, now time.Time) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if l.sharedS == nil {
		return l.shared.Allow(ctx, req, now)
	}
	var st [MaxBuckets]state
	r, err := l.sharedS.allowState(ctx, req, now, st[:])
	if err == nil {
		l.cache.remember(req, st[:len(req.Buckets)], r.Allowed, now.UnixMilli())
	}
	return r, err
}

func (l *Limiter) decideLocal(ctx context.Context, req Request, now time.Time) (Result, error) {
	r, err := l.local.Allow(ctx, req, now)
	if err != nil {
		return Result{}, err
	}
	l.stats.count(r)
	return r, nil
}

// fail decides req by the failure mode, after the shared store failed for
// reason why (err is nil for an open circuit).
func (l *Limiter) fail(ctx context.Context, req Request, now time.Time, why event, err error) (Result, error) {
	l.logEvent(now, why, err)
	switch l.mode {
	case FailOpen:
		r := assumed(req, true)
		l.stats.count(r)
		return r, nil
	case FailClosed:
		r := assumed(req, false)
		l.stats.count(r)
		return r, nil
	}
	return l.decideLocal(ctx, req, now)
}

// assumed is the Result of a decision made without looking at any bucket
// (fail-open or fail-closed). It reports the first bucket — by convention
// the caller's own. Allowed: as if the bucket had been full (Remaining
// Burst-Cost, at least 0). Denied: Remaining 0, RetryAfter and ResetAfter
// FailClosedRetryAfter.
func assumed(req Request, allowed bool) Result {
	b := req.Buckets[0]
	p := b.Limit.params()
	r := Result{Allowed: allowed, Limit: b.Limit.Burst, Window: msDuration(ceilDiv(p.cap, p.perMs))}
	if allowed {
		left := max(p.cap-req.Cost*unitsPerToken, 0)
		r.Remaining = left / unitsPerToken
		r.ResetAfter = msDuration(ceilDiv(p.cap-left, p.perMs))
		r.Source = SourceFailOpen
		return r
	}
	r.RetryAfter, r.ResetAfter = FailClosedRetryAfter, FailClosedRetryAfter
	r.Source, r.Reason = SourceFailClosed, ReasonUnavailable
	return r
}

// classify names why a call to the shared store failed.
func classify(err error) event {
	switch {
	case upstash.KindOf(err) == upstash.KindAuth:
		return failAuth
	case errors.Is(err, context.DeadlineExceeded):
		return failTimeout
	case errors.Is(err, context.Canceled):
		return failCanceled
	}
	return failError
}

// Stats is a snapshot of a Limiter's counters since New. Every decision is
// counted once by its Source; a failure of the shared store is also counted
// by its kind. Fields only grow.
type Stats struct {
	Upstash    uint64 // decisions made by the shared store
	Memory     uint64 // decisions made by the local store (memory-only mode, or fallback)
	Cache      uint64 // denials answered from the deny cache
	FailOpen   uint64 // allowed without a check (FailOpen)
	FailClosed uint64 // denied without a check (FailClosed)
	Denied     uint64 // decisions that denied, whatever their source

	Timeouts      uint64 // calls to the shared store that timed out
	AuthErrors    uint64 // calls the shared store refused as unauthorized (misconfiguration)
	Errors        uint64 // calls that failed otherwise (transport, 5xx, bad reply, ...)
	Canceled      uint64 // calls abandoned because the caller's context was canceled
	CircuitOpen   uint64 // decisions that skipped the shared store: breaker open
	BreakerOpened uint64 // times the breaker opened
	BreakerIsOpen bool   // whether the breaker is open (or half-open) now
}

// Stats returns the counters. Safe to call concurrently with Allow.
func (l *Limiter) Stats() Stats {
	c := &l.stats
	return Stats{
		Upstash: c.bySource[SourceUpstash].Load(), Memory: c.bySource[SourceMemory].Load(),
		Cache: c.bySource[SourceCache].Load(), FailOpen: c.bySource[SourceFailOpen].Load(),
		FailClosed: c.bySource[SourceFailClosed].Load(), Denied: c.denied.Load(),
		Timeouts: c.timeouts.Load(), AuthErrors: c.authErrors.Load(), Errors: c.errors.Load(),
		Canceled: c.canceled.Load(), CircuitOpen: c.circuitOpen.Load(),
		BreakerOpened: c.breakerOpened.Load(), BreakerIsOpen: l.breaker.isOpen(),
	}
}

type counters struct {
	bySource                                                           [len(sourceNames)]atomic.Uint64
	denied                                                             atomic.Uint64
	timeouts, authErrors, errors, canceled, circuitOpen, breakerOpened atomic.Uint64
}

func (c *counters) count(r Result) {
	if r.Source >= 0 && int(r.Source) < len(c.bySource) {
		c.bySource[r.Source].Add(1)
	}
	if !r.Allowed {
		c.denied.Add(1)
	}
}

// logEvent logs ev, at most once per log interval per kind of event, with
// the number of events suppressed since the last line.
func (l *Limiter) logEvent(now time.Time, ev event, err error) {
	ok, suppressed := l.gate.take(ev, now)
	if !ok {
		return
	}
	level, msg := slog.LevelWarn, "shared rate-limit store unavailable; deciding by failure mode"
	switch ev {
	case failAuth:
		level, msg = slog.LevelError, "upstash refused the token (HTTP 401): misconfiguration, check UPSTASH_REDIS_REST_TOKEN; deciding by failure mode"
	case failCircuitOpen:
		msg = "circuit breaker open: skipping the shared rate-limit store; deciding by failure mode"
	case eventBreakerOpened:
		msg = "circuit breaker opened after consecutive failures of the shared rate-limit store"
	case eventBreakerClosed:
		level, msg = slog.LevelInfo, "circuit breaker closed: the shared rate-limit store answers again"
	}
	attrs := []slog.Attr{slog.String("reason", ev.String()), slog.Uint64("suppressed", suppressed)}
	if ev != eventBreakerClosed && ev != eventBreakerOpened {
		attrs = append(attrs, slog.String("failure_mode", l.mode.String()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}
