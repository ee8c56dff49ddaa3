package upstash

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// seen is what a fake server saw of one request.
type seen struct {
	Method, Path, Auth, ContentType, Encoding string
	Body                                      any // decoded JSON
}

// fakeServer is an httptest server that records requests and counts the
// TCP connections clients opened to it.
type fakeServer struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []seen
	conns atomic.Int64
}

func startFake(t *testing.T, h http.HandlerFunc) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body any
		_ = json.Unmarshal(raw, &body)
		f.mu.Lock()
		f.reqs = append(f.reqs, seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("Upstash-Encoding"), body})
		f.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(raw)))
		h(w, r)
	}))
	f.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	f.Start()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

// commandNames returns the first element of each request's JSON array.
func (f *fakeServer) commandNames() []string {
	var names []string
	for _, r := range f.requests() {
		if a, ok := r.Body.([]any); ok && len(a) > 0 {
			names = append(names, fmt.Sprint(a[0]))
		}
	}
	return names
}

func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// callWithin runs call and fails the test if it has not returned after 10 s:
// a guard against a client that ignores its deadline, not a speed assertion.
func callWithin[T any](t *testing.T, call func() (T, error)) (T, error) {
	t.Helper()
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		v, err := call()
		ch <- res{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("call did not return within 10 s")
	}
	var zero T
	return zero, nil
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *upstash.Error", err, err)
	}
	return e
}

func TestRequestShape(t *testing.T) {
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			reply(200, `{"result":"OK"}`)(w, r)
			return
		}
		reply(200, `[{"result":"OK"},{"result":1}]`)(w, r)
	})
	script := NewScript("return 1")
	tests := []struct {
		name   string
		base64 bool
		call   func(c *Client) error
		want   seen
	}{
		{"do", false, func(c *Client) error {
			_, err := c.Do(context.Background(), "SET", "user:☃ 1", "v", "PX", 1500)
			return err
		},
			seen{"POST", "/", "Bearer " + testToken, "application/json", "", []any{"SET", "user:☃ 1", "v", "PX", "1500"}}},
		{"do base64", true, func(c *Client) error { _, err := c.Do(context.Background(), "GET", "k"); return err },
			seen{"POST", "/", "Bearer " + testToken, "application/json", "base64", []any{"GET", "k"}}},
		{"pipeline", false, func(c *Client) error {
			_, err := c.Pipeline(context.Background(), []any{"SET", "k", "v"}, []any{"INCR", "n"})
			return err
		}, seen{"POST", "/pipeline", "Bearer " + testToken, "application/json", "", []any{[]any{"SET", "k", "v"}, []any{"INCR", "n"}}}},
		{"multi-exec", false, func(c *Client) error {
			_, err := c.MultiExec(context.Background(), []any{"SET", "k", "v"}, []any{"INCR", "n"})
			return err
		}, seen{"POST", "/multi-exec", "Bearer " + testToken, "application/json", "", []any{[]any{"SET", "k", "v"}, []any{"INCR", "n"}}}},
		{"script", false, func(c *Client) error {
			_, err := script.Run(context.Background(), c, []string{"a", "b"}, 1.5, "x")
			return err
		}, seen{"POST", "/", "Bearer " + testToken, "application/json", "", []any{"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "2", "a", "b", "1.5", "x"}}},
		{"script strings", false, func(c *Client) error {
			_, err := script.RunStrings(context.Background(), c, []string{"a"}, []string{"1", "2"})
			return err
		}, seen{"POST", "/", "Bearer " + testToken, "application/json", "", []any{"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "1", "a", "1", "2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, Config{URL: f.URL, Base64: tt.base64})
			before := len(f.requests())
			if err := tt.call(c); err != nil {
				t.Fatal(err)
			}
			reqs := f.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			if diff := cmp.Diff(tt.want, reqs[0]); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPipelineResults(t *testing.T) {
	f := startFake(t, reply(200, `[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},{"result":"`+b64("v")+`"}]`))
	for _, multi := range []bool{false, true} {
		t.Run(fmt.Sprintf("multi-exec=%v", multi), func(t *testing.T) {
			c := newTestClient(t, Config{URL: f.URL, Base64: true})
			call := c.Pipeline
			if multi {
				call = c.MultiExec
			}
			res, err := call(context.Background(), []any{"SET", "k", "v"}, []any{"INCR", "k"}, []any{"GET", "k"})
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 3 {
				t.Fatalf("%d results, want 3", len(res))
			}
			if res[0].Err != nil || !res[0].Value.Equal(StringValue("OK")) {
				t.Errorf("result 0 = %#v, %v; want OK", res[0].Value, res[0].Err)
			}
			e := asError(t, res[1].Err)
			if diff := cmp.Diff(Error{Kind: KindCommand, StatusCode: 200, Message: "ERR value is not an integer or out of range"}, *e, cmp.AllowUnexported(Error{})); diff != "" {
				t.Errorf("result 1 error (-want +got):\n%s", diff)
			}
			if got := e.Error(); got != "upstash: command error: ERR value is not an integer or out of range" {
				t.Errorf("Error() = %q", got)
			}
			if res[2].Err != nil || !res[2].Value.Equal(StringValue("v")) {
				t.Errorf("result 2 = %#v, %v; want v", res[2].Value, res[2].Err)
			}
		})
	}
}

func TestStatusErrors(t *testing.T) {
	other := startFake(t, reply(200, `{"result":"OK"}`))
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		pipeline bool
		want     Error
		wantText string
	}{
		{"400 command error", reply(400, `{"error":"ERR wrong number of arguments for 'get' command"}`), false,
			Error{Kind: KindCommand, StatusCode: 400, Message: "ERR wrong number of arguments for 'get' command"},
			"upstash: command error (HTTP 400): ERR wrong number of arguments for 'get' command"},
		{"400 on a pipeline", reply(400, `{"error":"ERR Command is not available: 'SUBSCRIBE'"}`), true,
			Error{Kind: KindCommand, StatusCode: 400, Message: "ERR Command is not available: 'SUBSCRIBE'"}, ""},
		{"400 without JSON", reply(400, `bad`), false, Error{Kind: KindCommand, StatusCode: 400, Message: "Bad Request"}, ""},
		{"401", reply(401, `{"error":"Unauthorized"}`), false, Error{Kind: KindAuth, StatusCode: 401, Message: "Unauthorized"},
			"upstash: auth error (HTTP 401): Unauthorized"},
		{"403", reply(403, ``), false, Error{Kind: KindAuth, StatusCode: 403, Message: "Forbidden"}, ""},
		{"404", reply(404, `404 page not found`), false, Error{Kind: KindCommand, StatusCode: 404, Message: "Not Found"}, ""},
		{"500", reply(500, `{"error":"internal error"}`), false, Error{Kind: KindServer, StatusCode: 500, Message: "internal error"},
			"upstash: server error (HTTP 500): internal error"},
		{"502 HTML", reply(502, `<html><body>Bad gateway</body></html>`), false, Error{Kind: KindServer, StatusCode: 502, Message: "Bad Gateway"}, ""},
		{"503 on a pipeline", reply(503, ``), true, Error{Kind: KindServer, StatusCode: 503, Message: "Service Unavailable"}, ""},
		{"204", reply(204, ``), false, Error{Kind: KindMalformed, StatusCode: 204, Message: "unexpected HTTP status"}, ""},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/", http.StatusTemporaryRedirect)
		}, false, Error{Kind: KindMalformed, StatusCode: 307, Message: "unexpected HTTP status"}, ""},
		{"long message bounded", reply(400, `{"error":"ERR `+strings.Repeat("x", 2000)+`"}`), false,
			Error{Kind: KindCommand, StatusCode: 400, Message: "ERR " + strings.Repeat("x", maxMessage-4) + "…"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.handler)
			c := newTestClient(t, Config{URL: f.URL})
			var err error
			if tt.pipeline {
				_, err = c.Pipeline(context.Background(), []any{"GET", "k"})
			} else {
				_, err = c.Do(context.Background(), "GET", "k")
			}
			e := asError(t, err)
			if diff := cmp.Diff(tt.want, *e, cmp.AllowUnexported(Error{})); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if tt.wantText != "" && err.Error() != tt.wantText {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.wantText)
			}
		})
	}
	if n := len(other.requests()); n != 0 {
		t.Errorf("redirect target got %d requests, want 0", n)
	}
}

func TestMalformedReplies(t *testing.T) {
	big := `{"result":"` + strings.Repeat("x", 100) + `"}`
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		pipeline int // number of commands to pipeline; 0: Do
		maxReply int64
		wantMsg  string
	}{
		{name: "garbage", handler: reply(200, `<html>hello</html>`), wantMsg: "expected an object"},
		{name: "empty body", handler: reply(200, ``), wantMsg: "unexpected end of reply"},
		{name: "bad JSON", handler: reply(200, `{"result":[1,}`), wantMsg: "unexpected character"},
		{name: "truncated with Content-Length", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, `{"result":"abc`)
		}, wantMsg: "reply truncated"},
		{name: "truncated JSON", handler: reply(200, `{"result":"abc`), wantMsg: "unexpected end of reply"},
		{name: "oversized with Content-Length", handler: reply(200, big), maxReply: 64, wantMsg: "reply exceeds 64 bytes"},
		{name: "oversized chunked", handler: func(w http.ResponseWriter, _ *http.Request) {
			for i := 0; i < 10; i++ {
				_, _ = io.WriteString(w, strings.Repeat(" ", 20))
				w.(http.Flusher).Flush()
			}
		}, maxReply: 64, wantMsg: "reply exceeds 64 bytes"},
		{name: "one byte over the limit", handler: reply(200, `{"result":"`+strings.Repeat("x", 64-13)+`"} `), maxReply: 64, wantMsg: "reply exceeds 64 bytes"},
		{name: "oversized error reply", handler: reply(400, big), maxReply: 64, wantMsg: "reply exceeds 64 bytes"},
		{name: "object without result or error", handler: reply(200, `{"status":"ok"}`), wantMsg: `object has neither "result" nor "error"`},
		{name: "array for one command", handler: reply(200, `[{"result":1}]`), wantMsg: "expected an object"},
		{name: "pipeline length mismatch", handler: reply(200, `[{"result":1}]`), pipeline: 2, wantMsg: "1 results for 2 commands"},
		{name: "pipeline object", handler: reply(200, `{"result":1}`), pipeline: 1, wantMsg: "expected an array of results"},
		{name: "pipeline item without result", handler: reply(200, `[{"result":1},{}]`), pipeline: 2, wantMsg: `object has neither "result" nor "error"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.handler)
			c := newTestClient(t, Config{URL: f.URL, MaxReplyBytes: tt.maxReply})
			var err error
			if tt.pipeline > 0 {
				cmds := make([][]any, tt.pipeline)
				for i := range cmds {
					cmds[i] = []any{"PING"}
				}
				_, err = c.Pipeline(context.Background(), cmds...)
			} else {
				_, err = c.Do(context.Background(), "PING")
			}
			e := asError(t, err)
			if e.Kind != KindMalformed {
				t.Errorf("kind = %v, want malformed (error %v)", e.Kind, err)
			}
			if !strings.Contains(e.Message, tt.wantMsg) {
				t.Errorf("message = %q, want it to contain %q", e.Message, tt.wantMsg)
			}
		})
	}
}

func TestReplyAtLimit(t *testing.T) {
	want := strings.Repeat("x", 64-13)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			f := startFake(t, func(w http.ResponseWriter, _ *http.Request) {
				body := `{"result":"` + want + `"}`
				if chunked {
					_, _ = io.WriteString(w, body[:10])
					w.(http.Flusher).Flush()
					_, _ = io.WriteString(w, body[10:])
					return
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				_, _ = io.WriteString(w, body)
			})
			c := newTestClient(t, Config{URL: f.URL, MaxReplyBytes: 64})
			v, err := c.Do(context.Background(), "GET", "k")
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := v.String(); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// hangingServer answers after writing prefix (nothing when empty), then
// waits until the client goes away or the test ends. arrived is signalled
// once per request.
func hangingServer(t *testing.T, prefix string) (srv *fakeServer, arrived chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	arrived = make(chan struct{}, 16)
	srv = startFake(t, func(w http.ResponseWriter, r *http.Request) {
		if prefix != "" {
			w.Header().Set("Content-Length", "1000")
			_, _ = io.WriteString(w, prefix)
			w.(http.Flusher).Flush()
		}
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv, arrived
}

func TestTimeouts(t *testing.T) {
	const deadline = 50 * time.Millisecond
	tests := []struct {
		name       string
		prefix     string // body bytes sent before hanging
		cfg        func(cfg *Config)
		ctx        func() (context.Context, context.CancelFunc)
		wantStatus int
	}{
		{name: "context deadline before headers",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), deadline)
			}},
		{name: "context deadline in the body", prefix: `{"result":`, wantStatus: 200,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), deadline)
			}},
		{name: "Config.Timeout without context deadline", cfg: func(cfg *Config) { cfg.Timeout = deadline },
			ctx: func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{name: "HTTP client Timeout", cfg: func(cfg *Config) { cfg.HTTPClient = &http.Client{Timeout: deadline} },
			ctx: func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := hangingServer(t, tt.prefix)
			cfg := Config{URL: srv.URL}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := newTestClient(t, cfg)
			ctx, cancel := tt.ctx()
			defer cancel()
			_, err := callWithin(t, func() (Value, error) { return c.Do(ctx, "GET", "k") })
			e := asError(t, err)
			if e.Kind != KindTimeout || e.StatusCode != tt.wantStatus {
				t.Errorf("kind, status = %v, %d; want timeout, %d (error %v)", e.Kind, e.StatusCode, tt.wantStatus, err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false", err)
			}
			if !strings.HasPrefix(err.Error(), "upstash: timeout error") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestCanceled(t *testing.T) {
	srv, arrived := hangingServer(t, "")
	c := newTestClient(t, Config{URL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := callWithin(t, func() (Value, error) { return c.Do(ctx, "GET", "k") })
	if e := asError(t, err); e.Kind != KindCanceled {
		t.Errorf("kind = %v, want canceled (error %v)", e.Kind, err)
	}
	if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v: want errors.Is Canceled and not DeadlineExceeded", err)
	}
}

// closedURL returns the URL of a server that no longer listens.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr
}

func TestTransportError(t *testing.T) {
	c := newTestClient(t, Config{URL: closedURL(t)})
	_, err := c.Do(context.Background(), "PING")
	e := asError(t, err)
	if e.Kind != KindTransport || e.StatusCode != 0 {
		t.Errorf("kind, status = %v, %d; want transport, 0 (error %v)", e.Kind, e.StatusCode, err)
	}
	if !strings.HasPrefix(err.Error(), "upstash: transport error: dial tcp") {
		t.Errorf("Error() = %q, want the dial failure", err.Error())
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("cause is not a *net.OpError: %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("transport error matches context.DeadlineExceeded")
	}
}

// TestTokenNeverInErrors collects errors from every path that could carry
// the token and checks that none does, however it is printed.
func TestTokenNeverInErrors(t *testing.T) {
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			msg, _ := json.Marshal("ERR you sent " + r.Header.Get("Authorization"))
			reply(status, `{"error":`+string(msg)+`}`)(w, r)
		}
	}
	echoItem := func(w http.ResponseWriter, r *http.Request) {
		msg, _ := json.Marshal("ERR you sent " + r.Header.Get("Authorization"))
		reply(200, `[{"error":`+string(msg)+`}]`)(w, r)
	}
	hang, _ := hangingServer(t, "")
	errs := map[string]error{}

	_, errs["New with token in URL"] = New(Config{URL: "https://x.upstash.io/?_token=" + testToken, Token: testToken})
	_, errs["New with bad URL"] = New(Config{URL: "::" + testToken, Token: testToken})
	_, errs["New with bad token"] = New(Config{URL: "https://x", Token: testToken + " "})
	_, errs["ConfigFromEnv"] = ConfigFromEnv(envOf(map[string]string{EnvURL: "https://u:" + testToken + "@x", EnvToken: testToken}))

	for name, h := range map[string]http.HandlerFunc{"401 echo": echo(401), "400 echo": echo(400), "500 echo": echo(500)} {
		c := newTestClient(t, Config{URL: startFake(t, h).URL})
		_, errs[name] = c.Do(context.Background(), "GET", "k")
	}
	c := newTestClient(t, Config{URL: startFake(t, echoItem).URL})
	res, err := c.Pipeline(context.Background(), []any{"GET", "k"})
	if err != nil {
		t.Fatal(err)
	}
	errs["pipeline item echo"] = res[0].Err

	c = newTestClient(t, Config{URL: closedURL(t)})
	_, errs["transport"] = c.Do(context.Background(), "GET", "k")

	c = newTestClient(t, Config{URL: hang.URL, Timeout: 20 * time.Millisecond})
	_, errs["timeout"] = callWithin(t, func() (Value, error) { return c.Do(context.Background(), "GET", "k") })

	for name, err := range errs {
		t.Run(name, func(t *testing.T) {
			if err == nil {
				t.Fatal("no error")
			}
			for e := err; e != nil; e = errors.Unwrap(e) {
				for _, text := range []string{e.Error(), fmt.Sprintf("%v|%+v|%#v|%s|%q", e, e, e, e, e)} {
					if strings.Contains(text, testToken) {
						t.Errorf("%T error text contains the token: %s", e, text)
					}
				}
			}
		})
	}
	if got := errs["401 echo"].Error(); got != "upstash: auth error (HTTP 401): ERR you sent Bearer [redacted]" {
		t.Errorf("401 error = %q", got)
	}
}

// TestConnectionReuse checks that successful and failed calls alike leave
// the connection reusable: the server sees one TCP connection.
func TestConnectionReuse(t *testing.T) {
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/pipeline" {
			reply(200, `[{"result":1},{"error":"ERR x"}]`)(w, r)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(raw), `"BAD"`):
			reply(400, `{"error":"ERR unknown command 'BAD'"}`)(w, r)
		case strings.Contains(string(raw), `"DENY"`):
			reply(401, `{"error":"Unauthorized"}`)(w, r)
		case strings.Contains(string(raw), `"FAIL"`):
			reply(503, `<html>`+strings.Repeat("busy ", 2000)+`</html>`)(w, r)
		default:
			reply(200, `{"result":"`+strings.Repeat("v", 10000)+`"}`)(w, r)
		}
	})
	c := newTestClient(t, Config{URL: f.URL})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := c.Do(ctx, "GET", "k"); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"BAD", "DENY", "FAIL"} {
			if _, err := c.Do(ctx, name); err == nil {
				t.Fatalf("%s: no error", name)
			}
		}
		if _, err := c.Pipeline(ctx, []any{"INCR", "n"}, []any{"X"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.conns.Load(); got != 1 {
		t.Errorf("server saw %d connections for 25 sequential calls, want 1", got)
	}
}

func TestConcurrentCalls(t *testing.T) {
	// The server echoes the second argument, so each caller can check that
	// it got its own reply (pooled buffers must never be shared).
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		var cmd []string
		_ = json.NewDecoder(r.Body).Decode(&cmd)
		msg, _ := json.Marshal(cmd[1])
		reply(200, `{"result":`+string(msg)+`}`)(w, r)
	})
	c := newTestClient(t, Config{URL: f.URL})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				want := "key-" + strconv.Itoa(g) + "-" + strconv.Itoa(i) + strings.Repeat("☃", i*10)
				v, err := c.Do(context.Background(), "GET", want)
				if err != nil {
					errs <- err
					return
				}
				if got, _ := v.String(); got != want {
					errs <- fmt.Errorf("got %q, want %q", got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCookieJarIgnored: a given client's jar would write cookies into the
// header map all requests share; the client does not use it.
func TestCookieJarIgnored(t *testing.T) {
	var cookies atomic.Int64
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Cookie") != "" {
			cookies.Add(1)
		}
		http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
		reply(200, `{"result":1}`)(w, r)
	})
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, Config{URL: f.URL, HTTPClient: &http.Client{Jar: jar}})
	for i := 0; i < 3; i++ {
		if _, err := c.Do(context.Background(), "PING"); err != nil {
			t.Fatal(err)
		}
	}
	if n := cookies.Load(); n != 0 {
		t.Errorf("%d requests carried a cookie, want 0", n)
	}
}

// TestHTTP2 checks that the default transport speaks HTTP/2 when the server
// offers it over TLS.
func TestHTTP2(t *testing.T) {
	var protos sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		reply(200, `{"result":"PONG"}`)(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c := newTestClient(t, Config{URL: srv.URL, HTTPClient: &http.Client{Transport: newTransport(&tls.Config{RootCAs: pool})}})
	v, err := c.Do(context.Background(), "PING")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := v.String(); s != "PONG" {
		t.Errorf("reply %#v, want PONG", v)
	}
	var got []string
	protos.Range(func(k, _ any) bool { got = append(got, k.(string)); return true })
	if diff := cmp.Diff([]string{"HTTP/2.0"}, got); diff != "" {
		t.Errorf("protocols (-want +got):\n%s", diff)
	}
}

func TestInvalidCalls(t *testing.T) {
	f := startFake(t, reply(200, `{"result":1}`))
	c := newTestClient(t, Config{URL: f.URL})
	var nilClient *Client
	var nilScript *Script
	//lint:ignore SA1012 a nil context is the point of the test
	var nilCtx context.Context
	tests := []struct {
		name string
		call func() error
	}{
		{"nil context", func() error { _, err := c.Do(nilCtx, "PING"); return err }},
		{"nil client", func() error { _, err := nilClient.Do(context.Background(), "PING"); return err }},
		{"nil client pipeline", func() error { _, err := nilClient.Pipeline(context.Background(), []any{"PING"}); return err }},
		{"nil script", func() error { _, err := nilScript.Run(context.Background(), c, nil); return err }},
		{"script with nil client", func() error { _, err := NewScript("return 1").Run(context.Background(), nil, nil); return err }},
		{"no command", func() error { _, err := c.Do(context.Background()); return err }},
		{"empty pipeline", func() error { _, err := c.Pipeline(context.Background()); return err }},
		{"bad multi-exec argument", func() error { _, err := c.MultiExec(context.Background(), []any{"SET", "k", struct{}{}}); return err }},
		{"bad script key", func() error {
			_, err := NewScript("return 1").Run(context.Background(), c, []string{"\xff"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("error = %v, want ErrInvalidArgument", err)
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("server got %d requests, want 0", n)
	}
}

func TestKindOfAndIsNoScript(t *testing.T) {
	noScript := &Error{Kind: KindCommand, StatusCode: 400, Message: "NOSCRIPT No matching script. Please use EVAL."}
	tests := []struct {
		name         string
		err          error
		wantKind     ErrorKind
		wantNoScript bool
	}{
		{"nil", nil, 0, false},
		{"plain", errors.New("x"), 0, false},
		{"noscript", noScript, KindCommand, true},
		{"wrapped noscript", fmt.Errorf("limiter: %w", noScript), KindCommand, true},
		{"other command error", &Error{Kind: KindCommand, Message: "ERR x"}, KindCommand, false},
		{"NOSCRIPT text but server kind", &Error{Kind: KindServer, Message: "NOSCRIPT"}, KindServer, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KindOf(tt.err); got != tt.wantKind {
				t.Errorf("KindOf = %v, want %v", got, tt.wantKind)
			}
			if got := IsNoScript(tt.err); got != tt.wantNoScript {
				t.Errorf("IsNoScript = %v, want %v", got, tt.wantNoScript)
			}
		})
	}
}

// TestCodecAllocations pins the client's own allocations per call, outside
// net/http: encoding the request into a pooled buffer and decoding replies.
func TestCodecAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	tests := []struct {
		name   string
		reply  string
		base64 bool
		want   float64
	}{
		{"status reply", `{"result":"OK"}`, false, 0},
		{"string", `{"result":"bar"}`, false, 1},
		{"integer", `{"result":42}`, false, 0},
		{"nil", `{"result":null}`, false, 0},
		{"base64 string", `{"result":"` + b64("value") + `"}`, true, 1},
		{"limiter-like array of integers", `{"result":[1,10,9,0,60000]}`, false, 1},
		{"array with strings", `{"result":[1,"9.5","60000"]}`, false, 3},
	}
	keys := []string{"bg:tier:premium:abc", "bg:global"}
	args := []string{"1", "10", "6", "60000"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := []byte(tt.reply)
			got := testing.AllocsPerRun(100, func() {
				buf := getBuffer()
				var err error
				buf.b, err = appendScriptCall(buf.b[:0], "EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", keys, nil, args)
				if err != nil {
					t.Fatal(err)
				}
				putBuffer(buf)
				if _, _, _, err := parseSingle(reply, tt.base64); err != nil {
					t.Fatal(err)
				}
			})
			if got != tt.want {
				t.Errorf("%v allocations per call, want %v", got, tt.want)
			}
		})
	}
}

func jsonDecode(r *http.Request, v any) error { return json.NewDecoder(r.Body).Decode(v) }

// TestNoTransportRetry: the server reads the second request on a reused
// keep-alive connection and hangs up without answering. net/http retries
// such a failure for idempotent requests; the client's POSTs must not be
// re-sent (the command may have run), so the server sees it once.
func TestNoTransportRetry(t *testing.T) {
	var calls atomic.Int64
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 2 {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.Close()
			}
			return
		}
		reply(200, `{"result":1}`)(w, r)
	})
	c := newTestClient(t, Config{URL: f.URL})
	ctx := context.Background()
	if _, err := c.Do(ctx, "INCR", "n"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Do(ctx, "INCR", "n")
	if e := asError(t, err); e.Kind != KindTransport {
		t.Errorf("kind = %v, want transport (error %v)", e.Kind, err)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("server saw %d requests, want 2 (no retry)", got)
	}
	if got := f.conns.Load(); got != 1 {
		t.Errorf("server saw %d connections, want 1 (the second call reused the first)", got)
	}
	// The next call dials afresh and succeeds.
	if _, err := c.Do(ctx, "INCR", "n"); err != nil {
		t.Errorf("call after the hang-up: %v", err)
	}
}

// stubTransport answers every request with a fixed 200 reply, without a
// network, reading and closing the request body as a transport must.
type stubTransport string

func (s stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	_ = r.Body.Close()
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(string(s))), ContentLength: int64(len(s)), Request: r}, nil
}

// TestArgumentsDoNotAllocate: passing variables (boxed into interfaces) to
// Do and Script.Run costs no more allocations than passing constants, and
// RunStrings no more than Run: the variadic arguments do not escape.
func TestArgumentsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	c := newTestClient(t, Config{URL: "http://upstash.invalid", HTTPClient: &http.Client{Transport: stubTransport(`{"result":[1,2]}`)}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	s := NewScript("return 1")
	key, n, f := strings.Repeat("k", 40), int64(600000), 1.5
	keys := []string{key, key + "2"}
	measure := func(call func() error) float64 {
		return testing.AllocsPerRun(200, func() {
			if err := call(); err != nil {
				t.Fatal(err)
			}
		})
	}
	constants := measure(func() error { _, err := c.Do(ctx, "EVALSHA", "x", "1", "k", "600000", "1.5"); return err })
	variables := measure(func() error { _, err := c.Do(ctx, "EVALSHA", "x", 1, key, n, f); return err })
	run := measure(func() error { _, err := s.Run(ctx, c, keys, n, f, key); return err })
	runStrings := measure(func() error { _, err := s.RunStrings(ctx, c, keys, []string{"600000", "1.5", key}); return err })
	// The stub allocates 3 (response, reader, closer). The client's own, in
	// Go 1.26: body copy, *bytes.Reader, io.NopCloser, *http.Request and the
	// reply's array: 5. The budget is 10.
	if own := constants - 3; own > 10 {
		t.Errorf("client allocates %v per call, want at most 10", own)
	}
	if variables != constants || run != constants || runStrings != constants {
		t.Errorf("allocations: constants %v, variables %v, Run %v, RunStrings %v; want all equal", constants, variables, run, runStrings)
	}
}
