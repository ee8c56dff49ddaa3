// Package dynamotest starts dynalite, a DynamoDB-compatible server, for
// tests, and makes clients and keys tables for it.
//
// The server is tools/node/dynalite-server.mjs run by node: in memory, on
// 127.0.0.1 and a free port, stopped by t.Cleanup (and exiting by itself if
// the test binary dies, because its stdin closes).
//
// When node or tools/node/node_modules/dynalite is missing the test is
// skipped, unless BUCKETGATE_INTEGRATION is "1" (as `make test` sets it),
// in which case it fails.
package dynamotest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

// Region is the region clients made by Client use.
const Region = "us-east-1"

// Start launches dynalite and returns its endpoint, "http://127.0.0.1:PORT".
func Start(t testing.TB) string {
	t.Helper()
	node := redistest.Need(t, "node")
	script, err := launcher()
	if err != nil {
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatalf("dynamotest: %v (and %s=1): run `make test`, which runs npm ci in tools/node", err, redistest.RequireEnv)
		}
		t.Skipf("dynamotest: %v (set %s=1 to make this a failure)", err, redistest.RequireEnv)
	}

	cmd := exec.Command(node, script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("dynamotest: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("dynamotest: %v", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dynamotest: start node: %v", err)
	}
	stop := func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}

	type ready struct {
		endpoint string
		err      error
	}
	ch := make(chan ready, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() {
			ch <- ready{err: errors.New("exited before printing its endpoint")}
			return
		}
		var msg struct {
			Endpoint string `json:"endpoint"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil || msg.Endpoint == "" {
			ch <- ready{err: fmt.Errorf("unexpected first line %q", sc.Text())}
			return
		}
		ch <- ready{endpoint: msg.Endpoint}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			stop()
			t.Fatalf("dynamotest: dynalite: %v; stderr: %s", r.err, stderr.String())
		}
		t.Cleanup(stop)
		return r.endpoint
	case <-time.After(30 * time.Second):
		stop()
		t.Fatalf("dynamotest: dynalite did not start within 30s; stderr: %s", stderr.String())
		return ""
	}
}

// Client returns a DynamoDB client for endpoint with static dummy
// credentials and region us-east-1. opts adjust it further (e.g. an
// HTTPClient that counts requests).
func Client(t testing.TB, endpoint string, opts ...func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	o := dynamodb.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "dynamotest", SecretAccessKey: "dynamotest", Source: "dynamotest"}, nil
		}),
		RetryMaxAttempts: 1,
	}
	return dynamodb.New(o, opts...)
}

var tableSeq atomic.Int64

// KeysTable creates a new, empty keys table with the product's schema
// (apikey.CreateTable) and returns its name.
func KeysTable(t testing.TB, client *dynamodb.Client) string {
	t.Helper()
	name := fmt.Sprintf("api-keys-%d-%d", os.Getpid(), tableSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := apikey.CreateTable(ctx, client, name); err != nil {
		t.Fatalf("dynamotest: %v", err)
	}
	return name
}

// SetEnv points the AWS SDK's default configuration
// (config.LoadDefaultConfig) at endpoint for the rest of the test: dummy
// static credentials, region us-east-1, AWS_ENDPOINT_URL_DYNAMODB, no
// shared config files and no instance metadata. It uses t.Setenv, so the
// test must not be parallel.
func SetEnv(t testing.TB, endpoint string) {
	t.Helper()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatalf("dynamotest: %v", err)
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_DYNAMODB":   endpoint,
		"AWS_REGION":                  Region,
		"AWS_ACCESS_KEY_ID":           "dynamotest",
		"AWS_SECRET_ACCESS_KEY":       "dynamotest",
		"AWS_CONFIG_FILE":             empty,
		"AWS_SHARED_CREDENTIALS_FILE": empty,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
	// Unset (t.Setenv restores them afterwards) what would otherwise
	// override the above, e.g. AWS_ENDPOINT_URL or a named profile.
	for _, k := range []string{
		"AWS_ENDPOINT_URL", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
	} {
		t.Setenv(k, "")
		_ = os.Unsetenv(k)
	}
}

// launcher returns the path of tools/node/dynalite-server.mjs after
// checking that dynalite is installed next to it.
func launcher() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the module root")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "tools", "node")
	script := filepath.Join(dir, "dynalite-server.mjs")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("launcher missing: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "dynalite", "package.json")); err != nil {
		return "", errors.New("dynalite is not installed in tools/node/node_modules")
	}
	return filepath.Clean(script), nil
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
