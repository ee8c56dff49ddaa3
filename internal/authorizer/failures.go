package authorizer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/bucketgate/bucketgate/internal/authctx"
	"github.com/bucketgate/bucketgate/internal/limiter"
)

// Failed-key throttling (AUTH_FAILURE_LIMIT). Every unknown, revoked,
// expired or malformed key takes one token from a bucket of its source
// address, "af:ip:<address>" (IPv6 by /64), never scaled by live factors.
// The costs stay at one Upstash request per decision at most:
//
//   - A key this container's cache holds as valid (KnownKeys) skips the
//     bucket altogether: neighbours behind the same NAT keep working.
//   - Any other key is first checked against the bucket as this container
//     last saw it (Peeker: the limiter remembers every bucket it decided).
//     Known empty: a 429 with policy "auth-failures" and an honest
//     Retry-After, with no key-store read and no Upstash request.
//   - Otherwise the key is looked up. A failed lookup charges the bucket
//     with one limiter call, that decision's only Upstash request (a 401
//     makes no other): 401 when it paid, 429 when the bucket was empty.
//
// The bound: from one address, key-store reads for keys that fail are at
// most the bucket's burst + rate × elapsed across every container, plus,
// per container that does not see the bucket's last state (another one
// drained it meanwhile), one read each time its own view refills a token,
// a read whose charge is then refused (429). A container alone, or with
// the deny cache's view up to date, adds none.

// FailuresPolicy names the failed-key bucket in headers, bodies and the
// Policy metric.
const FailuresPolicy = "auth-failures"

// NoTier is the tier of a request whose key did not verify, in metrics and
// in an auth-failures 429.
const NoTier = "none"

// attempt is what the failed-key paths need of a request.
type attempt struct {
	log       *slog.Logger
	m         metric
	start     time.Time
	arn, path string
	ip        string // callerIP
}

// failureRequest is the limiter request that charges (or checks) ip's
// failed-key bucket.
func (h *Handler) failureRequest(ip string) limiter.Request {
	return limiter.Request{Cost: 1,
		Buckets: []limiter.Bucket{{Key: "af:ip:" + ip, Limit: h.cfg.AuthFailures, Scope: limiter.ScopeNone}}}
}

// failuresExhausted reports whether a's address's failed-key bucket is
// known to be empty, from what the limiter holds (no request). Never in
// shadow mode, which refuses nothing.
func (h *Handler) failuresExhausted(a attempt) (limiter.Result, bool) {
	if h.peek == nil || h.cfg.AuthFailures == (limiter.Limit{}) || h.cfg.Shadow {
		return limiter.Result{}, false
	}
	return h.peek.Peek(h.failureRequest(a.ip))
}

// unauthorized answers a key that did not verify: it charges the
// address's failed-key bucket and returns ErrUnauthorized (401), or a
// Deny (429) when the bucket was empty.
func (h *Handler) unauthorized(ctx context.Context, a attempt, reason string) (events.APIGatewayCustomAuthorizerResponse, error) {
	m := a.m.unauthorized() // no Caller: the key named none
	attrs := []any{"decision", "unauthorized", "reason", reason, "caller", "ip:" + a.ip, "route", logPath(a.path)}
	if h.cfg.AuthFailures != (limiter.Limit{}) {
		res, err := h.cfg.Limiter.Allow(ctx, h.failureRequest(a.ip))
		if err == nil && res.N != 1 {
			err = errors.New("result for the wrong number of buckets")
		}
		switch {
		case err != nil:
			// A 401 all the same: the key is bad whatever the bucket says.
			a.log.Error("limiter failed on the failed-key bucket", "error", err.Error())
		case !res.Allowed && !h.cfg.Shadow:
			return h.denyFailures(a, res, "charged"), nil
		default:
			m.source, m.upstash = res.Source, res.UpstashLatency
			attrs = append(attrs, "policy", FailuresPolicy, "remaining", res.Remaining, "source", res.Source.String())
			if !res.Allowed { // shadow mode: counted, not refused
				m.shadowDenied, m.policy = true, FailuresPolicy
				attrs = append(attrs, "shadowDenied", true)
			}
		}
	}
	attrs = append(attrs, "latencyMs", ms(h.now().Sub(a.start)))
	a.log.Info("decision", attrs...)
	h.record(m, a.start)
	return events.APIGatewayCustomAuthorizerResponse{}, ErrUnauthorized
}

// denyFailures is the 429 for an address whose failed-key bucket is
// empty: a Deny through the usual gateway response, describing that
// bucket. how says whether it was known empty or found so by a charge.
func (h *Handler) denyFailures(a attempt, res limiter.Result, how string) events.APIGatewayCustomAuthorizerResponse {
	b := res.Buckets[0]
	d := authctx.Decision{Tier: NoTier, Caller: "ip:" + a.ip, Cost: 1, Source: res.Source.String(),
		RetryAfter: max(ceilSeconds(res.RetryAfter), 1),
		Policies: []authctx.Policy{{Name: FailuresPolicy, Limit: b.Limit, Remaining: b.Remaining,
			Reset: ceilSeconds(b.ResetAfter), Window: ceilSeconds(b.Window)}}}
	d.Message = h.renderMessage(d)
	m := a.m
	m.tier, m.caller, m.outcome, m.policy = NoTier, d.Caller, outcomeDenied, FailuresPolicy
	m.source, m.upstash = res.Source, res.UpstashLatency
	m.limit, m.remaining, m.reset = b.Limit, b.Remaining, b.ResetAfter
	a.log.Info("decision", "decision", "denied", "tier", NoTier, "caller", d.Caller, "route", logPath(a.path),
		"policy", FailuresPolicy, "failedKeyBucket", how, "remaining", b.Remaining, "source", d.Source,
		"retryAfter", d.RetryAfter, "latencyMs", ms(h.now().Sub(a.start)))
	h.record(m, a.start)
	return policy(d.Caller, "Deny", a.arn, d)
}

// maxLogPath bounds the request path in log lines: behind a greedy
// resource the client chooses it.
const maxLogPath = 256

func logPath(p string) string {
	if len(p) > maxLogPath {
		return p[:maxLogPath] + "…"
	}
	return p
}
