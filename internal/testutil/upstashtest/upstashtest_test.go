package upstashtest

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

// post sends body to env with token and returns "STATUS BODY".
func post(t *testing.T, env *Env, token, body string) string {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: env.RootCAs}}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequest(http.MethodPost, env.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.Status[:3] + " " + string(raw)
}

func TestStart(t *testing.T) {
	starters := []struct {
		name       string
		start      func(testing.TB) *Env
		wantScheme string
		wantRedis  bool
	}{
		{"Start", Start, "http://", false},
		{"StartRedis", StartRedis, "http://", true},
		{"StartTLS", StartTLS, "https://", false},
	}
	for _, s := range starters {
		t.Run(s.name, func(t *testing.T) {
			env := s.start(t)
			if !strings.HasPrefix(env.URL, s.wantScheme) {
				t.Errorf("URL %q does not start with %s", env.URL, s.wantScheme)
			}
			if s.wantRedis && env.Redis == nil {
				t.Fatal("Env.Redis is nil")
			}
			tests := []struct {
				name, token, body, want string
			}{
				{"ping", env.Token, `["PING"]`, `200 {"result":"PONG"}`},
				{"set", env.Token, `["SET","k","v"]`, `200 {"result":"OK"}`},
				{"lua", env.Token, `["EVAL","return {redis.call('GET', KEYS[1]), ARGV[1]}","1","k","a"]`, `200 {"result":["v","a"]}`},
				{"wrong token", "nope", `["PING"]`, `401 {"error":"WRONGPASS invalid or missing auth token"}`},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if got := post(t, env, tt.token, tt.body); got != tt.want {
						t.Errorf("got %s, want %s", got, tt.want)
					}
				})
			}
			if env.Redis != nil {
				if got, want := env.Redis.Do(t, "GET", "k"), "v"; got != want {
					t.Errorf("GET k on the backing redis-server = %q, want %q", got, want)
				}
			}
			if got := env.Server.Requests(); got != uint64(len(tests)) {
				t.Errorf("Requests() = %d, want %d", got, len(tests))
			}
			if (env.RootCAs != nil) != (s.wantScheme == "https://") || (env.CAFile != "") != (env.RootCAs != nil) {
				t.Errorf("RootCAs set: %v, CAFile %q; want both set for TLS only", env.RootCAs != nil, env.CAFile)
			}
		})
	}
}

// childEnv names the test a child process runs (see TestWithoutRedisServer).
const childEnv = "UPSTASHTEST_CHILD"

// TestWithoutRedisServer runs the starters in a child process whose PATH
// holds no redis-server: Start falls back to the embedded store (and runs
// Lua there), StartRedis skips, and both fail under BUCKETGATE_INTEGRATION=1.
func TestWithoutRedisServer(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child process")
	}
	tests := []struct {
		name        string
		child       string
		integration bool
		wantExit    int
		want        string // in the child's output
	}{
		{"Start falls back", "TestChildStart", false, 0, "--- PASS: TestChildStart"},
		{"Start says so", "TestChildStart", false, 0, "redis-server is not on PATH: using the embedded store"},
		{"StartRedis skips", "TestChildStartRedis", false, 0, "--- SKIP: TestChildStartRedis"},
		{"Start fails under integration", "TestChildStart", true, 1, "redis-server not found on PATH and BUCKETGATE_INTEGRATION=1"},
		{"StartRedis fails under integration", "TestChildStartRedis", true, 1, "--- FAIL: TestChildStartRedis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^"+tt.child+"$", "-test.v", "-test.count=1")
			cmd.Env = []string{"PATH=" + t.TempDir(), "HOME=" + os.Getenv("HOME"), childEnv + "=" + tt.child}
			if tt.integration {
				cmd.Env = append(cmd.Env, redistest.RequireEnv+"=1")
			}
			out, err := cmd.CombinedOutput()
			exit := 0
			if ee, ok := err.(*exec.ExitError); ok {
				exit = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("running the child: %v", err)
			}
			if exit != tt.wantExit || !strings.Contains(string(out), tt.want) {
				t.Errorf("child exited %d, want %d, with output containing %q:\n%s", exit, tt.wantExit, tt.want, out)
			}
		})
	}
}

func TestChildStart(t *testing.T) {
	if os.Getenv(childEnv) != t.Name() {
		t.Skip("run by TestWithoutRedisServer")
	}
	env := Start(t)
	if env.Redis != nil {
		t.Fatalf("Env.Redis = %+v, want nil on the embedded store", env.Redis)
	}
	body := `["EVAL","return redis.call('INCRBY', KEYS[1], ARGV[1])","1","n","41"]`
	if got, want := post(t, env, env.Token, body), `200 {"result":41}`; got != want {
		t.Errorf("EVAL = %s, want %s", got, want)
	}
}

func TestChildStartRedis(t *testing.T) {
	if os.Getenv(childEnv) != t.Name() {
		t.Skip("run by TestWithoutRedisServer")
	}
	StartRedis(t)
	t.Error("StartRedis returned without redis-server")
}
