package upstash_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bucketgate/bucketgate/internal/upstash"
)

// FuzzClientReply feeds arbitrary HTTP replies (status and body, plain or
// base64 mode) to every call of the client — Do, Pipeline, MultiExec and
// Script.Run — through a fake transport. FuzzParseSingle (decode_test.go)
// covers the JSON parser itself; this target covers what the client builds
// on it: status handling, error construction and scrubbing, the reply size
// limit, NOSCRIPT handling and the Value accessors.
//
// Properties: no panic; a failure is a *upstash.Error of a known kind whose
// text is non-empty, bounded and free of the token; a reply over
// MaxReplyBytes is KindMalformed; every Value a call returns can be read
// with every accessor; a pipeline returns one Result per command, each
// either a Value or a KindCommand error.
func FuzzClientReply(f *testing.F) {
	seeds := []struct {
		status int
		body   string
	}{
		{200, `{"result":"OK"}`},
		{200, `{"result":[1,"YQ==",null,[2,"3.5"]]}`},
		{200, `[{"result":1},{"error":"ERR wrong type"},{"result":"eA=="}]`},
		{200, `[{"result":1},{"result":2}]`},
		{200, `{"error":"NOSCRIPT No matching script. Please use EVAL."}`},
		{200, `{"result":"not base64!"}`},
		{200, `{"result":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}`},
		{200, `{"result":1e400}`},
		{200, `{"result":-9223372036854775809}`},
		{200, `{"result":"\ud800"}`},
		{200, `{"result":1} trailing`},
		{400, `{"error":"ERR unknown command 'FOO'"}`},
		{401, `{"error":"WRONGPASS fuzz-token-1234567890 is invalid"}`},
		{500, `<html>Internal Server Error</html>`},
		{502, ``},
		{204, ``},
		{302, `{"result":"OK"}`},
		{200, strings.Repeat(`{"result":"`, 20)},
		{200, `{"result":"` + strings.Repeat("x", 5000) + `"}`},
	}
	for _, s := range seeds {
		f.Add(uint16(s.status), []byte(s.body), false)
		f.Add(uint16(s.status), []byte(s.body), true)
	}
	const token = "fuzz-token-1234567890"
	const maxReply = 4096
	f.Fuzz(func(t *testing.T, status uint16, body []byte, b64 bool) {
		code := int(status)%500 + 100 // 100..599
		var requests atomic.Int64
		hc := &http.Client{Transport: fuzzRoundTrip(func(req *http.Request) (*http.Response, error) {
			requests.Add(1)
			if req.Body != nil {
				_, _ = io.Copy(io.Discard, req.Body)
				_ = req.Body.Close()
			}
			return &http.Response{
				StatusCode:    code,
				Header:        http.Header{"Content-Type": {"application/json"}},
				Body:          io.NopCloser(bytes.NewReader(body)),
				ContentLength: int64(len(body)),
				Request:       req,
			}, nil
		})}
		c, err := upstash.New(upstash.Config{URL: "http://upstash.invalid", Token: token, Base64: b64, MaxReplyBytes: maxReply, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		checkErr := func(what string, err error) {
			t.Helper()
			var ue *upstash.Error
			if !errors.As(err, &ue) {
				t.Fatalf("%s: %T %v is not an *upstash.Error", what, err, err)
			}
			if ue.Kind < upstash.KindAuth || ue.Kind > upstash.KindCanceled {
				t.Fatalf("%s: unknown kind %d", what, ue.Kind)
			}
			msg := err.Error()
			if msg == "" || strings.Contains(msg, token) {
				t.Fatalf("%s: error text %q is empty or holds the token", what, msg)
			}
			if len(msg) > 1024 {
				t.Fatalf("%s: error text of %d bytes", what, len(msg))
			}
			if len(body) > maxReply && ue.Kind != upstash.KindMalformed {
				t.Fatalf("%s: a reply of %d bytes gave %v, want KindMalformed", what, len(body), ue.Kind)
			}
		}

		v, err := c.Do(ctx, "GET", "k")
		if err != nil {
			checkErr("Do", err)
		} else {
			fuzzWalk(t, v, 0)
		}

		for _, call := range []struct {
			name string
			fn   func(context.Context, ...[]any) ([]upstash.Result, error)
		}{{"Pipeline", c.Pipeline}, {"MultiExec", c.MultiExec}} {
			res, err := call.fn(ctx, []any{"GET", "a"}, []any{"GET", "b"}, []any{"GET", "c"})
			if err != nil {
				checkErr(call.name, err)
				continue
			}
			if len(res) != 3 {
				t.Fatalf("%s: %d results for 3 commands", call.name, len(res))
			}
			for _, r := range res {
				if r.Err != nil {
					checkErr(call.name+" item", r.Err)
					if upstash.KindOf(r.Err) != upstash.KindCommand {
						t.Fatalf("%s: item error of kind %v", call.name, upstash.KindOf(r.Err))
					}
					continue
				}
				fuzzWalk(t, r.Value, 0)
			}
		}

		before := requests.Load()
		v, err = upstash.NewScript("return 1").Run(ctx, c, []string{"k"}, "a", 1)
		sent := requests.Load() - before
		if err != nil {
			checkErr("Script.Run", err)
		} else {
			fuzzWalk(t, v, 0)
		}
		if sent != 1 && !(sent == 2 && bytes.Contains(body, []byte("NOSCRIPT"))) {
			t.Fatalf("Script.Run sent %d requests", sent)
		}
	})
}

type fuzzRoundTrip func(*http.Request) (*http.Response, error)

func (f fuzzRoundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// fuzzWalk reads v with every accessor, recursively.
func fuzzWalk(t *testing.T, v upstash.Value, depth int) {
	t.Helper()
	if depth > 1000 {
		t.Fatal("reply nested deeper than the parser allows")
	}
	_ = v.Type()
	_ = v.IsNil()
	_, _ = v.String()
	_, _ = v.Bytes()
	_, _ = v.Int()
	_, _ = v.Float()
	_ = v.GoString()
	if !v.Equal(v) {
		t.Fatalf("%#v is not Equal to itself", v)
	}
	arr, err := v.Array()
	if err != nil {
		if v.Type() == upstash.TypeArray {
			t.Fatalf("Array() of an array: %v", err)
		}
		return
	}
	for _, e := range arr {
		fuzzWalk(t, e, depth+1)
	}
}
