package authorizer

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// Defaults of the environment variables (README's configuration table,
// template.yaml).
const (
	DefaultTierLimits    = "anonymous=6/minute:burst=10,authenticated=30/minute:burst=50,premium=120/minute:burst=200"
	DefaultRouteCosts    = "POST /predict/batch=5"
	DefaultPremiumRoutes = "/premium/"
	DefaultAuthFailures  = "10/minute:burst=20"
	maxLimiterTimeout    = 10 * time.Second
)

// Settings is the authorizer's configuration as read from its environment.
type Settings struct {
	// Upstash is the REST endpoint; Configured is false when neither
	// UPSTASH_REDIS_REST_URL nor UPSTASH_REDIS_REST_TOKEN is set
	// (memory-only mode).
	Upstash           upstash.Config
	UpstashConfigured bool
	Tiers             limiter.Tiers
	Costs             limiter.RouteCosts
	RouteLimits       limiter.RouteLimits
	Global            limiter.Limit // GLOBAL_LIMIT; zero: none
	AuthFailures      limiter.Limit // AUTH_FAILURE_LIMIT
	Message           string        // LIMIT_MESSAGE; "": DefaultMessage
	Warmup            limiter.Warmup
	Shadow            bool // LIMITER_SHADOW
	PremiumRoutes     []string
	KeysTable         string // API_KEYS_TABLE
	KeysFile          string // API_KEYS_FILE; takes precedence over KeysTable
	Timeout           time.Duration
	FailureMode       limiter.FailureMode
	LogLevel          slog.Level
	// Now is the clock of the handler and the limiter; nil means time.Now.
	// No variable sets it: only a test build of functions/authorizer does
	// (its soak build skews it), never a production one.
	Now func() time.Time
}

// LoadSettings reads the authorizer's settings through getenv (os.Getenv
// in main). An empty variable means its default, since template.yaml
// declares every variable, empty where unused. Errors name the variable and
// the bad part; they never contain the Upstash token.
func LoadSettings(getenv func(string) string) (Settings, error) {
	var s Settings
	var err error
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}

	s.Upstash, err = upstash.ConfigFromEnv(getenv)
	switch {
	case err == nil:
		s.UpstashConfigured = true
	case err == upstash.ErrNotConfigured:
	default:
		return s, err
	}
	if s.Tiers, err = limiter.ParseTierLimits(get("TIER_LIMITS", DefaultTierLimits)); err != nil {
		return s, fmt.Errorf("TIER_LIMITS: %w", err)
	}
	if s.Costs, err = limiter.ParseRouteCosts(get("ROUTE_COSTS", DefaultRouteCosts)); err != nil {
		return s, fmt.Errorf("ROUTE_COSTS: %w", err)
	}
	if s.RouteLimits, err = limiter.ParseRouteLimits(get("ROUTE_LIMITS", "")); err != nil {
		return s, fmt.Errorf("ROUTE_LIMITS: %w", err)
	}
	if v := get("GLOBAL_LIMIT", ""); v != "" {
		if s.Global, err = limiter.ParseLimit(v); err != nil {
			return s, fmt.Errorf("GLOBAL_LIMIT: %w", err)
		}
	}
	if s.AuthFailures, err = limiter.ParseLimit(get("AUTH_FAILURE_LIMIT", DefaultAuthFailures)); err != nil {
		return s, fmt.Errorf("AUTH_FAILURE_LIMIT: %w", err)
	}
	s.Message = get("LIMIT_MESSAGE", DefaultMessage)
	if err := checkMessage(s.Message); err != nil {
		return s, fmt.Errorf("LIMIT_MESSAGE: %w", err)
	}
	if s.Warmup, err = limiter.ParseWarmup(get("WARMUP", "")); err != nil {
		return s, fmt.Errorf("WARMUP: %w", err)
	}
	if !s.Warmup.IsZero() {
		s.Warmup.Version = Version(getenv)
	}
	switch v := strings.ToLower(get("LIMITER_SHADOW", "false")); v {
	case "true", "1", "yes":
		s.Shadow = true
	case "false", "0", "no":
	default:
		return s, fmt.Errorf("LIMITER_SHADOW: %q is not true or false", v)
	}
	if s.PremiumRoutes, err = parsePrefixes(get("PREMIUM_ROUTES", DefaultPremiumRoutes)); err != nil {
		return s, fmt.Errorf("PREMIUM_ROUTES: %w", err)
	}
	s.KeysTable = get("API_KEYS_TABLE", "")
	s.KeysFile = get("API_KEYS_FILE", "")
	if s.KeysTable == "" && s.KeysFile == "" {
		return s, fmt.Errorf("API_KEYS_TABLE: neither API_KEYS_TABLE nor API_KEYS_FILE is set: keyed callers could not be checked")
	}
	s.Timeout = limiter.DefaultTimeout
	if v := get("LIMITER_TIMEOUT", ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxLimiterTimeout {
			return s, fmt.Errorf("LIMITER_TIMEOUT: %q is not a duration between 1ms and %s (e.g. 150ms)", v, maxLimiterTimeout)
		}
		s.Timeout = d
	}
	if s.FailureMode, err = limiter.ParseFailureMode(get("LIMITER_FAILURE_MODE", "")); err != nil {
		return s, fmt.Errorf("LIMITER_FAILURE_MODE: %w", err)
	}
	if s.LogLevel, err = ParseLogLevel(get("LOG_LEVEL", "info")); err != nil {
		return s, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	if _, ok := s.Tiers[AnonymousTier]; !ok {
		return s, fmt.Errorf("TIER_LIMITS: no %q tier (callers without a key need one)", AnonymousTier)
	}
	return s, nil
}

// ParseLogLevel parses LOG_LEVEL: debug, info, warn or error, any case.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown level %q (want debug, info, warn or error)", s)
}

func parsePrefixes(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("%q: a path prefix must start with /", p)
		}
		out = append(out, p)
	}
	return out, nil
}
