// Package upstashtest starts an Upstash-compatible REST endpoint for tests:
// internal/local/upstashlocal, served by an httptest server on 127.0.0.1,
// in front of a real redis-server (internal/testutil/redistest) when there
// is one.
//
// Start uses redis-server when it is on PATH, and otherwise upstashlocal's
// embedded store (miniredis, whose Lua is gopher-lua), so that tests of
// behaviour — the limiter's Lua script above all — run in a plain
// `go test ./...` too. With BUCKETGATE_INTEGRATION=1 (as `make test` sets)
// a missing redis-server fails the test instead: CI must run the real
// thing. Tests that need the real server itself (a restart, SCRIPT FLUSH
// or INFO through Env.Redis) call StartRedis, which skips without it (or
// fails under BUCKETGATE_INTEGRATION=1), as redistest does.
package upstashtest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

// Env is a running endpoint. URL ("http://127.0.0.1:PORT", or https for
// StartTLS; no trailing slash) and Token are what UPSTASH_REDIS_REST_URL
// and UPSTASH_REDIS_REST_TOKEN would hold. Server counts requests
// (Server.Requests()).
type Env struct {
	URL, Token string
	// Redis is the backing redis-server (to inspect keys, SCRIPT FLUSH, or
	// Restart for outage tests); nil when the endpoint runs on the
	// embedded store, which Start may choose and StartRedis never does.
	Redis  *redistest.Server
	Server *upstashlocal.Server
	// RootCAs trusts the endpoint's certificate and CAFile holds it (PEM,
	// e.g. for SSL_CERT_FILE); set by StartTLS only.
	RootCAs *x509.CertPool
	CAFile  string
}

// backend says what the endpoint stores data in.
type backend int

const (
	anyBackend   backend = iota // redis-server when on PATH (or required), else embedded
	redisBackend                // redis-server, skipping (or failing) the test without it
)

// Start launches an endpoint with a random token: on redis-server when it
// is on PATH or BUCKETGATE_INTEGRATION=1, on the embedded store otherwise
// (Env.Redis is then nil, and the test log says so). Everything is stopped
// by t.Cleanup: the HTTP server first (waiting for requests in flight), then
// the connection pool, then redis-server.
func Start(t testing.TB) *Env {
	t.Helper()
	return start(t, anyBackend, false)
}

// StartRedis is Start for tests that use Env.Redis: it always runs on a
// real redis-server, skipping the test when there is none (failing it
// under BUCKETGATE_INTEGRATION=1).
func StartRedis(t testing.TB) *Env {
	t.Helper()
	return start(t, redisBackend, false)
}

// StartTLS is Start serving HTTPS, with a self-signed certificate for
// 127.0.0.1 that Env.RootCAs trusts and Env.CAFile holds.
func StartTLS(t testing.TB) *Env {
	t.Helper()
	return start(t, anyBackend, true)
}

func start(t testing.TB, b backend, useTLS bool) *Env {
	t.Helper()
	env := &Env{}
	cfg := upstashlocal.Config{}
	if _, err := exec.LookPath("redis-server"); err == nil || b == redisBackend || os.Getenv(redistest.RequireEnv) == "1" {
		env.Redis = redistest.Start(t)
		cfg.RedisAddr = env.Redis.Addr
	} else {
		t.Logf("upstashtest: redis-server is not on PATH: using the embedded store (set %s=1 to require redis-server)", redistest.RequireEnv)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatalf("upstashtest: random token: %v", err)
	}
	env.Token = hex.EncodeToString(raw[:])
	cfg.Token = env.Token
	srv, err := upstashlocal.New(cfg)
	if err != nil {
		t.Fatalf("upstashtest: %v", err)
	}
	env.Server = srv
	hs := httptest.NewUnstartedServer(srv)
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Close()
	})
	if !useTLS {
		hs.Start()
		env.URL = hs.URL
		return env
	}
	cert, certPEM, err := upstashlocal.SelfSignedCert([]string{"127.0.0.1"}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatalf("upstashtest: %v", err)
	}
	env.CAFile = filepath.Join(t.TempDir(), "upstash-local-ca.pem")
	if err := os.WriteFile(env.CAFile, certPEM, 0o644); err != nil {
		t.Fatalf("upstashtest: %v", err)
	}
	env.RootCAs = x509.NewCertPool()
	env.RootCAs.AppendCertsFromPEM(certPEM)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// Tests of clients that do not trust the certificate make the server
	// log handshake failures; they are expected, not news.
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	hs.EnableHTTP2 = true
	hs.StartTLS()
	env.URL = hs.URL
	return env
}
