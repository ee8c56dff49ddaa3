package limiter

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/bucketgate/bucketgate/internal/upstash"
)

// ScriptSource is the token-bucket Lua script run on Upstash (tokenbucket.lua).
// It starts with Upstash's "#!lua flags=allow-key-locking" line; see the
// package documentation. Read it, never assign it: the store's digest is
// computed from it once, at start.
//
//go:embed tokenbucket.lua
var ScriptSource string

// tokenBucket is the script, with its SHA-1 computed once.
var tokenBucket = upstash.NewScript(ScriptSource)

// ScriptSHA1 returns the hex SHA-1 of ScriptSource: the digest EVALSHA sends.
func ScriptSHA1() string { return tokenBucket.SHA1() }

// ErrBadReply is wrapped by the error for a script reply of the wrong shape
// (which would mean a script and code out of step, or a proxy mangling
// replies). The Limiter treats it like any other store failure.
var ErrBadReply = errors.New("unexpected token-bucket script reply")

// DefaultPrefix is UpstashConfig.Prefix's default.
const DefaultPrefix = "bg:"

// UpstashConfig configures an UpstashStore. Only Client is required.
type UpstashConfig struct {
	// Client talks to Upstash. Required.
	Client *upstash.Client
	// Prefix namespaces the Redis keys: bucket key K is stored under
	// Prefix+K. "" means DefaultPrefix.
	Prefix string
	// MaxClockSkew is how far ahead of a caller's clock a bucket's stored
	// timestamp is believed; 0 means DefaultMaxClockSkew. See the package
	// documentation, "Clock".
	MaxClockSkew time.Duration
}

// scriptRunner runs the token-bucket script: EVALSHA, and EVAL when the
// server does not have it cached. It is what UpstashStore needs of the
// Upstash client.
type scriptRunner interface {
	Run(ctx context.Context, keys []string, args ...any) (json.RawMessage, error)
}

// clientRunner binds the token-bucket script to a client.
type clientRunner struct{ c *upstash.Client }

func (r clientRunner) Run(ctx context.Context, keys []string, args ...any) (json.RawMessage, error) {
	var raw json.RawMessage
	err := tokenBucket.Run(ctx, r.c, &raw, keys, args...)
	return raw, err
}

// UpstashStore is a Store of token buckets on Upstash Redis: one REST
// request per decision (EVALSHA of ScriptSource), whatever the number of
// buckets. Redis commands per decision, counting the EVALSHA: 2 for a
// denial (EVALSHA, MGET), 2+N when N buckets are charged (EVALSHA, MGET,
// one SET ... PX per bucket) — 3 for the usual single bucket.
//
// Safe for concurrent use. It keeps no state beyond the client.
type UpstashStore struct {
	run    scriptRunner
	prefix string
	skew   int64
}

var _ Store = (*UpstashStore)(nil)

// NewUpstashStore returns a store using cfg.Client.
func NewUpstashStore(cfg UpstashConfig) (*UpstashStore, error) {
	if cfg.Client == nil {
		return nil, invalid("upstash store: Client is nil")
	}
	return newUpstashStore(clientRunner{cfg.Client}, cfg)
}

func newUpstashStore(run scriptRunner, cfg UpstashConfig) (*UpstashStore, error) {
	if cfg.MaxClockSkew < 0 {
		return nil, invalid("upstash store: MaxClockSkew must not be negative")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	return &UpstashStore{run: run, prefix: cfg.Prefix, skew: cfg.MaxClockSkew.Milliseconds()}, nil
}

// Allow runs the script for req at now (the caller's clock, sent to the
// script). The Result's Source is SourceUpstash. Errors: ErrInvalidRequest
// for a bad request (nothing sent); otherwise the client's *upstash.Error
// (use errors.As or upstash.KindOf), or ErrBadReply. Errors never contain a
// bucket key.
func (u *UpstashStore) Allow(ctx context.Context, req Request, now time.Time) (Result, error) {
	var st [MaxBuckets]state
	return u.allowState(ctx, req, now, st[:])
}

// allowState is Allow that also fills st[:len(req.Buckets)] with the
// buckets' states after the decision.
func (u *UpstashStore) allowState(ctx context.Context, req Request, now time.Time, st []state) (Result, error) {
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	nowMs := now.UnixMilli()
	n := len(req.Buckets)
	keys := make([]string, n)
	args := make([]any, 3, 3+2*n)
	args[0], args[1], args[2] = nowMs, req.Cost*unitsPerToken, u.skew
	var ps [MaxBuckets]params
	for i, b := range req.Buckets {
		keys[i] = u.prefix + b.Key
		ps[i] = b.Limit.params()
		args = append(args, ps[i].cap, ps[i].perMs)
	}
	raw, err := u.run.Run(ctx, keys, args...)
	if err != nil {
		return Result{}, fmt.Errorf("limiter: token-bucket script: %w", err)
	}
	allowed, err := parseReply(raw, st[:n], ps[:n])
	if err != nil {
		return Result{}, err
	}
	r, _ := report(req, ps[:n], st[:n], allowed, nowMs)
	r.Source = SourceUpstash
	return r, nil
}

// parseReply reads {allowed, units_1, at_1, ...}, a JSON array of
// integers, into st.
func parseReply(raw json.RawMessage, st []state, ps []params) (bool, error) {
	var vals []json.RawMessage
	if err := json.Unmarshal(raw, &vals); err != nil || vals == nil {
		return false, fmt.Errorf("limiter: %w: not an array", ErrBadReply)
	}
	if len(vals) != 1+2*len(st) {
		return false, fmt.Errorf("limiter: %w: %d elements, want %d", ErrBadReply, len(vals), 1+2*len(st))
	}
	ints := make([]int64, len(vals))
	for i, e := range vals {
		n, err := strconv.ParseInt(string(e), 10, 64)
		if err != nil {
			return false, fmt.Errorf("limiter: %w: element %d is not an integer", ErrBadReply, i+1)
		}
		ints[i] = n
	}
	if ints[0] != 0 && ints[0] != 1 {
		return false, fmt.Errorf("limiter: %w: allowed flag is %d", ErrBadReply, ints[0])
	}
	for i := range st {
		st[i] = state{units: ints[1+2*i], at: ints[2+2*i]}
		// The script clamps to the capacity; more would report Remaining
		// above Limit.
		if st[i].units < 0 || st[i].units > ps[i].cap {
			return false, fmt.Errorf("limiter: %w: bucket %d holds %d units", ErrBadReply, i+1, st[i].units)
		}
	}
	return ints[0] == 1, nil
}
