package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

var (
	buildDir  string
	buildOnce sync.Once
	buildOut  []byte
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildBootstrap builds this function once, as Lambda runs it
// (-tags lambda.norpc), and returns the binary's path.
func buildBootstrap(t *testing.T) string {
	t.Helper()
	goBin := redistest.Need(t, "go")
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "predict-bootstrap-"); buildErr != nil {
			return
		}
		cmd := exec.Command(goBin, "build", "-tags", "lambda.norpc", "-o", filepath.Join(buildDir, "bootstrap"), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(buildDir, "bootstrap")
}

// runtimeAPI is a minimal Lambda Runtime API: it hands out one event, records
// the function's answer, and then holds the next poll open, as Lambda does
// between invocations.
type runtimeAPI struct {
	event []byte
	mu    sync.Mutex
	sent  bool
	done  chan struct{}
	path  string // where the answer was posted
	reply []byte
}

func (rt *runtimeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const next = "/2018-06-01/runtime/invocation/next"
	switch {
	case r.Method == http.MethodGet && r.URL.Path == next:
		rt.mu.Lock()
		first := !rt.sent
		rt.sent = true
		rt.mu.Unlock()
		if !first {
			<-r.Context().Done() // the process is stopped by the test
			return
		}
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", "inv-1")
		w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
		w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:PredictFunction")
		w.Write(rt.event)
	case r.Method == http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		rt.mu.Lock()
		defer rt.mu.Unlock()
		if rt.path == "" {
			rt.path, rt.reply = r.URL.Path, body
			close(rt.done)
		}
	default:
		http.NotFound(w, r)
	}
}

func TestBootstrapServesAnEvent(t *testing.T) {
	bin := buildBootstrap(t)
	event, err := os.ReadFile("../../events/predict-valid.json")
	if err != nil {
		t.Fatal(err)
	}
	var req events.APIGatewayProxyRequest
	if err := json.Unmarshal(event, &req); err != nil {
		t.Fatal(err)
	}
	apiKey := req.Headers["X-Api-Key"]

	rt := &runtimeAPI{event: event, done: make(chan struct{})}
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(srv.URL, "http://"), "LOG_LEVEL=debug")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })

	select {
	case <-rt.done:
	case <-time.After(30 * time.Second): // a hang guard, not a speed assertion
		cancel()
		cmd.Wait()
		t.Fatalf("no answer from the function; stderr:\n%s", stderr.String())
	}
	rt.mu.Lock()
	path, reply := rt.path, rt.reply
	rt.mu.Unlock()
	if path != "/2018-06-01/runtime/invocation/inv-1/response" {
		t.Fatalf("answer posted to %s, want the response endpoint; body %s", path, reply)
	}
	var resp events.APIGatewayProxyResponse
	if err := json.Unmarshal(reply, &resp); err != nil {
		t.Fatalf("answer is not a proxy response: %v\n%s", err, reply)
	}
	if resp.StatusCode != http.StatusOK || resp.Headers["X-RateLimit-Remaining"] != "49" {
		t.Errorf("status %d, X-RateLimit-Remaining %q; want 200, 49\n%s", resp.StatusCode, resp.Headers["X-RateLimit-Remaining"], reply)
	}

	cancel()
	cmd.Wait()
	logs := stderr.String()
	if strings.Contains(logs, apiKey) {
		t.Errorf("the API key reached the logs:\n%s", logs)
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			line = m
		}
	}
	got := map[string]any{"requestId": line["requestId"], "status": line["status"], "route": line["route"], "tier": line["tier"]}
	want := map[string]any{"requestId": req.RequestContext.RequestID, "status": float64(200), "route": "POST /predict", "tier": "authenticated"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request log line (-want +got):\n%s\nstderr:\n%s", diff, logs)
	}
}

func TestBootstrapRejectsBadLogLevel(t *testing.T) {
	bin := buildBootstrap(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=verbose", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1; output:\n%s", err, out)
	}
	if want := `LOG_LEVEL: "verbose" is not one of debug, info, warn, error`; !strings.Contains(string(out), want) {
		t.Errorf("output %q does not contain %q", out, want)
	}
}
