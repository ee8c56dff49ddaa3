package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

// The test template and functions are internal/local/startapi's.
const testTemplate = "../../internal/local/startapi/testdata/template.yaml"

var (
	buildDirOnce sync.Once
	sharedBuild  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedBuild != "" {
		_ = os.RemoveAll(sharedBuild)
	}
	os.Exit(code)
}

// buildDir is one --build-dir for the whole test binary, so functions are
// built from scratch once and incrementally after that.
func buildDir(t *testing.T) string {
	t.Helper()
	redistest.Need(t, "make") // builds run the template's makefile targets
	redistest.Need(t, "go")
	buildDirOnce.Do(func() {
		var err error
		if sharedBuild, err = os.MkdirTemp("", "cmd-local-test-"); err != nil {
			t.Fatal(err)
		}
	})
	return sharedBuild
}

func runLocal(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw syncbuf.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errw)
	return code, out.String(), errw.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInvoke(t *testing.T) {
	bd := buildDir(t)
	event := writeFile(t, "event.json", `{"path":"/from-event","resource":"/r"}`)
	failing := writeFile(t, "fail.json", `{"fail":"boom"}`)
	tests := []struct {
		name    string
		stdin   string
		args    []string
		check   func(t *testing.T, stdout string)
		wantErr string // on stderr
	}{
		{
			name: "result on stdout",
			args: []string{"invoke", "EchoFunction", "--event", event, "--template", testTemplate, "--build-dir", bd},
			check: func(t *testing.T, stdout string) {
				var resp struct {
					StatusCode int
					Body       string
				}
				if err := json.Unmarshal([]byte(stdout), &resp); err != nil {
					t.Fatalf("stdout %q is not the function's JSON result: %v", stdout, err)
				}
				var body struct {
					Path    string
					Upstash string
				}
				if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 || body.Path != "/from-event" || body.Upstash != "PONG" {
					t.Errorf("result = %+v / %+v, want 200 echoing the event with a working embedded Upstash", resp, body)
				}
			},
			wantErr: "[EchoFunction] REPORT RequestId:",
		},
		{
			name:  "flags before the logical ID, event from stdin",
			args:  []string{"invoke", "--template", testTemplate, "--build-dir", bd, "--event", "-", "EchoFunction"},
			stdin: `{"fail":"from stdin"}`,
			check: func(t *testing.T, stdout string) {
				want := `{"errorMessage":"from stdin","errorType":"errorString"}` + "\n"
				if stdout != want {
					t.Errorf("stdout = %q, want %q", stdout, want)
				}
			},
		},
		{
			name: "function error is printed as Lambda's error object, exit 0",
			args: []string{"invoke", "EchoFunction", "--event", failing, "--template", testTemplate, "--build-dir", bd},
			check: func(t *testing.T, stdout string) {
				var got map[string]any
				if err := json.Unmarshal([]byte(stdout), &got); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(map[string]any{"errorMessage": "boom", "errorType": "errorString"}, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runLocal(t, tc.stdin, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			tc.check(t, stdout)
			if !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, stderr)
			}
			if strings.Contains(stdout, "START RequestId") {
				t.Error("logs leaked to stdout")
			}
		})
	}
}

func TestCommandErrors(t *testing.T) {
	bd := buildDir(t)
	event := writeFile(t, "event.json", `{}`)
	badJSON := writeFile(t, "bad.json", `{"a":`)
	badEnv := writeFile(t, "env.json", `{"Parameters": ["x"]}`)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "no command", args: nil, wantCode: 2, wantErr: "usage:"},
		{name: "unknown command", args: []string{"deploy"}, wantCode: 2, wantErr: `unknown command "deploy"`},
		{name: "invoke without a function", args: []string{"invoke", "--template", testTemplate}, wantCode: 2, wantErr: "needs a function logical ID"},
		{name: "bad flag", args: []string{"start-api", "--nope"}, wantCode: 2, wantErr: "flag provided but not defined: -nope"},
		{name: "missing template", args: []string{"invoke", "EchoFunction", "--template", "nope.yaml"}, wantCode: 1, wantErr: "template: stat nope.yaml: no such file"},
		{name: "unknown function", args: []string{"invoke", "Nope", "--template", testTemplate, "--event", event, "--build-dir", bd}, wantCode: 1, wantErr: `unknown function "Nope"`},
		{name: "unreadable event", args: []string{"invoke", "EchoFunction", "--template", testTemplate, "--event", "missing.json"}, wantCode: 1, wantErr: "event: open missing.json"},
		{name: "event not JSON", args: []string{"invoke", "EchoFunction", "--template", testTemplate, "--event", badJSON}, wantCode: 1, wantErr: "is not valid JSON"},
		{name: "bad env-vars", args: []string{"invoke", "EchoFunction", "--template", testTemplate, "--event", event, "--env-vars", badEnv}, wantCode: 1, wantErr: `bad env-vars file: "Parameters" must map variable names to values`},
		{name: "missing env-vars", args: []string{"invoke", "EchoFunction", "--template", testTemplate, "--event", event, "--env-vars", "nope.json"}, wantCode: 1, wantErr: "env-vars: open nope.json"},
		{name: "bad parameter override", args: []string{"invoke", "EchoFunction", "--template", testTemplate, "--event", event, "--parameter-overrides", "Greeting"}, wantCode: 1, wantErr: "want Key=Value"},
		{
			name:     "build failure shows the build output",
			args:     []string{"invoke", "BrokenFunction", "--template", "../../internal/local/startapi/testdata/broken-build.yaml", "--build-dir", t.TempDir()},
			wantCode: 1, wantErr: "compiler says no",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runLocal(t, "", tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

var mountRE = regexp.MustCompile(`^Mounting (\w+) at (http://127\.0\.0\.1:\d+)(\S+) \[(\w+)\]`)

func TestStartAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"start-api", "--port", "0", "--template", testTemplate, "--build-dir", buildDir(t),
			"--parameter-overrides", "Greeting=bonjour"}, strings.NewReader(""), pw, &stderr)
		pw.Close()
	}()

	// Read the banner up to the "Running on" line.
	var mounts []string
	base, dashboard := "", ""
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if m := mountRE.FindStringSubmatch(line); m != nil {
			mounts = append(mounts, m[1]+" "+m[4]+" "+m[3])
			base = m[2]
		}
		if rest, ok := strings.CutPrefix(line, "Dashboard: "); ok {
			dashboard, _, _ = strings.Cut(rest, " ")
		}
		if strings.HasPrefix(line, "API TestApi, stage test. Running on ") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if base == "" {
		t.Fatalf("no banner; stderr:\n%s", stderr.String())
	}
	wantMounts := []string{"EchoFunction ANY /guarded/{id}", "EchoFunction GET /open", "EchoFunction POST /predict", "EchoFunction POST /predict/batch", "EchoFunction POST /premium/predict"}
	if diff := cmp.Diff(wantMounts, mounts); diff != "" {
		t.Errorf("mounted routes (-want +got):\n%s", diff)
	}

	resp, err := http.Get(base + "/open")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct{ Env map[string]string }
	if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != 200 || e.Env["GREETING"] != "bonjour" {
		t.Errorf("GET /open = %d %s, want 200 with GREETING from the parameter override", resp.StatusCode, body)
	}

	// The banner's dashboard URL serves the page, outside the API's routes.
	if want := base + "/_local/"; dashboard != want {
		t.Errorf("banner's dashboard URL = %q, want %q", dashboard, want)
	}
	resp, err = http.Get(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(page), "<title>") {
		t.Errorf("GET %s = %d %s, want the dashboard page", dashboard, resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	cancel() // what SIGINT/SIGTERM do
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after shutdown, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("start-api did not shut down")
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("stderr lacks the shutdown notice:\n%s", stderr.String())
	}
}
