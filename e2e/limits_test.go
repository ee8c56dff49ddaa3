package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// limitsCLI is cmd/limits built once per test binary: the e2e tests make
// live limit changes the way an operator does.
type limitsCLI struct{ exe string }

var (
	limitsOnce sync.Once
	limitsDir  string
	limitsErr  error
)

// buildLimits builds cmd/limits (removed by TestMain).
func buildLimits(t *testing.T) limitsCLI {
	t.Helper()
	limitsOnce.Do(func() {
		if limitsDir, limitsErr = os.MkdirTemp("", "bucketgate-limits-"); limitsErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", limitsDir, "../cmd/limits").CombinedOutput()
		if err != nil {
			limitsErr = fmt.Errorf("go build ./cmd/limits: %v\n%s", err, out)
		}
	})
	if limitsErr != nil {
		t.Fatal(limitsErr)
	}
	return limitsCLI{exe: filepath.Join(limitsDir, "limits")}
}

// run runs the command against s's Upstash endpoint and returns its
// stdout; the error carries its stderr.
func (l limitsCLI) run(s *stack, args ...string) (string, error) {
	cmd := exec.Command(l.exe, args...)
	cmd.Env = []string{"UPSTASH_REDIS_REST_URL=" + s.upstash.URL, "UPSTASH_REDIS_REST_TOKEN=" + s.upstash.Token}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

func cleanupLimits() {
	if limitsDir != "" {
		_ = os.RemoveAll(limitsDir)
	}
}
