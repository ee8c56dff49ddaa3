package upstashlocal

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRewriteSource(t *testing.T) {
	tests := []struct {
		name        string
		src         string
		comment     bool // embedded store
		want        string
		wantChanged bool
	}{
		{name: "no shebang", src: "return 1", want: "return 1"},
		{name: "allow-key-locking only", src: "#!lua flags=allow-key-locking\nreturn 1", want: "#!lua\nreturn 1", wantChanged: true},
		{name: "first of two flags", src: "#!lua flags=allow-key-locking,no-writes\nreturn 1", want: "#!lua flags=no-writes\nreturn 1", wantChanged: true},
		{name: "second of two flags", src: "#!lua flags=no-writes,allow-key-locking\nreturn 1", want: "#!lua flags=no-writes\nreturn 1", wantChanged: true},
		{name: "other flags untouched", src: "#!lua flags=no-writes\nreturn 1", want: "#!lua flags=no-writes\nreturn 1"},
		{name: "bare shebang untouched", src: "#!lua\nreturn 1", want: "#!lua\nreturn 1"},
		{name: "other options kept", src: "#!lua name=x flags=allow-key-locking\nreturn 1", want: "#!lua name=x\nreturn 1", wantChanged: true},
		{name: "crlf line", src: "#!lua flags=allow-key-locking\r\nreturn 1", want: "#!lua\nreturn 1", wantChanged: true},
		{name: "no newline", src: "#!lua flags=allow-key-locking", want: "#!lua", wantChanged: true},
		{name: "later lines untouched", src: "return 1\n#!lua flags=allow-key-locking", want: "return 1\n#!lua flags=allow-key-locking"},
		{name: "flag as a prefix is not the flag", src: "#!lua flags=allow-key-locking-x\nreturn 1", want: "#!lua flags=allow-key-locking-x\nreturn 1"},
		{name: "embedded comments the shebang", comment: true, src: "#!lua flags=allow-key-locking\nreturn 1", want: "--lua flags=allow-key-locking\nreturn 1", wantChanged: true},
		{name: "embedded comments any shebang", comment: true, src: "#!lua\nreturn 1", want: "--lua\nreturn 1", wantChanged: true},
		{name: "embedded leaves plain scripts", comment: true, src: "return 1", want: "return 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := newScriptRewriter(tt.comment).rewriteSource(tt.src)
			if got != tt.want || changed != tt.wantChanged {
				t.Errorf("rewriteSource(%q) = %q, %v; want %q, %v", tt.src, got, changed, tt.want, tt.wantChanged)
			}
		})
	}
}

func TestRewriteCommand(t *testing.T) {
	const src = "#!lua flags=allow-key-locking\nreturn 1"
	orig, fwd := sha1Hex(src), sha1Hex("#!lua\nreturn 1")
	tests := []struct {
		name string
		cmd  []string
		want []string
	}{
		{name: "eval", cmd: []string{"eval", src, "0"}, want: []string{"eval", "#!lua\nreturn 1", "0"}},
		{name: "eval_ro", cmd: []string{"EVAL_RO", src, "1", "k"}, want: []string{"EVAL_RO", "#!lua\nreturn 1", "1", "k"}},
		{name: "evalsha mapped", cmd: []string{"evalsha", orig, "0"}, want: []string{"evalsha", fwd, "0"}},
		{name: "evalsha unmapped", cmd: []string{"EVALSHA", "abc", "0"}, want: []string{"EVALSHA", "abc", "0"}},
		{name: "script load", cmd: []string{"script", "load", src}, want: []string{"script", "load", "#!lua\nreturn 1"}},
		{name: "script exists", cmd: []string{"SCRIPT", "EXISTS", orig, "abc"}, want: []string{"SCRIPT", "EXISTS", fwd, "abc"}},
		{name: "script flush", cmd: []string{"SCRIPT", "FLUSH"}, want: []string{"SCRIPT", "FLUSH"}},
		{name: "short eval", cmd: []string{"EVAL"}, want: []string{"EVAL"}},
		{name: "short script", cmd: []string{"SCRIPT"}, want: []string{"SCRIPT"}},
		{name: "other command", cmd: []string{"GET", src}, want: []string{"GET", src}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr := newScriptRewriter(false)
			sr.record(orig, fwd)
			in := append([]string(nil), tt.cmd...)
			got, _ := sr.rewriteCommand(tt.cmd, upper(tt.cmd[0]))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rewriteCommand (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(in, tt.cmd); diff != "" {
				t.Errorf("rewriteCommand changed its input (-before +after):\n%s", diff)
			}
		})
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func TestScriptLoadFixup(t *testing.T) {
	const src = "#!lua flags=allow-key-locking\nreturn 1"
	orig, fwd := sha1Hex(src), sha1Hex("#!lua\nreturn 1")
	sr := newScriptRewriter(false)
	_, fix := sr.rewriteCommand([]string{"SCRIPT", "LOAD", src}, "SCRIPT")
	if fix == nil {
		t.Fatal("no fixup for SCRIPT LOAD of a rewritten script")
	}
	tests := []struct {
		name string
		in   reply
		want reply
	}{
		{name: "backend sha becomes the client's", in: reply{value: fwd}, want: reply{value: orig}},
		{name: "errors pass", in: reply{err: "ERR boom"}, want: reply{err: "ERR boom"}},
		{name: "other values pass", in: reply{value: "other"}, want: reply{value: "other"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, fix(tt.in), cmp.AllowUnexported(reply{})); diff != "" {
				t.Errorf("fixup (-want +got):\n%s", diff)
			}
		})
	}
	if got, ok := sr.lookup(orig); !ok || got != fwd {
		t.Errorf("lookup(orig) = %q, %v; want %q, true", got, ok, fwd)
	}
}

func TestScriptMapIsBounded(t *testing.T) {
	sr := newScriptRewriter(false)
	for i := range maxMappedScripts + 10 {
		sr.record(fmt.Sprintf("orig%d", i), fmt.Sprintf("fwd%d", i))
	}
	if n := len(sr.fwd); n > maxMappedScripts {
		t.Errorf("map holds %d scripts, want at most %d", n, maxMappedScripts)
	}
	last := maxMappedScripts + 9
	if got, ok := sr.lookup(fmt.Sprintf("orig%d", last)); !ok || got != fmt.Sprintf("fwd%d", last) {
		t.Errorf("newest mapping lost: %q, %v", got, ok)
	}
	// Re-recording a known script never clears the map.
	sr2 := newScriptRewriter(false)
	for i := range maxMappedScripts {
		sr2.record(fmt.Sprintf("orig%d", i), "f")
	}
	sr2.record("orig0", "f")
	if n := len(sr2.fwd); n != maxMappedScripts {
		t.Errorf("re-recording cleared the map: %d entries, want %d", n, maxMappedScripts)
	}
}
