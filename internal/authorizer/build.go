package authorizer

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/runtimeapi"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// Version names the code and configuration that is running, for WARMUP:
// containers of one version share one warm-up. It hashes the function's
// name and version (AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_VERSION)
// with the Go build ID of the running binary, which changes whenever the
// code does. "" when the binary's build ID cannot be read (not ELF): each
// container then warms up on its own.
func Version(getenv func(string) string) string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	f, err := elf.Open(exe)
	if err != nil {
		return ""
	}
	defer f.Close()
	sec := f.Section(".note.go.buildid")
	if sec == nil {
		return ""
	}
	id, err := sec.Data()
	if err != nil || len(id) == 0 {
		return ""
	}
	h := sha256.New()
	for _, part := range [][]byte{[]byte(getenv("AWS_LAMBDA_FUNCTION_NAME")), []byte(getenv("AWS_LAMBDA_FUNCTION_VERSION")), id} {
		h.Write(part)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// NewLogger returns the JSON logger the functions use, writing to w at
// level.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// Build wires a Handler from settings: the Upstash client and limiter, the
// key store (file or DynamoDB) behind a per-container cache. It runs once
// per container, at init. metrics receives EMF lines (os.Stdout in Lambda).
func Build(ctx context.Context, s Settings, log *slog.Logger, metrics io.Writer) (*Handler, error) {
	lcfg := limiter.Config{Timeout: s.Timeout, FailureMode: s.FailureMode, Logger: log, Warmup: s.Warmup, Now: s.Now}
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
	// Open the connection to Upstash (TCP and TLS handshakes) and read the
	// live settings now, in the init phase, so that the first decision
	// finds both ready. A failure costs nothing but a log line: the first
	// decision does the same work.
	if err := lim.Prime(ctx); err != nil {
		log.Warn("could not reach Upstash at start; the first decision will", "error", err.Error())
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

	h, err := New(Config{
		Keys:          apikey.NewCache(keys, apikey.CacheConfig{}),
		Limiter:       lim,
		Tiers:         s.Tiers,
		Costs:         s.Costs,
		RouteLimits:   s.RouteLimits,
		Global:        s.Global,
		AuthFailures:  s.AuthFailures,
		Message:       s.Message,
		Shadow:        s.Shadow,
		PremiumRoutes: s.PremiumRoutes,
		Logger:        log,
		Metrics:       metrics,
		Now:           s.Now,
	})
	if err != nil {
		return nil, err
	}
	h.warm(ctx)
	return h, nil
}

// warm makes one decision at init, end to end but on nothing: an
// anonymous request through a copy of the handler whose limiter answers
// without a store and whose logs and metrics go nowhere, invoked through
// the same JSON wrapper as the Runtime API loop invokes it (the loop warms
// its own reading and writing when it starts). The code every decision
// runs for the first time in a process (encoding/json building its
// per-type codecs for the event, the response and the EMF line; the JSON
// logger; the policy assembly) then runs here, in init, rather than in the
// first request (docs/BENCHMARKS.md, "First decision of a cold
// container"). Nothing is charged, written or counted.
func (h *Handler) warm(ctx context.Context) {
	w := &Handler{cfg: h.cfg, fillIn: h.fillIn, now: h.now,
		log: slog.New(slog.NewJSONHandler(io.Discard, nil)), metrics: &emf{w: io.Discard}}
	w.cfg.Limiter = nothingLimiter{}
	raw := []byte(`{"type":"REQUEST","methodArn":"arn:aws:execute-api:us-east-1:123456789012:init/v1/POST/predict","resource":"/predict","path":"/predict","httpMethod":"POST","headers":{"Accept":"*/*"},"multiValueHeaders":{"Accept":["*/*"]},"requestContext":{"requestId":"init","identity":{"sourceIp":"192.0.2.1"}}}`)
	_, _ = runtimeapi.JSON(w.Handle)(ctx, raw)
}

// nothingLimiter allows every request on full buckets, with no store.
type nothingLimiter struct{}

func (nothingLimiter) Allow(_ context.Context, req limiter.Request) (limiter.Result, error) {
	r := limiter.Result{Allowed: true, N: len(req.Buckets), Source: limiter.SourceNone}
	for i, b := range req.Buckets {
		r.Buckets[i] = limiter.BucketState{Limit: b.Limit.Burst, Remaining: b.Limit.Burst, Window: b.Limit.Window()}
	}
	return r, nil
}
