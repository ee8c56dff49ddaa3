package upstash

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseSingle(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		base64  bool
		want    Value
		wantMsg string // "error" member
	}{
		{name: "status OK", body: `{"result":"OK"}`, want: StringValue("OK")},
		{name: "string", body: `{"result":"bar"}`, want: StringValue("bar")},
		{name: "integer", body: `{"result":42}`, want: IntValue(42)},
		{name: "negative integer", body: `{"result":-9223372036854775808}`, want: IntValue(math.MinInt64)},
		{name: "integer beyond int64 becomes float", body: `{"result":18446744073709551616}`, want: FloatValue(18446744073709551616)},
		{name: "float", body: `{"result":1.5e3}`, want: FloatValue(1500)},
		{name: "negative float", body: `{"result":-0.25E-2}`, want: FloatValue(-0.0025)},
		{name: "18-digit integer", body: `{"result":-999999999999999999}`, want: IntValue(-999999999999999999)},
		{name: "19-digit integer", body: `{"result":9223372036854775807}`, want: IntValue(math.MaxInt64)},
		{name: "huge exponent", body: `{"result":1e999}`, want: FloatValue(math.Inf(1))},
		{name: "zero", body: `{"result":0}`, want: IntValue(0)},
		{name: "nil", body: `{"result":null}`, want: Value{}},
		{name: "empty array", body: `{"result":[]}`, want: ArrayValue()},
		{name: "nested array", body: `{"result":[1,"a",null,[2,["b"]],[]]}`, want: ArrayValue(IntValue(1), StringValue("a"), Value{}, ArrayValue(IntValue(2), ArrayValue(StringValue("b"))), ArrayValue())},
		{name: "white space", body: " \n{ \"result\" :\t[ 1 , 2 ] }\r\n", want: ArrayValue(IntValue(1), IntValue(2))},
		{name: "escapes", body: `{"result":"a\"b\\c\/d\b\f\n\r\t\u00e9\u2603\ud83d\ude00"}`, want: StringValue("a\"b\\c/d\b\f\n\r\t\u00e9\u2603\U0001F600")},
		{name: "lone surrogate becomes U+FFFD", body: `{"result":"\ud800x"}`, want: StringValue("\uFFFDx")},
		{name: "surrogate followed by non-surrogate escape", body: `{"result":"\ud800\u0041"}`, want: StringValue("\uFFFDA")},
		{name: "raw unicode", body: `{"result":"日本 ☃"}`, want: StringValue("日本 ☃")},
		{name: "escaped member name", body: `{"res\u0075lt":7}`, want: IntValue(7)},
		{name: "unknown members skipped", body: `{"x":{"a":[1,{"b":true}],"c":false},"result":1,"y":null}`, want: IntValue(1)},
		{name: "command error", body: `{"error":"ERR wrong number of arguments for 'get' command"}`, wantMsg: "ERR wrong number of arguments for 'get' command"},
		{name: "error wins over result", body: `{"result":1,"error":"boom"}`, wantMsg: "boom"},
		{name: "null error ignored", body: `{"result":1,"error":null}`, want: IntValue(1)},

		{name: "base64 string", body: `{"result":"` + b64("bar") + `"}`, base64: true, want: StringValue("bar")},
		{name: "base64 binary string", body: `{"result":"` + b64("\x00\xff\xfe") + `"}`, base64: true, want: StringValue("\x00\xff\xfe")},
		{name: "base64 empty string", body: `{"result":""}`, base64: true, want: StringValue("")},
		{name: "base64 OK stays", body: `{"result":"OK"}`, base64: true, want: StringValue("OK")},
		{name: "base64 stored value OK is encoded", body: `{"result":"T0s="}`, base64: true, want: StringValue("OK")},
		{name: "base64 integer untouched", body: `{"result":5}`, base64: true, want: IntValue(5)},
		{name: "base64 array, every string decoded", body: `{"result":["` + b64("a") + `",1,null,["` + b64("OK") + `"]]}`, base64: true, want: ArrayValue(StringValue("a"), IntValue(1), Value{}, ArrayValue(StringValue("OK")))},
		{name: "base64 invalid kept as is", body: `{"result":"not base64!"}`, base64: true, want: StringValue("not base64!")},
		{name: "base64 escaped slash", body: `{"result":"` + strings.ReplaceAll(b64("\xff\xff"), "/", `\/`) + `"}`, base64: true, want: StringValue("\xff\xff")},
		{name: "base64 error message not decoded", body: `{"error":"NOSCRIPT No matching script"}`, base64: true, wantMsg: "NOSCRIPT No matching script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg, hasErr, err := parseSingle([]byte(tt.body), tt.base64)
			if err != nil {
				t.Fatalf("parseSingle: %v", err)
			}
			if hasErr != (tt.wantMsg != "") || msg != tt.wantMsg {
				t.Errorf("error member = %q (present %v), want %q", msg, hasErr, tt.wantMsg)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("value mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSingleMalformed(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"empty", ``, "unexpected end of reply"},
		{"not JSON", `<html>oops</html>`, "expected an object"},
		{"truncated object", `{"result":"ab`, "unexpected end of reply"},
		{"truncated array", `{"result":[1,2`, "unexpected end of reply"},
		{"truncated after member", `{"result":1`, "unexpected end of reply"},
		{"neither result nor error", `{"foo":1}`, `object has neither "result" nor "error"`},
		{"empty object", `{}`, `object has neither "result" nor "error"`},
		{"only a null error", `{"error":null}`, `object has neither "result" nor "error"`},
		{"array instead of object", `[{"result":1}]`, "expected an object"},
		{"boolean result", `{"result":true}`, "unexpected boolean"},
		{"object result", `{"result":{"a":1}}`, "unexpected object"},
		{"error not a string", `{"error":42}`, `"error" is not a string`},
		{"trailing data", `{"result":1} x`, "data after the reply"},
		{"two objects", `{"result":1}{"result":2}`, "data after the reply"},
		{"bad escape", `{"result":"\x"}`, "invalid escape"},
		{"bad unicode escape", `{"result":"\u12G4"}`, "invalid \\u escape"},
		{"raw control character", "{\"result\":\"a\nb\"}", "control character in string"},
		{"leading zero", `{"result":012}`, "invalid number"},
		{"lone minus", `{"result":-}`, "invalid number"},
		{"bad number", `{"result":1.2.3}`, "invalid number"},
		{"fraction without digits", `{"result":1.}`, "invalid number"},
		{"exponent without digits", `{"result":1e+}`, "invalid number"},
		{"plus sign", `{"result":+1}`, "unexpected character"},
		{"hex", `{"result":0x1}`, "expected ',' or '}'"},
		{"bad literal", `{"result":nul}`, "invalid literal"},
		{"missing colon", `{"result" 1}`, "expected ':'"},
		{"missing comma", `{"result":[1 2]}`, "expected ',' or ']'"},
		{"too deep", `{"result":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`, "arrays nested too deeply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := parseSingle([]byte(tt.body), false)
			if err == nil {
				t.Fatalf("parseSingle(%q) succeeded, want an error containing %q", tt.body, tt.want)
			}
			if _, ok := err.(malformedError); !ok {
				t.Errorf("error type %T, want malformedError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseMulti(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		n       int
		base64  bool
		want    []any // Value.Any() of each result, or "ERR:<message>"
		wantErr string
	}{
		{name: "values and errors", body: `[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},{"result":[1,null]}]`, n: 3,
			want: []any{"OK", "ERR:ERR value is not an integer or out of range", []any{int64(1), nil}}},
		{name: "base64", body: `[{"result":"OK"},{"result":"` + b64("v") + `"},{"error":"WRONGTYPE x"}]`, n: 3, base64: true,
			want: []any{"OK", "v", "ERR:WRONGTYPE x"}},
		{name: "too few results", body: `[{"result":1}]`, n: 2, wantErr: "1 results for 2 commands"},
		{name: "too many results", body: `[{"result":1},{"result":2},{"result":3}]`, n: 2, wantErr: "3 results for 2 commands"},
		{name: "empty array", body: `[]`, n: 1, wantErr: "0 results for 1 commands"},
		{name: "not an array", body: `{"result":1}`, n: 1, wantErr: "expected an array of results"},
		{name: "item without result", body: `[{"result":1},{"oops":2}]`, n: 2, wantErr: `object has neither "result" nor "error"`},
		{name: "item not an object", body: `[1]`, n: 1, wantErr: "expected an object"},
		{name: "truncated", body: `[{"result":1},`, n: 2, wantErr: "unexpected end of reply"},
		{name: "trailing", body: `[{"result":1}]]`, n: 1, wantErr: "data after the reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]Result, tt.n)
			err := parseMulti([]byte(tt.body), tt.base64, out, 200)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make([]any, len(out))
			for i, r := range out {
				if r.Err != nil {
					e := r.Err.(*Error)
					if e.Kind != KindCommand {
						t.Errorf("item %d kind = %v, want command", i, e.Kind)
					}
					got[i] = "ERR:" + e.Message
					continue
				}
				got[i] = r.Value.Any()
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseSingle checks that no input panics, and that strings decode as
// encoding/json decodes them.
func FuzzParseSingle(f *testing.F) {
	for _, s := range []string{`{"result":"a"}`, `{"result":[1,[2,"x"],null]}`, `{"error":"e"}`, `{"result":"\ud83d\ude00"}`, `[`, `{"result":-0.5e-3}`, `{"x":{"y":[{}]},"result":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, _, hasErr, err := parseSingle(body, false)
		_, _, _, _ = parseSingle(body, true)
		_ = parseMulti(body, false, make([]Result, 2), 200)
		if err != nil || hasErr || v.Type() != TypeString {
			return
		}
		if !utf8.Valid(body) {
			return // encoding/json replaces invalid bytes; this parser keeps them
		}
		var ref map[string]any
		if json.Unmarshal(body, &ref) != nil {
			return // encoding/json is stricter about some inputs
		}
		want, ok := ref["result"].(string)
		if !ok {
			t.Fatalf("parsed a string, encoding/json says %#v", ref["result"])
		}
		if got, _ := v.String(); got != want {
			t.Fatalf("string %q, encoding/json says %q", got, want)
		}
	})
}
