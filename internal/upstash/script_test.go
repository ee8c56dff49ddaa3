package upstash

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestScriptSHA1(t *testing.T) {
	// Hashes from `printf '%s' SRC | sha1sum`.
	tests := []struct{ src, want string }{
		{"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
		{"return 1", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"},
		{`return redis.call("GET", KEYS[1])`, "d1ad8397c172dc0a63e271f0c4c4250ca8d5d1fb"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			if got := NewScript(tt.src).SHA1(); got != tt.want {
				t.Errorf("SHA1() = %s, want %s", got, tt.want)
			}
		})
	}
}

// scriptServer plays Redis' script cache: EVALSHA of an unknown hash gets
// NOSCRIPT, EVAL caches the script, SCRIPT FLUSH empties the cache. A run
// returns [KEYS[1], 1]. evalReply overrides EVAL's answer.
func scriptServer(t *testing.T, evalReply http.HandlerFunc) *fakeServer {
	t.Helper()
	var mu sync.Mutex
	cached := map[string]bool{}
	return startFake(t, func(w http.ResponseWriter, r *http.Request) {
		var f []string
		_ = jsonDecode(r, &f)
		mu.Lock()
		defer mu.Unlock()
		switch f[0] {
		case "EVALSHA":
			if !cached[f[1]] {
				reply(400, `{"error":"NOSCRIPT No matching script. Please use EVAL."}`)(w, r)
				return
			}
			reply(200, `{"result":["`+f[3]+`",1]}`)(w, r)
		case "EVAL":
			if evalReply != nil {
				evalReply(w, r)
				return
			}
			cached[NewScript(f[1]).SHA1()] = true
			reply(200, `{"result":["`+f[3]+`",1]}`)(w, r)
		case "SCRIPT":
			clear(cached)
			reply(200, `{"result":"OK"}`)(w, r)
		default:
			reply(400, `{"error":"ERR unknown command"}`)(w, r)
		}
	})
}

func jsonDecode(r *http.Request, v any) error { return json.NewDecoder(r.Body).Decode(v) }

func TestScriptNoScriptFallback(t *testing.T) {
	srv := scriptServer(t, nil)
	c := newTestClient(t, Config{URL: srv.URL})
	s := NewScript("return {KEYS[1], 1}")
	ctx := context.Background()
	run := func(i int) {
		t.Helper()
		var got []any
		if err := s.Run(ctx, c, &got, []string{"k"}, 10); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if diff := cmp.Diff([]any{"k", 1.0}, got); diff != "" {
			t.Errorf("run %d (-want +got):\n%s", i, diff)
		}
	}
	for i := range 3 {
		run(i)
	}
	if err := c.Do(ctx, nil, "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	run(3)
	run(4)
	wantCmds := []string{"EVALSHA", "EVAL", "EVALSHA", "EVALSHA", "SCRIPT", "EVALSHA", "EVAL", "EVALSHA"}
	if diff := cmp.Diff(wantCmds, srv.commandNames()); diff != "" {
		t.Errorf("commands sent (-want +got):\n%s", diff)
	}
	// EVAL carries the source and the same keys and arguments.
	reqs := srv.requests()
	if diff := cmp.Diff([]any{"EVAL", "return {KEYS[1], 1}", "1", "k", "10"}, reqs[1].Body); diff != "" {
		t.Errorf("EVAL body (-want +got):\n%s", diff)
	}
}

func TestScriptFallbackHappensOnce(t *testing.T) {
	tests := []struct {
		name      string
		evalReply http.HandlerFunc
		wantKind  ErrorKind
		wantMsg   string
	}{
		{"EVAL answers NOSCRIPT too", reply(400, `{"error":"NOSCRIPT still"}`), KindCommand, "NOSCRIPT still"},
		{"EVAL fails on the server", reply(502, ``), KindServer, "Bad Gateway"},
		{"EVAL script error", reply(400, `{"error":"ERR user_script:1: boom"}`), KindCommand, "ERR user_script:1: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := scriptServer(t, tt.evalReply)
			c := newTestClient(t, Config{URL: srv.URL})
			err := NewScript("return 1").Run(context.Background(), c, nil, []string{"k"})
			e := asError(t, err)
			if e.Kind != tt.wantKind || e.Message != tt.wantMsg {
				t.Errorf("error = %v, want kind %v message %q", err, tt.wantKind, tt.wantMsg)
			}
			if diff := cmp.Diff([]string{"EVALSHA", "EVAL"}, srv.commandNames()); diff != "" {
				t.Errorf("commands sent (-want +got):\n%s", diff)
			}
		})
	}
}

// TestScriptNoRetryOnOtherErrors: only NOSCRIPT leads to EVAL; any other
// failure of EVALSHA (the script may have run) is returned as is.
func TestScriptNoRetryOnOtherErrors(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		wantKind ErrorKind
	}{
		{"script error", reply(400, `{"error":"ERR Error running script: boom"}`), KindCommand},
		{"NOSCRIPT text in a server error", reply(500, `{"error":"NOSCRIPT"}`), KindServer},
		{"server error", reply(500, `{"error":"internal"}`), KindServer},
		{"unauthorized", reply(401, `{"error":"Unauthorized"}`), KindAuth},
		{"garbage", reply(200, `nope`), KindMalformed},
		{"result of the wrong type", reply(200, `{"result":"OK"}`), KindMalformed},
		{"connection dropped", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}, KindTransport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startFake(t, tt.handler)
			c := newTestClient(t, Config{URL: srv.URL})
			var out []int64
			err := NewScript("return 1").Run(context.Background(), c, &out, nil)
			if e := asError(t, err); e.Kind != tt.wantKind {
				t.Errorf("kind = %v, want %v (error %v)", e.Kind, tt.wantKind, err)
			}
			if diff := cmp.Diff([]string{"EVALSHA"}, srv.commandNames()); diff != "" {
				t.Errorf("commands sent (-want +got):\n%s", diff)
			}
		})
	}
}
