package upstashlocal

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPathCommand(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		query   string
		body    string
		want    []string
		wantErr string
	}{
		{name: "segments", path: "/set/k/v", want: []string{"set", "k", "v"}},
		{name: "escaped segments", path: "/get/a%2Fb%20c", want: []string{"get", "a/b c"}},
		{name: "plus is literal in a path", path: "/get/a+b", want: []string{"get", "a+b"}},
		{name: "empty middle segment is an argument", path: "/mget/a//b", want: []string{"mget", "a", "", "b"}},
		{name: "one trailing slash dropped", path: "/ping/", want: []string{"ping"}},
		{name: "body appended", path: "/set/k", body: "v a l", want: []string{"set", "k", "v a l"}},
		{name: "query after body", path: "/set/k", body: "v", query: "EX=100&NX", want: []string{"set", "k", "v", "EX", "100", "NX"}},
		{name: "token is not an argument", path: "/get/k", query: "_token=abc", want: []string{"get", "k"}},
		{name: "query values decoded", path: "/set/k/v", query: "GET&PX=1%30", want: []string{"set", "k", "v", "GET", "PX", "10"}},
		{name: "empty query parts skipped", path: "/get/k", query: "&&", want: []string{"get", "k"}},
		{name: "bad segment", path: "/get/%zz", wantErr: "ERR path segment 2 is not valid URL encoding"},
		{name: "bad query name", path: "/get/k", query: "%zz=1", wantErr: "ERR query parameter 1 is not valid URL encoding"},
		{name: "bad query value", path: "/get/k", query: "EX=1&PX=%zz", wantErr: "ERR query parameter 2 is not valid URL encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pathCommand(tt.path, tt.query, []byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("pathCommand (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQueryToken(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		want   string
		wantOK bool
	}{
		{name: "none", query: "", wantOK: false},
		{name: "only", query: "_token=abc", want: "abc", wantOK: true},
		{name: "among others", query: "EX=1&_token=a%2Bb&NX", want: "a+b", wantOK: true},
		{name: "empty", query: "_token=", want: "", wantOK: true},
		{name: "bad escape", query: "_token=%zz", wantOK: false},
		{name: "similar name", query: "token=abc", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := queryToken(tt.query)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("queryToken(%q) = %q, %v; want %q, %v", tt.query, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// FuzzParse checks that no body or path makes the parsers panic, and that
// whatever they accept is a non-empty command.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`["PING"]`, `[["SET","k","v"],["GET","k"]]`, `[]`, `[[]]`, `{}`, `null`, `[1e999]`,
		`["SET","k",1.5e3,true]`, `[["a"],"b"]`, `"x"`, `[`, `["\ud800"]`, "\xff", `[null]`,
	} {
		f.Add([]byte(seed), "/set/k", "EX=1")
	}
	f.Fuzz(func(t *testing.T, body []byte, path, query string) {
		if cmd, err := parseCommand(body); err == nil && len(cmd) == 0 {
			t.Errorf("parseCommand(%q) accepted an empty command", body)
		}
		if cmds, err := parseBatch(body); err == nil {
			if len(cmds) == 0 {
				t.Errorf("parseBatch(%q) accepted an empty batch", body)
			}
			for i, c := range cmds {
				if len(c) == 0 {
					t.Errorf("parseBatch(%q): command %d is empty", body, i)
				}
			}
		}
		if cmd, err := pathCommand("/"+path, query, body); err == nil && len(cmd) == 0 {
			t.Errorf("pathCommand(%q, %q) returned no command", path, query)
		}
		_, _ = queryToken(query)
		_ = encodeValue([]any{string(body), int64(len(body)), nil}, len(body)%2 == 0, true)
	})
}
