package upstash_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bucketgate/bucketgate/internal/upstash"
)

// FuzzClientReply feeds arbitrary HTTP replies (status and body) to
// Client.Do and Script.Run, decoding into the kinds of values callers use,
// through a fake transport: status handling, the envelope, decoding into
// out, error construction and scrubbing, the reply size limit, NOSCRIPT.
//
// Properties: no panic; a failure is a *upstash.Error of a known kind whose
// text is non-empty, bounded and free of the token; a reply over
// MaxReplyBytes is KindMalformed; a success decodes the same result that
// json.Unmarshal finds in the body; NOSCRIPT costs exactly one EVAL.
func FuzzClientReply(f *testing.F) {
	seeds := []struct {
		status int
		body   string
	}{
		{200, `{"result":"OK"}`},
		{200, `{"result":[1,200,199,0,500]}`},
		{200, `{"result":[1,"3.5",null,[2]]}`},
		{200, `{"result":null}`},
		{200, `{"error":"NOSCRIPT No matching script. Please use EVAL."}`},
		{200, `{"error":5}`},
		{200, `{"result":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}`},
		{200, `{"result":1e400}`},
		{200, `{"result":-9223372036854775809}`},
		{200, `{"result":"\ud800"}`},
		{200, `{"result":1} trailing`},
		{200, `{"RESULT":1,"result":2}`},
		{400, `{"error":"ERR unknown command 'FOO'"}`},
		{400, `{"error":"NOSCRIPT No matching script."}`},
		{401, `{"error":"WRONGPASS fuzz-token-1234567890 is invalid"}`},
		{500, `<html>Internal Server Error</html>`},
		{502, ``},
		{204, ``},
		{302, `{"result":"OK"}`},
		{200, strings.Repeat(`{"result":"`, 20)},
		{200, `{"result":"` + strings.Repeat("x", 5000) + `"}`},
		{400, `{"error":"` + strings.Repeat("x", 500) + `fuzz-token-1234567890"}`},
	}
	for _, s := range seeds {
		f.Add(uint16(s.status), []byte(s.body))
	}
	const token = "fuzz-token-1234567890"
	const maxReply = 4096
	f.Fuzz(func(t *testing.T, status uint16, body []byte) {
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
		c, err := upstash.New(upstash.Config{URL: "http://upstash.invalid", Token: token, MaxReplyBytes: maxReply, HTTPClient: hc})
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
			// Nor a piece of it left by the bound on messages: the token's
			// prefix appears only where the server's message has it apart
			// from whole tokens.
			var reply struct{ Error string }
			_ = json.Unmarshal(body, &reply)
			if strings.Contains(msg, token[:8]) && !strings.Contains(strings.ReplaceAll(reply.Error, token, ""), token[:8]) {
				t.Fatalf("%s: error text %q holds a prefix of the token", what, msg)
			}
			if len(msg) > 1024 {
				t.Fatalf("%s: error text of %d bytes", what, len(msg))
			}
			if len(body) > maxReply && ue.Kind != upstash.KindMalformed {
				t.Fatalf("%s: a reply of %d bytes gave %v, want KindMalformed", what, len(body), ue.Kind)
			}
		}
		// A success must decode what json.Unmarshal finds in the body.
		checkOK := func(what string, got, fresh any) {
			t.Helper()
			var env struct{ Result json.RawMessage }
			if code != 200 || len(body) > maxReply || json.Unmarshal(body, &env) != nil || json.Unmarshal(env.Result, fresh) != nil {
				t.Fatalf("%s succeeded on status %d, body %q", what, code, body)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(fresh)
			if !bytes.Equal(g, w) {
				t.Fatalf("%s decoded %s, json.Unmarshal %s", what, g, w)
			}
		}

		if err := c.Do(ctx, nil, "GET", "k"); err != nil {
			checkErr("Do into nil", err)
		}
		var a any
		if err := c.Do(ctx, &a, "GET", "k"); err != nil {
			checkErr("Do into any", err)
		} else {
			checkOK("Do into any", a, new(any))
		}
		var s string
		if err := c.Do(ctx, &s, "GET", "k"); err != nil {
			checkErr("Do into string", err)
		} else {
			checkOK("Do into string", s, new(string))
		}

		before := requests.Load()
		var ints []int64
		err = upstash.NewScript("return 1").Run(ctx, c, &ints, []string{"k"}, "a", 1)
		sent := requests.Load() - before
		if err != nil {
			checkErr("Script.Run", err)
		} else {
			checkOK("Script.Run", ints, new([]int64))
		}
		// EVAL follows exactly when EVALSHA got a NOSCRIPT command error.
		var reply struct{ Error *string }
		noScript := json.Unmarshal(body, &reply) == nil && reply.Error != nil && strings.HasPrefix(*reply.Error, "NOSCRIPT") &&
			len(body) <= maxReply && (code == 200 || code >= 400 && code < 500 && code != 401 && code != 403)
		if want := map[bool]int64{false: 1, true: 2}[noScript]; sent != want {
			t.Fatalf("Script.Run sent %d requests, want %d", sent, want)
		}
	})
}

type fuzzRoundTrip func(*http.Request) (*http.Response, error)

func (f fuzzRoundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
