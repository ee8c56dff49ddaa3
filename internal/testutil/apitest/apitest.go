// Package apitest serves cmd/local's start-api in tests: the app from a
// template and prebuilt functions, on a loopback httptest server, both
// closed when the test ends.
package apitest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bucketgate/bucketgate/internal/local/startapi"
)

// logTail is how much of the output a failed test shows.
const logTail = 30000

// Serve starts the app opts describe and serves it as cmd/local does
// (App.Handler: the API with /_local/ in front). When the test has failed
// by the time it ends, the tail of opts.Logs is logged, if it can say what
// it holds (a fmt.Stringer such as syncbuf.Buffer).
func Serve(t testing.TB, opts startapi.Options) (*startapi.App, *httptest.Server) {
	t.Helper()
	app, err := startapi.StartAPI(context.Background(), opts)
	if err != nil {
		t.Fatalf("StartAPI: %v", err)
	}
	srv := httptest.NewServer(app.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := app.Close(); err != nil {
			t.Errorf("closing the app: %v", err)
		}
		if s, ok := opts.Logs.(fmt.Stringer); ok && t.Failed() {
			out := s.String()
			if len(out) > logTail {
				out = "...\n" + out[len(out)-logTail:]
			}
			t.Logf("function and gateway output (tail):\n%s", out)
		}
	})
	return app, srv
}

// FunctionLines returns the JSON lines (log and EMF) the named function
// wrote to start-api's output, decoded, in order; the emulator's own lines
// (START, END, REPORT, the gateway's) are skipped. A line of the function's
// that is not JSON fails the test.
func FunctionLines(t testing.TB, output, function string) []map[string]any {
	t.Helper()
	prefix := "[" + function + "] {"
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line[len(prefix)-1:]), &m); err != nil {
			t.Fatalf("%s wrote a line that is not JSON: %q", function, line)
		}
		out = append(out, m)
	}
	return out
}
