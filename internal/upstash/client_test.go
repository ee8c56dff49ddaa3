package upstash

import (
	"context"
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
	Method, Path, Auth, ContentType string
	Body                            any // decoded JSON
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
		f.reqs = append(f.reqs, seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
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
func callWithin(t *testing.T, call func() error) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- call() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("call did not return within 10 s")
	}
	return nil
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
	f := startFake(t, reply(200, `{"result":"OK"}`))
	script := NewScript("return 1")
	const sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
	auth := "Bearer " + testToken
	tests := []struct {
		name string
		call func(c *Client) error
		want any
	}{
		{"do", func(c *Client) error { return c.Do(context.Background(), nil, "SET", "user:☃ 1", "v", "PX", 1500) },
			[]any{"SET", "user:☃ 1", "v", "PX", "1500"}},
		{"bytes and every integer type", func(c *Client) error {
			return c.Do(context.Background(), nil, "X", []byte("b<&>"), int8(-8), int16(-16), int32(-32), int64(-1<<63),
				uint(1), uint8(8), uint16(16), uint32(32), uint64(1<<64-1))
		}, []any{"X", "b<&>", "-8", "-16", "-32", "-9223372036854775808", "1", "8", "16", "32", "18446744073709551615"}},
		{"control characters and quotes", func(c *Client) error { return c.Do(context.Background(), nil, "SET", "k", "\x00\n\"\\\u2028") },
			[]any{"SET", "k", "\x00\n\"\\\u2028"}},
		{"script", func(c *Client) error {
			return script.Run(context.Background(), c, nil, []string{"a", "b"}, 15, "x")
		}, []any{"EVALSHA", sha, "2", "a", "b", "15", "x"}},
		{"script without keys", func(c *Client) error { return script.Run(context.Background(), c, nil, nil) },
			[]any{"EVALSHA", sha, "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, Config{URL: f.URL})
			before := len(f.requests())
			if err := tt.call(c); err != nil {
				t.Fatal(err)
			}
			reqs := f.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			want := seen{"POST", "/", auth, "application/json", tt.want}
			if diff := cmp.Diff(want, reqs[0]); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeInto: the result is decoded as json.Unmarshal would into the
// value out points to.
func TestDecodeInto(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name  string
		reply string
		out   func() any // a fresh pointer
		want  any        // what it points to afterwards
	}{
		{"string", `{"result":"OK"}`, func() any { return new(string) }, "OK"},
		{"integer", `{"result":42}`, func() any { return new(int64) }, int64(42)},
		{"integers", `{"result":[1,200,199,0,500]}`, func() any { return new([]int64) }, []int64{1, 200, 199, 0, 500}},
		{"largest int64", `{"result":9223372036854775807}`, func() any { return new(int64) }, int64(9223372036854775807)},
		{"strings and nil", `{"result":["a",null,"☃"]}`, func() any { return new([]*string) }, []*string{str("a"), nil, str("☃")}},
		{"anything", `{"result":[1,["x",[]],null,"2"]}`, func() any { return new(any) }, []any{1.0, []any{"x", []any{}}, nil, "2"}},
		{"raw elements", `{"result":[1,"x"]}`, func() any { return new([]json.RawMessage) }, []json.RawMessage{json.RawMessage(`1`), json.RawMessage(`"x"`)}},
		{"null into a string leaves it", `{"result":null}`, func() any { s := "before"; return &s }, "before"},
		{"null into a pointer", `{"result":null}`, func() any { p := str("before"); return &p }, (*string)(nil)},
		{"null into a slice", `{"result":null}`, func() any { s := []int64{1}; return &s }, []int64(nil)},
		{"other members ignored", `{"result":7,"extra":{"a":1}}`, func() any { return new(int) }, 7},
		{"white space", " \n{ \"result\" :\t[ 1 ] }\n", func() any { return new([]int) }, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, Config{URL: startFake(t, reply(200, tt.reply)).URL})
			out := tt.out()
			if err := c.Do(context.Background(), out, "GET", "k"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, deref(out)); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			if err := c.Do(context.Background(), nil, "GET", "k"); err != nil {
				t.Errorf("nil out: %v", err)
			}
		})
	}
}

// deref returns what p points to.
func deref(p any) any {
	switch p := p.(type) {
	case *string:
		return *p
	case **string:
		return *p
	case *int:
		return *p
	case *int64:
		return *p
	case *[]int:
		return *p
	case *[]int64:
		return *p
	case *[]*string:
		return *p
	case *[]json.RawMessage:
		return *p
	case *any:
		return *p
	}
	panic(fmt.Sprintf("deref: add %T", p))
}

func TestStatusErrors(t *testing.T) {
	other := startFake(t, reply(200, `{"result":"OK"}`))
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		want     Error
		wantText string
	}{
		{"400 command error", reply(400, `{"error":"ERR wrong number of arguments for 'get' command"}`),
			Error{Kind: KindCommand, StatusCode: 400, Message: "ERR wrong number of arguments for 'get' command"},
			"upstash: command error (HTTP 400): ERR wrong number of arguments for 'get' command"},
		{"error in a 200 reply", reply(200, `{"error":"ERR x","result":1}`),
			Error{Kind: KindCommand, StatusCode: 200, Message: "ERR x"}, "upstash: command error: ERR x"},
		{"400 without JSON", reply(400, `bad`), Error{Kind: KindCommand, StatusCode: 400, Message: "Bad Request"}, ""},
		{"401", reply(401, `{"error":"Unauthorized"}`), Error{Kind: KindAuth, StatusCode: 401, Message: "Unauthorized"},
			"upstash: auth error (HTTP 401): Unauthorized"},
		{"403", reply(403, ``), Error{Kind: KindAuth, StatusCode: 403, Message: "Forbidden"}, ""},
		{"404", reply(404, `404 page not found`), Error{Kind: KindCommand, StatusCode: 404, Message: "Not Found"}, ""},
		{"500", reply(500, `{"error":"internal error"}`), Error{Kind: KindServer, StatusCode: 500, Message: "internal error"},
			"upstash: server error (HTTP 500): internal error"},
		{"502 HTML", reply(502, `<html><body>Bad gateway</body></html>`), Error{Kind: KindServer, StatusCode: 502, Message: "Bad Gateway"}, ""},
		{"503 with a non-string error", reply(503, `{"error":5}`), Error{Kind: KindServer, StatusCode: 503, Message: "Service Unavailable"}, ""},
		{"204", reply(204, ``), Error{Kind: KindMalformed, StatusCode: 204, Message: "unexpected HTTP status"}, ""},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/", http.StatusTemporaryRedirect)
		}, Error{Kind: KindMalformed, StatusCode: 307, Message: "unexpected HTTP status"}, ""},
		{"long message bounded", reply(400, `{"error":"ERR `+strings.Repeat("x", 2000)+`"}`),
			Error{Kind: KindCommand, StatusCode: 400, Message: "ERR " + strings.Repeat("x", maxMessage-4) + "…"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, Config{URL: startFake(t, tt.handler).URL})
			var out int
			err := c.Do(context.Background(), &out, "GET", "k")
			e := asError(t, err)
			if diff := cmp.Diff(tt.want, *e, cmp.AllowUnexported(Error{})); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if tt.wantText != "" && err.Error() != tt.wantText {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.wantText)
			}
			if out != 0 {
				t.Errorf("out = %d after an error, want it untouched", out)
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
		out      any
		maxReply int64
		wantMsg  string
	}{
		{name: "garbage", handler: reply(200, `<html>hello</html>`), wantMsg: "reply is not valid JSON (at byte 1)"},
		{name: "empty body", handler: reply(200, ``), wantMsg: "reply is not valid JSON (at byte 0)"},
		{name: "bad JSON", handler: reply(200, `{"result":[1,}`), wantMsg: "reply is not valid JSON (at byte 14)"},
		{name: "trailing data", handler: reply(200, `{"result":1} {}`), wantMsg: "reply is not valid JSON"},
		{name: "truncated with Content-Length", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, `{"result":"abc`)
		}, wantMsg: "reply truncated"},
		{name: "truncated JSON", handler: reply(200, `{"result":"abc`), wantMsg: "reply is not valid JSON"},
		{name: "oversized with Content-Length", handler: reply(200, big), maxReply: 64, wantMsg: "reply exceeds 64 bytes"},
		{name: "oversized chunked", handler: func(w http.ResponseWriter, _ *http.Request) {
			for range 10 {
				_, _ = io.WriteString(w, strings.Repeat(" ", 20))
				w.(http.Flusher).Flush()
			}
		}, maxReply: 64, wantMsg: "reply exceeds 64 bytes"},
		{name: "one byte over the limit", handler: reply(200, `{"result":"`+strings.Repeat("x", 64-13)+`"} `), maxReply: 64, wantMsg: "reply exceeds 64 bytes"},
		{name: "oversized error reply", handler: reply(400, big), maxReply: 64, wantMsg: "reply exceeds 64 bytes"},
		{name: "object without result or error", handler: reply(200, `{"status":"ok"}`), wantMsg: `reply has neither "result" nor "error"`},
		{name: "array for one command", handler: reply(200, `[{"result":1}]`), wantMsg: "reply is not a JSON object"},
		{name: "error that is not a string", handler: reply(200, `{"error":["x"]}`), wantMsg: `reply's "error" member is not a string`},
		{name: "string for an integer", handler: reply(200, `{"result":"OK"}`), out: new(int64),
			wantMsg: "result does not decode into *int64: a JSON string where int64 is expected"},
		{name: "fraction for an integer", handler: reply(200, `{"result":[1,1.5]}`), out: new([]int64),
			wantMsg: "result does not decode into *[]int64: a JSON number where int64 is expected"},
		{name: "overflow", handler: reply(200, `{"result":300}`), out: new(uint8),
			wantMsg: "result does not decode into *uint8: a JSON number where uint8 is expected"},
		{name: "array for a struct field", handler: reply(200, `{"result":{"n":[1]}}`), out: new(struct{ N int }),
			wantMsg: "result does not decode into *struct { N int }: a JSON array where int is expected (field N)"},
		{name: "failing Unmarshaler", handler: reply(200, `{"result":"not a time 123"}`), out: new(time.Time),
			wantMsg: "result does not decode into *time.Time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, Config{URL: startFake(t, tt.handler).URL, MaxReplyBytes: tt.maxReply})
			err := c.Do(context.Background(), tt.out, "PING")
			e := asError(t, err)
			if e.Kind != KindMalformed {
				t.Errorf("kind = %v, want malformed (error %v)", e.Kind, err)
			}
			if !strings.HasPrefix(e.Message, tt.wantMsg) {
				t.Errorf("message = %q, want it to start with %q", e.Message, tt.wantMsg)
			}
			// The reply's content stays out of the error: only its shape.
			for _, secret := range []string{"1.5", "300", "hello", "not a time", "123"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q quotes the reply (%q)", err, secret)
				}
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
			var got string
			if err := c.Do(context.Background(), &got, "GET", "k"); err != nil {
				t.Fatal(err)
			}
			if got != want {
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
	withDeadline := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), deadline)
	}
	noDeadline := func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }
	tests := []struct {
		name       string
		prefix     string // body bytes sent before hanging
		cfg        func(cfg *Config)
		ctx        func() (context.Context, context.CancelFunc)
		wantStatus int
	}{
		{name: "context deadline before headers", ctx: withDeadline},
		{name: "context deadline in the body", prefix: `{"result":`, wantStatus: 200, ctx: withDeadline},
		{name: "Config.Timeout without context deadline", cfg: func(cfg *Config) { cfg.Timeout = deadline }, ctx: noDeadline},
		{name: "HTTP client Timeout", cfg: func(cfg *Config) { cfg.HTTPClient = &http.Client{Timeout: deadline} }, ctx: noDeadline},
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
			err := callWithin(t, func() error { return c.Do(ctx, nil, "GET", "k") })
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
	err := callWithin(t, func() error { return c.Do(ctx, nil, "GET", "k") })
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
	err := c.Do(context.Background(), nil, "PING")
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
// the token and checks that none does, however it is printed, not even a
// prefix of it.
func TestTokenNeverInErrors(t *testing.T) {
	echo := func(status int, pad int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			msg, _ := json.Marshal("ERR " + strings.Repeat(" ", pad) + "you sent " + r.Header.Get("Authorization") + " twice: " + r.Header.Get("Authorization"))
			reply(status, `{"error":`+string(msg)+`}`)(w, r)
		}
	}
	hang, _ := hangingServer(t, "")
	errs := map[string]error{}

	_, errs["New with token in URL"] = New(Config{URL: "https://x.upstash.io/?_token=" + testToken, Token: testToken})
	_, errs["New with bad URL"] = New(Config{URL: "::" + testToken, Token: testToken})
	_, errs["New with bad token"] = New(Config{URL: "https://x", Token: testToken + " "})
	_, errs["ConfigFromEnv"] = ConfigFromEnv(envOf(map[string]string{EnvURL: "https://u:" + testToken + "@x", EnvToken: testToken}))

	// The echo puts "Bearer " and the token at byte 500 of the message, so
	// that the token straddles the 512-byte cut.
	straddle := maxMessage - 12 - len("ERR you sent Bearer ")
	for name, h := range map[string]http.HandlerFunc{
		"401 echo": echo(401, 0), "400 echo": echo(400, 0), "500 echo": echo(500, 0), "200 error echo": echo(200, 0),
		"echo straddling the cut": echo(400, straddle),
	} {
		c := newTestClient(t, Config{URL: startFake(t, h).URL})
		errs[name] = c.Do(context.Background(), nil, "GET", "k")
	}
	c := newTestClient(t, Config{URL: closedURL(t)})
	errs["transport"] = c.Do(context.Background(), nil, "GET", "k")

	c = newTestClient(t, Config{URL: hang.URL, Timeout: 20 * time.Millisecond})
	errs["timeout"] = callWithin(t, func() error { return c.Do(context.Background(), nil, "GET", "k") })

	c = newTestClient(t, Config{URL: startFake(t, reply(200, `{"result":"`+testToken+`"}`)).URL})
	errs["result not decoding"] = c.Do(context.Background(), new(int), "GET", "k")

	for name, err := range errs {
		t.Run(name, func(t *testing.T) {
			if err == nil {
				t.Fatal("no error")
			}
			for e := err; e != nil; e = errors.Unwrap(e) {
				for _, text := range []string{e.Error(), fmt.Sprintf("%v|%+v|%#v|%s|%q", e, e, e, e, e)} {
					if strings.Contains(text, testToken[:8]) {
						t.Errorf("%T error text contains the token or its prefix: %s", e, text)
					}
				}
			}
		})
	}
	if got, want := errs["401 echo"].Error(), "upstash: auth error (HTTP 401): ERR you sent Bearer [redacted] twice: Bearer [redacted]"; got != want {
		t.Errorf("401 error = %q, want %q", got, want)
	}
}

func TestScrub(t *testing.T) {
	c := &Client{token: testToken}
	pad := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name, msg, want string
	}{
		{"short", "ERR x", "ERR x"},
		{"token", "ERR " + testToken + "!", "ERR [redacted]!"},
		{"at the limit", pad(maxMessage), pad(maxMessage)},
		{"over the limit", pad(maxMessage + 1), pad(maxMessage) + "…"},
		// Cut first, this would keep the token's first 12 bytes.
		{"token straddling the cut", pad(maxMessage-12) + testToken + pad(100), pad(maxMessage-12) + "[redacted]" + "xx" + "…"},
		{"token past the cut", pad(maxMessage) + testToken, pad(maxMessage) + "…"},
		{"rune straddling the cut", pad(maxMessage-1) + "☃", pad(maxMessage-1) + "…"},
		{"invalid UTF-8", "ERR \xff", "ERR \uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.scrub(tt.msg); got != tt.want {
				t.Errorf("scrub = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestConnectionReuse checks that successful and failed calls alike leave
// the connection reusable (bodies read to the end): the server sees one
// TCP connection for all of them.
func TestConnectionReuse(t *testing.T) {
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(raw), `"BAD"`):
			reply(400, `{"error":"ERR unknown command 'BAD'"}`)(w, r)
		case strings.Contains(string(raw), `"DENY"`):
			reply(401, `{"error":"Unauthorized"}`)(w, r)
		case strings.Contains(string(raw), `"FAIL"`):
			reply(503, `<html>`+strings.Repeat("busy ", 2000)+`</html>`)(w, r)
		case strings.Contains(string(raw), `"EVALSHA"`):
			reply(400, `{"error":"NOSCRIPT No matching script. Please use EVAL."}`)(w, r)
		case strings.Contains(string(raw), `"EVAL"`):
			reply(200, `{"result":[1,2,3]}`)(w, r)
		default:
			reply(200, `{"result":"`+strings.Repeat("v", 10000)+`"}`)(w, r)
		}
	})
	c := newTestClient(t, Config{URL: f.URL})
	ctx := context.Background()
	s := NewScript("return {1,2,3}")
	calls := 0
	for range 5 {
		var v string
		if err := c.Do(ctx, &v, "GET", "k"); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"BAD", "DENY", "FAIL"} {
			if err := c.Do(ctx, nil, name); err == nil {
				t.Fatalf("%s: no error", name)
			}
		}
		var n int // the result does not decode into it: the body was read all the same
		if err := c.Do(ctx, &n, "GET", "k"); KindOf(err) != KindMalformed {
			t.Fatalf("GET into an int: %v, want a malformed error", err)
		}
		if err := s.Run(ctx, c, nil, nil); err != nil { // EVALSHA, EVAL
			t.Fatal(err)
		}
		calls += 7
	}
	if got := len(f.requests()); got != calls {
		t.Fatalf("server saw %d requests, want %d", got, calls)
	}
	if got := f.conns.Load(); got != 1 {
		t.Errorf("server saw %d connections for %d sequential calls, want 1", got, calls)
	}
}

func TestConcurrentCalls(t *testing.T) {
	// The server echoes the second argument, so each caller can check that
	// it got its own reply.
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		var cmd []string
		_ = json.NewDecoder(r.Body).Decode(&cmd)
		msg, _ := json.Marshal(cmd[1])
		reply(200, `{"result":`+string(msg)+`}`)(w, r)
	})
	c := newTestClient(t, Config{URL: f.URL})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				want := "key-" + strconv.Itoa(g) + "-" + strconv.Itoa(i) + strings.Repeat("☃", i*10)
				var got string
				if err := c.Do(context.Background(), &got, "GET", want); err != nil {
					errs <- err
					return
				}
				if got != want {
					errs <- fmt.Errorf("got %q, want %q", got, want)
					return
				}
			}
		})
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
	for range 3 {
		if err := c.Do(context.Background(), nil, "PING"); err != nil {
			t.Fatal(err)
		}
	}
	if n := cookies.Load(); n != 0 {
		t.Errorf("%d requests carried a cookie, want 0", n)
	}
}

// TestHTTP2 checks that the default transport, given RootCAs, speaks
// HTTP/2 when the server offers it over TLS, on one connection.
func TestHTTP2(t *testing.T) {
	var protos sync.Map
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		reply(200, `{"result":"PONG"}`)(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := newTestClient(t, Config{URL: srv.URL, RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
	for range 2 {
		var got string
		if err := c.Do(context.Background(), &got, "PING"); err != nil {
			t.Fatal(err)
		}
		if got != "PONG" {
			t.Errorf("reply %q, want PONG", got)
		}
	}
	var got []string
	protos.Range(func(k, _ any) bool { got = append(got, k.(string)); return true })
	if diff := cmp.Diff([]string{"HTTP/2.0"}, got); diff != "" {
		t.Errorf("protocols (-want +got):\n%s", diff)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("server saw %d connections for 2 calls, want 1", n)
	}
}

func TestInvalidCalls(t *testing.T) {
	f := startFake(t, reply(200, `{"result":1}`))
	c := newTestClient(t, Config{URL: f.URL})
	var nilClient *Client
	var nilScript *Script
	//lint:ignore SA1012 a nil context is the point of the test
	var nilCtx context.Context
	ctx := context.Background()
	s := NewScript("return 1")
	tests := []struct {
		name    string
		call    func() error
		wantMsg string
	}{
		{"nil context", func() error { return c.Do(nilCtx, nil, "PING") }, "nil context"},
		{"nil client", func() error { return nilClient.Do(ctx, nil, "PING") }, "nil client"},
		{"nil script", func() error { return nilScript.Run(ctx, c, nil, nil) }, "nil script"},
		{"script with nil client", func() error { return s.Run(ctx, nil, nil, nil) }, "nil client"},
		{"no command", func() error { return c.Do(ctx, nil) }, "no command given"},
		{"float argument", func() error { return c.Do(ctx, nil, "SET", "k", 1.5) },
			"argument 3 has type float64; want a string, []byte or an integer"},
		{"named integer type", func() error { return c.Do(ctx, nil, "PEXPIRE", "k", time.Second) }, "argument 3 has type time.Duration"},
		{"nil argument", func() error { return c.Do(ctx, nil, "GET", nil) }, "argument 2 has type <nil>"},
		{"struct argument", func() error { return c.Do(ctx, nil, "SET", "k", struct{}{}) }, "argument 3 has type struct {}"},
		{"invalid UTF-8 string", func() error { return c.Do(ctx, nil, "SET", "k\xff", "v") }, "argument 2 is not valid UTF-8"},
		{"invalid UTF-8 bytes", func() error { return c.Do(ctx, nil, "SET", "k", []byte{0xff}) }, "argument 3 is not valid UTF-8"},
		{"out not a pointer", func() error { var n int; return c.Do(ctx, n, "GET", "k") }, "out is a int, want nil or a non-nil pointer"},
		{"out a nil pointer", func() error { return c.Do(ctx, (*int)(nil), "GET", "k") }, "out is a *int, want nil or a non-nil pointer"},
		{"script out not a pointer", func() error { return s.Run(ctx, c, []int{}, nil) }, "out is a []int"},
		{"bad script key", func() error { return s.Run(ctx, c, nil, []string{"a", "\xff"}) }, "key 2 is not valid UTF-8"},
		{"bad script argument", func() error { return s.Run(ctx, c, nil, []string{"a"}, 1, 2.5) }, "argument 2 has type float64"},
		{"script source not UTF-8", func() error { return NewScript("return '\xff'").Run(ctx, c, nil, nil) }, "script source is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error = %v, want ErrInvalidArgument", err)
			}
			if want := "upstash: invalid argument: " + tt.wantMsg; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error = %q, want prefix %q", err, want)
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("server got %d requests, want 0", n)
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want ErrorKind
	}{
		{"nil", nil, 0},
		{"plain", errors.New("x"), 0},
		{"command", &Error{Kind: KindCommand, Message: "ERR x"}, KindCommand},
		{"wrapped", fmt.Errorf("limiter: %w", &Error{Kind: KindTimeout}), KindTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KindOf(tt.err); got != tt.want {
				t.Errorf("KindOf = %v, want %v", got, tt.want)
			}
		})
	}
}

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
	if err := c.Do(ctx, nil, "INCR", "n"); err != nil {
		t.Fatal(err)
	}
	err := c.Do(ctx, nil, "INCR", "n")
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
	if err := c.Do(ctx, nil, "INCR", "n"); err != nil {
		t.Errorf("call after the hang-up: %v", err)
	}
}
