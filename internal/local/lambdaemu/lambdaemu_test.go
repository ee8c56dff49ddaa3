package lambdaemu_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bucketgate/bucketgate/internal/local/lambdaemu"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// testFunction builds testdata/fn once per test binary and returns its path.
func testFunction(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "lambdaemu-test-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", filepath.Join(buildDir, "bootstrap"), "./testdata/fn")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build testdata/fn: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "bootstrap")
}

// newFunction starts a Function for the test program with cfg's fields
// (Name and Executable filled in) and closes it at the end of the test.
func newFunction(t *testing.T, cfg lambdaemu.Config) (*lambdaemu.Function, *syncbuf.Buffer) {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "TestFunction"
	}
	if cfg.Executable == "" {
		cfg.Executable = testFunction(t)
	}
	logs := &syncbuf.Buffer{}
	if cfg.Logs == nil {
		cfg.Logs = logs
	}
	f, err := lambdaemu.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("function logs:\n%s", logs.String())
		}
	})
	return f, logs
}

func invoke(t *testing.T, f *lambdaemu.Function, event string) lambdaemu.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := f.Invoke(ctx, []byte(event))
	if err != nil {
		t.Fatalf("Invoke(%s): %v", event, err)
	}
	return res
}

func pidOf(t *testing.T, res lambdaemu.Result) int {
	t.Helper()
	if res.Error != nil {
		t.Fatalf("invocation failed: %v", res.Error)
	}
	var out struct{ PID int }
	if err := json.Unmarshal(res.Payload, &out); err != nil || out.PID == 0 {
		t.Fatalf("payload %q: no pid (%v)", res.Payload, err)
	}
	if out.PID != res.PID {
		t.Errorf("function reports pid %d, Result.PID = %d", out.PID, res.PID)
	}
	return out.PID
}

func TestInvokeResults(t *testing.T) {
	f, _ := newFunction(t, lambdaemu.Config{})
	tests := []struct {
		name        string
		event       string
		wantPayload string
		wantErr     *lambdaemu.FunctionError
	}{
		{name: "echo object", event: `{"action":"echo","value":{"a":[1,2,"x"]}}`, wantPayload: `{"a":[1,2,"x"]}`},
		{name: "echo string", event: `{"action":"echo","value":"hi"}`, wantPayload: `"hi"`},
		{name: "handled error", event: `{"action":"error","message":"boom"}`, wantErr: &lambdaemu.FunctionError{Message: "boom", Type: "errorString"}},
		{name: "unauthorized", event: `{"action":"error","message":"Unauthorized"}`, wantErr: &lambdaemu.FunctionError{Message: "Unauthorized", Type: "errorString"}},
		{name: "unknown action", event: `{"action":"nope"}`, wantErr: &lambdaemu.FunctionError{Message: `unknown action "nope"`, Type: "errorString"}},
		{name: "response too large", event: fmt.Sprintf(`{"action":"big","bytes":%d}`, lambdaemu.MaxPayloadBytes), wantErr: &lambdaemu.FunctionError{Type: lambdaemu.ErrorTypeResponseTooLarge}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := invoke(t, f, tc.event)
			if res.RequestID == "" {
				t.Error("RequestID is empty")
			}
			if diff := cmp.Diff(tc.wantErr, res.Error, cmpopts.IgnoreFields(lambdaemu.FunctionError{}, "StackTrace"), cmp.FilterPath(func(p cmp.Path) bool {
				// The size message is Lambda's wording; only the type matters here.
				return tc.wantErr != nil && tc.wantErr.Type == lambdaemu.ErrorTypeResponseTooLarge && p.Last().String() == ".Message"
			}, cmp.Ignore())); diff != "" {
				t.Errorf("Error mismatch (-want +got):\n%s", diff)
			}
			if got := string(res.Payload); got != tc.wantPayload {
				t.Errorf("Payload = %q, want %q", got, tc.wantPayload)
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("LAMBDAEMU_HOST_ONLY", "leaked")
	dir := t.TempDir()
	f, _ := newFunction(t, lambdaemu.Config{
		Name:     "EnvFunction",
		Dir:      dir,
		Handler:  "bootstrap",
		MemoryMB: 256,
		Timeout:  7 * time.Second,
		Region:   "eu-west-1",
		Env: map[string]string{
			"TIER_LIMITS": "anonymous=1/second",
			"AWS_REGION":  "overridden?", // reserved: the emulator's value wins
		},
	})
	names := []string{
		"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
		"AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_REGION", "AWS_DEFAULT_REGION", "LAMBDA_TASK_ROOT", "_HANDLER",
		"TIER_LIMITS", "LAMBDAEMU_HOST_ONLY", "AWS_LAMBDA_LOG_GROUP_NAME",
	}
	ev, _ := json.Marshal(map[string]any{"action": "env", "names": names})
	res := invoke(t, f, string(ev))
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	var got struct{ Env map[string]string }
	if err := json.Unmarshal(res.Payload, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        "EnvFunction",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_TIMEOUT":     "7",
		"AWS_REGION":                      "eu-west-1",
		"AWS_DEFAULT_REGION":              "eu-west-1",
		"LAMBDA_TASK_ROOT":                dir,
		"_HANDLER":                        "bootstrap",
		"TIER_LIMITS":                     "anonymous=1/second",
		"LAMBDAEMU_HOST_ONLY":             "",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/EnvFunction",
	}
	if diff := cmp.Diff(want, got.Env); diff != "" {
		t.Errorf("environment mismatch (-want +got):\n%s", diff)
	}
	// The invoked function's ARN reaches the runtime in the invocation's
	// Lambda-Runtime-Invoked-Function-Arn header.
	res = invoke(t, f, `{"action":"context"}`)
	var lc struct{ FunctionArn, RequestID string }
	if err := json.Unmarshal(res.Payload, &lc); err != nil {
		t.Fatalf("context result %s: %v", res.Payload, err)
	}
	if want := "arn:aws:lambda:eu-west-1:123456789012:function:EnvFunction"; lc.FunctionArn != want || lc.RequestID != res.RequestID {
		t.Errorf("context = %+v, want ARN %q and request ID %q", lc, want, res.RequestID)
	}
}

func TestDeadlineHeader(t *testing.T) {
	f, _ := newFunction(t, lambdaemu.Config{Timeout: 5 * time.Second})
	res := invoke(t, f, `{"action":"deadline"}`)
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	var out struct{ RemainingMs int64 }
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatal(err)
	}
	if out.RemainingMs <= 0 || out.RemainingMs > 5000 {
		t.Errorf("remaining time at the start of the handler = %d ms, want in (0, 5000]", out.RemainingMs)
	}
}

func TestWarmReuse(t *testing.T) {
	f, _ := newFunction(t, lambdaemu.Config{})
	first := invoke(t, f, `{"action":"pid"}`)
	second := invoke(t, f, `{"action":"pid"}`)
	third := invoke(t, f, `{"action":"pid"}`)
	p1, p2, p3 := pidOf(t, first), pidOf(t, second), pidOf(t, third)
	if p1 != p2 || p2 != p3 {
		t.Errorf("pids = %d, %d, %d; want one warm process serving all three", p1, p2, p3)
	}
	if !first.ColdStart || first.InitDuration <= 0 {
		t.Errorf("first invocation: ColdStart=%v InitDuration=%v, want a cold start with its init time", first.ColdStart, first.InitDuration)
	}
	if second.ColdStart || third.ColdStart {
		t.Error("a warm invocation is reported as a cold start")
	}
	st := f.Stats()
	if st.Starts != 1 || st.Invocations != 3 || st.Running != 1 {
		t.Errorf("Stats = %+v, want 1 start, 3 invocations, 1 running", st)
	}
}

func TestConcurrencyIsCapped(t *testing.T) {
	const maxProcs, calls = 3, 10
	f, _ := newFunction(t, lambdaemu.Config{MaxProcs: maxProcs})
	var wg sync.WaitGroup
	results := make([]lambdaemu.Result, calls)
	errs := make([]error, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			results[i], errs[i] = f.Invoke(ctx, []byte(`{"action":"sleep","ms":150}`))
		}()
	}
	wg.Wait()
	pids := map[int]bool{}
	for i := range calls {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		pids[pidOf(t, results[i])] = true
	}
	if len(pids) > maxProcs {
		t.Errorf("%d distinct processes served the calls, want at most %d", len(pids), maxProcs)
	}
	if len(pids) < 2 {
		t.Errorf("only %d process served %d concurrent calls; want the pool to scale out", len(pids), calls)
	}
	st := f.Stats()
	if st.PeakRunning > maxProcs || st.Invocations != calls {
		t.Errorf("Stats = %+v, want PeakRunning <= %d and %d invocations", st, maxProcs, calls)
	}
}

func TestCrashIsReportedAndReplaced(t *testing.T) {
	f, logs := newFunction(t, lambdaemu.Config{})
	before := pidOf(t, invoke(t, f, `{"action":"pid"}`))

	res := invoke(t, f, `{"action":"crash","code":3}`)
	if res.Error == nil || res.Error.Type != lambdaemu.ErrorTypeExit || !strings.Contains(res.Error.Message, "exit status 3") {
		t.Fatalf("crash result = %+v, want a %s error naming exit status 3", res.Error, lambdaemu.ErrorTypeExit)
	}
	if res.PID != before {
		t.Errorf("crash reported for pid %d, want %d", res.PID, before)
	}

	after := pidOf(t, invoke(t, f, `{"action":"pid"}`))
	if after == before {
		t.Errorf("the crashed process %d served again", before)
	}
	if st := f.Stats(); st.Crashes != 1 || st.Starts != 2 {
		t.Errorf("Stats = %+v, want 1 crash and 2 starts", st)
	}
	if err := f.Close(); err != nil { // waits for the exit watcher's log line
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "exited: exit status 3") {
		t.Errorf("logs do not mention the crash:\n%s", logs)
	}
}

func TestPanicExitsAndIsReplaced(t *testing.T) {
	f, _ := newFunction(t, lambdaemu.Config{})
	before := pidOf(t, invoke(t, f, `{"action":"pid"}`))
	res := invoke(t, f, `{"action":"panic"}`)
	if res.Error == nil || res.Error.Message != "test panic" || len(res.Error.StackTrace) == 0 {
		t.Fatalf("panic result = %+v, want the runtime's panic report with a stack trace", res.Error)
	}
	// aws-lambda-go exits after reporting a panic; the next invocation must
	// get a fresh process instead of hanging on the dead one.
	if after := pidOf(t, invoke(t, f, `{"action":"pid"}`)); after == before {
		t.Errorf("process %d served again after panicking", before)
	}
}

func TestTimeoutKillsProcess(t *testing.T) {
	f, logs := newFunction(t, lambdaemu.Config{Timeout: 300 * time.Millisecond})
	before := pidOf(t, invoke(t, f, `{"action":"pid"}`))
	res := invoke(t, f, `{"action":"sleep","ms":20000}`)
	if res.Error == nil || res.Error.Type != lambdaemu.ErrorTypeTimeout || !strings.Contains(res.Error.Message, "Task timed out after 0.30 seconds") {
		t.Fatalf("result = %+v, want a %s error", res.Error, lambdaemu.ErrorTypeTimeout)
	}
	after := pidOf(t, invoke(t, f, `{"action":"pid"}`))
	if after == before {
		t.Errorf("the timed-out process %d served again; it should have been killed", before)
	}
	if st := f.Stats(); st.Timeouts != 1 {
		t.Errorf("Stats = %+v, want 1 timeout", st)
	}
	// The kill is asynchronous; Close waits for every process to be reaped.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Crashes != 0 || st.Running != 0 || st.Starts != 2 {
		t.Errorf("Stats after Close = %+v, want no crash (the kill was ours), 2 starts, none running", st)
	}
	if !strings.Contains(logs.String(), "Task timed out") {
		t.Errorf("logs do not mention the timeout:\n%s", logs)
	}
}

func TestInitFailures(t *testing.T) {
	tests := []struct {
		name     string
		cfg      lambdaemu.Config
		wantType string
		wantMsg  string
	}{
		{
			name:     "exit during init",
			cfg:      lambdaemu.Config{Env: map[string]string{"FN_INIT_EXIT": "4"}},
			wantType: lambdaemu.ErrorTypeExit,
			wantMsg:  "exit status 4",
		},
		{
			name:     "init timeout",
			cfg:      lambdaemu.Config{InitTimeout: 200 * time.Millisecond, Env: map[string]string{"FN_INIT_SLEEP_MS": "20000"}},
			wantType: lambdaemu.ErrorTypeTimeout,
			wantMsg:  "init phase timed out",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFunction(t, tc.cfg)
			// Twice: a function that cannot start fails every invocation, and
			// none hangs.
			for i := range 2 {
				res := invoke(t, f, `{"action":"pid"}`)
				if res.Error == nil || res.Error.Type != tc.wantType || !strings.Contains(res.Error.Message, tc.wantMsg) {
					t.Fatalf("invocation %d: error = %+v, want %s containing %q", i, res.Error, tc.wantType, tc.wantMsg)
				}
			}
		})
	}
}

func TestExecutableVanished(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "bootstrap")
	data, err := os.ReadFile(testFunction(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	f, _ := newFunction(t, lambdaemu.Config{Executable: exe})
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	res := invoke(t, f, `{"action":"pid"}`)
	if res.Error == nil || res.Error.Type != lambdaemu.ErrorTypeInvalidEntry {
		t.Fatalf("error = %+v, want %s", res.Error, lambdaemu.ErrorTypeInvalidEntry)
	}
}

func TestLogsArePrefixed(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	onLine := func(line []byte) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, string(line))
	}
	f, logs := newFunction(t, lambdaemu.Config{Name: "LogFunction", OnLine: onLine})
	res := invoke(t, f, `{"action":"log","message":"hello there"}`)
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	// Output travels through pipes and may trail the result (as in Lambda);
	// Close waits for the processes and their output.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := logs.String()
	for _, want := range []string{
		"[LogFunction] hello there\n",
		"[LogFunction] err: hello there\n",
		"[LogFunction] START RequestId: " + res.RequestID + " Version: $LATEST\n",
		"[LogFunction] END RequestId: " + res.RequestID + "\n",
		"[LogFunction] REPORT RequestId: " + res.RequestID + "\tDuration: ",
		"\tInit Duration: ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("logs lack %q:\n%s", want, got)
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if !strings.HasPrefix(line, "[LogFunction] ") {
			t.Errorf("unprefixed log line %q", line)
		}
	}
	// OnLine sees the function's own output, as CloudWatch Logs would,
	// without the emulator's START/END/REPORT lines.
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(seen)
	if diff := cmp.Diff([]string{"err: hello there", "hello there"}, seen); diff != "" {
		t.Errorf("lines seen by OnLine (-want +got):\n%s", diff)
	}
}

func TestInvokeRejectsPayload(t *testing.T) {
	f, _ := newFunction(t, lambdaemu.Config{})
	tests := []struct {
		name    string
		payload []byte
		want    error
	}{
		{name: "not json", payload: []byte(`{"action":`), want: lambdaemu.ErrInvalidPayload},
		{name: "empty", payload: nil, want: lambdaemu.ErrInvalidPayload},
		{name: "over 6 MB", payload: []byte(`"` + strings.Repeat("x", lambdaemu.MaxPayloadBytes) + `"`), want: lambdaemu.ErrPayloadTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.Invoke(context.Background(), tc.payload)
			if !errors.Is(err, tc.want) {
				t.Errorf("Invoke error = %v, want %v", err, tc.want)
			}
		})
	}
	if st := f.Stats(); st.Starts != 0 {
		t.Errorf("rejected payloads started %d processes", st.Starts)
	}
}

func TestInvokeHonoursContext(t *testing.T) {
	f, logs := newFunction(t, lambdaemu.Config{MaxProcs: 1})
	busy := make(chan lambdaemu.Result, 1)
	go func() {
		res, _ := f.Invoke(context.Background(), []byte(`{"action":"sleep","ms":2000}`))
		busy <- res
	}()
	// Wait until the only process is running the sleep, so the next call has
	// to queue (for far longer than its deadline, however loaded the machine).
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "sleeping"); {
		if time.Now().After(deadline) {
			t.Fatalf("the sleeping invocation never started; logs:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := f.Invoke(ctx, []byte(`{"action":"pid"}`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued Invoke error = %v, want context.DeadlineExceeded", err)
	}
	if res := <-busy; res.Error != nil {
		t.Fatalf("the running invocation failed: %v", res.Error)
	}
	// The withdrawn invocation must not have been run or left in the queue.
	pidOf(t, invoke(t, f, `{"action":"pid"}`))
	if st := f.Stats(); st.Invocations != 2 {
		t.Errorf("Invocations = %d, want 2 (the withdrawn one never ran)", st.Invocations)
	}
}

func TestClose(t *testing.T) {
	f, _ := newFunction(t, lambdaemu.Config{MaxProcs: 1})
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := f.Invoke(context.Background(), []byte(`{"action":"sleep","ms":20000}`))
			errc <- err
		}()
	}
	for f.Stats().Starts == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errc; !errors.Is(err, lambdaemu.ErrClosed) {
			t.Errorf("Invoke during Close: error = %v, want ErrClosed", err)
		}
	}
	if _, err := f.Invoke(context.Background(), []byte(`{}`)); !errors.Is(err, lambdaemu.ErrClosed) {
		t.Errorf("Invoke after Close: error = %v, want ErrClosed", err)
	}
	if st := f.Stats(); st.Running != 0 {
		t.Errorf("%d processes still running after Close", st.Running)
	}
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     lambdaemu.Config
		wantErr string
	}{
		{name: "no name", cfg: lambdaemu.Config{Executable: notExec}, wantErr: "function name is empty"},
		{name: "no executable", cfg: lambdaemu.Config{Name: "F"}, wantErr: "executable path is empty"},
		{name: "missing executable", cfg: lambdaemu.Config{Name: "F", Executable: filepath.Join(dir, "nope")}, wantErr: "no such file"},
		{name: "not executable", cfg: lambdaemu.Config{Name: "F", Executable: notExec}, wantErr: "is not an executable file"},
		{name: "directory", cfg: lambdaemu.Config{Name: "F", Executable: dir}, wantErr: "is not an executable file"},
		{name: "negative timeout", cfg: lambdaemu.Config{Name: "F", Executable: testFunction(t), Timeout: -time.Second}, wantErr: "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := lambdaemu.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// BenchmarkColdStart measures starting a process through its first
// invocation; init-ms is the time from process start to its first GET /next.
func BenchmarkColdStart(b *testing.B) {
	exe := testFunction(b)
	var total time.Duration
	var n int
	for b.Loop() {
		f, err := lambdaemu.New(lambdaemu.Config{Name: "Bench", Executable: exe, Logs: io.Discard})
		if err != nil {
			b.Fatal(err)
		}
		res, err := f.Invoke(context.Background(), []byte(`{"action":"pid"}`))
		if err != nil || res.Error != nil || !res.ColdStart {
			b.Fatalf("invoke: %v %v", err, res.Error)
		}
		total += res.InitDuration
		n++
		_ = f.Close()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "init-ms")
}

// BenchmarkWarmInvoke measures one invocation of a warm process: the Runtime
// API round trip (GET /next answered, POST /response received).
func BenchmarkWarmInvoke(b *testing.B) {
	f, err := lambdaemu.New(lambdaemu.Config{Name: "Bench", Executable: testFunction(b), Logs: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ev := []byte(`{"action":"pid"}`)
	if _, err := f.Invoke(context.Background(), ev); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if res, err := f.Invoke(context.Background(), ev); err != nil || res.Error != nil {
			b.Fatalf("invoke: %v %v", err, res.Error)
		}
	}
}
