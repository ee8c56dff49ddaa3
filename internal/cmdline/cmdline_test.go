package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExit(t *testing.T) {
	const usage = "usage: tool CMD\n"
	tests := []struct {
		name       string
		err        error
		wantCode   int
		wantStderr string
	}{
		{"success", nil, 0, ""},
		{"help", flag.ErrHelp, 0, usage},
		{"usage error", Usagef("unknown command %q", "frob"), 2, "tool: unknown command \"frob\"\n" + usage},
		{"wrapped usage error", fmt.Errorf("parsing: %w", Usagef("missing ID")), 2, "tool: missing ID\n" + usage},
		{"failure", errors.New("reading the limits: upstash: auth"), 1, "tool: reading the limits: upstash: auth\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			code := Exit("tool", usage, tt.err, &stderr)
			got := struct {
				Code   int
				Stderr string
			}{code, stderr.String()}
			want := struct {
				Code   int
				Stderr string
			}{tt.wantCode, tt.wantStderr}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Exit (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	var out strings.Builder
	if err := WriteJSON(&out, map[string]string{"message": "a < b & c"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("{\"message\":\"a < b & c\"}\n", out.String()); diff != "" {
		t.Errorf("WriteJSON (-want +got):\n%s", diff)
	}
}
