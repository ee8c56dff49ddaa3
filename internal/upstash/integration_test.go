package upstash_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// These tests run the client against the project's Upstash-compatible
// server (internal/local/upstashlocal), in front of a real redis-server
// (or, without one and outside `make test`, its embedded store).

func newClient(t *testing.T, env *upstashtest.Env) *upstash.Client {
	t.Helper()
	c, err := upstash.New(upstash.Config{URL: env.URL, Token: env.Token, RootCAs: env.RootCAs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIntegrationCommands(t *testing.T) {
	env := upstashtest.Start(t)
	c := newClient(t, env)
	ctx := testContext(t)
	oddKey := "user 42 ☃ 日本\t\"quoted\" \\ /"
	oddValue := "välue ☃ \n\r\t\x00 \u2028 😀 <&>"
	tests := []struct {
		name string
		args []any
		want any // the result decoded into an any
	}{
		{"set", []any{"SET", "k", "v"}, "OK"},
		{"get", []any{"GET", "k"}, "v"},
		{"get missing", []any{"GET", "missing"}, nil},
		{"set unicode key and value", []any{"SET", oddKey, []byte(oddValue)}, "OK"},
		{"get unicode key", []any{"GET", oddKey}, oddValue},
		{"empty value", []any{"SET", "empty", ""}, "OK"},
		{"get empty value", []any{"GET", "empty"}, ""},
		{"incr", []any{"INCR", "n"}, 1.0},
		{"incrby", []any{"INCRBY", "n", int64(41)}, 42.0},
		{"counter read as string", []any{"GET", "n"}, "42"},
		{"decrby negative", []any{"DECRBY", "n", -8}, 50.0},
		{"rpush", []any{"RPUSH", "list", "a", "b c", "☃"}, 3.0},
		{"lrange", []any{"LRANGE", "list", 0, -1}, []any{"a", "b c", "☃"}},
		{"empty array", []any{"LRANGE", "nolist", 0, -1}, []any{}},
		{"mget with nil", []any{"MGET", "k", "missing"}, []any{"v", nil}},
		{"pexpire", []any{"PEXPIRE", "k", uint32(60000)}, 1.0},
		{"ping", []any{"PING"}, "PONG"},
		{"nested arrays from Lua", []any{"EVAL", "return {1, {ARGV[1], {}}, 'x'}", 0, "y"}, []any{1.0, []any{"y", []any{}}, "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got any
			if err := c.Do(ctx, &got, tt.args...); err != nil {
				t.Fatalf("Do: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

// TestIntegrationTypedReplies decodes replies into the types callers use.
func TestIntegrationTypedReplies(t *testing.T) {
	env := upstashtest.Start(t)
	c := newClient(t, env)
	ctx := testContext(t)
	if err := c.Do(ctx, nil, "RPUSH", "typed:list", "a", "b"); err != nil {
		t.Fatal(err)
	}
	var ints []int64
	if err := c.Do(ctx, &ints, "EVAL", "return {1, tonumber(ARGV[1]), -3}", 0, 864_000_000_000); err != nil {
		t.Fatal(err)
	}
	var strs []string
	if err := c.Do(ctx, &strs, "LRANGE", "typed:list", 0, -1); err != nil {
		t.Fatal(err)
	}
	var missing *string
	if err := c.Do(ctx, &missing, "GET", "typed:missing"); err != nil {
		t.Fatal(err)
	}
	type replies struct {
		Ints    []int64
		Strs    []string
		Missing *string
	}
	if diff := cmp.Diff(replies{[]int64{1, 864_000_000_000, -3}, []string{"a", "b"}, nil}, replies{ints, strs, missing}); diff != "" {
		t.Errorf("replies (-want +got):\n%s", diff)
	}
	var n int64
	err := c.Do(ctx, &n, "LRANGE", "typed:list", 0, -1)
	if upstash.KindOf(err) != upstash.KindMalformed || !strings.Contains(err.Error(), "a JSON array where int64 is expected") {
		t.Errorf("LRANGE into an int64: error %v, want a malformed error naming the mismatch", err)
	}
}

func TestIntegrationCommandErrors(t *testing.T) {
	env := upstashtest.Start(t)
	c := newClient(t, env)
	ctx := testContext(t)
	if err := c.Do(ctx, nil, "SET", "str", "x"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []any
		wantMsg string
	}{
		{"wrong number of arguments", []any{"GET"}, "ERR wrong number of arguments"},
		{"wrong type", []any{"LPUSH", "str", "a"}, "WRONGTYPE"},
		{"not an integer", []any{"INCR", "str"}, "ERR value is not an integer"},
		{"unknown command", []any{"NOSUCHCOMMAND"}, "ERR"},
		{"script error", []any{"EVAL", "return redis.call('NOPE')", 0}, "ERR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Do(ctx, nil, tt.args...)
			var e *upstash.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *upstash.Error", err)
			}
			if e.Kind != upstash.KindCommand || e.StatusCode != 400 || !strings.HasPrefix(e.Message, tt.wantMsg) {
				t.Errorf("error = kind %v, status %d, message %q; want command, 400, prefix %q", e.Kind, e.StatusCode, e.Message, tt.wantMsg)
			}
		})
	}
}

func TestIntegrationAuth(t *testing.T) {
	env := upstashtest.Start(t)
	c, err := upstash.New(upstash.Config{URL: env.URL, Token: "wrong-" + env.Token})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Do(testContext(t), nil, "PING")
	var e *upstash.Error
	if !errors.As(err, &e) || e.Kind != upstash.KindAuth || e.StatusCode != 401 {
		t.Fatalf("error = %v, want auth error with status 401", err)
	}
	if strings.Contains(err.Error(), env.Token) {
		t.Errorf("error %q contains the token", err)
	}
}

// TestIntegrationScript checks EVALSHA, the NOSCRIPT -> EVAL fallback, and
// that the next call goes back to EVALSHA, by counting HTTP requests to the
// server and script runs (the script increments a counter).
func TestIntegrationScript(t *testing.T) {
	env := upstashtest.Start(t)
	c := newClient(t, env)
	ctx := testContext(t)
	key := "runs:☃ key"
	tests := []struct{ name, src string }{
		{"plain", "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"},
		{"Upstash shebang", "#!lua flags=allow-key-locking\nreturn {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"},
	}
	runs := 0.0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := upstash.NewScript(tt.src)
			// run runs the script and returns its reply and the number of
			// HTTP requests it took.
			run := func() ([]any, uint64) {
				t.Helper()
				before := env.Server.Requests()
				var got []any
				if err := s.Run(ctx, c, &got, []string{key}, "arg ☃"); err != nil {
					t.Fatalf("run: %v", err)
				}
				return got, env.Server.Requests() - before
			}
			flush := func() {
				t.Helper()
				if err := c.Do(ctx, nil, "SCRIPT", "FLUSH"); err != nil {
					t.Fatal(err)
				}
			}
			flush()
			var got []uint64
			for i := range 3 {
				v, n := run()
				runs++
				got = append(got, n)
				if diff := cmp.Diff([]any{key, "arg ☃", runs}, v); diff != "" {
					t.Errorf("run %d reply (-want +got):\n%s", i, diff)
				}
			}
			flush()
			for range 2 {
				_, n := run()
				runs++
				got = append(got, n)
			}
			// EVALSHA+EVAL, EVALSHA, EVALSHA; after the flush EVALSHA+EVAL, EVALSHA.
			if diff := cmp.Diff([]uint64{2, 1, 1, 2, 1}, got); diff != "" {
				t.Errorf("HTTP requests per run (-want +got):\n%s", diff)
			}
		})
	}
}

// TestIntegrationTLS talks to an HTTPS endpoint with a self-signed
// certificate: trusted through Config.RootCAs it works; with the system
// roots it is a transport error, which does not contain the token.
func TestIntegrationTLS(t *testing.T) {
	env := upstashtest.StartTLS(t)
	tests := []struct {
		name     string
		trust    bool
		wantKind upstash.ErrorKind // 0: success
		wantMsg  string
	}{
		{name: "RootCAs", trust: true},
		{name: "system roots", wantKind: upstash.KindTransport, wantMsg: "certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := upstash.Config{URL: env.URL, Token: env.Token}
			if tt.trust {
				cfg.RootCAs = env.RootCAs
			}
			c, err := upstash.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.CloseIdleConnections)
			var got string
			err = c.Do(testContext(t), &got, "PING")
			if tt.wantKind == 0 {
				if err != nil || got != "PONG" {
					t.Errorf("PING = %q, %v; want PONG", got, err)
				}
				return
			}
			if upstash.KindOf(err) != tt.wantKind || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %v, want kind %v containing %q", err, tt.wantKind, tt.wantMsg)
			}
			if strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), env.Token) {
				t.Errorf("error %v contains the token", err)
			}
		})
	}
}

// TestIntegrationSSLCertFile: a fresh process (as the authorizer is) that
// builds its client from UPSTASH_REDIS_REST_URL/TOKEN alone trusts the
// endpoint's certificate through the standard SSL_CERT_FILE variable.
func TestIntegrationSSLCertFile(t *testing.T) {
	if os.Getenv(sslChildEnv) != "" {
		t.Skip("child process")
	}
	env := upstashtest.StartTLS(t)
	tests := []struct {
		name     string
		certFile string
		want     string
	}{
		{"SSL_CERT_FILE names the certificate", env.CAFile, "--- PASS: TestSSLCertFileChild"},
		{"without it", "", "certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSSLCertFileChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), sslChildEnv+"=1", upstash.EnvURL+"="+env.URL, upstash.EnvToken+"="+env.Token)
			if tt.certFile != "" {
				cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+tt.certFile)
			}
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("child output lacks %q:\n%s", tt.want, out)
			}
			if strings.Contains(string(out), env.Token) {
				t.Errorf("child output contains the token:\n%s", out)
			}
		})
	}
}

const sslChildEnv = "UPSTASH_TEST_SSL_CHILD"

func TestSSLCertFileChild(t *testing.T) {
	if os.Getenv(sslChildEnv) == "" {
		t.Skip("run by TestIntegrationSSLCertFile")
	}
	cfg, err := upstash.ConfigFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := upstash.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := c.Do(testContext(t), &got, "PING"); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v; want PONG", got, err)
	}
}
