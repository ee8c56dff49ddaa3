// Package authorizer is the API Gateway REST Lambda REQUEST authorizer: it
// finds the caller's tier from the X-Api-Key header, decides the request on
// the caller's token bucket, and answers with an IAM policy plus the
// rate-limit context that the functions behind it and the gateway responses
// turn into headers (see package authctx).
//
// # Decisions
//
//   - No X-Api-Key: tier "anonymous", bucket "ip:<source ip>" where the
//     source ip is requestContext.identity.sourceIp, the address API Gateway
//     saw the connection come from. Client headers such as X-Forwarded-For
//     are never read. IPv6 callers are grouped by /64, the block one
//     subscriber holds, so rotating addresses inside it buys nothing.
//   - X-Api-Key unknown, revoked, malformed, or given twice with different
//     values: the error "Unauthorized", which API Gateway turns into 401.
//     Nothing is charged. The header name matches in any letter case.
//   - Key store failing for a key not in the cache: an error that is not
//     "Unauthorized" (API Gateway answers it with the
//     AUTHORIZER_CONFIGURATION_ERROR gateway response, which template.yaml
//     maps to 503 like AUTHORIZER_FAILURE). Known keys keep working from the
//     cache (package apikey).
//   - A route under a premium prefix called by another tier: Allow, with
//     context forbidden=true and nothing charged; the function answers 403.
//     API Gateway maps every Deny to one gateway response (ACCESS_DENIED,
//     429 here), so a Deny cannot also mean 403.
//   - Otherwise the request costs ROUTE_COSTS tokens on the caller's bucket:
//     Allow when they are there, Deny (429 with an honest Retry-After) when
//     not. A denied request is charged nothing.
//
// The principalId is the key's ID or "ip:<address>", never the key.
package authorizer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

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

// Config configures a Handler. Keys, Limiter and Tiers are required.
type Config struct {
	// Keys looks up API keys.
	Keys KeyStore
	// Limiter decides requests.
	Limiter Limiter
	// Tiers maps tier names to bucket limits. It must contain
	// AnonymousTier; a key whose tier is missing here is refused with an
	// error (a misconfiguration, logged at ERROR).
	Tiers map[string]limiter.Limit
	// Costs says what each route costs; the zero value makes every route
	// cost 1.
	Costs limiter.RouteCosts
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

// Handler is the authorizer. It is safe for concurrent use; build it once
// per container.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	metrics *emf
	now     func() time.Time
}

// New checks cfg and returns a Handler. Every route cost must fit in every
// tier's burst, else such a request could never pass: that is a start-up
// error rather than a 429 with a Retry-After that never comes true.
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
	for tier, l := range cfg.Tiers {
		if max := cfg.Costs.Max(); max > l.Burst {
			return nil, fmt.Errorf("authorizer: ROUTE_COSTS has a route costing %d tokens, more than tier %q's burst of %d: such requests could never pass", max, tier, l.Burst)
		}
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, now: cfg.Now}
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
	requestID := req.RequestContext.RequestID
	log := h.log.With("requestId", requestID)
	if req.MethodArn == "" {
		log.Error("authorizer event has no methodArn")
		return events.APIGatewayCustomAuthorizerResponse{}, errors.New("authorizer: event has no methodArn")
	}
	route := req.Resource
	if route == "" {
		route = req.Path
	}

	key, err := apiKey(req)
	if err != nil {
		log.Info("decision", "decision", "unauthorized", "reason", err.Error(), "route", route)
		return events.APIGatewayCustomAuthorizerResponse{}, ErrUnauthorized
	}
	d := authctx.Decision{Tier: AnonymousTier}
	if key == "" {
		d.Caller = "ip:" + callerIP(req.RequestContext.Identity.SourceIP)
	} else {
		lctx, cancel := context.WithTimeout(ctx, h.cfg.KeyTimeout)
		rec, err := h.cfg.Keys.Lookup(lctx, key)
		cancel()
		switch {
		case errors.Is(err, apikey.ErrNotFound):
			log.Info("decision", "decision", "unauthorized", "reason", "unknown or revoked key", "route", route)
			return events.APIGatewayCustomAuthorizerResponse{}, ErrUnauthorized
		case err != nil:
			log.Error("key store failed", "error", err.Error(), "route", route)
			return events.APIGatewayCustomAuthorizerResponse{}, errors.New("authorizer: key store unavailable")
		}
		d.Tier, d.Caller = rec.Tier, rec.ID
	}
	limit, ok := h.cfg.Tiers[d.Tier]
	if !ok {
		log.Error("key has a tier missing from TIER_LIMITS", "tier", d.Tier, "caller", d.Caller)
		return events.APIGatewayCustomAuthorizerResponse{}, fmt.Errorf("authorizer: tier %q is not configured", d.Tier)
	}
	d.Cost = h.cfg.Costs.Cost(req.HTTPMethod, route)

	if h.premiumOnly(route) && d.Tier != h.cfg.PremiumTier {
		d.Forbidden = true
		d.RequiredTier = h.cfg.PremiumTier
		d.ForbiddenReason = fmt.Sprintf("this route requires the %s tier", h.cfg.PremiumTier)
		d.Source = limiter.SourceNone.String()
		log.Info("decision", "decision", "forbidden", "tier", d.Tier, "caller", d.Caller, "route", route,
			"latencyMs", ms(h.now().Sub(start)))
		h.metrics.record(h.now(), d.Tier, "forbidden", "none", h.now().Sub(start))
		return policy(d.Caller, "Allow", req.MethodArn, d), nil
	}

	res, err := h.cfg.Limiter.Allow(ctx, limiter.Request{
		Buckets: []limiter.Bucket{{Key: d.Caller, Limit: limit}},
		Cost:    d.Cost,
	})
	if err != nil {
		log.Error("limiter failed", "error", err.Error())
		return events.APIGatewayCustomAuthorizerResponse{}, errors.New("authorizer: limiter failed")
	}
	d.Limit = res.Limit
	d.Remaining = res.Remaining
	d.Reset = ceilSeconds(res.ResetAfter)
	d.Window = ceilSeconds(res.Window)
	d.Source = res.Source.String()
	effect, decision := "Allow", "allowed"
	if !res.Allowed {
		effect, decision = "Deny", "denied"
		d.RetryAfter = max(ceilSeconds(res.RetryAfter), 1)
	}
	latency := h.now().Sub(start)
	attrs := []any{"decision", decision, "tier", d.Tier, "caller", d.Caller, "route", route,
		"cost", d.Cost, "remaining", d.Remaining, "source", d.Source, "latencyMs", ms(latency)}
	if !res.Allowed {
		attrs = append(attrs, "reason", res.Reason, "retryAfter", d.RetryAfter)
	}
	log.Info("decision", attrs...)
	h.metrics.record(h.now(), d.Tier, decision, d.Source, latency)
	return policy(d.Caller, effect, req.MethodArn, d), nil
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
