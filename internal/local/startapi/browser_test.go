package startapi_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

// screenshotEnv names a file that gets the dashboard's screenshot after a
// minute of varied traffic, for the README (docs/dashboard.png); the dark
// variant goes beside it (docs/dashboard-dark.png).
const screenshotEnv = "BUCKETGATE_SCREENSHOT"

// consoleProblems collects what the page reports as wrong: console.error
// and console.assert calls, uncaught exceptions, browser log errors (a
// failed request, a blocked resource).
type consoleProblems struct {
	mu   sync.Mutex
	list []string
}

func (c *consoleProblems) listen(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var args []string
		for _, a := range ev.Args {
			args = append(args, a.Description+string(a.Value))
		}
		problem = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		problem = fmt.Sprintf("exception: %s at %s:%d", d.Text, d.URL, d.LineNumber)
		if d.Exception != nil {
			problem += ": " + d.Exception.Description
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelError {
			return
		}
		problem = fmt.Sprintf("log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, problem)
}

func (c *consoleProblems) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.list...)
}

// newBrowser starts headless Chromium (exe) with a fresh profile and
// returns a tab's context, closed at cleanup.
func newBrowser(t *testing.T, exe string, problems *consoleProblems) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(problems.listen))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser; no timeout on this first run
		t.Fatalf("starting %s: %v", exe, err)
	}
	return ctx
}

// request is one call to the test API with the test authorizer's headers
// (testdata/fns/auth); policy is what a 429 is charged to.
type request struct {
	method, path string
	header       map[string]string
	policy       string
}

// tally counts what the client saw.
type tally struct {
	statuses map[int]int64
	policies map[string]int64
	sent     int64
}

func (ty *tally) send(t *testing.T, srv *httptest.Server, r request) {
	t.Helper()
	status, _, body := get(t, srv, r.method, r.path, r.header)
	switch status {
	case 200, 401, 403:
	case 429:
		ty.policies[r.policy]++
	default:
		t.Fatalf("%s %s %v: %d %s", r.method, r.path, r.header, status, body)
	}
	ty.statuses[status]++
	ty.sent++
}

// pageState is what the dashboard shows, read from its DOM.
type pageState struct {
	Tiles        map[string]int64
	Policies     map[string]int64
	Callers      []string
	FallbackWarn bool
	NotReloaded  bool
}

const readPage = `(() => {
	const num = (s) => Number(String(s).replace(/[^0-9]/g, ""));
	const tiles = {};
	for (const t of document.querySelectorAll("[data-metric]")) tiles[t.dataset.metric] = num(t.querySelector(".value").textContent);
	const policies = {};
	for (const p of document.querySelectorAll("[data-policy]")) policies[p.dataset.policy] = num(p.querySelector(".count").textContent);
	return {
		Tiles: tiles, Policies: policies,
		Callers: [...document.querySelectorAll(".crow[data-caller]")].map((e) => e.dataset.caller),
		FallbackWarn: document.querySelector('[data-metric="fallback"]').classList.contains("warn"),
		NotReloaded: window.__sameDocument === true,
	};
})()`

// TestDashboardInABrowser loads /_local/ in headless Chromium, sends
// traffic that gets limited, and checks that the page shows the new counts
// and the 429s per policy without a reload, with nothing logged as an
// error. It saves screenshots (light and dark) in the test's temporary
// directory, and the light one also where BUCKETGATE_SCREENSHOT says.
func TestDashboardInABrowser(t *testing.T) {
	exe := redistest.Need(t, "chromium")
	srv := serveApp(t)
	problems := &consoleProblems{}
	ctx := newBrowser(t, exe, problems)
	run := func(what string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if _, err := chromedp.Run(c, a); err != nil {
			t.Fatalf("%s: %v\nconsole: %q", what, err, problems.get())
		}
	}
	read := func() pageState {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err := chromedp.Run(c, chromedp.Evaluate[pageState](readPage))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return st
	}

	run("load the dashboard", chromedp.Navigate(srv.URL+"/_local/"))
	// Polls end with run's 60 s context, not chromedp's own 30 s default.
	run("wait until it is live", chromedp.Poll[chromedp.Void](`document.getElementById("status").classList.contains("live")`, chromedp.WithPollingTimeout(0)))
	run("mark the document", chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`))
	if st := read(); st.Tiles["requests"] != 0 || len(st.Policies) != 0 {
		t.Fatalf("before any traffic the page shows %+v", st)
	}

	ty := &tally{statuses: map[int]int64{}, policies: map[string]int64{}}
	const limitedKey = "key_N4VX8D2KQ7TB3MWJ"
	limited := map[string]string{"X-Test-Caller": limitedKey, "X-Test-Tier": "authenticated", "X-Test-Limit": "4"}
	for range 7 {
		ty.send(t, srv, request{method: "POST", path: "/predict", header: limited, policy: "authenticated"})
	}
	ty.send(t, srv, request{method: "POST", path: "/predict/batch", policy: "route:POST /predict/batch", header: map[string]string{
		"X-Test-Auth": "deny", "X-Test-Policy": "route:POST /predict/batch", "X-Test-Caller": "ip:203.0.113.40", "X-Test-Tier": "anonymous"}})
	ty.send(t, srv, request{method: "POST", path: "/predict", header: map[string]string{"X-Test-Auth": "unauthorized"}})
	ty.send(t, srv, request{method: "POST", path: "/premium/predict", header: map[string]string{"X-Test-Auth": "forbidden", "X-Test-Caller": limitedKey, "X-Test-Tier": "authenticated"}})
	ty.send(t, srv, request{method: "POST", path: "/predict", header: map[string]string{
		"X-Test-Fallback": "1", "X-Test-Caller": "ip:198.51.100.77", "X-Test-Tier": "anonymous", "X-Test-Limit": "10"}})
	if ty.policies["authenticated"] == 0 {
		t.Fatalf("statuses %v: %s was never limited", ty.statuses, limitedKey)
	}
	if os.Getenv(screenshotEnv) != "" {
		demoTraffic(t, srv, ty)
	}

	// The page polls by itself: wait until it shows every request.
	run("wait for the new counts", chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`document.querySelector('[data-metric="requests"] .value').textContent.replace(/[^0-9]/g, "") === "%d"`, ty.sent),
		chromedp.WithPollingTimeout(0)))
	got := read()
	want := pageState{
		Tiles: map[string]int64{
			"requests": ty.sent, "allowed": ty.statuses[200], "denied": ty.statuses[429],
			"forbidden": ty.statuses[403], "unauthorized": ty.statuses[401], "fallback": got.Tiles["fallback"],
		},
		Policies:     ty.policies,
		Callers:      got.Callers,
		FallbackWarn: true,
		NotReloaded:  true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the page (-want +got):\n%s", diff)
	}
	if got.Tiles["fallback"] < 1 {
		t.Errorf("fallback tile = %d, want at least the one fallback decision", got.Tiles["fallback"])
	}
	if !slices.Contains(got.Callers, limitedKey) {
		t.Errorf("callers %v lack %s", got.Callers, limitedKey)
	}

	// Let the callers' bars settle, then take the pictures.
	run("settle", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		select {
		case <-time.After(1500 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}))
	light := screenshot(t, ctx, "light")
	dark := screenshot(t, ctx, "dark")
	if path := os.Getenv(screenshotEnv); path != "" {
		darkPath := strings.TrimSuffix(path, ".png") + "-dark.png"
		if err := errors.Join(os.WriteFile(path, light, 0o644), os.WriteFile(darkPath, dark, 0o644)); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshots written to %s and %s", path, darkPath)
	}
	if p := problems.get(); len(p) != 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}
}

// screenshot captures the whole page in the given color scheme into the
// test's temporary directory and returns the PNG.
func screenshot(t *testing.T, ctx context.Context, scheme string) []byte {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	setScheme := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	})
	nextFrame := chromedp.Evaluate[chromedp.Void](`new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))`, chromedp.EvalAwaitPromise)
	if err := chromedp.Do(c, setScheme, nextFrame); err != nil {
		t.Fatalf("switching to %s: %v", scheme, err)
	}
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-"+scheme+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s screenshot: %s", scheme, path)
	return png
}

// demoTraffic is a minute of varied traffic for the README's screenshot:
// keyed and anonymous callers on the product's routes, a caller that
// drains its bucket, a quota, a short Upstash outage (fallback), a burst
// against a global limit, 401s and 403s.
func demoTraffic(t *testing.T, srv *httptest.Server, ty *tally) {
	t.Helper()
	const ticks, tick = 600, 100 * time.Millisecond
	hdr := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	start := time.Now()
	for i := range ticks {
		time.Sleep(time.Until(start.Add(time.Duration(i) * tick)))
		upstash := fmt.Sprintf("%.2f", 1.1+0.6*math.Sin(float64(i)/23)+0.4*math.Sin(float64(i)/7))
		outage := i >= 380 && i < 440
		with := func(h map[string]string) map[string]string {
			if outage {
				h["X-Test-Fallback"] = "1"
			} else {
				h["X-Test-Upstash-Ms"] = upstash
			}
			return h
		}
		if i%3 == 0 {
			ty.send(t, srv, request{"POST", "/predict", with(hdr("X-Test-Caller", "key_7QK2M4XA3VJD5RTN", "X-Test-Tier", "authenticated", "X-Test-Limit", "50")), "authenticated"})
		}
		if i%2 == 0 {
			ty.send(t, srv, request{"POST", "/premium/predict", with(hdr("X-Test-Caller", "key_Q9ZT3B2CW8KX4PLM", "X-Test-Tier", "premium", "X-Test-Limit", "200")), "premium"})
		}
		if i%5 == 0 {
			ty.send(t, srv, request{"POST", "/predict/batch", with(hdr("X-Test-Caller", "key_H2FJ8W6NY5RB7QZE", "X-Test-Tier", "authenticated", "X-Test-Limit", "30", "X-Test-Policy", "authenticated-quota")), "authenticated-quota"})
		}
		if i >= 200 && i < 260 {
			ty.send(t, srv, request{"POST", "/predict", with(hdr("X-Test-Caller", "ip:203.0.113.7", "X-Test-Tier", "anonymous", "X-Test-Limit", "10")), "anonymous"})
		}
		if i%40 == 0 {
			ty.send(t, srv, request{"POST", "/predict", with(hdr("X-Test-Caller", "ip:198.51.100.23", "X-Test-Tier", "anonymous", "X-Test-Limit", "10")), "anonymous"})
		}
		if i >= 470 && i < 500 {
			ty.send(t, srv, request{"POST", "/predict/batch", with(hdr("X-Test-Caller", "ip:192.0.2.55", "X-Test-Tier", "anonymous", "X-Test-Limit", "5", "X-Test-Policy", "global")), "global"})
		}
		if i%25 == 0 {
			ty.send(t, srv, request{"POST", "/predict", hdr("X-Test-Auth", "unauthorized"), ""})
		}
		if i%30 == 15 {
			ty.send(t, srv, request{"POST", "/premium/predict", with(hdr("X-Test-Auth", "forbidden", "X-Test-Caller", "key_7QK2M4XA3VJD5RTN", "X-Test-Tier", "authenticated")), ""})
		}
	}
}
