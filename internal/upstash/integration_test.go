package upstash_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// These tests run the client against the project's Upstash-compatible
// server (internal/upstashlocal) in front of a real redis-server.

func newClient(t *testing.T, env *upstashtest.Env, base64 bool) *upstash.Client {
	t.Helper()
	c, err := upstash.New(upstash.Config{URL: env.URL, Token: env.Token, Base64: base64})
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

// bothEncodings runs f with base64 replies off and on.
func bothEncodings(t *testing.T, f func(t *testing.T, c *upstash.Client, prefix string)) {
	env := upstashtest.Start(t)
	for _, b64 := range []bool{false, true} {
		t.Run(fmt.Sprintf("base64=%v", b64), func(t *testing.T) {
			f(t, newClient(t, env, b64), fmt.Sprintf("b64=%v:", b64))
		})
	}
}

func TestIntegrationCommands(t *testing.T) {
	bothEncodings(t, func(t *testing.T, c *upstash.Client, p string) {
		ctx := testContext(t)
		oddKey := p + "user 42 ☃ 日本\t\"quoted\" \\ /"
		oddValue := "välue ☃ \n\r\t\x00 \u2028 😀 <&>"
		tests := []struct {
			name string
			args []any
			want upstash.Value
		}{
			{"set", []any{"SET", p + "k", "v"}, upstash.StringValue("OK")},
			{"get", []any{"GET", p + "k"}, upstash.StringValue("v")},
			{"get missing", []any{"GET", p + "missing"}, upstash.Value{}},
			{"set unicode key and value", []any{"SET", oddKey, oddValue}, upstash.StringValue("OK")},
			{"get unicode key", []any{"GET", oddKey}, upstash.StringValue(oddValue)},
			{"value OK is a string", []any{"SET", p + "ok", "OK"}, upstash.StringValue("OK")},
			{"get value OK", []any{"GET", p + "ok"}, upstash.StringValue("OK")},
			// A value that is itself valid base64 tells whether the server
			// really encoded (and the client really decoded) in base64 mode.
			{"set base64-looking value", []any{"SET", p + "b64", "YWJj"}, upstash.StringValue("OK")},
			{"get base64-looking value", []any{"GET", p + "b64"}, upstash.StringValue("YWJj")},
			{"empty value", []any{"SET", p + "empty", ""}, upstash.StringValue("OK")},
			{"get empty value", []any{"GET", p + "empty"}, upstash.StringValue("")},
			{"incr", []any{"INCR", p + "n"}, upstash.IntValue(1)},
			{"incrby", []any{"INCRBY", p + "n", int64(41)}, upstash.IntValue(42)},
			{"counter read as string", []any{"GET", p + "n"}, upstash.StringValue("42")},
			{"decrby negative", []any{"DECRBY", p + "n", -8}, upstash.IntValue(50)},
			{"incrbyfloat", []any{"INCRBYFLOAT", p + "f", 1.5}, upstash.StringValue("1.5")},
			{"rpush", []any{"RPUSH", p + "list", "a", "b c", "☃"}, upstash.IntValue(3)},
			{"lrange", []any{"LRANGE", p + "list", 0, -1}, upstash.ArrayValue(upstash.StringValue("a"), upstash.StringValue("b c"), upstash.StringValue("☃"))},
			{"empty array", []any{"LRANGE", p + "nolist", 0, -1}, upstash.ArrayValue()},
			{"mget with nil", []any{"MGET", p + "k", p + "missing"}, upstash.ArrayValue(upstash.StringValue("v"), upstash.Value{})},
			{"pexpire", []any{"PEXPIRE", p + "k", 60000}, upstash.IntValue(1)},
			{"ping", []any{"PING"}, upstash.StringValue("PONG")},
			{"nested arrays from Lua", []any{"EVAL", "return {1, {ARGV[1], {}}, 'x'}", 0, "y"},
				upstash.ArrayValue(upstash.IntValue(1), upstash.ArrayValue(upstash.StringValue("y"), upstash.ArrayValue()), upstash.StringValue("x"))},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := c.Do(ctx, tt.args...)
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("reply (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestIntegrationBinaryReplyWithBase64(t *testing.T) {
	env := upstashtest.Start(t)
	c := newClient(t, env, true)
	v, err := c.Do(testContext(t), "EVAL", "return string.char(0, 255, 254, 65)", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]byte{0, 255, 254, 65}, got); diff != "" {
		t.Errorf("bytes (-want +got):\n%s", diff)
	}
}

func TestIntegrationCommandErrors(t *testing.T) {
	bothEncodings(t, func(t *testing.T, c *upstash.Client, p string) {
		ctx := testContext(t)
		if _, err := c.Do(ctx, "SET", p+"str", "x"); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			args    []any
			wantMsg string
		}{
			{"wrong number of arguments", []any{"GET"}, "ERR wrong number of arguments"},
			{"wrong type", []any{"LPUSH", p + "str", "a"}, "WRONGTYPE"},
			{"not an integer", []any{"INCR", p + "str"}, "ERR value is not an integer"},
			{"unknown command", []any{"NOSUCHCOMMAND"}, "ERR"},
			{"script error", []any{"EVAL", "return redis.call('NOPE')", 0}, "ERR"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := c.Do(ctx, tt.args...)
				var e *upstash.Error
				if !errors.As(err, &e) {
					t.Fatalf("error %v is not a *upstash.Error", err)
				}
				if e.Kind != upstash.KindCommand || e.StatusCode != 400 || !strings.HasPrefix(e.Message, tt.wantMsg) {
					t.Errorf("error = kind %v, status %d, message %q; want command, 400, prefix %q", e.Kind, e.StatusCode, e.Message, tt.wantMsg)
				}
			})
		}
	})
}

func TestIntegrationAuth(t *testing.T) {
	env := upstashtest.Start(t)
	c, err := upstash.New(upstash.Config{URL: env.URL, Token: "wrong-" + env.Token})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(testContext(t), "PING")
	var e *upstash.Error
	if !errors.As(err, &e) || e.Kind != upstash.KindAuth || e.StatusCode != 401 {
		t.Fatalf("error = %v, want auth error with status 401", err)
	}
	if strings.Contains(err.Error(), env.Token) {
		t.Errorf("error %q contains the token", err)
	}
}

// itemSummary renders a Result as its value or "error: <message prefix>".
func itemSummary(r upstash.Result, prefixLen int) any {
	if r.Err != nil {
		var e *upstash.Error
		if !errors.As(r.Err, &e) || e.Kind != upstash.KindCommand {
			return fmt.Sprintf("unexpected error %v", r.Err)
		}
		return "error: " + e.Message[:min(prefixLen, len(e.Message))]
	}
	return r.Value.Any()
}

func TestIntegrationPipeline(t *testing.T) {
	bothEncodings(t, func(t *testing.T, c *upstash.Client, p string) {
		res, err := c.Pipeline(testContext(t),
			[]any{"SET", p + "a", "1"},
			[]any{"INCR", p + "a"},
			[]any{"LPUSH", p + "a", "x"}, // fails: WRONGTYPE
			[]any{"GET", p + "a"},
			[]any{"GET", p + "missing"},
			[]any{"RPUSH", p + "l", "x", "y"},
			[]any{"LRANGE", p + "l", 0, -1},
		)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]any, len(res))
		for i, r := range res {
			got[i] = itemSummary(r, len("WRONGTYPE"))
		}
		want := []any{"OK", int64(2), "error: WRONGTYPE", "2", nil, int64(2), []any{"x", "y"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
	})
}

func TestIntegrationMultiExec(t *testing.T) {
	bothEncodings(t, func(t *testing.T, c *upstash.Client, p string) {
		ctx := testContext(t)
		res, err := c.MultiExec(ctx,
			[]any{"SET", p + "t", "1"},
			[]any{"INCR", p + "t"},
			[]any{"GET", p + "t"},
		)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]any, len(res))
		for i, r := range res {
			got[i] = itemSummary(r, 40)
		}
		if diff := cmp.Diff([]any{"OK", int64(2), "2"}, got); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}

		// A command failing at run time fails alone; the others ran.
		res, err = c.MultiExec(ctx,
			[]any{"SET", p + "t2", "x"},
			[]any{"INCR", p + "t2"},
			[]any{"APPEND", p + "t2", "y"},
		)
		if err != nil {
			t.Fatal(err)
		}
		got = make([]any, len(res))
		for i, r := range res {
			got[i] = itemSummary(r, len("ERR value is not an integer"))
		}
		if diff := cmp.Diff([]any{"OK", "error: ERR value is not an integer", int64(2)}, got); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
	})
}

// TestIntegrationScript checks EVALSHA, the NOSCRIPT -> EVAL fallback, and
// that the next call goes back to EVALSHA, by counting HTTP requests to the
// server and script runs (the script increments a counter).
func TestIntegrationScript(t *testing.T) {
	env := upstashtest.Start(t)
	for _, b64 := range []bool{false, true} {
		t.Run(fmt.Sprintf("base64=%v", b64), func(t *testing.T) {
			c := newClient(t, env, b64)
			ctx := testContext(t)
			key := fmt.Sprintf("runs:%v:☃ key", b64)
			tests := []struct {
				name   string
				src    string
				strArg bool
			}{
				{"plain", "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}", false},
				{"Upstash shebang", "#!lua flags=allow-key-locking\nreturn {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}", true},
			}
			runs := int64(0)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					s := upstash.NewScript(tt.src)
					run := func() upstash.Value {
						t.Helper()
						var v upstash.Value
						var err error
						if tt.strArg {
							v, err = s.RunStrings(ctx, c, []string{key}, []string{"arg ☃"})
						} else {
							v, err = s.Run(ctx, c, []string{key}, "arg ☃")
						}
						if err != nil {
							t.Fatalf("run: %v", err)
						}
						return v
					}
					requests := func(f func() upstash.Value) (upstash.Value, uint64) {
						before := env.Server.Requests()
						v := f()
						return v, env.Server.Requests() - before
					}
					env.Redis.Do(t, "SCRIPT", "FLUSH")
					var got []uint64
					for i := 0; i < 3; i++ {
						v, n := requests(run)
						runs++
						got = append(got, n)
						want := upstash.ArrayValue(upstash.StringValue(key), upstash.StringValue("arg ☃"), upstash.IntValue(runs))
						if diff := cmp.Diff(want, v); diff != "" {
							t.Errorf("run %d reply (-want +got):\n%s", i, diff)
						}
					}
					env.Redis.Do(t, "SCRIPT", "FLUSH")
					for i := 0; i < 2; i++ {
						_, n := requests(run)
						runs++
						got = append(got, n)
					}
					// EVALSHA+EVAL, EVALSHA, EVALSHA; after the flush EVALSHA+EVAL, EVALSHA.
					if diff := cmp.Diff([]uint64{2, 1, 1, 2, 1}, got); diff != "" {
						t.Errorf("HTTP requests per run (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}
