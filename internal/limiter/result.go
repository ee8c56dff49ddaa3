package limiter

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalidRequest is wrapped by the error Allow returns for a malformed
// Request (no buckets, a bad limit, a cost below 1, ...). It is a programming
// error on the caller's side; no decision is made and nothing is charged.
var ErrInvalidRequest = errors.New("invalid rate-limit request")

// MaxBuckets is the most buckets one Request may check.
const MaxBuckets = 8

// MaxKeyLen is the longest bucket key, in bytes.
const MaxKeyLen = 512

// Bucket names one bucket of a decision: a token bucket (Limit) or a
// quota (Quota).
type Bucket struct {
	// Key identifies the bucket, e.g. "ip:203.0.113.7" or "key_123". It must
	// never contain a raw API key (use the key's id or hash). The stores add
	// their own namespace prefix. At most MaxKeyLen bytes; not empty. A
	// quota's key should name its window (the window's start), so that each
	// window counts afresh.
	Key string
	// Limit is the token bucket's rate and capacity, unless Quota is set. A
	// bucket keeps its state in units that do not depend on the Limit, so
	// changing a key's Limit takes effect at once, with the tokens it holds
	// clamped to the new Burst.
	Limit Limit
	// Quota, when not zero, makes this bucket a quota: at most Quota.Limit
	// tokens per calendar window; Limit is then unused.
	Quota Quota
	// Scope says which live factors scale the bucket (never a quota).
	Scope Scope
}

// Request is one rate-limit decision: Cost tokens are taken from every
// bucket, or from none when any bucket holds fewer than Cost.
type Request struct {
	// Buckets are the buckets to check and charge together, e.g. a
	// per-caller bucket, its quota and a global one. 1 to MaxBuckets, keys
	// distinct.
	Buckets []Bucket
	// Cost is the number of tokens the request takes, at least 1. A cost
	// above a bucket's Burst (or a quota's Limit) can never pass (Reason
	// "cost_exceeds_burst").
	Cost int64
	// Tier names the caller's tier, for the live factors of one tier
	// (ScopeTier buckets); "" for none.
	Tier string
}

// Validate reports what is wrong with r, if anything. The error wraps
// ErrInvalidRequest and never contains a bucket key.
func (r Request) Validate() error {
	if len(r.Buckets) == 0 {
		return fmt.Errorf("%w: no buckets", ErrInvalidRequest)
	}
	if len(r.Buckets) > MaxBuckets {
		return fmt.Errorf("%w: %d buckets, at most %d allowed", ErrInvalidRequest, len(r.Buckets), MaxBuckets)
	}
	if r.Cost < 1 || r.Cost > MaxCost {
		return fmt.Errorf("%w: cost %d is outside 1..%d", ErrInvalidRequest, r.Cost, MaxCost)
	}
	for i := range r.Buckets {
		b := &r.Buckets[i] // not a copy: this runs on every decision
		if b.Key == "" || len(b.Key) > MaxKeyLen {
			return fmt.Errorf("%w: bucket %d: key length %d is outside 1..%d", ErrInvalidRequest, i, len(b.Key), MaxKeyLen)
		}
		if !b.Quota.IsZero() {
			if b.Quota.Limit < 1 || b.Quota.Limit > MaxQuota || b.Quota.Period > QuotaMonth {
				return fmt.Errorf("%w: bucket %d: quota %d per %s is out of range", ErrInvalidRequest, i, b.Quota.Limit, b.Quota.Period)
			}
		} else if err := b.Limit.Validate(); err != nil {
			return fmt.Errorf("%w: bucket %d: %w", ErrInvalidRequest, i, err)
		}
		for j := 0; j < i; j++ {
			if r.Buckets[j].Key == b.Key {
				return fmt.Errorf("%w: buckets %d and %d have the same key", ErrInvalidRequest, j, i)
			}
		}
	}
	return nil
}

// resolve turns req's buckets into params at now under the factors f.
func resolve(req Request, f factors, now time.Time, ps []params) {
	for i, b := range req.Buckets {
		if !b.Quota.IsZero() {
			ps[i] = quotaParams(b.Quota, now)
		} else {
			ps[i] = tokenParams(b.Limit, f.of(b.Scope))
		}
	}
}

var unscaled = factors{all: ppmOne, tier: ppmOne}

// Source says where a decision came from.
type Source int

// Sources of a decision. The zero value, SourceNone, means no limiter was
// consulted.
const (
	SourceNone       Source = iota // no decision was made
	SourceUpstash                  // the shared bucket on Upstash Redis
	SourceMemory                   // this container's in-memory bucket
	SourceCache                    // this container's cache of recent denials
	SourceFailOpen                 // allowed without a check: Upstash failed and the failure mode is open
	SourceFailClosed               // denied without a check: Upstash failed and the failure mode is closed
)

var sourceNames = [...]string{"none", "upstash", "memory", "cache", "fail-open", "fail-closed"}

// String returns the source's name as used in logs and the authorizer
// context: "none", "upstash", "memory", "cache", "fail-open" or "fail-closed".
func (s Source) String() string {
	if s >= 0 && int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Reason says why a request was denied. It is a number, not a string, so
// that a Result holds no pointer: zeroing or copying one is then a plain
// memory clear or copy, with no write barrier (with a string, clearing the
// caller's Result cost a memory-store decision 70 instructions more, about
// a tenth; docs/BENCHMARKS-memory.md).
type Reason uint8

// Reasons for a denial, in Result.Reason. The zero value, ReasonNone, is
// an allowed request's.
const (
	ReasonNone Reason = iota
	// ReasonOverLimit: a bucket holds fewer tokens than the request costs.
	ReasonOverLimit
	// ReasonCostExceedsBurst: the cost is larger than a bucket's capacity,
	// so the request can never pass.
	ReasonCostExceedsBurst
	// ReasonUnavailable: Upstash failed and the failure mode is closed.
	ReasonUnavailable
)

var reasonNames = [...]string{"", "over_limit", "cost_exceeds_burst", "limiter_unavailable"}

// String returns the reason's name as used in logs: "" (none),
// "over_limit", "cost_exceeds_burst" or "limiter_unavailable".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Result is one decision. Buckets[:N] describe every bucket of the
// request, in order; the top-level numbers repeat one of them, the
// reported bucket (Reported): for a denial, the refusing bucket that needs
// the longest wait (so RetryAfter holds for all); when allowed, the bucket
// with the fewest whole tokens left (first on a tie).
//
// Result is a value type, returned by value without allocation.
type Result struct {
	// Allowed is true when the request may pass (its cost was charged).
	Allowed bool
	// Limit is the reported bucket's capacity (Burst after live factors, or
	// the quota), in whole tokens.
	Limit int64
	// Remaining is the whole tokens left in the reported bucket after this
	// decision (fractions are rounded down).
	Remaining int64
	// ResetAfter is how long until the reported bucket is full again if
	// nothing draws from it; 0 when it is full.
	ResetAfter time.Duration
	// RetryAfter is 0 when allowed. When denied, it is how long until this
	// request, with its cost, could pass if nothing else draws from the
	// buckets: exact to the millisecond, rounded up; for a quota, until its
	// window ends. For cost_exceeds_burst, which can never pass, it is the
	// bucket's Window; for a fail-closed denial, FailClosedRetryAfter.
	RetryAfter time.Duration
	// Window is the time to refill the reported bucket from empty, or its
	// quota window: the w of the RateLimit-Policy header.
	Window time.Duration
	// Source says where the decision came from.
	Source Source
	// Reason is ReasonNone when allowed, else one of ReasonOverLimit,
	// ReasonCostExceedsBurst, ReasonUnavailable.
	Reason Reason
	// Reported is the index of the reported bucket.
	Reported int
	// N is the number of buckets decided; Buckets[:N] hold them.
	N int
	// Buckets are the request's buckets after the decision, in order.
	Buckets [MaxBuckets]BucketState
	// UpstashLatency is how long the call to Upstash took, when one was
	// made for this decision (even if it failed); 0 otherwise.
	UpstashLatency time.Duration
}

// FailureMode is what the Limiter does when the shared store fails, times
// out, or its circuit breaker is open.
type FailureMode int

// Failure modes. The zero value is FailFallback.
const (
	// FailFallback decides on this container's in-memory buckets (Source
	// "memory"): limits hold per container rather than globally.
	FailFallback FailureMode = iota
	// FailOpen allows every request (Source "fail-open").
	FailOpen
	// FailClosed denies every request (Source "fail-closed") with RetryAfter
	// FailClosedRetryAfter.
	FailClosed
)

// FailClosedRetryAfter is the RetryAfter of a fail-closed denial: long
// enough to shed load, short enough that clients come back soon after the
// store recovers.
const FailClosedRetryAfter = time.Second

// String returns "fallback", "open" or "closed".
func (m FailureMode) String() string {
	switch m {
	case FailFallback:
		return "fallback"
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	}
	return fmt.Sprintf("FailureMode(%d)", int(m))
}

// ParseFailureMode parses LIMITER_FAILURE_MODE: "fallback", "open" or
// "closed", in any letter case, surrounding spaces ignored. The empty
// string means the default, FailFallback.
func ParseFailureMode(s string) (FailureMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "fallback":
		return FailFallback, nil
	case "open":
		return FailOpen, nil
	case "closed":
		return FailClosed, nil
	}
	return 0, invalid("unknown failure mode %q (want fallback, open or closed)", strings.TrimSpace(s))
}
