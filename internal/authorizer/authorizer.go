// Package authorizer is the API Gateway REST Lambda REQUEST authorizer: it
// finds the caller's tier from the X-Api-Key header, decides the request on
// every policy that applies to it (README, "Policies"), and answers with an
// IAM policy plus the rate-limit context that the functions behind it and
// the gateway responses turn into headers (package authctx).
//
//   - No X-Api-Key: tier "anonymous", bucket "ip:<source ip>" where the
//     source ip is requestContext.identity.sourceIp, the address API Gateway
//     saw the connection come from; client headers such as X-Forwarded-For
//     are never read. IPv6 callers are grouped by /64.
//   - X-Api-Key unknown, revoked, expired, malformed, or given twice with
//     different values: the error "Unauthorized" (API Gateway's 401),
//     charging one token from the source address's failed-key bucket
//     (AUTH_FAILURE_LIMIT, policy "auth-failures") and nothing else. While
//     that bucket is empty, a key this container has not seen work gets a
//     Deny (429) instead, and, when this container already knows the bucket
//     is empty, without a key-store read or an Upstash request (failures.go).
//   - Key store failing for a key not in the cache: another error, which
//     template.yaml maps to 503. Known keys keep working from the cache.
//   - A route under a premium prefix called by another tier: Allow with
//     forbidden=true, nothing charged; the function answers 403 (API Gateway
//     maps every Deny to one gateway response, 429 here).
//   - Otherwise: Allow when every policy has the request's cost, Deny (429
//     with an honest Retry-After) when one has not, charging none. In
//     shadow mode a Deny becomes an Allow marked shadowDenied.
//
// Premium routes and route costs are decided on authctx.RoutePath, the
// path the function behind routes on too. The principalId is the key's ID
// or "ip:<address>", never the key. Each decision writes one log line and
// one CloudWatch EMF line (emf.go).
package authorizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authctx"
	"github.com/bucketgate/bucketgate/internal/limiter"
)

// AnonymousTier is the tier of callers without an API key.
const AnonymousTier = "anonymous"

// DefaultPremiumTier is the tier allowed on premium routes.
const DefaultPremiumTier = "premium"

// HeaderAPIKey is the request header carrying the caller's API key.
const HeaderAPIKey = "X-Api-Key"

// ErrUnauthorized is the error whose message API Gateway recognises as a
// 401: it must be exactly "Unauthorized".
var ErrUnauthorized = errors.New("Unauthorized")

// KeyStore finds the record of a plaintext API key; apikey.ErrNotFound for
// unknown, revoked or malformed keys, any other error when the store failed.
type KeyStore interface {
	Lookup(ctx context.Context, key string) (apikey.Record, error)
}

// Limiter decides a request on its buckets. *limiter.Limiter implements it.
type Limiter interface {
	Allow(ctx context.Context, req limiter.Request) (limiter.Result, error)
}

// KnownKeys is implemented by key stores that can tell, without reading
// their backend, that a key is valid (*apikey.Cache). Without it every key
// counts as unknown to the failed-key check.
type KnownKeys interface {
	Known(key string) bool
}

// Peeker is implemented by limiters that can refuse a request from what
// they already hold, without a request and without charging
// (*limiter.Limiter). Without it the failed-key bucket is only charged,
// never checked before a key-store read.
type Peeker interface {
	Peek(req limiter.Request) (limiter.Result, bool)
}

// Config configures a Handler. Keys, Limiter and Tiers are required.
type Config struct {
	// Keys looks up API keys.
	Keys KeyStore
	// Limiter decides requests.
	Limiter Limiter
	// Tiers maps tier names to their bucket and quota. It must contain
	// AnonymousTier; a key whose tier is missing here is refused with an
	// error (a misconfiguration, logged at ERROR).
	Tiers limiter.Tiers
	// Costs says what each route costs; the zero value makes every route
	// cost 1.
	Costs limiter.RouteCosts
	// RouteLimits are extra per-caller buckets for some routes.
	RouteLimits limiter.RouteLimits
	// Global is one bucket every caller of a rate-limited route shares; the
	// zero Limit means none.
	Global limiter.Limit
	// AuthFailures is each source address's failed-key bucket
	// (AUTH_FAILURE_LIMIT): one token per unknown, revoked, expired or
	// malformed key. Never scaled by live factors. The zero Limit means
	// none: bad keys are only answered 401.
	AuthFailures limiter.Limit
	// Message is the 429 body's message (LIMIT_MESSAGE), with {retryAfter},
	// {tier}, {limit} and {policy} replaced; "" means DefaultMessage.
	Message string
	// Shadow lets every request through; those the limits deny are logged
	// and counted as ShadowDenied, and charge nothing.
	Shadow bool
	// PremiumRoutes are path prefixes only PremiumTier may call.
	PremiumRoutes []string
	// PremiumTier is the tier allowed on PremiumRoutes; "" means
	// DefaultPremiumTier.
	PremiumTier string
	// Logger receives one line per decision; nil discards.
	Logger *slog.Logger
	// Metrics receives one CloudWatch Embedded Metric Format line per
	// decision (in Lambda: os.Stdout); nil writes none.
	Metrics io.Writer
	// KeyTimeout bounds one key-store lookup (a DynamoDB read on a cache
	// miss); 0 means DefaultKeyTimeout.
	KeyTimeout time.Duration
	// Now is the clock used for latency measurements; nil means time.Now.
	Now func() time.Time
}

// DefaultKeyTimeout is Config.KeyTimeout's default.
const DefaultKeyTimeout = time.Second

// DefaultMessage is the 429 body's message when LIMIT_MESSAGE is unset.
const DefaultMessage = "Too Many Requests"

// Handler is the authorizer. It is safe for concurrent use; build it once
// per container.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	metrics *emf
	fillIn  bool      // the message has placeholders
	known   KnownKeys // nil: no key is known without a lookup
	peek    Peeker    // nil: the failed-key bucket is never checked first
	now     func() time.Time
}

// New checks cfg and returns a Handler. Every route cost must fit in every
// bucket and quota it is charged to, else such a request could never pass:
// that is a start-up error rather than a 429 with a Retry-After that never
// comes true. (A key's own limit is checked when it is used.)
func New(cfg Config) (*Handler, error) {
	if cfg.Keys == nil || cfg.Limiter == nil {
		return nil, errors.New("authorizer: Keys and Limiter are required")
	}
	if _, ok := cfg.Tiers[AnonymousTier]; !ok {
		return nil, fmt.Errorf("authorizer: TIER_LIMITS has no %q tier", AnonymousTier)
	}
	if cfg.KeyTimeout <= 0 {
		cfg.KeyTimeout = DefaultKeyTimeout
	}
	if cfg.PremiumTier == "" {
		cfg.PremiumTier = DefaultPremiumTier
	}
	if cfg.Message == "" {
		cfg.Message = DefaultMessage
	}
	if err := checkMessage(cfg.Message); err != nil {
		return nil, fmt.Errorf("LIMIT_MESSAGE: %w", err)
	}
	maxCost := cfg.Costs.Max()
	for tier, p := range cfg.Tiers {
		if maxCost > p.Limit.Burst {
			return nil, fmt.Errorf("TIER_LIMITS: ROUTE_COSTS has a route costing %d tokens, more than tier %q's burst of %d: such requests could never pass", maxCost, tier, p.Limit.Burst)
		}
		if !p.Quota.IsZero() && maxCost > p.Quota.Limit {
			return nil, fmt.Errorf("TIER_LIMITS: ROUTE_COSTS has a route costing %d tokens, more than tier %q's quota of %d: such requests could never pass", maxCost, tier, p.Quota.Limit)
		}
	}
	var routeErr error
	cfg.RouteLimits.Each(func(method, path, tier string, l limiter.Limit) {
		if c := cfg.Costs.Cost(method, path); c > l.Burst && routeErr == nil {
			routeErr = fmt.Errorf("ROUTE_LIMITS: %s %s costs %d tokens (ROUTE_COSTS), more than its route limit's burst of %d: such requests could never pass", method, path, c, l.Burst)
		}
		if _, ok := cfg.Tiers[tier]; tier != "" && !ok && routeErr == nil {
			routeErr = fmt.Errorf("ROUTE_LIMITS: %s %s@%s names a tier TIER_LIMITS does not define", method, path, tier)
		}
	})
	if routeErr != nil {
		return nil, routeErr
	}
	if cfg.Global != (limiter.Limit{}) && maxCost > cfg.Global.Burst {
		return nil, fmt.Errorf("GLOBAL_LIMIT: ROUTE_COSTS has a route costing %d tokens, more than the global burst of %d: such requests could never pass", maxCost, cfg.Global.Burst)
	}
	if cfg.AuthFailures != (limiter.Limit{}) {
		if err := cfg.AuthFailures.Validate(); err != nil {
			return nil, fmt.Errorf("AUTH_FAILURE_LIMIT: %w", err)
		}
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	h.known, _ = cfg.Keys.(KnownKeys)
	h.peek, _ = cfg.Limiter.(Peeker)
	h.fillIn = strings.Contains(cfg.Message, "{")
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if cfg.Metrics != nil {
		h.metrics = &emf{w: cfg.Metrics}
	}
	return h, nil
}

// Handle decides one request. It returns ErrUnauthorized for bad keys and
// another error only when no decision could be made (key store down,
// misconfiguration); rate-limit failures are absorbed by the Limiter's
// failure mode.
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	start := h.now()
	log := h.log.With("requestId", req.RequestContext.RequestID)
	if req.MethodArn == "" {
		log.Error("authorizer event has no methodArn")
		return events.APIGatewayCustomAuthorizerResponse{}, errors.New("authorizer: event has no methodArn")
	}
	// One path for pricing, gating and the function's routing; the Route
	// metric stays the template's resource (bounded).
	path := authctx.RoutePath(req.Resource, req.PathParameters, req.Path)
	method := strings.ToUpper(req.HTTPMethod)
	m := metric{route: routeName(method, req.Resource)}
	a := attempt{log: log, m: m, start: start, arn: req.MethodArn, path: path,
		ip: callerIP(req.RequestContext.Identity.SourceIP)}

	key, err := apiKey(req)
	knownKey := err == nil && key != "" && h.known != nil && h.known.Known(key)
	if (err != nil || key != "") && !knownKey {
		// A key this container has not seen work: refused outright while
		// its address's failed-key bucket is known to be empty.
		if res, ok := h.failuresExhausted(a); ok {
			return h.denyFailures(a, res, "known empty"), nil
		}
	}
	if err != nil {
		return h.unauthorized(ctx, a, err.Error())
	}
	d := authctx.Decision{Tier: AnonymousTier}
	var own limiter.Policy // the key's own limit, if any
	if key == "" {
		d.Caller = "ip:" + a.ip
	} else {
		lctx, cancel := context.WithTimeout(ctx, h.cfg.KeyTimeout)
		rec, err := h.cfg.Keys.Lookup(lctx, key)
		cancel()
		switch {
		case errors.Is(err, apikey.ErrNotFound):
			return h.unauthorized(ctx, a, "unknown, revoked, expired or malformed key")
		case err != nil:
			log.Error("key store failed", "error", err.Error(), "route", logPath(path))
			return events.APIGatewayCustomAuthorizerResponse{}, errors.New("authorizer: key store unavailable")
		}
		d.Tier, d.Caller, own = rec.Tier, rec.ID, rec.Limit
	}
	tierPolicy, ok := h.cfg.Tiers[d.Tier]
	if !ok {
		log.Error("key has a tier missing from TIER_LIMITS", "tier", d.Tier, "caller", d.Caller)
		return events.APIGatewayCustomAuthorizerResponse{}, fmt.Errorf("authorizer: tier %q is not configured", d.Tier)
	}
	d.Cost = h.cfg.Costs.Cost(method, path)
	m.tier, m.caller = d.Tier, d.Caller

	if h.premiumOnly(path) && d.Tier != h.cfg.PremiumTier {
		d.Forbidden = true
		d.RequiredTier = h.cfg.PremiumTier
		d.ForbiddenReason = fmt.Sprintf("this route requires the %s tier", h.cfg.PremiumTier)
		d.Source = limiter.SourceNone.String()
		log.Info("decision", "decision", "forbidden", "tier", d.Tier, "caller", d.Caller, "route", logPath(path),
			"latencyMs", ms(h.now().Sub(start)))
		m.outcome = outcomeForbidden
		h.record(m, start)
		return policy(d.Caller, "Allow", req.MethodArn, d), nil
	}

	lreq, names := h.request(d, own, tierPolicy, method, path)
	res, err := h.cfg.Limiter.Allow(ctx, lreq)
	if err == nil && (res.N != len(lreq.Buckets) || res.Reported < 0 || res.Reported >= res.N) {
		err = fmt.Errorf("result for %d of %d buckets", res.N, len(lreq.Buckets))
	}
	if err != nil {
		log.Error("limiter failed", "error", err.Error())
		return events.APIGatewayCustomAuthorizerResponse{}, errors.New("authorizer: limiter failed")
	}
	d.Policies = make([]authctx.Policy, res.N)
	for i, b := range res.Buckets[:res.N] {
		d.Policies[i] = authctx.Policy{Name: names[i], Limit: b.Limit, Remaining: b.Remaining,
			Reset: ceilSeconds(b.ResetAfter), Window: ceilSeconds(b.Window)}
	}
	d.Deciding = res.Reported
	d.Source = res.Source.String()
	effect, decision := "Allow", "allowed"
	m.outcome, m.source, m.upstash = outcomeAllowed, res.Source, res.UpstashLatency
	if !res.Allowed {
		d.RetryAfter = max(ceilSeconds(res.RetryAfter), 1)
		d.Message = h.renderMessage(d)
		m.policy = names[res.Reported]
		if h.cfg.Shadow {
			d.ShadowDenied = true
			decision, m.outcome = "shadow-denied", outcomeShadowDenied
		} else {
			effect, decision, m.outcome = "Deny", "denied", outcomeDenied
		}
	}
	deciding := d.Policies[d.Deciding]
	m.limit, m.remaining, m.reset = deciding.Limit, deciding.Remaining, res.Buckets[res.Reported].ResetAfter
	latency := h.now().Sub(start)
	attrs := []any{"decision", decision, "tier", d.Tier, "caller", d.Caller, "route", logPath(path),
		"cost", d.Cost, "policy", deciding.Name, "remaining", deciding.Remaining, "source", d.Source, "latencyMs", ms(latency)}
	if !res.Allowed {
		attrs = append(attrs, "reason", res.Reason.String(), "retryAfter", d.RetryAfter)
	}
	log.Info("decision", attrs...)
	h.record(m, start)
	return policy(d.Caller, effect, req.MethodArn, d), nil
}

// request builds the limiter request for a caller: its own bucket (the
// key's limit, else its tier's), the quota that goes with it, the route's
// limit for its tier, the global limit; and the policy names, in order.
func (h *Handler) request(d authctx.Decision, own, tier limiter.Policy, method, path string) (limiter.Request, []string) {
	p, name := tier, d.Tier
	if !own.IsZero() {
		p, name = own, "key"
	}
	req := limiter.Request{Cost: d.Cost, Tier: d.Tier,
		Buckets: []limiter.Bucket{{Key: d.Caller, Limit: p.Limit, Scope: limiter.ScopeTier}}}
	names := []string{name}
	if !p.Quota.IsZero() {
		// The limiter adds the window to the key.
		req.Buckets = append(req.Buckets, limiter.Bucket{Key: "q:" + p.Quota.Period.String() + ":" + d.Caller, Quota: p.Quota})
		names = append(names, name+"-quota")
	}
	if l, ok := h.cfg.RouteLimits.Lookup(method, path, d.Tier); ok {
		r := method + " " + path
		req.Buckets = append(req.Buckets, limiter.Bucket{Key: "r:" + r + ":" + d.Caller, Limit: l, Scope: limiter.ScopeTier})
		names = append(names, "route:"+r)
	}
	if h.cfg.Global != (limiter.Limit{}) {
		req.Buckets = append(req.Buckets, limiter.Bucket{Key: "global", Limit: h.cfg.Global, Scope: limiter.ScopeAll})
		names = append(names, "global")
	}
	return req, names
}

// renderMessage renders LIMIT_MESSAGE for a denial, escaped so that the
// gateway response's body template, which inserts it raw between quotes,
// stays valid JSON.
func (h *Handler) renderMessage(d authctx.Decision) string {
	msg := h.cfg.Message
	if h.fillIn {
		p := d.Policies[d.Deciding]
		msg = strings.NewReplacer("{retryAfter}", strconv.FormatInt(d.RetryAfter, 10), "{tier}", d.Tier,
			"{limit}", strconv.FormatInt(p.Limit, 10), "{policy}", p.Name).Replace(msg)
	}
	b, _ := json.Marshal(msg) // a string always marshals
	return string(b[1 : len(b)-1])
}

// maxMessage bounds LIMIT_MESSAGE.
const maxMessage = 1024

// checkMessage reports what is wrong with a LIMIT_MESSAGE template.
func checkMessage(msg string) error {
	if len(msg) > maxMessage {
		return fmt.Errorf("%d bytes, at most %d", len(msg), maxMessage)
	}
	if !utf8.ValidString(msg) {
		return errors.New("not valid UTF-8")
	}
	rest := msg
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return nil
		}
		rest = rest[i:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return fmt.Errorf("unclosed %q (placeholders: {retryAfter}, {tier}, {limit}, {policy})", rest)
		}
		switch ph := rest[:j+1]; ph {
		case "{retryAfter}", "{tier}", "{limit}", "{policy}":
		default:
			return fmt.Errorf("unknown placeholder %q (want {retryAfter}, {tier}, {limit} or {policy})", ph)
		}
		rest = rest[j+1:]
	}
}

func (h *Handler) premiumOnly(route string) bool {
	for _, p := range h.cfg.PremiumRoutes {
		if p != "" && strings.HasPrefix(route, p) {
			return true
		}
	}
	return false
}

func policy(principal, effect, methodArn string, d authctx.Decision) events.APIGatewayCustomAuthorizerResponse {
	return events.APIGatewayCustomAuthorizerResponse{
		PrincipalID: principal,
		PolicyDocument: events.APIGatewayCustomAuthorizerPolicy{
			Version: "2012-10-17",
			Statement: []events.IAMPolicyStatement{{
				Action:   []string{"execute-api:Invoke"},
				Effect:   effect,
				Resource: []string{methodArn},
			}},
		},
		Context: d.Map(),
	}
}

// maxKeyHeader bounds the X-Api-Key value we hash; real keys are far shorter.
const maxKeyHeader = 256

// apiKey returns the X-Api-Key value ("" when absent). The header name is
// matched in any letter case, in both the single- and multi-value maps; two
// different values, or an over-long or empty-but-present value, are refused.
func apiKey(req events.APIGatewayCustomAuthorizerRequestTypeRequest) (string, error) {
	var key string
	var present bool
	take := func(v string) error {
		v = strings.TrimSpace(v)
		if present && v != key {
			return errors.New("conflicting X-Api-Key values")
		}
		key, present = v, true
		return nil
	}
	for name, v := range req.Headers {
		if strings.EqualFold(name, HeaderAPIKey) {
			if err := take(v); err != nil {
				return "", err
			}
		}
	}
	for name, vs := range req.MultiValueHeaders {
		if strings.EqualFold(name, HeaderAPIKey) {
			for _, v := range vs {
				if err := take(v); err != nil {
					return "", err
				}
			}
		}
	}
	switch {
	case !present:
		return "", nil
	case key == "":
		return "", errors.New("empty X-Api-Key")
	case len(key) > maxKeyHeader:
		return "", errors.New("over-long X-Api-Key")
	}
	return key, nil
}

// callerIP normalises API Gateway's sourceIp into a bucket name: IPv4 as is,
// IPv6 as its /64 prefix, anything unparsable as "unknown" (one shared,
// therefore conservative, bucket).
func callerIP(sourceIP string) string {
	addr, err := netip.ParseAddr(strings.TrimSpace(sourceIP))
	if err != nil {
		return "unknown"
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr.String()
	}
	p, err := addr.WithZone("").Prefix(64)
	if err != nil {
		return "unknown"
	}
	return p.String()
}

// ceilSeconds rounds d up to whole seconds (0 stays 0).
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
