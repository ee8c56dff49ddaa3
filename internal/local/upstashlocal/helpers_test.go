package upstashlocal_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

const testToken = "test-token-0123456789"

// backends are the two stores a Server can sit on; most behaviour must not
// depend on which one is used.
var backends = []string{"redis", "embedded"}

type testServer struct {
	URL   string
	Srv   *upstashlocal.Server
	Redis *redistest.Server // nil for the embedded backend
}

// startServer runs a Server on an httptest server. backend "redis" starts a
// real redis-server; "embedded" uses the in-process store. cfg.Token
// defaults to testToken.
func startServer(t testing.TB, backend string, cfg upstashlocal.Config) *testServer {
	t.Helper()
	ts := &testServer{}
	if backend == "redis" {
		ts.Redis = redistest.Start(t)
		cfg.RedisAddr = ts.Redis.Addr
	}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	srv, err := upstashlocal.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ts.URL, ts.Srv = hs.URL, srv
	return ts
}

var httpClient = &http.Client{Timeout: 20 * time.Second}

type response struct {
	Status int
	Body   string
	Header http.Header
}

// send makes one request. headers may hold "Authorization"; when it has no
// such key the test token is sent as a Bearer token. A nil body sends none.
func (ts *testServer) send(t testing.TB, method, path string, headers map[string]string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if _, ok := headers["Authorization"]; !ok {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return response{Status: resp.StatusCode, Body: string(b), Header: resp.Header}
}

// post sends a JSON body to path with the test token.
func (ts *testServer) post(t testing.TB, path, body string) response {
	t.Helper()
	return ts.send(t, http.MethodPost, path, nil, strings.NewReader(body))
}

// mustPost posts and fails the test unless the reply is want (status 200).
func (ts *testServer) mustPost(t testing.TB, path, body, want string) {
	t.Helper()
	got := ts.post(t, path, body)
	if got.Status != http.StatusOK || got.Body != want {
		t.Fatalf("POST %s %s = %d %s, want 200 %s", path, body, got.Status, got.Body, want)
	}
}

// newRequest builds an authorized POST for serving without a network.
func newRequest(t testing.TB, path, body string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	return req
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
