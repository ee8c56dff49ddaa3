package faultproxy_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/testutil/faultproxy"
)

// echo is the target: it answers 200 with a JSON body naming the path and
// the Host header it received.
func echo(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Target", "yes")
		_, _ = io.WriteString(w, `{"result":"`+r.URL.Path+` `+string(body)+`"}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

type outcome struct {
	Status int
	Body   string
	Target bool   // the reply came from the target
	Err    string // "", "timeout", "reset", "truncated", or the error text
}

func call(t *testing.T, url string, timeout time.Duration) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/pipeline", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	// A fresh transport per call: no connection reuse across faults.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return outcome{Err: classify(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	o := outcome{Status: resp.StatusCode, Body: string(body), Target: resp.Header.Get("X-Target") == "yes"}
	if err != nil {
		o.Err = classify(err)
	}
	return o
}

func classify(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	}
	return err.Error()
}

func TestFaults(t *testing.T) {
	target := echo(t)
	px := faultproxy.Start(t, target.URL)
	tests := []struct {
		name    string
		fault   faultproxy.Fault
		timeout time.Duration
		want    outcome
	}{
		{"pass", faultproxy.Pass(), 5 * time.Second, outcome{Status: 200, Body: `{"result":"/pipeline x"}`, Target: true}},
		{"hang", faultproxy.Hang(), 100 * time.Millisecond, outcome{Err: "timeout"}},
		{"slow, client waits less", faultproxy.Slow(time.Minute), 100 * time.Millisecond, outcome{Err: "timeout"}},
		{"slow, client waits more", faultproxy.Slow(time.Millisecond), 5 * time.Second, outcome{Status: 200, Body: `{"result":"/pipeline x"}`, Target: true}},
		{"status 500", faultproxy.Status(500), 5 * time.Second, outcome{Status: 500, Body: `{"error":"ERR injected fault: HTTP 500"}`}},
		{"status 401", faultproxy.Status(401), 5 * time.Second, outcome{Status: 401, Body: `{"error":"WRONGPASS invalid or missing auth token"}`}},
		{"status with body", faultproxy.StatusBody(503, []byte("busy")), 5 * time.Second, outcome{Status: 503, Body: "busy"}},
		{"garbage", faultproxy.Garbage(), 5 * time.Second, outcome{Status: 200, Body: string(faultproxy.DefaultGarbage)}},
		{"truncate", faultproxy.Truncate(), 5 * time.Second, outcome{Status: 200, Body: `{"result":"/`, Target: true, Err: "truncated"}},
		{"reset", faultproxy.Reset(), 5 * time.Second, outcome{Err: "reset"}},
		{"drop reply", faultproxy.DropReply(), 100 * time.Millisecond, outcome{Err: "timeout"}},
		{"reply delayed past the client's timeout", faultproxy.DelayReply(time.Minute), 100 * time.Millisecond, outcome{Err: "timeout"}},
		{"reply delayed less than the client waits", faultproxy.DelayReply(time.Millisecond), 5 * time.Second, outcome{Status: 200, Body: `{"result":"/pipeline x"}`, Target: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := px.Count(tt.fault.Mode)
			px.Set(tt.fault)
			got := call(t, px.URL, tt.timeout)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s: (-want +got):\n%s", tt.fault, diff)
			}
			if n := px.Count(tt.fault.Mode) - before; n != 1 {
				t.Errorf("Count(%s) grew by %d, want 1", tt.fault.Mode, n)
			}
		})
	}
	if got, want := px.Requests(), uint64(len(tests)); got != want {
		t.Errorf("Requests() = %d, want %d", got, want)
	}
}

// The fault is read once per request: switching back to Pass while a
// request hangs does not release it, but the next request passes.
func TestSwitchAtRunTime(t *testing.T) {
	px := faultproxy.Start(t, echo(t).URL)
	px.Set(faultproxy.Hang())
	if got := px.Fault(); got.Mode != faultproxy.ModeHang {
		t.Fatalf("Fault() = %v, want hang", got)
	}
	hung := make(chan outcome, 1)
	go func() { hung <- call(t, px.URL, 300*time.Millisecond) }()
	for px.Count(faultproxy.ModeHang) == 0 {
		time.Sleep(time.Millisecond) // wait for the request to arrive, not to move time
	}
	px.Set(faultproxy.Pass())
	if got := call(t, px.URL, 5*time.Second); got.Status != 200 || !got.Target {
		t.Errorf("after Set(Pass()): %+v, want 200 from the target", got)
	}
	if got := <-hung; got.Err != "timeout" {
		t.Errorf("hung request: %+v, want a timeout", got)
	}
}

// Close releases hung requests, so that Start's cleanup never waits for a
// client timeout.
func TestCloseReleasesHungRequests(t *testing.T) {
	p, err := faultproxy.New(echo(t).URL)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	p.Set(faultproxy.Hang())
	var wg sync.WaitGroup
	errs := make(chan string, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- call(t, srv.URL, time.Minute).Err
		}()
	}
	for p.Count(faultproxy.ModeHang) < 3 {
		time.Sleep(time.Millisecond)
	}
	p.Close()
	wg.Wait()
	close(errs)
	for e := range errs {
		if e == "timeout" {
			t.Errorf("a hung request ran into the client's timeout after Close")
		}
	}
	if got := call(t, srv.URL, 5*time.Second); got.Status != http.StatusServiceUnavailable {
		t.Errorf("after Close: %+v, want 503", got)
	}
}

// A dropped reply is one the target produced: the request reaches the
// target and is carried out in full even when the client has given up
// before the target answers, and Answered counts it.
func TestDropReplyTargetActs(t *testing.T) {
	var mu sync.Mutex
	var done []string
	release := make(chan struct{})
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // answer only once the client has given up
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		done = append(done, string(body))
		mu.Unlock()
		_, _ = io.WriteString(w, `{"result":"OK"}`)
	}))
	t.Cleanup(target.Close)
	px := faultproxy.Start(t, target.URL)
	px.Set(faultproxy.DropReply())
	if got := call(t, px.URL, 100*time.Millisecond); got.Err != "timeout" {
		t.Fatalf("client: %+v, want a timeout", got)
	}
	if n := px.Answered(); n != 0 {
		t.Errorf("Answered() = %d before the target answered, want 0", n)
	}
	close(release)
	// Wait for the target to finish (a generous deadline guards a hang;
	// nothing is timed).
	for deadline := time.Now().Add(10 * time.Second); len(px.LateReplies()) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the target never answered the request whose client gave up")
		}
		time.Sleep(time.Millisecond)
	}
	if n := px.Answered(); n != 1 {
		t.Errorf("Answered() = %d, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"x"}, done); diff != "" {
		t.Errorf("requests the target carried out (-want +got):\n%s", diff)
	}
	if got := px.Count(faultproxy.ModeLateReply); got != 1 {
		t.Errorf("Count(late-reply) = %d, want 1", got)
	}
	if diff := cmp.Diff([][]byte{[]byte(`{"result":"OK"}`)}, px.LateReplies()); diff != "" {
		t.Errorf("LateReplies() (-want +got):\n%s", diff)
	}
}

func TestTargetDown(t *testing.T) {
	target := httptest.NewServer(http.NotFoundHandler())
	url := target.URL
	target.Close()
	px := faultproxy.Start(t, url)
	if got := call(t, px.URL, 5*time.Second); got.Status != http.StatusBadGateway {
		t.Errorf("got %+v, want 502", got)
	}
}

func TestNewRejectsBadTargets(t *testing.T) {
	for _, target := range []string{"", "127.0.0.1:80", "ftp://host", "http://", "::"} {
		t.Run(target, func(t *testing.T) {
			if _, err := faultproxy.New(target); err == nil {
				t.Errorf("New(%q) succeeded", target)
			}
		})
	}
}

func TestFaultString(t *testing.T) {
	tests := []struct {
		name string
		f    faultproxy.Fault
		want string
	}{
		{"zero", faultproxy.Fault{}, "pass"},
		{"slow", faultproxy.Slow(2 * time.Second), "slow(2s)"},
		{"status", faultproxy.Status(401), "status(401)"},
		{"reset", faultproxy.Reset(), "reset"},
		{"drop reply", faultproxy.DropReply(), "drop-reply"},
		{"delay reply", faultproxy.DelayReply(time.Second), "delay-reply(1s)"},
		{"negative delay is a drop", faultproxy.DelayReply(-time.Second), "drop-reply"},
		{"unknown", faultproxy.Fault{Mode: 42}, "Mode(42)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
