// Package authctx is the contract between the authorizer, API Gateway and the
// functions behind it: the keys of the authorizer's context map, and the
// rate-limit response headers rendered from them.
//
// API Gateway copies the authorizer's context into
// requestContext.authorizer of the proxied request (for an Allow) and makes it
// available as context.authorizer.* to gateway responses (for a Deny). Gateway
// responses cannot compute, so every header value is computed here, by the
// authorizer, and carried as a ready string.
//
// All values are strings: API Gateway stringifies context values anyway, and
// strings survive the trip through both paths unchanged.
package authctx

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Context keys. template.yaml's gateway responses refer to these names as
// context.authorizer.<key>; keep them in sync (a test checks).
const (
	KeyTier            = "tier"            // caller's tier: anonymous, authenticated, premium
	KeyCaller          = "caller"          // key id, or "ip:<source ip>" for anonymous callers
	KeyLimit           = "limit"           // bucket capacity (burst), whole tokens
	KeyRemaining       = "remaining"       // whole tokens left after this request
	KeyReset           = "reset"           // whole seconds until the bucket is full, rounded up
	KeyRetryAfter      = "retryAfter"      // whole seconds until this request could pass, rounded up, >= 1 when denied; "0" when allowed
	KeySource          = "source"          // where the decision came from: upstash, memory, cache, fail-open, fail-closed, none
	KeyCost            = "cost"            // tokens this request costs
	KeyPolicy          = "rateLimitPolicy" // value of the RateLimit-Policy header
	KeyRateLimit       = "rateLimit"       // value of the RateLimit header
	KeyForbidden       = "forbidden"       // "true" when the route needs a tier the caller lacks (403, nothing charged)
	KeyRequiredTier    = "requiredTier"    // the tier the route needs, when forbidden
	KeyForbiddenReason = "forbiddenReason" // human-readable reason for the 403
)

// Header names echoed on every limited response (200 and 429).
const (
	HeaderLimit      = "X-RateLimit-Limit"
	HeaderRemaining  = "X-RateLimit-Remaining"
	HeaderReset      = "X-RateLimit-Reset"
	HeaderTier       = "X-RateLimit-Tier"
	HeaderPolicy     = "RateLimit-Policy"
	HeaderRateLimit  = "RateLimit"
	HeaderRetryAfter = "Retry-After"
)

// Decision is what the authorizer decided, in the units clients see.
type Decision struct {
	Tier       string // caller's tier
	Caller     string // key id or "ip:<addr>"; never a raw API key
	Limit      int64  // bucket capacity in whole tokens
	Remaining  int64  // whole tokens left
	Reset      int64  // seconds until full, rounded up
	RetryAfter int64  // seconds until this request could pass; 0 when allowed
	Source     string // decision source
	Cost       int64  // tokens the request costs
	Window     int64  // seconds for a full bucket to refill from empty (RateLimit-Policy w)

	Forbidden       bool   // route needs another tier; nothing was charged
	RequiredTier    string // the tier the route needs, when Forbidden
	ForbiddenReason string // message for the 403, when Forbidden
}

// PolicyHeader renders the IETF RateLimit-Policy field for the decision:
// a structured-field list item naming the tier with its quota (q, the burst)
// and window (w, seconds to refill the whole quota), e.g.
//
//	"anonymous";q=10;w=100
func (d Decision) PolicyHeader() string {
	return strconv.Quote(d.Tier) + ";q=" + strconv.FormatInt(d.Limit, 10) + ";w=" + strconv.FormatInt(max(d.Window, 1), 10)
}

// RateLimitHeader renders the IETF RateLimit field: remaining quota (r) and
// seconds until it resets (t), e.g. "anonymous";r=3;t=70
func (d Decision) RateLimitHeader() string {
	return strconv.Quote(d.Tier) + ";r=" + strconv.FormatInt(d.Remaining, 10) + ";t=" + strconv.FormatInt(d.Reset, 10)
}

// Map returns the authorizer context for the decision. A Forbidden decision
// charged nothing and checked no bucket, so it carries no rate-limit numbers
// (the 403 then has X-RateLimit-Tier only).
func (d Decision) Map() map[string]interface{} {
	if d.Forbidden {
		return map[string]interface{}{
			KeyTier:            d.Tier,
			KeyCaller:          d.Caller,
			KeySource:          d.Source,
			KeyCost:            strconv.FormatInt(d.Cost, 10),
			KeyForbidden:       "true",
			KeyRequiredTier:    d.RequiredTier,
			KeyForbiddenReason: d.ForbiddenReason,
		}
	}
	return map[string]interface{}{
		KeyTier:       d.Tier,
		KeyCaller:     d.Caller,
		KeyLimit:      strconv.FormatInt(d.Limit, 10),
		KeyRemaining:  strconv.FormatInt(d.Remaining, 10),
		KeyReset:      strconv.FormatInt(d.Reset, 10),
		KeyRetryAfter: strconv.FormatInt(d.RetryAfter, 10),
		KeySource:     d.Source,
		KeyCost:       strconv.FormatInt(d.Cost, 10),
		KeyPolicy:     d.PolicyHeader(),
		KeyRateLimit:  d.RateLimitHeader(),
		KeyForbidden:  "false",
	}
}

// ErrMissing reports that the request carries no authorizer context, i.e. it
// did not come through the authorizer.
var ErrMissing = errors.New("authctx: no authorizer context")

// Echo is the part of an authorizer context a function needs: the ready-made
// header values, the tier, and the premium verdict.
type Echo struct {
	Tier            string
	Headers         map[string]string // the six rate-limit headers, ready to send
	Forbidden       bool
	RequiredTier    string
	ForbiddenReason string
}

// FromRequest reads the authorizer context API Gateway placed in
// requestContext.authorizer. Values may arrive as strings, numbers or
// booleans; all are accepted.
func FromRequest(authorizer map[string]interface{}) (Echo, error) {
	if len(authorizer) == 0 {
		return Echo{}, ErrMissing
	}
	get := func(k string) string { return stringify(authorizer[k]) }
	tier := get(KeyTier)
	if tier == "" {
		return Echo{}, fmt.Errorf("%w: %q is empty", ErrMissing, KeyTier)
	}
	e := Echo{
		Tier: tier,
		Headers: map[string]string{
			HeaderLimit:     get(KeyLimit),
			HeaderRemaining: get(KeyRemaining),
			HeaderReset:     get(KeyReset),
			HeaderTier:      tier,
			HeaderPolicy:    get(KeyPolicy),
			HeaderRateLimit: get(KeyRateLimit),
		},
		RequiredTier:    get(KeyRequiredTier),
		ForbiddenReason: get(KeyForbiddenReason),
	}
	for k, v := range e.Headers {
		if v == "" {
			delete(e.Headers, k)
		}
	}
	e.Forbidden = get(KeyForbidden) == "true"
	return e, nil
}

// SetHeaders copies the echoed rate-limit headers onto h.
func (e Echo) SetHeaders(h http.Header) {
	for k, v := range e.Headers {
		h.Set(k, v)
	}
}

func stringify(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	default:
		return fmt.Sprint(x)
	}
}
