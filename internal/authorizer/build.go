package authorizer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// NewLogger returns the JSON logger the functions use, writing to w at
// level.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// Build wires a Handler from settings: the Upstash client and limiter, the
// key store (file or DynamoDB) behind a per-container cache. It runs once
// per container, at init. metrics receives EMF lines (os.Stdout in Lambda).
func Build(ctx context.Context, s Settings, log *slog.Logger, metrics io.Writer) (*Handler, error) {
	lcfg := limiter.Config{Timeout: s.Timeout, FailureMode: s.FailureMode, Logger: log}
	if s.UpstashConfigured {
		client, err := upstash.New(s.Upstash)
		if err != nil {
			return nil, fmt.Errorf("UPSTASH_REDIS_REST_URL: %w", err)
		}
		store, err := limiter.NewUpstashStore(limiter.UpstashConfig{Client: client})
		if err != nil {
			return nil, err
		}
		lcfg.Upstash = store
	} else {
		log.Warn("UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN are unset: limits are per container (memory only)")
	}
	lim, err := limiter.New(lcfg)
	if err != nil {
		return nil, err
	}

	var keys apikey.Store
	if s.KeysFile != "" {
		fs, err := apikey.NewFileStore(apikey.FileConfig{Path: s.KeysFile})
		if err != nil {
			return nil, fmt.Errorf("API_KEYS_FILE: %w", err)
		}
		keys = fs
	} else {
		// Two attempts with at most 50 ms between them: a key lookup runs
		// on the request path within KeyTimeout, and the SDK's default
		// backoff would spend that budget waiting.
		awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(func() aws.Retryer {
			return retry.AddWithMaxBackoffDelay(retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 2
			}), 50*time.Millisecond)
		}))
		if err != nil {
			return nil, fmt.Errorf("API_KEYS_TABLE: loading AWS configuration: %w", err)
		}
		ds, err := apikey.NewDynamoStore(apikey.DynamoConfig{
			Client: dynamodb.NewFromConfig(awsCfg),
			Table:  s.KeysTable,
		})
		if err != nil {
			return nil, fmt.Errorf("API_KEYS_TABLE: %w", err)
		}
		keys = ds
	}

	return New(Config{
		Keys:          apikey.NewCache(keys, apikey.CacheConfig{}),
		Limiter:       lim,
		Tiers:         s.Tiers,
		Costs:         s.Costs,
		PremiumRoutes: s.PremiumRoutes,
		Logger:        log,
		Metrics:       metrics,
	})
}
