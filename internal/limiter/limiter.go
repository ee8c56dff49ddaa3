package limiter

import (
	"context"
	"errors"
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
	// Upstash is the store all containers share. nil means memory-only:
	// every decision is made on Memory (Source "memory") and none counts as
	// a failure.
	Upstash *UpstashStore
	// Memory configures this container's store, used in memory-only mode
	// and by FailFallback.
	Memory MemoryConfig
	// Warmup lowers every token bucket of a new version (WARMUP); the start
	// instant is shared through Upstash, or this container's own in
	// memory-only mode. The zero value is none.
	Warmup Warmup
	// Timeout bounds each call to Upstash (LIMITER_TIMEOUT); the request's
	// own deadline applies too. 0 means DefaultTimeout.
	Timeout time.Duration
	// FailureMode is what to do when Upstash fails, times out or its breaker
	// is open (LIMITER_FAILURE_MODE). The zero value is FailFallback.
	FailureMode FailureMode
	// BreakerFailures is how many consecutive failures of Upstash open the
	// circuit breaker; 0 means DefaultBreakerFailures.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before it lets one
	// probe through; 0 means DefaultBreakerCooldown, at most
	// MaxBreakerCooldown.
	BreakerCooldown time.Duration
	// Logger receives the limiter's logs; nil discards them. Bucket keys are
	// never logged.
	Logger *slog.Logger
	// LogInterval is the least time between two log lines for the same
	// reason (e.g. "timeout"); the next line reports how many were
	// suppressed. 0 means DefaultLogInterval.
	LogInterval time.Duration
	// Now is the clock; nil means ProcessNow. Every decision, breaker and
	// log-throttling step reads it once per call.
	Now func() time.Time
}

// Limiter is the authorizer's rate limiter: Upstash first, with a short
// deadline; on failure, timeout or an open circuit breaker, the
// FailureMode. Repeated denials are answered from what the Upstash store
// remembers, without a request.
//
// Safe for concurrent use. It starts no goroutine: everything happens
// inside Allow.
type Limiter struct {
	shared  *UpstashStore
	local   *MemoryStore
	warm    Warmup
	born    int64 // ms: the warm-up start in memory-only mode
	timeout time.Duration
	mode    FailureMode
	breaker *breaker
	log     *slog.Logger
	gate    *logGate
	now     func() time.Time
	stats   counters
}

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
	case cfg.LogInterval < 0:
		return nil, invalid("limiter: LogInterval must not be negative")
	case cfg.FailureMode < FailFallback || cfg.FailureMode > FailClosed:
		return nil, invalid("limiter: unknown FailureMode %d", int(cfg.FailureMode))
	case len(cfg.Warmup.Version) > maxWarmupVersionLen || !plainText(cfg.Warmup.Version):
		return nil, invalid("limiter: warm-up version must be at most %d letters, digits, '.', '_', ':' or '-'", maxWarmupVersionLen)
	}
	local, err := NewMemoryStore(cfg.Memory)
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		shared:  cfg.Upstash,
		local:   local,
		warm:    cfg.Warmup,
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
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = ProcessNow
	}
	l.born = l.now().UnixMilli()
	if l.shared != nil {
		l.shared.warm, l.shared.born = cfg.Warmup, l.born
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

// Prime opens the connection to Upstash and reads the live settings and
// the warm-up start, within the Timeout, so that the first decision does
// not pay for them. A failure is returned for logging only: decisions work
// without it. A memory-only limiter does nothing.
func (l *Limiter) Prime(ctx context.Context) error {
	if l.shared == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	err := l.shared.prime(ctx, l.now())
	if err == nil {
		return nil
	}
	switch classify(err) {
	case failTimeout:
		// Upstash took the connection but did not answer within the whole
		// timeout: the first decisions would wait as long. Skip it for a
		// cooldown; the breaker's probe finds it when it answers.
		l.breaker.trip(l.now())
		l.stats.breakerOpened.Add(1)
		l.logEvent(l.now(), eventBreakerOpened, err)
	case failError, failAuth:
		if l.breaker.failure(l.now(), false) {
			l.stats.breakerOpened.Add(1)
		}
	}
	return err
}

// Allow decides req: Cost tokens from every bucket, or none. The error is
// non-nil only for an invalid request (wrapping ErrInvalidRequest, nothing
// charged); a failing Upstash is never an error — the FailureMode decides
// instead, and Result.Source says so.
func (l *Limiter) Allow(ctx context.Context, req Request) (Result, error) {
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	now := l.now()
	if l.shared == nil {
		return l.decideLocal(req, now), nil
	}
	if r, ok := l.shared.cached(req, now); ok {
		l.stats.count(r)
		return r, nil
	}
	probe, ok := l.breaker.allow(now)
	if !ok {
		l.stats.circuitOpen.Add(1)
		return l.fail(req, now, failCircuitOpen, nil, 0), nil
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	r, err := l.shared.decide(cctx, req, now, false)
	cancel()
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
	} else if l.breaker.failure(l.now(), probe) {
		// The cooldown runs from when the failure was known, not from when
		// the call began: with a long Timeout, the latter would let every
		// call through.
		l.stats.breakerOpened.Add(1)
		l.logEvent(now, eventBreakerOpened, err)
	}
	return l.fail(req, now, why, err, r.UpstashLatency), nil
}

// Peek answers req from what this container already holds, without a
// request to Upstash and without charging anything. ok is true when that
// proves Allow would deny req now; r is then that denial, counted in Stats
// like one. ok is false when only Allow can tell (nothing is remembered,
// or what is remembered could pay), and for an invalid request.
//
// Where it looks is where Allow would decide: the memory store in
// memory-only mode, and in FailFallback mode while the circuit breaker
// skips Upstash (Source "memory"); otherwise what the Upstash store last
// saw of each bucket (Source "cache"), an upper bound on what another
// container may have left (see the package documentation's clock note for
// the one exception). With FailOpen or FailClosed and the breaker
// skipping, ok is false: Allow decides by the failure mode.
//
// The authorizer uses it to refuse an attempt from an address whose
// failed-key bucket is known to be empty before it reads the key store.
func (l *Limiter) Peek(req Request) (r Result, ok bool) {
	if req.Validate() != nil {
		return Result{}, false
	}
	now := l.now()
	switch {
	case l.shared == nil || (l.breaker.skipping(now) && l.mode == FailFallback):
		nowMs := now.UnixMilli()
		var ps [MaxBuckets]params
		resolve(req, l.localFactors(req.Tier, nowMs), now, ps[:len(req.Buckets)])
		r, ok = l.local.peek(req, ps[:len(req.Buckets)], nowMs)
	case l.breaker.skipping(now):
		return Result{}, false
	default:
		r, ok = l.shared.cached(req, now)
	}
	if ok {
		l.stats.count(r)
	}
	return r, ok
}

// decideLocal decides on this container's memory store, with the live
// factors last seen (memory-only: warm-up from this container's start).
func (l *Limiter) decideLocal(req Request, now time.Time) Result {
	nowMs := now.UnixMilli()
	var ps [MaxBuckets]params
	resolve(req, l.localFactors(req.Tier, nowMs), now, ps[:len(req.Buckets)])
	r := l.local.decide(req, ps[:len(req.Buckets)], nowMs)
	l.stats.count(r)
	return r
}

// localFactors are the factors the memory store decides with at now (ms):
// the live settings last seen, and warm-up (memory-only: from this
// container's start).
func (l *Limiter) localFactors(tier string, nowMs int64) factors {
	if l.shared != nil {
		return l.shared.factors(tier, nowMs)
	}
	return liveFactors(nil, tier, l.warm.ppmAt(l.born, nowMs), nowMs)
}

// fail decides req by the failure mode, after Upstash failed for reason
// why (err is nil for an open circuit; latency is how long the failed call
// took).
func (l *Limiter) fail(req Request, now time.Time, why event, err error, latency time.Duration) Result {
	l.logEvent(now, why, err)
	var r Result
	switch l.mode {
	case FailOpen:
		r = assumed(req, now, true)
		l.stats.count(r)
	case FailClosed:
		r = assumed(req, now, false)
		l.stats.count(r)
	default:
		r = l.decideLocal(req, now)
	}
	r.UpstashLatency = latency
	return r
}

// assumed is the Result of a decision made without looking at any bucket
// (fail-open or fail-closed): every bucket as if full. Allowed: charged
// (down to empty, for a cost above a capacity). Denied: Remaining 0,
// RetryAfter and ResetAfter FailClosedRetryAfter, reporting the first
// bucket.
func assumed(req Request, now time.Time, allowed bool) Result {
	n := len(req.Buckets)
	var (
		ps [MaxBuckets]params
		st [MaxBuckets]state
	)
	resolve(req, unscaled, now, ps[:n])
	nowMs := now.UnixMilli()
	for i := range n {
		if ps[i].quota {
			st[i].units = min(req.Cost, ps[i].cap)
		} else {
			st[i] = state{units: max(ps[i].cap-req.Cost*unitsPerToken, 0), at: nowMs}
		}
	}
	r := report(n, ps[:n], st[:n], true, req.Cost, nowMs)
	if allowed {
		r.Source = SourceFailOpen
		return r
	}
	b := r.Buckets[0]
	r.Allowed, r.Reported, r.Limit, r.Remaining, r.Window = false, 0, b.Limit, 0, b.Window
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
