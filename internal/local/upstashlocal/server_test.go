package upstashlocal_test

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
)

func TestHTTP(t *testing.T) {
	const (
		wrongpass = `{"error":"WRONGPASS invalid or missing auth token"}`
		b64       = "base64"
	)
	tests := []struct {
		name       string
		setup      []string // JSON commands POSTed to / first; each must answer 200
		method     string   // default POST
		path       string   // default /
		headers    map[string]string
		body       string
		noBody     bool
		wantStatus int
		wantBody   string
		wantHeader map[string]string
		redisOnly  bool // the embedded store differs (TTL rounding)
	}{
		// One command in a JSON body.
		{name: "ping", body: `["PING"]`, wantStatus: 200, wantBody: `{"result":"PONG"}`},
		{name: "command name in any case", body: `["pInG"]`, wantStatus: 200, wantBody: `{"result":"PONG"}`},
		{name: "put works like post", method: "PUT", body: `["PING"]`, wantStatus: 200, wantBody: `{"result":"PONG"}`},
		{name: "null reply", body: `["GET","http:missing"]`, wantStatus: 200, wantBody: `{"result":null}`},
		{name: "integer reply", setup: []string{`["SET","http:int","41"]`}, body: `["INCR","http:int"]`, wantStatus: 200, wantBody: `{"result":42}`},
		{name: "array reply with nulls", setup: []string{`["SET","http:a1","x"]`}, body: `["MGET","http:a1","http:none"]`, wantStatus: 200, wantBody: `{"result":["x",null]}`},
		{name: "nested arrays", body: `["EVAL","return {1,{'a',{2}},'b'}",0]`, wantStatus: 200, wantBody: `{"result":[1,["a",[2]],"b"]}`},
		{name: "numbers are sent as written", setup: []string{`["SET","http:num",1.5]`}, body: `["GET","http:num"]`, wantStatus: 200, wantBody: `{"result":"1.5"}`},
		{name: "integer argument", body: `["INCRBY","http:by",10]`, wantStatus: 200, wantBody: `{"result":10}`},
		{name: "boolean argument", setup: []string{`["SET","http:bool",true]`}, body: `["GET","http:bool"]`, wantStatus: 200, wantBody: `{"result":"true"}`},
		{name: "html characters are not escaped", setup: []string{`["SET","http:html","<a&b>"]`}, body: `["GET","http:html"]`, wantStatus: 200, wantBody: `{"result":"<a&b>"}`},
		{name: "invalid utf-8 becomes U+FFFD", setup: []string{`["EVAL","return redis.call('SET', KEYS[1], string.char(104, 255, 105))",1,"http:bin"]`}, body: `["GET","http:bin"]`, wantStatus: 200, wantBody: `{"result":"h\ufffdi"}`},
		{name: "command error", setup: []string{`["SET","http:text","abc"]`}, body: `["INCR","http:text"]`, wantStatus: 400, wantBody: `{"error":"ERR value is not an integer or out of range"}`},
		{name: "wrong arity", body: `["GET"]`, wantStatus: 400, wantBody: `{"error":"ERR wrong number of arguments for 'get' command"}`},
		{name: "unknown command", body: `["NOPE","http:secret-key"]`, wantStatus: 400, wantBody: `{"error":"ERR Command is not available: 'NOPE'"}`},
		{name: "empty command name", body: `[""]`, wantStatus: 400, wantBody: `{"error":"ERR Command is not available: ''"}`},
		{name: "select is refused", body: `["SELECT",1]`, wantStatus: 400, wantBody: `{"error":"ERR Command is not available: 'SELECT'"}`},
		{name: "multi is refused", body: `["multi"]`, wantStatus: 400, wantBody: `{"error":"ERR Command is not available: 'MULTI'"}`},
		{name: "subscribe is refused", body: `["SUBSCRIBE","ch"]`, wantStatus: 400, wantBody: `{"error":"ERR Command is not available: 'SUBSCRIBE'"}`},
		{name: "noscript", body: `["EVALSHA","` + strings.Repeat("0", 40) + `",0]`, wantStatus: 400, wantBody: `{"error":"NOSCRIPT No matching script. Please use EVAL."}`},
		{name: "lua error reply", body: `["EVAL","return redis.error_reply('my failure')",0]`, wantStatus: 400, wantBody: `{"error":"my failure"}`},

		// Bad bodies.
		{name: "empty body", body: ``, wantStatus: 400, wantBody: `{"error":"ERR empty request body: send a command as a JSON array"}`},
		{name: "no body", noBody: true, wantStatus: 400, wantBody: `{"error":"ERR empty request body: send a command as a JSON array"}`},
		{name: "bad json", body: `["SET", "k" "v"]`, wantStatus: 400, wantBody: `{"error":"ERR request body is not valid JSON: syntax error at byte 13"}`},
		{name: "truncated json", body: `["SET", "k"`, wantStatus: 400, wantBody: `{"error":"ERR request body is not valid JSON: unexpected end of input"}`},
		{name: "trailing data", body: `["PING"] ["PING"]`, wantStatus: 400, wantBody: `{"error":"ERR request body is not valid JSON: data after the top-level value"}`},
		{name: "object body", body: `{"cmd":"PING"}`, wantStatus: 400, wantBody: `{"error":"ERR request body must be a JSON array: [command, arg1, ...], got an object"}`},
		{name: "string body", body: `"PING"`, wantStatus: 400, wantBody: `{"error":"ERR request body must be a JSON array: [command, arg1, ...], got a string"}`},
		{name: "empty command", body: `[]`, wantStatus: 400, wantBody: `{"error":"ERR empty command"}`},
		{name: "null argument", body: `["GET",null]`, wantStatus: 400, wantBody: `{"error":"ERR argument 2 must be a string or number, got null"}`},
		{name: "array argument", body: `["SET","k",["v"]]`, wantStatus: 400, wantBody: `{"error":"ERR argument 3 must be a string or number, got an array"}`},
		{name: "object argument", body: `["SET","k",{"v":1}]`, wantStatus: 400, wantBody: `{"error":"ERR argument 3 must be a string or number, got an object"}`},
		{name: "object as command name", body: `[{}]`, wantStatus: 400, wantBody: `{"error":"ERR command name 1 must be a string or number, got an object"}`},

		// Path style.
		{name: "path set", method: "GET", path: "/set/http:p1/v1", wantStatus: 200, wantBody: `{"result":"OK"}`},
		{name: "path get", method: "GET", setup: []string{`["SET","http:p2","v2"]`}, path: "/get/http:p2", wantStatus: 200, wantBody: `{"result":"v2"}`},
		{name: "path segments are url-decoded", method: "GET", setup: []string{`["SET","a/b c?","v3"]`}, path: "/get/a%2Fb%20c%3F", wantStatus: 200, wantBody: `{"result":"v3"}`},
		{name: "path unicode key", method: "GET", setup: []string{`["SET","ключ 🔑","v4"]`}, path: "/GET/%D0%BA%D0%BB%D1%8E%D1%87%20%F0%9F%94%91", wantStatus: 200, wantBody: `{"result":"v4"}`},
		{name: "path trailing slash", method: "GET", path: "/ping/", wantStatus: 200, wantBody: `{"result":"PONG"}`},
		{name: "path post body is the last argument", path: "/set/http:p5", body: `{"json": "value"}`, wantStatus: 200, wantBody: `{"result":"OK"}`},
		{name: "path post body read back", method: "GET", setup: []string{`["SET","http:p6","x"]`}, path: "/append/http:p6/yz", wantStatus: 200, wantBody: `{"result":3}`},
		{name: "path query parameters follow the body", path: "/set/http:p7?EX=100", body: "v", wantStatus: 200, wantBody: `{"result":"OK"}`},
		{name: "path query parameters applied", method: "GET", setup: []string{`["SET","http:p8","v","EX",50]`}, path: "/ttl/http:p8", wantStatus: 200, wantBody: `{"result":50}`, redisOnly: true},
		{name: "path flag parameter", method: "GET", setup: []string{`["SET","http:p9","old"]`}, path: "/set/http:p9/new?NX", wantStatus: 200, wantBody: `{"result":null}`},
		{name: "path unknown command", method: "GET", path: "/monitor", wantStatus: 400, wantBody: `{"error":"ERR Command is not available: 'MONITOR'"}`},
		{name: "head", method: "HEAD", path: "/ping", wantStatus: 200, wantBody: ``},
		{name: "get on root is an empty command", method: "GET", path: "/", wantStatus: 400, wantBody: `{"error":"ERR empty request body: send a command as a JSON array"}`},

		// Authentication.
		{name: "no token", headers: map[string]string{"Authorization": ""}, body: `["PING"]`, wantStatus: 401, wantBody: wrongpass},
		{name: "wrong token", headers: map[string]string{"Authorization": "Bearer " + testToken + "x"}, body: `["PING"]`, wantStatus: 401, wantBody: wrongpass},
		{name: "token prefix", headers: map[string]string{"Authorization": "Bearer " + testToken[:5]}, body: `["PING"]`, wantStatus: 401, wantBody: wrongpass},
		{name: "basic scheme", headers: map[string]string{"Authorization": "Basic " + testToken}, body: `["PING"]`, wantStatus: 401, wantBody: wrongpass},
		{name: "bearer scheme is case-insensitive", headers: map[string]string{"Authorization": "bearer " + testToken}, body: `["PING"]`, wantStatus: 200, wantBody: `{"result":"PONG"}`},
		{name: "token in query", method: "GET", headers: map[string]string{"Authorization": ""}, path: "/ping?_token=" + testToken, wantStatus: 200, wantBody: `{"result":"PONG"}`},
		{name: "wrong token in query", method: "GET", headers: map[string]string{"Authorization": ""}, path: "/ping?_token=nope", wantStatus: 401, wantBody: wrongpass},
		{name: "token in query is not an argument", setup: []string{`["SET","http:q1","v"]`}, method: "GET", headers: map[string]string{"Authorization": ""}, path: "/get/http:q1?_token=" + testToken, wantStatus: 200, wantBody: `{"result":"v"}`},
		{name: "unauthorized before bad body", headers: map[string]string{"Authorization": ""}, body: `not json`, wantStatus: 401, wantBody: wrongpass},

		// Methods.
		{name: "delete", method: "DELETE", path: "/get/k", wantStatus: 405, wantBody: `{"error":"ERR method not allowed: use GET, HEAD, POST or PUT"}`, wantHeader: map[string]string{"Allow": "GET, HEAD, POST, PUT"}},
		{name: "patch", method: "PATCH", body: `["PING"]`, wantStatus: 405, wantBody: `{"error":"ERR method not allowed: use GET, HEAD, POST or PUT"}`},
		{name: "get pipeline", method: "GET", path: "/pipeline", wantStatus: 405, wantBody: `{"error":"ERR method not allowed: this endpoint takes a POST or PUT with a JSON body"}`, wantHeader: map[string]string{"Allow": "POST, PUT"}},
		{name: "get multi-exec", method: "GET", path: "/multi-exec", wantStatus: 405, wantBody: `{"error":"ERR method not allowed: this endpoint takes a POST or PUT with a JSON body"}`},

		// Encodings and formats.
		{name: "base64 string", setup: []string{`["SET","http:e1","value"]`}, headers: map[string]string{"Upstash-Encoding": b64}, body: `["GET","http:e1"]`, wantStatus: 200, wantBody: `{"result":"dmFsdWU="}`},
		{name: "base64 keeps OK", headers: map[string]string{"Upstash-Encoding": b64}, body: `["SET","http:e2","OK"]`, wantStatus: 200, wantBody: `{"result":"OK"}`},
		{name: "base64 status reply", headers: map[string]string{"Upstash-Encoding": b64}, body: `["PING"]`, wantStatus: 200, wantBody: `{"result":"UE9ORw=="}`},
		{name: "trailing comma", body: `["MGET","http:e3","http:none",]`, wantStatus: 400, wantBody: `{"error":"ERR request body is not valid JSON: syntax error at byte 31"}`},
		{name: "base64 nested values", setup: []string{`["SET","http:e4","OK"]`}, headers: map[string]string{"Upstash-Encoding": b64}, body: `["MGET","http:e4","http:none"]`, wantStatus: 200, wantBody: `{"result":["T0s=",null]}`},
		{name: "base64 integers and nested", headers: map[string]string{"Upstash-Encoding": b64}, body: `["EVAL","return {1,{'a'}}",0]`, wantStatus: 200, wantBody: `{"result":[1,["YQ=="]]}`},
		{name: "base64 keeps errors plain", headers: map[string]string{"Upstash-Encoding": b64}, body: `["GET"]`, wantStatus: 400, wantBody: `{"error":"ERR wrong number of arguments for 'get' command"}`},
		{name: "base64 binary value is exact", setup: []string{`["EVAL","return redis.call('SET', KEYS[1], string.char(104, 255, 105))",1,"http:e5"]`}, headers: map[string]string{"Upstash-Encoding": b64}, body: `["GET","http:e5"]`, wantStatus: 200, wantBody: `{"result":"aP9p"}`},
		{name: "other encodings are plain", setup: []string{`["SET","http:e6","v"]`}, headers: map[string]string{"Upstash-Encoding": "gzip"}, body: `["GET","http:e6"]`, wantStatus: 200, wantBody: `{"result":"v"}`},
		{name: "json response format", headers: map[string]string{"Upstash-Response-Format": "json"}, body: `["PING"]`, wantStatus: 200, wantBody: `{"result":"PONG"}`},
		{name: "resp2 response format", headers: map[string]string{"Upstash-Response-Format": "resp2"}, body: `["PING"]`, wantStatus: 400, wantBody: `{"error":"ERR Upstash-Response-Format resp2 is not supported by upstash-local; use json"}`},
		{name: "unknown response format", headers: map[string]string{"Upstash-Response-Format": "xml"}, body: `["PING"]`, wantStatus: 400, wantBody: `{"error":"ERR unsupported Upstash-Response-Format: only json is allowed"}`},

		// Pipelines.
		{name: "pipeline", path: "/pipeline", body: `[["SET","http:pl1","1"],["INCR","http:pl1"],["GET","http:pl1"],["GET","http:none"]]`, wantStatus: 200, wantBody: `[{"result":"OK"},{"result":2},{"result":"2"},{"result":null}]`},
		{name: "pipeline with failing item", path: "/pipeline", body: `[["SET","http:pl2","x"],["INCR","http:pl2"],["NOPE"],["GET","http:pl2"]]`, wantStatus: 200, wantBody: `[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},{"error":"ERR Command is not available: 'NOPE'"},{"result":"x"}]`},
		{name: "pipeline with refused item", path: "/pipeline", body: `[["SELECT",2],["PING"]]`, wantStatus: 200, wantBody: `[{"error":"ERR Command is not available: 'SELECT'"},{"result":"PONG"}]`},
		{name: "pipeline base64", path: "/pipeline", headers: map[string]string{"Upstash-Encoding": b64}, body: `[["SET","http:pl3","v"],["GET","http:pl3"]]`, wantStatus: 200, wantBody: `[{"result":"OK"},{"result":"dg=="}]`},
		{name: "pipeline trailing slash", path: "/pipeline/", body: `[["PING"]]`, wantStatus: 200, wantBody: `[{"result":"PONG"}]`},
		{name: "pipeline empty", path: "/pipeline", body: `[]`, wantStatus: 400, wantBody: `{"error":"ERR empty pipeline: send at least one command"}`},
		{name: "pipeline of non-arrays", path: "/pipeline", body: `[["PING"],"PING"]`, wantStatus: 400, wantBody: `{"error":"ERR command 2 of the batch is not a JSON array (got a string)"}`},
		{name: "pipeline flat command", path: "/pipeline", body: `["PING"]`, wantStatus: 400, wantBody: `{"error":"ERR command 1 of the batch is not a JSON array (got a string)"}`},
		{name: "pipeline with empty command", path: "/pipeline", body: `[["PING"],[]]`, wantStatus: 400, wantBody: `{"error":"ERR empty command in command 2 of the batch"}`},
		{name: "pipeline with bad argument runs nothing", path: "/pipeline", body: `[["SET","http:pl4","v"],["GET",null]]`, wantStatus: 400, wantBody: `{"error":"ERR argument 2 in command 2 of the batch must be a string or number, got null"}`},
		{name: "pipeline object body", path: "/pipeline", body: `{}`, wantStatus: 400, wantBody: `{"error":"ERR request body must be a JSON array of commands, each a JSON array, got an object"}`},

		// Transactions.
		{name: "multi-exec", path: "/multi-exec", body: `[["SET","http:tx1","1"],["INCR","http:tx1"],["GET","http:tx1"]]`, wantStatus: 200, wantBody: `[{"result":"OK"},{"result":2},{"result":"2"}]`},
		{name: "multi-exec runtime error runs the rest", path: "/multi-exec", body: `[["SET","http:tx2","x"],["INCR","http:tx2"],["SET","http:tx2b","ran"],["GET","http:tx2b"]]`, wantStatus: 200, wantBody: `[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},{"result":"OK"},{"result":"ran"}]`},
		{name: "multi-exec queue error discards all", path: "/multi-exec", body: `[["SET","http:tx3","v"],["GET"]]`, wantStatus: 400, wantBody: `{"error":"ERR wrong number of arguments for 'get' command"}`},
		{name: "multi-exec discarded wrote nothing", method: "GET", path: "/exists/http:tx3", wantStatus: 200, wantBody: `{"result":0}`},
		{name: "multi-exec unknown command discards all", path: "/multi-exec", body: `[["SET","http:tx4","v"],["NOPE"]]`, wantStatus: 400, wantBody: `{"error":"ERR Command is not available: 'NOPE'"}`},
		{name: "multi-exec refused command discards all", path: "/multi-exec", body: `[["SET","http:tx5","v"],["WATCH","http:tx5"]]`, wantStatus: 400, wantBody: `{"error":"ERR Command is not available: 'WATCH'"}`},
		{name: "multi-exec refused wrote nothing", method: "GET", path: "/exists/http:tx4/http:tx5", wantStatus: 200, wantBody: `{"result":0}`},
		{name: "multi-exec base64", path: "/multi-exec", headers: map[string]string{"Upstash-Encoding": b64}, body: `[["SET","http:tx6","v"],["GET","http:tx6"],["GET","http:none"]]`, wantStatus: 200, wantBody: `[{"result":"OK"},{"result":"dg=="},{"result":null}]`},
		{name: "multi-exec empty", path: "/multi-exec", body: `[]`, wantStatus: 400, wantBody: `{"error":"ERR empty pipeline: send at least one command"}`},
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			ts := startServer(t, backend, upstashlocal.Config{})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if tt.redisOnly && backend != "redis" {
						t.Skip("the embedded store truncates TTLs where Redis rounds them")
					}
					for _, cmd := range tt.setup {
						got := ts.post(t, "/", cmd)
						if got.Status != http.StatusOK {
							t.Fatalf("setup %s: %d %s", cmd, got.Status, got.Body)
						}
					}
					method, path := tt.method, tt.path
					if method == "" {
						method = http.MethodPost
					}
					if path == "" {
						path = "/"
					}
					var body io.Reader
					if !tt.noBody && method != http.MethodGet && method != http.MethodHead {
						body = strings.NewReader(tt.body)
					}
					got := ts.send(t, method, path, tt.headers, body)
					if got.Status != tt.wantStatus || got.Body != tt.wantBody {
						t.Errorf("%s %s %s\n got %d %s\nwant %d %s", method, path, tt.body, got.Status, got.Body, tt.wantStatus, tt.wantBody)
					}
					if ct := got.Header.Get("Content-Type"); ct != "application/json" {
						t.Errorf("Content-Type = %q, want application/json", ct)
					}
					for k, want := range tt.wantHeader {
						if got := got.Header.Get(k); got != want {
							t.Errorf("header %s = %q, want %q", k, got, want)
						}
					}
				})
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	const limit = 1024
	tests := []struct {
		name       string
		path       string
		body       string
		chunked    bool // no Content-Length: the limit must hold while reading
		wantStatus int
		wantBody   string
	}{
		{name: "at the limit", path: "/", body: `["ECHO","` + strings.Repeat("a", limit-11) + `"]`, wantStatus: 200, wantBody: `{"result":"` + strings.Repeat("a", limit-11) + `"}`},
		{name: "over the limit", path: "/", body: `["ECHO","` + strings.Repeat("a", limit-10) + `"]`, wantStatus: 400, wantBody: `{"error":"ERR max request size exceeded"}`},
		{name: "over the limit chunked", path: "/", body: `["ECHO","` + strings.Repeat("a", 4*limit) + `"]`, chunked: true, wantStatus: 400, wantBody: `{"error":"ERR max request size exceeded"}`},
		{name: "pipeline over the limit", path: "/pipeline", body: `[["ECHO","` + strings.Repeat("a", limit) + `"]]`, wantStatus: 400, wantBody: `{"error":"ERR max request size exceeded"}`},
		{name: "path body over the limit", path: "/set/k", body: strings.Repeat("a", limit+1), chunked: true, wantStatus: 400, wantBody: `{"error":"ERR max request size exceeded"}`},
	}
	ts := startServer(t, "redis", upstashlocal.Config{MaxBodyBytes: limit})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length from net/http
			}
			got := ts.send(t, http.MethodPost, tt.path, nil, body)
			if got.Status != tt.wantStatus || got.Body != tt.wantBody {
				t.Errorf("got %d %.200s, want %d %.200s", got.Status, got.Body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name    string
		cfg     upstashlocal.Config
		wantErr string
	}{
		{name: "no token", cfg: upstashlocal.Config{}, wantErr: "upstashlocal: token is required"},
		{name: "negative body limit", cfg: upstashlocal.Config{Token: "t", MaxBodyBytes: -1}, wantErr: "upstashlocal: max body bytes -1 is negative"},
		{name: "address without port", cfg: upstashlocal.Config{Token: "t", RedisAddr: "localhost"}, wantErr: `upstashlocal: redis address "localhost" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := upstashlocal.New(tt.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("New succeeded, want error %q", tt.wantErr)
			}
			if got := err.Error(); got != tt.wantErr {
				t.Errorf("error = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// jsonCmd renders a command as a JSON body.
func jsonCmd(t testing.TB, args ...any) string {
	t.Helper()
	b, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestShebangScripts(t *testing.T) {
	const script = "#!lua flags=allow-key-locking\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
	orig := sha1Hex(script)
	rewritten := sha1Hex("#!lua\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
	ts := startServer(t, "redis", upstashlocal.Config{})

	steps := []struct {
		name string
		body string
		want string // 200 reply, or an error reply when wantStatus is 400
		code int
	}{
		{name: "script load answers the original sha", body: jsonCmd(t, "SCRIPT", "LOAD", script), want: `{"result":"` + orig + `"}`, code: 200},
		{name: "evalsha with the original sha", body: jsonCmd(t, "EVALSHA", orig, 1, "sb:c", 5), want: `{"result":5}`, code: 200},
		{name: "evalsha upper-case sha", body: jsonCmd(t, "EVALSHA", strings.ToUpper(orig), 1, "sb:c", 1), want: `{"result":6}`, code: 200},
		{name: "evalsha_ro maps too", body: jsonCmd(t, "EVALSHA_RO", orig, 1, "sb:c", 1), want: `{"error":"ERR Can not execute a script with write flag using *_ro command."}`, code: 400},
		{name: "script exists with the original sha", body: jsonCmd(t, "SCRIPT", "EXISTS", orig, strings.Repeat("0", 40)), want: `{"result":[1,0]}`, code: 200},
		{name: "eval runs the rewritten script", body: jsonCmd(t, "EVAL", script, 1, "sb:c", 10), want: `{"result":16}`, code: 200},
		{name: "flush", body: jsonCmd(t, "SCRIPT", "FLUSH"), want: `{"result":"OK"}`, code: 200},
		{name: "evalsha after flush is noscript", body: jsonCmd(t, "EVALSHA", orig, 1, "sb:c", 1), want: `{"error":"NOSCRIPT No matching script. Please use EVAL."}`, code: 400},
		{name: "script exists after flush", body: jsonCmd(t, "SCRIPT", "EXISTS", orig), want: `{"result":[0]}`, code: 200},
		{name: "eval after flush loads it again", body: jsonCmd(t, "EVAL", script, 1, "sb:c", 1), want: `{"result":17}`, code: 200},
		{name: "evalsha works again", body: jsonCmd(t, "EVALSHA", orig, 1, "sb:c", 2), want: `{"result":19}`, code: 200},
		{name: "other flags are kept", body: jsonCmd(t, "EVAL", "#!lua flags=no-writes,allow-key-locking\nreturn redis.call('SET', KEYS[1], 'x')", 1, "sb:w"),
			want: `{"error":"ERR Write commands are not allowed from read-only scripts. script: ` + sha1Hex("#!lua flags=no-writes,allow-key-locking\nreturn redis.call('SET', KEYS[1], 'x')") + `, on @user_script:2."}`, code: 400},
		{name: "unknown flags are still refused", body: jsonCmd(t, "EVAL", "#!lua flags=allow-key-locking,bogus\nreturn 1", 0), want: `{"error":"ERR Unexpected flag in script shebang: bogus"}`, code: 400},
		{name: "shebang without a newline", body: jsonCmd(t, "EVAL", "#!lua flags=allow-key-locking", 0), want: `{"error":"ERR Invalid script shebang"}`, code: 400},
		{name: "lua errors name the original sha and line", body: jsonCmd(t, "EVAL", "#!lua flags=allow-key-locking\n\nreturn nope.x", 0),
			want: `{"error":"ERR user_script:3: Script attempted to access nonexistent global variable 'nope' script: ` + sha1Hex("#!lua flags=allow-key-locking\n\nreturn nope.x") + `, on @user_script:3."}`, code: 400},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got := ts.post(t, "/", st.body)
			if got.Status != st.code || got.Body != st.want {
				t.Errorf("got %d %s\nwant %d %s", got.Status, got.Body, st.code, st.want)
			}
		})
	}

	t.Run("backend holds only the rewritten script", func(t *testing.T) {
		ts.mustPost(t, "/", jsonCmd(t, "SCRIPT", "LOAD", script), `{"result":"`+orig+`"}`)
		got := ts.Redis.Do(t, "SCRIPT", "EXISTS", orig, rewritten)
		if want := "0\n1"; got != want {
			t.Errorf("SCRIPT EXISTS orig rewritten on redis-server = %q, want %q", got, want)
		}
	})
	t.Run("pipeline and multi-exec map too", func(t *testing.T) {
		ts.Redis.Do(t, "SCRIPT", "FLUSH")
		ts.mustPost(t, "/pipeline", jsonCmd(t, []any{"SCRIPT", "LOAD", script}, []any{"EVALSHA", orig, 1, "sb:p", 1}),
			`[{"result":"`+orig+`"},{"result":1}]`)
		ts.Redis.Do(t, "SCRIPT", "FLUSH")
		ts.mustPost(t, "/multi-exec", jsonCmd(t, []any{"SCRIPT", "LOAD", script}, []any{"EVALSHA", orig, 1, "sb:p", 1}, []any{"EVAL", script, 1, "sb:p", 1}),
			`[{"result":"`+orig+`"},{"result":2},{"result":3}]`)
	})
	t.Run("base64 sha", func(t *testing.T) {
		got := ts.send(t, http.MethodPost, "/", map[string]string{"Upstash-Encoding": "base64"}, strings.NewReader(jsonCmd(t, "SCRIPT", "LOAD", script)))
		want := fmt.Sprintf(`{"result":"%s"}`, b64(orig))
		if got.Status != 200 || got.Body != want {
			t.Errorf("got %d %s, want 200 %s", got.Status, got.Body, want)
		}
	})
}

func b64(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	_ = enc.Encode([]byte(s)) // encoding/json writes []byte as padded standard base64
	return strings.Trim(strings.TrimSpace(buf.String()), `"`)
}

func TestEmbeddedShebang(t *testing.T) {
	const script = "#!lua flags=allow-key-locking\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
	orig := sha1Hex(script)
	ts := startServer(t, "embedded", upstashlocal.Config{})
	ts.mustPost(t, "/", jsonCmd(t, "SCRIPT", "LOAD", script), `{"result":"`+orig+`"}`)
	ts.mustPost(t, "/", jsonCmd(t, "EVALSHA", orig, 1, "c", 2), `{"result":2}`)
	ts.mustPost(t, "/", jsonCmd(t, "EVAL", script, 1, "c", 3), `{"result":5}`)
	ts.mustPost(t, "/", jsonCmd(t, "EVAL", "#!lua\nreturn 7", 0), `{"result":7}`)
	ts.mustPost(t, "/", jsonCmd(t, "SCRIPT", "FLUSH"), `{"result":"OK"}`)
	got := ts.post(t, "/", jsonCmd(t, "EVALSHA", orig, 1, "c", 2))
	if want := `{"error":"NOSCRIPT No matching script. Please use EVAL."}`; got.Status != 400 || got.Body != want {
		t.Errorf("EVALSHA after flush = %d %s, want 400 %s", got.Status, got.Body, want)
	}
}

func TestBackendDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	srv, err := upstashlocal.New(upstashlocal.Config{Token: testToken, RedisAddr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tests := []struct {
		name, path, body string
	}{
		{name: "command", path: "/", body: `["PING"]`},
		{name: "pipeline", path: "/pipeline", body: `[["PING"],["PING"]]`},
		{name: "multi-exec", path: "/multi-exec", body: `[["PING"]]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, tt.path, tt.body)
			rec := serve(srv, req)
			if got, want := rec.Code, http.StatusBadGateway; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			if got, want := rec.Body.String(), `{"error":"ERR redis backend unavailable"}`; got != want {
				t.Errorf("body = %s, want %s", got, want)
			}
		})
	}
}

func TestRedisRestart(t *testing.T) {
	ts := startServer(t, "redis", upstashlocal.Config{})
	ts.mustPost(t, "/", `["SET","k","v"]`, `{"result":"OK"}`)
	ts.Redis.Restart(t)
	// Pooled connections to the old process are dead; the first request
	// after the restart must not fail because of them.
	ts.mustPost(t, "/", `["GET","k"]`, `{"result":null}`)
	ts.mustPost(t, "/pipeline", `[["SET","k","w"],["GET","k"]]`, `[{"result":"OK"},{"result":"w"}]`)
}

func TestRequests(t *testing.T) {
	ts := startServer(t, "embedded", upstashlocal.Config{})
	before := ts.Srv.Requests()
	ts.post(t, "/", `["PING"]`)
	ts.post(t, "/pipeline", `[["PING"],["PING"],["PING"]]`)
	ts.send(t, http.MethodPost, "/", map[string]string{"Authorization": "Bearer wrong"}, strings.NewReader(`["PING"]`))
	ts.post(t, "/", `not json`)
	if got, want := ts.Srv.Requests()-before, uint64(4); got != want {
		t.Errorf("Requests() grew by %d, want %d", got, want)
	}
}

func TestConcurrentClients(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			ts := startServer(t, backend, upstashlocal.Config{})
			const workers, each = 8, 25
			errc := make(chan error, workers)
			for w := 0; w < workers; w++ {
				go func() {
					for i := 0; i < each; i++ {
						body := `[["INCR","cc:n"],["SET","cc:w` + fmt.Sprint(w) + `","x"]]`
						req, _ := http.NewRequest(http.MethodPost, ts.URL+"/pipeline", strings.NewReader(body))
						req.Header.Set("Authorization", "Bearer "+testToken)
						resp, err := httpClient.Do(req)
						if err != nil {
							errc <- err
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							errc <- fmt.Errorf("status %d", resp.StatusCode)
							return
						}
					}
					errc <- nil
				}()
			}
			for w := 0; w < workers; w++ {
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			ts.mustPost(t, "/", `["GET","cc:n"]`, fmt.Sprintf(`{"result":"%d"}`, workers*each))
		})
	}
}

func TestReplyShapesMatchJSON(t *testing.T) {
	// Every reply must be valid JSON, whatever the value holds.
	ts := startServer(t, "redis", upstashlocal.Config{})
	values := []string{"", "plain", `quote " and \ backslash`, "line\nbreak\ttab", "\x00\x01\x1f", "<script>&</script>", "🚀 unicode ✓", "\u2028\u2029"}
	for i, v := range values {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ts.mustPost(t, "/", jsonCmd(t, "SET", "shape", v), `{"result":"OK"}`)
			got := ts.post(t, "/", `["GET","shape"]`)
			var decoded struct{ Result string }
			if err := json.Unmarshal([]byte(got.Body), &decoded); err != nil {
				t.Fatalf("reply %q is not JSON: %v", got.Body, err)
			}
			if diff := cmp.Diff(v, decoded.Result); diff != "" {
				t.Errorf("value changed in transit (-sent +got):\n%s", diff)
			}
		})
	}
}
