package upstashlocal_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// minCasesPerMode guards against a conformance script that silently runs
// fewer cases than it should.
const minCasesPerMode = 25

// TestConformance runs tools/node/upstash-conformance.mjs, which drives the
// server with the official @upstash/redis client (defaults, then
// enableAutoPipelining: false + responseEncoding: false), once against a
// real redis-server and once against the embedded store. Each case the
// script reports becomes a subtest: backend/mode/case.
func TestConformance(t *testing.T) {
	node := redistest.Need(t, "node")
	root := repoRoot(t)
	script := filepath.Join(root, "tools", "node", "upstash-conformance.mjs")
	if _, err := os.Stat(filepath.Join(root, "tools", "node", "node_modules", "@upstash", "redis")); err != nil {
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatalf("tools/node/node_modules is not installed and %s=1: run `make test` (npm ci in tools/node)", redistest.RequireEnv)
		}
		t.Skipf("tools/node/node_modules is not installed (npm ci in tools/node; set %s=1 to make this a failure)", redistest.RequireEnv)
	}

	t.Run("redis", func(t *testing.T) {
		env := upstashtest.StartRedis(t)
		runConformance(t, node, script, env.URL, env.Token, "redis")
	})
	t.Run("embedded", func(t *testing.T) {
		ts := startServer(t, "embedded", upstashlocal.Config{})
		runConformance(t, node, script, ts.URL, testToken, "embedded")
	})
}

type conformanceLine struct {
	Mode    string `json:"mode"`
	Case    string `json:"case"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped"`
	Reason  string `json:"reason"`
	Error   string `json:"error"`
	Summary *struct {
		Passed, Failed, Skipped int
	} `json:"summary"`
}

func runConformance(t *testing.T, node, script, url, token, backend string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = append(os.Environ(),
		"UPSTASH_REDIS_REST_URL="+url,
		"UPSTASH_REDIS_REST_TOKEN="+token,
		"UPSTASH_DISABLE_TELEMETRY=1",
		"CONFORMANCE_BACKEND="+backend,
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("conformance script timed out; stderr:\n%s", stderr.String())
	}

	perMode := map[string]int{}
	failed := 0
	var summary *conformanceLine
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line conformanceLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("unparsable line from the conformance script: %q", sc.Text())
			continue
		}
		if line.Summary != nil {
			summary = &line
			continue
		}
		perMode[line.Mode]++
		if !line.OK {
			failed++
		}
		t.Run(line.Mode+"/"+line.Case, func(t *testing.T) {
			switch {
			case !line.OK:
				t.Errorf("failed with the official client:\n%s", line.Error)
			case line.Skipped:
				t.Skip(line.Reason)
			}
		})
	}
	if summary == nil {
		t.Fatalf("conformance script ended without a summary (%v); stderr:\n%s", runErr, stderr.String())
	}
	for _, mode := range []string{"defaults", "plain"} {
		if perMode[mode] < minCasesPerMode {
			t.Errorf("mode %s ran %d cases, want at least %d", mode, perMode[mode], minCasesPerMode)
		}
	}
	var exitErr *exec.ExitError
	if runErr != nil && (!errors.As(runErr, &exitErr) || failed == 0) {
		t.Errorf("conformance script: %v; stderr:\n%s", runErr, stderr.String())
	}
}

// repoRoot walks up from the test's directory to the one holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}
