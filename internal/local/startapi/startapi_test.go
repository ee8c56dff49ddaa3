package startapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/apitest"
	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/redistest"

	"github.com/bucketgate/bucketgate/internal/local/sam"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
)

const testTemplate = "testdata/template.yaml"

var (
	buildOnce sync.Once
	buildDir  string
	built     map[string]string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// prebuilt builds the test template's functions once per test binary,
// through startapi.Build (the makefile path), and returns the executables.
func prebuilt(t *testing.T) map[string]string {
	t.Helper()
	redistest.Need(t, "make") // builds run the template's makefile targets
	redistest.Need(t, "go")
	buildOnce.Do(func() {
		tmpl, err := sam.Load(testTemplate)
		if err != nil {
			buildErr = err
			return
		}
		fns, err := tmpl.Functions(nil)
		if err != nil {
			buildErr = err
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "localapi-test-")
		if buildErr != nil {
			return
		}
		list := []sam.Function{fns["EchoFunction"], fns["AuthFunction"]}
		built, buildErr = startapi.Build(context.Background(), "testdata", list, buildDir, io.Discard)
	})
	if buildErr != nil {
		t.Fatalf("building the test functions: %v", buildErr)
	}
	return built
}

func startAPI(t *testing.T, opts startapi.Options) (*startapi.App, *httptest.Server, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	if opts.Template == "" {
		opts.Template = testTemplate
	}
	if opts.Prebuilt == nil {
		opts.Prebuilt = prebuilt(t)
	}
	opts.Logs = logs
	app, srv := apitest.Serve(t, opts)
	return app, srv, logs
}

type echoed struct {
	Path           string
	Resource       string
	PathParameters map[string]string
	Authorizer     map[string]any
	SourceIP       string
	Stage          string
	PID            int
	Cwd            string
	Env            map[string]string
	Upstash        string
}

func get(t *testing.T, srv *httptest.Server, method, path string, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func TestStartAPIServesTheTemplate(t *testing.T) {
	app, srv, _ := startAPI(t, startapi.Options{})
	if app.UpstashURL() == "" {
		t.Fatal("no embedded Upstash endpoint although UPSTASH_REDIS_REST_URL is declared empty")
	}
	templateDir, _ := filepath.Abs("testdata")

	t.Run("open route", func(t *testing.T) {
		status, _, body := get(t, srv, "GET", "/open", nil)
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		var e echoed
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		want := echoed{
			Path: "/open", Resource: "/open", SourceIP: "127.0.0.1", Stage: "test", PID: e.PID, Cwd: templateDir,
			Env:     map[string]string{"GREETING": "hello", "ONLY_ECHO": "template", "UNDECLARED": ""},
			Upstash: "PONG", // the function reached the embedded endpoint with the injected token
		}
		if diff := cmp.Diff(want, e); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	tests := []struct {
		name       string
		auth       string
		wantStatus int
		wantBody   string
		wantRetry  string
	}{
		{name: "allowed", auth: "allow", wantStatus: 200},
		{name: "denied renders the 429 gateway response", auth: "deny", wantStatus: 429, wantBody: `{"message":"Too Many Requests","retryAfter":2}`, wantRetry: "2"},
		{name: "Unauthorized", auth: "unauthorized", wantStatus: 401, wantBody: `{"message":"Unauthorized"}`},
		{name: "authorizer error", auth: "error", wantStatus: 500, wantBody: `{"message":null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := get(t, srv, "DELETE", "/guarded/7", map[string]string{"X-Test-Auth": tc.auth})
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tc.wantStatus, body)
			}
			if tc.wantBody != "" && string(body) != tc.wantBody {
				t.Errorf("body %s, want %s", body, tc.wantBody)
			}
			if got := h.Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tc.wantRetry)
			}
			if status != 200 {
				return
			}
			var e echoed
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]string{"id": "7"}, e.PathParameters); diff != "" {
				t.Errorf("pathParameters (-want +got):\n%s", diff)
			}
			delete(e.Authorizer, "integrationLatency")
			wantAuth := map[string]any{"principalId": "tester", "tier": "test", "retryAfter": "0", "sourceIp": "127.0.0.1"}
			if diff := cmp.Diff(wantAuth, e.Authorizer); diff != "" {
				t.Errorf("authorizer context (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("warm process is reused", func(t *testing.T) {
		var pids []int
		for range 3 {
			_, _, body := get(t, srv, "GET", "/open", nil)
			var e echoed
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatal(err)
			}
			pids = append(pids, e.PID)
		}
		if pids[0] != pids[1] || pids[1] != pids[2] {
			t.Errorf("sequential requests served by pids %v, want one warm process", pids)
		}
	})
}

func TestEnvironmentPrecedence(t *testing.T) {
	ev, err := startapi.ParseEnvVars([]byte(`{
		"Parameters": {"ONLY_ECHO": "from-parameters", "NOBODY_DECLARES": "x"},
		"EchoFunction": {"GREETING": "from-function-section", "UNDECLARED": "y"},
		"Ghost": {"A": "1"}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	app, srv, _ := startAPI(t, startapi.Options{
		EnvVars:    ev,
		Parameters: map[string]string{"Greeting": "from-parameter-override"},
		Getenv: func(k string) string {
			if k == "AWS_ACCESS_KEY_ID" {
				return "AKIDLOCAL"
			}
			return ""
		},
	})
	_, _, body := get(t, srv, "GET", "/open", nil)
	var e echoed
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	wantEnv := map[string]string{"GREETING": "from-function-section", "ONLY_ECHO": "from-parameters", "UNDECLARED": ""}
	if diff := cmp.Diff(wantEnv, e.Env); diff != "" {
		t.Errorf("function environment (-want +got):\n%s", diff)
	}
	if got := startapi.EnvOf(app)["AuthFunction"]["GREETING"]; got != "from-parameter-override" {
		t.Errorf("AuthFunction GREETING = %q, want the parameter override", got)
	}
	if got := startapi.EnvOf(app)["EchoFunction"]["AWS_ACCESS_KEY_ID"]; got != "AKIDLOCAL" {
		t.Errorf("AWS_ACCESS_KEY_ID = %q, want it passed through from the host", got)
	}
	wantWarnings := []string{
		`env-vars: EchoFunction.UNDECLARED is ignored: the template does not declare UNDECLARED for EchoFunction`,
		`env-vars: Parameters.NOBODY_DECLARES is ignored: no function in the template declares it`,
		`env-vars: section "Ghost" names no function of the template; it is ignored`,
	}
	if diff := cmp.Diff(wantWarnings, startapi.WarningsOf(app)); diff != "" {
		t.Errorf("Warnings (-want +got):\n%s", diff)
	}
}

func TestUpstashFromEnvVarsIsNotReplaced(t *testing.T) {
	ev := startapi.EnvVars{"Parameters": {"UPSTASH_REDIS_REST_URL": "http://127.0.0.1:1", "UPSTASH_REDIS_REST_TOKEN": "mine"}}
	app, _, _ := startAPI(t, startapi.Options{EnvVars: ev})
	if u := app.UpstashURL(); u != "" {
		t.Errorf("embedded Upstash started at %s although UPSTASH_REDIS_REST_URL is set", u)
	}
	for _, id := range []string{"EchoFunction", "AuthFunction"} {
		if got := startapi.EnvOf(app)[id]["UPSTASH_REDIS_REST_URL"]; got != "http://127.0.0.1:1" {
			t.Errorf("%s: UPSTASH_REDIS_REST_URL = %q", id, got)
		}
	}
}

func TestStartFunction(t *testing.T) {
	logs := &syncbuf.Buffer{}
	opts := startapi.Options{Template: testTemplate, Prebuilt: prebuilt(t), Logs: logs}
	app, err := startapi.StartFunction(context.Background(), opts, "EchoFunction")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if len(app.Functions) != 1 || app.Gateway != nil {
		t.Errorf("StartFunction prepared %d functions and gateway %v, want only the one function", len(app.Functions), app.Gateway)
	}
	res, err := app.Invoke(context.Background(), "EchoFunction", []byte(`{"fail":"nope"}`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Error == nil || res.Error.Message != "nope" {
		t.Errorf("Error = %+v, want the function's error", res.Error)
	}

	_, err = startapi.StartFunction(context.Background(), opts, "NoSuchFunction")
	if !errors.Is(err, startapi.ErrUnknownFunction) || !strings.Contains(err.Error(), "AuthFunction, EchoFunction") {
		t.Errorf("error = %v, want ErrUnknownFunction listing the template's functions", err)
	}
}

func TestBuildFailureShowsOutput(t *testing.T) {
	redistest.Need(t, "make")
	_, err := startapi.StartFunction(context.Background(), startapi.Options{
		Template: "testdata/broken-build.yaml", BuildDir: t.TempDir(), Logs: io.Discard,
	}, "BrokenFunction")
	if !errors.Is(err, startapi.ErrBuild) || !strings.Contains(err.Error(), "compiler says no") {
		t.Errorf("error = %v, want ErrBuild carrying the build output", err)
	}
}

func TestBuildWithMakefile(t *testing.T) {
	// The shared prebuilt executables come from Build; check what it made.
	exes := prebuilt(t)
	for _, id := range []string{"EchoFunction", "AuthFunction"} {
		exe := exes[id]
		if filepath.Base(exe) != "bootstrap" || filepath.Base(filepath.Dir(exe)) != id {
			t.Errorf("%s built to %s, want <dir>/%s/bootstrap", id, exe, id)
		}
		if st, err := os.Stat(exe); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("%s: %s is not an executable (%v)", id, exe, err)
		}
	}
}

func TestStartAPIErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    startapi.Options
		wantErr string
	}{
		{name: "no template", opts: startapi.Options{}, wantErr: "no template given"},
		{name: "missing template", opts: startapi.Options{Template: "testdata/nope.yaml"}, wantErr: "no such file"},
		{name: "unknown parameter", opts: startapi.Options{Template: testTemplate, Parameters: map[string]string{"Nope": "1"}}, wantErr: "Nope"},
		{name: "no API", opts: startapi.Options{Template: "testdata/broken-build.yaml"}, wantErr: "no function has an Api event"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Logs = io.Discard
			_, err := startapi.StartAPI(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestFunctionFailuresThroughTheGateway(t *testing.T) {
	tests := []struct {
		name               string
		path               string
		integrationTimeout time.Duration
		wantStatus         int
		wantBody           string
		wantStats          map[string]uint64
	}{
		// A crash or a function timeout is a Lambda error: API Gateway
		// answers 502. Only an integration outliving API Gateway's own
		// timeout is a 504.
		{name: "crash", path: "/guarded/crash", wantStatus: 502, wantBody: `{"message":"Internal server error"}`,
			wantStats: map[string]uint64{"crashes": 1, "timeouts": 0}},
		{name: "function timeout", path: "/guarded/sleep", wantStatus: 502, wantBody: `{"message":"Internal server error"}`,
			wantStats: map[string]uint64{"crashes": 0, "timeouts": 1}},
		{name: "integration timeout", path: "/guarded/sleep", integrationTimeout: 300 * time.Millisecond, wantStatus: 504, wantBody: `{"message":"Endpoint request timed out"}`,
			// The function goes on after API Gateway gave up, until its own
			// timeout: whether that has happened yet depends on timing.
			wantStats: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app, srv, _ := startAPI(t, startapi.Options{IntegrationTimeout: tc.integrationTimeout})
			// Warm both functions first. With a short integration timeout a
			// cold start on a loaded machine may itself time out; the
			// process still comes up, so retry until it answers.
			var before echoed
			for i := 0; ; i++ {
				_, _, body := get(t, srv, "GET", "/open", nil)
				status, _, _ := get(t, srv, "GET", "/guarded/1", nil)
				if json.Unmarshal(body, &before) == nil && status == 200 {
					break
				}
				if i == 20 {
					t.Fatalf("the functions never answered: %s", body)
				}
			}
			status, _, body := get(t, srv, "GET", tc.path, nil)
			if status != tc.wantStatus || string(body) != tc.wantBody {
				t.Fatalf("got %d %s, want %d %s", status, body, tc.wantStatus, tc.wantBody)
			}
			// The next request is served (by a fresh process when the old one
			// crashed or was killed).
			for i := 0; ; i++ {
				status, _, body = get(t, srv, "GET", "/open", nil)
				if status == 200 {
					break
				}
				// Only a 504 is expected here: a new process may still be
				// starting while the old one is busy.
				if status != 504 || i == 20 {
					t.Fatalf("request after the failure: %d %s", status, body)
				}
			}
			if tc.wantStats == nil {
				return
			}
			st := app.Functions["EchoFunction"].Stats()
			if got := map[string]uint64{"crashes": st.Crashes, "timeouts": st.Timeouts}; !cmp.Equal(got, tc.wantStats) {
				t.Errorf("EchoFunction stats %v, want %v", got, tc.wantStats)
			}
		})
	}
}
