// Package authctx is the contract between the authorizer, API Gateway and the
// functions behind it: the keys of the authorizer's context map, the
// rate-limit response headers rendered from them, and the request path both
// sides decide on (RoutePath), so that what the authorizer prices and gates
// is what the function serves.
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
	"strings"
)

// Context keys. template.yaml's gateway responses refer to these names as
// context.authorizer.<key>; keep them in sync (a test checks).
const (
	KeyTier            = "tier"            // caller's tier: anonymous, authenticated, premium
	KeyCaller          = "caller"          // key id, or "ip:<source ip>" for anonymous callers
	KeyLimit           = "limit"           // the deciding policy's capacity (burst, or quota), whole tokens
	KeyRemaining       = "remaining"       // whole tokens left in it after this request
	KeyReset           = "reset"           // whole seconds until it is full again (a quota: its window's end), rounded up
	KeyRetryAfter      = "retryAfter"      // whole seconds until this request could pass, rounded up, >= 1 when denied; "0" when allowed
	KeyPolicyName      = "policy"          // the deciding policy: the one that denied, or the one with the fewest left
	KeyMessage         = "message"         // the 429 body's message (LIMIT_MESSAGE rendered), escaped for a JSON string
	KeySource          = "source"          // where the decision came from: upstash, memory, cache, fail-open, fail-closed, none
	KeyCost            = "cost"            // tokens this request costs
	KeyPolicy          = "rateLimitPolicy" // value of the RateLimit-Policy header
	KeyRateLimit       = "rateLimit"       // value of the RateLimit header
	KeyShadowDenied    = "shadowDenied"    // "true" when shadow mode let through a request the limits deny
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

// Policy is one limit that applied to a request, in the units clients see.
type Policy struct {
	// Name is the tier (or "key" for a key's own limit), "<tier>-quota"
	// (or "key-quota"), "route:<METHOD PATH>", "global" or "auth-failures".
	Name      string
	Limit     int64 // capacity (burst) or quota, whole tokens
	Remaining int64 // whole tokens left
	Reset     int64 // seconds until full again (a quota: until its window ends), rounded up
	Window    int64 // seconds to refill from empty, or the quota's window (RateLimit-Policy w)
}

// Decision is what the authorizer decided, in the units clients see.
type Decision struct {
	Tier   string // caller's tier
	Caller string // key id or "ip:<addr>"; never a raw API key
	// Policies are every limit that applied, in a stable order: the
	// caller's bucket, its quota, the route's, the global one. Empty for a
	// forbidden request.
	Policies []Policy
	// Deciding indexes the policy X-RateLimit-* and the 429 describe: the
	// one that denied, or the one with the fewest tokens left.
	Deciding     int
	RetryAfter   int64  // seconds until this request could pass; 0 when allowed
	Source       string // decision source
	Cost         int64  // tokens the request costs
	Message      string // the 429 body's message, escaped for a JSON string (set on denials)
	ShadowDenied bool   // shadow mode allowed a request the limits deny

	Forbidden       bool   // route needs another tier; nothing was charged
	RequiredTier    string // the tier the route needs, when Forbidden
	ForbiddenReason string // message for the 403, when Forbidden
}

// deciding returns the deciding policy (the zero Policy when none).
func (d Decision) deciding() Policy {
	if d.Deciding < 0 || d.Deciding >= len(d.Policies) {
		return Policy{}
	}
	return d.Policies[d.Deciding]
}

// PolicyHeader renders the IETF RateLimit-Policy field: a structured-field
// list with one item per policy, naming it with its quota (q, the capacity)
// and window (w, seconds to refill the whole quota), e.g.
//
//	"anonymous";q=10;w=100, "route:POST /predict";q=3;w=60
func (d Decision) PolicyHeader() string {
	var b strings.Builder
	for i, p := range d.Policies {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(p.Name) + ";q=" + strconv.FormatInt(p.Limit, 10) + ";w=" + strconv.FormatInt(max(p.Window, 1), 10))
	}
	return b.String()
}

// RateLimitHeader renders the IETF RateLimit field for the same policies in
// the same order: remaining quota (r) and seconds until it resets (t), e.g.
// "anonymous";r=3;t=70, "route:POST /predict";r=0;t=60
func (d Decision) RateLimitHeader() string {
	var b strings.Builder
	for i, p := range d.Policies {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(p.Name) + ";r=" + strconv.FormatInt(p.Remaining, 10) + ";t=" + strconv.FormatInt(p.Reset, 10))
	}
	return b.String()
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
	p := d.deciding()
	m := map[string]interface{}{
		KeyTier:       d.Tier,
		KeyCaller:     d.Caller,
		KeyLimit:      strconv.FormatInt(p.Limit, 10),
		KeyRemaining:  strconv.FormatInt(p.Remaining, 10),
		KeyReset:      strconv.FormatInt(p.Reset, 10),
		KeyRetryAfter: strconv.FormatInt(d.RetryAfter, 10),
		KeyPolicyName: p.Name,
		KeySource:     d.Source,
		KeyCost:       strconv.FormatInt(d.Cost, 10),
		KeyPolicy:     d.PolicyHeader(),
		KeyRateLimit:  d.RateLimitHeader(),
		KeyForbidden:  "false",
	}
	if d.Message != "" {
		m[KeyMessage] = d.Message
	}
	if d.ShadowDenied {
		m[KeyShadowDenied] = "true"
	}
	return m
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
