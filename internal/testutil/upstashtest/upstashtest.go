// Package upstashtest starts an Upstash-compatible REST endpoint for tests:
// a real redis-server (internal/testutil/redistest) behind
// internal/upstashlocal, served by an httptest server on 127.0.0.1.
//
// Like redistest, it skips the test when redis-server is missing, unless
// BUCKETGATE_INTEGRATION=1, in which case the test fails.
package upstashtest

import (
	"crypto/rand"
	"encoding/hex"
	"net/http/httptest"
	"testing"

	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

// Env is a running endpoint. URL ("http://127.0.0.1:PORT", no trailing
// slash) and Token are what UPSTASH_REDIS_REST_URL and
// UPSTASH_REDIS_REST_TOKEN would hold. Redis is the backing server (use it to
// inspect keys, SCRIPT FLUSH, or Restart for outage tests); Server counts
// requests (Server.Requests()).
type Env struct {
	URL, Token string
	Redis      *redistest.Server
	Server     *upstashlocal.Server
}

// Start launches redis-server and an upstashlocal server with a random
// token in front of it. Everything is stopped by t.Cleanup: the HTTP server
// first (waiting for requests in flight), then the connection pool, then
// redis-server.
func Start(t testing.TB) *Env {
	t.Helper()
	rs := redistest.Start(t)
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatalf("upstashtest: random token: %v", err)
	}
	token := hex.EncodeToString(raw[:])
	srv, err := upstashlocal.New(upstashlocal.Config{Token: token, RedisAddr: rs.Addr})
	if err != nil {
		t.Fatalf("upstashtest: %v", err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Close()
	})
	return &Env{URL: hs.URL, Token: token, Redis: rs, Server: srv}
}
