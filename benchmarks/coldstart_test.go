package benchmarks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"

	"github.com/bucketgate/bucketgate/internal/local/lambdaemu"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// makeBuild runs the Makefile's build target for one function (the recipe
// `make build` and `sam build` use) into dir, for goarch, and returns the
// bootstrap's path.
func makeBuild(t testing.TB, target, dir, goarch string) string {
	t.Helper()
	redistest.Need(t, "make")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", repoRoot(t), target, "ARTIFACTS_DIR="+dir, "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s GOARCH=%s: %v\n%s", target, goarch, err, out)
	}
	return filepath.Join(dir, "bootstrap")
}

// coldStart is one measured cold start.
type coldStart struct {
	init  time.Duration // process start to first GET /next (lambdaemu)
	first time.Duration // Invoke called (process not yet started) to the first response
}

// coldStartOnce starts a fresh process of exe through the Runtime API
// emulation, sends it event, and measures.
func coldStartOnce(t testing.TB, name, exe string, env map[string]string, event []byte) (coldStart, string) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	f, err := lambdaemu.New(lambdaemu.Config{Name: name, Executable: exe, Env: env, MaxProcs: 1, Logs: logs, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("lambdaemu: %v", err)
	}
	defer f.Close()
	start := time.Now()
	res, err := f.Invoke(context.Background(), event)
	first := time.Since(start)
	if err != nil {
		t.Fatalf("%s: invoke: %v", name, err)
	}
	if res.Error != nil || !res.ColdStart {
		t.Fatalf("%s: error %v, cold start %v; logs:\n%s", name, res.Error, res.ColdStart, logs.String())
	}
	return coldStart{init: res.InitDuration, first: first}, logs.String()
}

var initTraceLine = regexp.MustCompile(`init ([^ ]+) @[0-9.]+ ms, ([0-9.]+) ms clock`)

// topInits reads GODEBUG=inittrace=1 output and returns the n slowest
// package initialisers and the sum of all.
func topInits(logs string, n int) (string, float64) {
	type pkg struct {
		name string
		ms   float64
	}
	var ps []pkg
	var total float64
	for _, m := range initTraceLine.FindAllStringSubmatch(logs, -1) {
		ms, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		ps = append(ps, pkg{m[1], ms})
		total += ms
	}
	slices.SortFunc(ps, func(a, b pkg) int {
		switch {
		case a.ms > b.ms:
			return -1
		case a.ms < b.ms:
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	parts := make([]string, 0, n)
	for _, p := range ps[:min(n, len(ps))] {
		parts = append(parts, fmt.Sprintf("%s %.2f ms", p.name, p.ms))
	}
	return strings.Join(parts, ", "), total
}

// TestSmokeInitTrace checks the inittrace parser on the runtime's format.
func TestSmokeInitTrace(t *testing.T) {
	logs := "[F] init internal/bytealg @0.005 ms, 0 ms clock, 0 bytes, 0 allocs\n" +
		"[F] init crypto/tls @1.2 ms, 0.31 ms clock, 2048 bytes, 9 allocs\n" +
		"[F] init github.com/aws/aws-sdk-go-v2/service/dynamodb @3.1 ms, 1.5 ms clock, 100 bytes, 2 allocs\n"
	got, total := topInits(logs, 2)
	want := "github.com/aws/aws-sdk-go-v2/service/dynamodb 1.50 ms, crypto/tls 0.31 ms"
	if got != want || total != 1.81 {
		t.Errorf("topInits = %q, %v; want %q, 1.81", got, total, want)
	}
}

// benchColdStart is figure 5: cold start through the Runtime API and the
// arm64 binary sizes.
func benchColdStart(t *testing.T) {
	const runs = 20
	rep := newReport(t, "Cold start and binary size")
	tmp := t.TempDir()
	root := repoRoot(t)

	// Sizes: the linux/arm64 binaries `make build` writes.
	var sizeRows [][]string
	for _, fn := range []struct{ target, name string }{
		{"build-AuthorizerFunction", "AuthorizerFunction"},
		{"build-PredictFunction", "PredictFunction"},
	} {
		arm := makeBuild(t, fn.target, filepath.Join(tmp, "arm64", fn.name), "arm64")
		host := makeBuild(t, fn.target, filepath.Join(tmp, "host", fn.name), runtime.GOARCH)
		sa, sh := fileSize(t, arm), fileSize(t, host)
		sizeRows = append(sizeRows, []string{fn.name, fmtMB(sa), fmt.Sprintf("%.0f%%", 100*float64(sa)/15e6), fmtMB(sh)})
	}

	up := upstashtest.StartRedis(t)
	keysFile := filepath.Join(tmp, "keys.json")
	newKey(t, keysFile, "authenticated")
	authEnv := func(extra map[string]string) map[string]string {
		env := map[string]string{
			"UPSTASH_REDIS_REST_URL": up.URL, "UPSTASH_REDIS_REST_TOKEN": up.Token,
			"TIER_LIMITS": "", "ROUTE_COSTS": "", "PREMIUM_ROUTES": "", "LIMITER_TIMEOUT": "", "LIMITER_FAILURE_MODE": "", "LOG_LEVEL": "info",
			"API_KEYS_TABLE": "", "API_KEYS_FILE": "",
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	readEvent := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(root, "events", name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	cases := []struct {
		name, fn, event string
		env             map[string]string
	}{
		{"authorizer, production wiring (API_KEYS_TABLE: AWS SDK config; Upstash); anonymous caller",
			"AuthorizerFunction", "authorizer-anonymous.json", authEnv(map[string]string{"API_KEYS_TABLE": "bucketgate-keys"})},
		{"authorizer, local wiring (API_KEYS_FILE; Upstash); anonymous caller",
			"AuthorizerFunction", "authorizer-anonymous.json", authEnv(map[string]string{"API_KEYS_FILE": keysFile})},
		{"predict, POST /predict", "PredictFunction", "predict-valid.json", map[string]string{"LOG_LEVEL": "info"}},
	}
	var rows [][]string
	var traces []string
	for _, c := range cases {
		exe := filepath.Join(tmp, "host", c.fn, "bootstrap")
		event := readEvent(c.event)
		var inits, firsts latencies
		for range runs {
			cs, _ := coldStartOnce(t, c.fn, exe, c.env, event)
			inits = append(inits, cs.init)
			firsts = append(firsts, cs.first)
		}
		rows = append(rows, []string{c.name, fmtDur(inits.pct(0.5)), fmtDur(inits.pct(0.99)),
			fmtDur(firsts.pct(0.5)), fmtDur(firsts.pct(0.99))})
		// One more run with the runtime's package-init trace, to say where
		// init time goes.
		env := map[string]string{"GODEBUG": "inittrace=1"}
		for k, v := range c.env {
			env[k] = v
		}
		cs, logs := coldStartOnce(t, c.fn, exe, env, event)
		top, total := topInits(logs, 4)
		traces = append(traces, fmt.Sprintf("- %s: init %s in that run; package initialisers %.1f ms in all; slowest: %s",
			c.name, fmtDur(cs.init), total, top))
	}

	rep.line("Measured with `%s`; %s.", benchCommand("coldstart"), rep.machine)
	rep.line("")
	rep.line("Binary sizes (`make build`: CGO_ENABLED=0, -tags lambda.norpc, -trimpath, -ldflags \"-s -w\"), target ≤ 15 MB (15,000,000 bytes):")
	rep.line("")
	rep.table([]string{"function", "linux/arm64", "of target", "linux/" + runtime.GOARCH + " (host build timed below)"}, sizeRows)
	rep.line("Cold start of the host build through the Runtime API emulation (internal/local/lambdaemu), %d fresh processes per row,", runs)
	rep.line("one at a time. init: process start to its first GET /next (Go runtime and package init, then main: read the")
	rep.line("environment, build the clients, and for the authorizer Prime: open the Upstash connection and read the live")
	rep.line("settings, plain HTTP on loopback here — the \"prime\" figure measures it over TLS at realistic round trips). first")
	rep.line("response: Invoke called, before the process exists, to the first response (init + the first decision). With %d", runs)
	rep.line("runs p99 is the slowest run. Target: init ≤ 50 ms.")
	rep.line("")
	rep.table([]string{"function and wiring", "init p50", "init p99", "first response p50", "first response p99"}, rows)
	rep.line("Where init goes (`GODEBUG=inittrace=1`, one extra run each):")
	rep.line("")
	for _, l := range traces {
		rep.line("%s", l)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func fmtMB(n int64) string { return fmt.Sprintf("%.2f MB (%d bytes)", float64(n)/1e6, n) }
