package upstash

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestAppendCommand(t *testing.T) {
	tests := []struct {
		name string
		args []any
		want string
	}{
		{"plain", []any{"GET", "k"}, `["GET","k"]`},
		{"space and unicode key", []any{"SET", "user 42 ☃ 日本", "v"}, `["SET","user 42 ☃ 日本","v"]`},
		{"quotes and backslashes", []any{"SET", `a"b\c`, `\"`}, `["SET","a\"b\\c","\\\""]`},
		{"control characters", []any{"SET", "a\nb\rc\td\x00e\x1f\x7f", "\b\f"}, `["SET","a\nb\rc\td\u0000e\u001f` + "\x7f" + `","\u0008\u000c"]`},
		{"astral plane and U+2028", []any{"SET", "😀", "\u2028"}, `["SET","😀","` + "\u2028" + `"]`},
		{"html is not escaped", []any{"SET", "<a&b>", "x"}, `["SET","<a&b>","x"]`},
		{"empty string", []any{"SET", "", ""}, `["SET","",""]`},
		{"bytes", []any{"SET", []byte("k"), []byte("v\n")}, `["SET","k","v\n"]`},
		{"integers", []any{"INCRBY", "k", 42, int64(-9223372036854775808), int32(-7), int16(3), int8(-1)}, `["INCRBY","k","42","-9223372036854775808","-7","3","-1"]`},
		{"unsigned", []any{"X", uint(1), uint64(18446744073709551615), uint32(4), uint16(5), uint8(6)}, `["X","1","18446744073709551615","4","5","6"]`},
		{"floats", []any{"ZADD", "z", 1.5, 0.1, 1e21, -2.0, float32(0.1), 1e-7}, `["ZADD","z","1.5","0.1","1e+21","-2","0.1","1e-07"]`},
		{"infinities", []any{"ZADD", "z", math.Inf(1), math.Inf(-1)}, `["ZADD","z","inf","-inf"]`},
		{"one argument", []any{"PING"}, `["PING"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendCommand(nil, -1, tt.args)
			if err != nil {
				t.Fatalf("appendCommand: %v", err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
			var decoded []string
			if err := json.Unmarshal(got, &decoded); err != nil {
				t.Fatalf("encoding/json cannot read the body: %v", err)
			}
		})
	}
}

// TestAppendCommandRoundTrip checks with encoding/json that string
// arguments arrive byte for byte.
func TestAppendCommandRoundTrip(t *testing.T) {
	var all strings.Builder
	for r := rune(0); r < 0x3000; r++ {
		all.WriteRune(r)
	}
	args := []string{"SET", all.String(), "\U0010FFFF\uFFFD\uFEFF", strings.Repeat("x\"", 1000)}
	anyArgs := make([]any, len(args))
	for i, a := range args {
		anyArgs[i] = a
	}
	body, err := appendCommand(nil, -1, anyArgs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(args, got); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestAppendCommandErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []any
		wantMsg string
	}{
		{"no arguments", nil, "upstash: invalid argument: no command given"},
		{"invalid UTF-8 string", []any{"SET", "k", "a\xffb"}, "upstash: invalid argument: argument 2 is not valid UTF-8"},
		{"invalid UTF-8 bytes", []any{"SET", []byte{0xc3}, "v"}, "upstash: invalid argument: argument 1 is not valid UTF-8"},
		{"NaN", []any{"ZADD", "z", math.NaN(), "m"}, "upstash: invalid argument: argument 2 is NaN"},
		{"bool", []any{"SET", "k", true}, "upstash: invalid argument: argument 2 has unsupported type bool"},
		{"nil", []any{"GET", nil}, "upstash: invalid argument: argument 1 has unsupported type nil"},
		{"duration", []any{"PEXPIRE", "k", time.Second}, "upstash: invalid argument: argument 2 has unsupported type time.Duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := appendCommand(nil, -1, tt.args)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error = %v, want one wrapping ErrInvalidArgument", err)
			}
			if got := err.Error(); !strings.HasPrefix(got, tt.wantMsg) {
				t.Errorf("error = %q, want prefix %q", got, tt.wantMsg)
			}
		})
	}
}

func TestAppendCommands(t *testing.T) {
	got, err := appendCommands(nil, [][]any{{"SET", "k", 1}, {"GET", "k"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(`[["SET","k","1"],["GET","k"]]`, string(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	tests := []struct {
		name    string
		cmds    [][]any
		wantMsg string
	}{
		{"none", nil, "upstash: invalid argument: no commands given"},
		{"empty command", [][]any{{"PING"}, {}}, "upstash: invalid argument: command 1 is empty"},
		{"bad argument", [][]any{{"PING"}, {"GET", "\xff"}}, "upstash: invalid argument: command 1 argument 1 is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := appendCommands(nil, tt.cmds)
			if !errors.Is(err, ErrInvalidArgument) || !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Errorf("error = %v, want ErrInvalidArgument with prefix %q", err, tt.wantMsg)
			}
		})
	}
}

func TestAppendScriptCall(t *testing.T) {
	tests := []struct {
		name    string
		keys    []string
		args    []any
		sargs   []string
		want    string
		wantErr string
	}{
		{"keys and any args", []string{"a", "b c"}, []any{1, "x"}, nil, `["EVALSHA","0123","2","a","b c","1","x"]`, ""},
		{"string args", []string{"k"}, nil, []string{"1", "2"}, `["EVALSHA","0123","1","k","1","2"]`, ""},
		{"no keys", nil, nil, nil, `["EVALSHA","0123","0"]`, ""},
		{"bad key", []string{"ok", "\xff"}, nil, nil, "", "upstash: invalid argument: key 1 is not valid UTF-8"},
		{"bad any arg", nil, []any{1, false}, nil, "", "upstash: invalid argument: script argument 1 has unsupported type bool"},
		{"bad string arg", nil, nil, []string{"\xfe"}, "", "upstash: invalid argument: script argument 0 is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendScriptCall(nil, "EVALSHA", "0123", tt.keys, tt.args, tt.sargs)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidArgument) || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want ErrInvalidArgument with prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestArgumentErrorsOmitValues(t *testing.T) {
	secret := "SECRET-VALUE-\xff"
	_, err := appendCommand(nil, -1, []any{"SET", "k", secret})
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error = %v, want an error without the value", err)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\x00", "\"\\", "☃", "\xff", "\xed\xa0\x80", "a\u2028b", "\U0001F600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		body, ok := appendString(nil, s)
		if ok != utf8.ValidString(s) {
			t.Fatalf("ok = %v for valid UTF-8 = %v", ok, utf8.ValidString(s))
		}
		if !ok {
			return
		}
		var got string
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("encoding/json rejects %q: %v", body, err)
		}
		if got != s {
			t.Fatalf("round trip: got %q, want %q", got, s)
		}
	})
}
