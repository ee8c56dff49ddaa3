package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
	"github.com/bucketgate/bucketgate/internal/local/startapi/dashboard"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"
)

func TestRotateDemoKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "keys.json")
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

	first, err := rotateDemoKeys(ctx, path, now) // creates the missing directory and file
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	// A user's own key survives rotations.
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ownKey, own, err := apikey.New("alice", "premium", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, own); err != nil {
		t.Fatal(err)
	}
	second, err := rotateDemoKeys(ctx, path, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	var got []demoKey
	for _, k := range second {
		got = append(got, demoKey{Tier: k.Tier, Limit: k.Limit})
	}
	want := []demoKey{{Tier: "authenticated"}, {Tier: "premium"}, {Tier: "authenticated", Limit: demoQuotaLimit}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("demo keys (-want +got):\n%s", diff)
	}
	if rec, err := store.Lookup(ctx, second[2].Key); err != nil || rec.Limit.String() != demoQuotaLimit {
		t.Errorf("the quota key's record: limit %q, %v; want %s", rec.Limit.String(), err, demoQuotaLimit)
	}
	for i, k := range first {
		if _, err := store.Lookup(ctx, k.Key); err != apikey.ErrNotFound {
			t.Errorf("first run's %s key: Lookup error = %v, want ErrNotFound (revoked)", k.Tier, err)
		}
		rec, err := store.Lookup(ctx, second[i].Key)
		if err != nil || rec.Tier != second[i].Tier {
			t.Errorf("second run's %s key: Lookup = %+v, %v", second[i].Tier, rec, err)
		}
	}
	if rec, err := store.Lookup(ctx, ownKey); err != nil || rec.Name != "alice" {
		t.Errorf("user's own key: Lookup = %+v, %v, want it untouched", rec, err)
	}
}

func TestUseKeyFileAndPrintDemo(t *testing.T) {
	opts := startapi.Options{EnvVars: startapi.EnvVars{"Parameters": {"LOG_LEVEL": "debug"}}}
	if err := useKeyFile(&opts, "tmp/keys.json"); err != nil {
		t.Fatal(err)
	}
	p := opts.EnvVars["Parameters"]
	if !filepath.IsAbs(p["API_KEYS_FILE"]) || p["API_KEYS_TABLE"] != "" || p["LOG_LEVEL"] != "debug" {
		t.Errorf("Parameters = %v, want an absolute API_KEYS_FILE, empty API_KEYS_TABLE, LOG_LEVEL kept", p)
	}
	keys := []demoKey{{Tier: "premium", ID: "key_x", Key: "bg_secret"}, {Tier: "authenticated", ID: "key_q", Key: "bg_quota", Limit: demoQuotaLimit}}
	tests := []struct {
		name       string
		routeLimit bool
		want, not  []string
	}{
		{name: "demo route limit", routeLimit: true, want: []string{
			"curl -s http://127.0.0.1:3000/model-info",
			"/premium/predict -H 'X-Api-Key: bg_secret'",
			"/predict/batch -H 'X-Api-Key: bg_secret'",
			"for i in $(seq 6); do curl -s -w ' %{http_code}\\n' -X POST http://127.0.0.1:3000/predict -H 'X-Api-Key: bg_quota'",
			"(id key_q, own limit " + demoQuotaLimit + ")",
		}},
		{name: "route limit from the command line", want: []string{"X-Api-Key: bg_quota"}, not: []string{"/predict/batch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			printDemo(&out, "http://127.0.0.1:3000", keys, tt.routeLimit)
			for _, want := range tt.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
			for _, not := range tt.not {
				if strings.Contains(out.String(), not) {
					t.Errorf("output has %q:\n%s", not, out.String())
				}
			}
		})
	}
}

func TestUseDemoRouteLimit(t *testing.T) {
	tests := []struct {
		name     string
		opts     startapi.Options
		wantSet  bool
		wantKept string // RouteLimits after, when not set by the demo
	}{
		{name: "nothing given", wantSet: true},
		{name: "other parameters", opts: startapi.Options{Parameters: map[string]string{"LogLevel": "debug"}}, wantSet: true},
		{name: "RouteLimits given", opts: startapi.Options{Parameters: map[string]string{"RouteLimits": ""}}, wantKept: ""},
		{name: "ROUTE_LIMITS for every function", opts: startapi.Options{EnvVars: startapi.EnvVars{"Parameters": {"ROUTE_LIMITS": "POST /predict=1/second"}}}},
		{name: "ROUTE_LIMITS for the authorizer", opts: startapi.Options{EnvVars: startapi.EnvVars{"AuthorizerFunction": {"ROUTE_LIMITS": ""}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := useDemoRouteLimit(&tt.opts); got != tt.wantSet {
				t.Errorf("useDemoRouteLimit = %v, want %v", got, tt.wantSet)
			}
			got, ok := tt.opts.Parameters["RouteLimits"]
			switch {
			case tt.wantSet && got != demoRouteLimit:
				t.Errorf("RouteLimits = %q, want %q", got, demoRouteLimit)
			case !tt.wantSet && ok && got != tt.wantKept:
				t.Errorf("RouteLimits = %q, want the command line's %q", got, tt.wantKept)
			}
		})
	}
}

// TestDemoCommandsWork runs what `make run` runs — start-api on
// template.yaml with --demo-keys — executes every command printed under
// "Try:" in a shell, checks what each shows, and checks that
// /_local/metrics counts exactly the decisions the commands saw.
func TestDemoCommandsWork(t *testing.T) {
	redistest.Need(t, "curl")
	redistest.Need(t, "bash")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	dir := t.TempDir()
	go func() {
		done <- run(ctx, []string{"start-api", "--port", "0", "--template", "../../template.yaml", "--build-dir", filepath.Join(dir, "build"),
			"--demo-keys", filepath.Join(dir, "keys.json")}, strings.NewReader(""), pw, &stderr)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("start-api did not shut down")
		}
		if t.Failed() {
			t.Logf("start-api stderr:\n%s", stderr.String())
		}
	})

	// The banner, up to "Running on"; the commands under "Try:".
	var cmds []string
	base := ""
	inTry := false
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if m := mountRE.FindStringSubmatch(line); m != nil {
			base = m[2]
		}
		switch {
		case line == "Try:":
			inTry = true
		case inTry && strings.TrimSpace(line) == "":
			inTry = false
		case inTry && !strings.HasPrefix(strings.TrimSpace(line), "#"):
			cmds = append(cmds, strings.TrimSpace(line))
		}
		if strings.Contains(line, " Running on ") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if base == "" || len(cmds) == 0 {
		t.Fatalf("no banner with Try: lines; stderr:\n%s", stderr.String())
	}

	statuses := map[int]int64{}
	policies := map[string]int64{}
	kinds := map[string]bool{}
	for _, c := range cmds {
		out, err := exec.Command("bash", "-c", c).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c, err, out)
		}
		text := string(out)
		var got []int
		var last string // the last reply's body, for the loops that print them
		switch {
		case strings.Contains(c, "/model-info"):
			kinds["model-info"] = true
			if !strings.Contains(text, `"input_features"`) {
				t.Errorf("%s printed %q, want the model description", c, text)
			}
			continue
		case strings.HasPrefix(c, "curl -si"):
			var code int
			if _, err := fmt.Sscanf(text, "HTTP/1.1 %d", &code); err != nil {
				t.Fatalf("%s printed %q, want an HTTP response", c, text)
			}
			got = []int{code}
		case strings.Contains(c, "-o /dev/null"):
			for _, f := range strings.Fields(text) {
				code, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("%s printed %q, want status codes", c, text)
				}
				got = append(got, code)
			}
		default: // one "BODY CODE" line per request
			for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
				i := strings.LastIndexByte(l, ' ')
				code, err := strconv.Atoi(l[i+1:])
				if i < 0 || err != nil {
					t.Fatalf("%s printed %q, want a body and a status per line", c, text)
				}
				got, last = append(got, code), l[:i]
			}
		}
		// What each command shows.
		pass := 0
		for pass < len(got) && got[pass] == 200 {
			pass++
		}
		for _, code := range got[pass:] {
			if code != 429 {
				t.Errorf("%s: statuses %v, want 200s then 429s", c, got)
				break
			}
		}
		denied := len(got) - pass
		switch {
		case strings.Contains(c, "/predict/batch"):
			kinds["route limit"] = true
			if pass != demoRouteCalls || denied != 1 || !strings.Contains(last, `"policy":"route:POST /predict/batch"`) {
				t.Errorf("%s: statuses %v, last body %s; want %d batches, then a 429 by the route limit", c, got, last, demoRouteCalls)
			}
		case strings.Contains(c, "seq 6"):
			kinds["quota"] = true
			if pass != demoQuota || denied != 1 || !strings.Contains(last, `"policy":"key-quota"`) {
				t.Errorf("%s: statuses %v, last body %s; want %d requests, then a 429 by the key's quota", c, got, last, demoQuota)
			}
		case strings.Contains(c, "seq 12"):
			kinds["burst"] = true
			if pass < 9 || denied < 1 { // the burst of 10, one of which an earlier command spent
				t.Errorf("%s: statuses %v, want the anonymous burst to run out", c, got)
			}
		default:
			if denied != 0 {
				t.Errorf("%s: statuses %v, want 200", c, got)
			}
		}
		for _, code := range got {
			statuses[code]++
		}
		if denied > 0 && last != "" {
			var b struct{ Policy string }
			if err := json.Unmarshal([]byte(last), &b); err == nil {
				policies[b.Policy]++
			}
		}
	}
	for _, k := range []string{"model-info", "burst", "route limit", "quota"} {
		if !kinds[k] {
			t.Errorf("no Try: line shows the %s", k)
		}
	}

	// The dashboard's data counts what the commands saw.
	want := dashboard.Counts{Requests: statuses[200] + statuses[429], Allowed: statuses[200], Denied: statuses[429]}
	var snap dashboard.Snapshot
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(base + "/_local/metrics")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(raw, &snap); err != nil {
			t.Fatalf("/_local/metrics: %v: %s", err, raw)
		}
		if snap.Totals.Requests >= want.Requests || time.Now().After(deadline) {
			break
		}
	}
	if diff := cmp.Diff(want, snap.Totals); diff != "" {
		t.Errorf("/_local/metrics totals (-the commands saw +counted):\n%s", diff)
	}
	for p, n := range policies {
		if snap.Policies[p] < n {
			t.Errorf("/_local/metrics counts %d 429s by %s, want at least %d", snap.Policies[p], p, n)
		}
	}
	if got := snap.Policies["anonymous"] + snap.Policies["route:POST /predict/batch"] + snap.Policies["key-quota"]; got != statuses[429] {
		t.Errorf("/_local/metrics 429s by policy %v, want the %d the commands saw", snap.Policies, statuses[429])
	}
}
