package runtimeapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/google/go-cmp/cmp"
)

// fakeAPI is a Runtime API that hands out a fixed list of invocations and
// records what the function posts back. After the last invocation, GET
// next fails with 500, which ends the loop.
type fakeAPI struct {
	srv *httptest.Server

	mu        sync.Mutex
	queue     []event
	posts     []post
	closeEach bool            // answer every request with Connection: close
	remotes   map[string]bool // the function's connections that asked for an invocation
	handed    int             // invocations handed out
}

type event struct {
	id, payload string
	deadline    time.Time
}

// post is what the function sent for one invocation.
type post struct {
	Path      string
	ErrorType string // Lambda-Runtime-Function-Error-Type
	Body      string
}

func startFake(t *testing.T, events ...event) *fakeAPI {
	t.Helper()
	f := &fakeAPI{queue: events, remotes: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.remotes[r.RemoteAddr] = true
		if len(f.queue) == 0 {
			// Fail only once every invocation handed out is answered, as
			// a Runtime API that fails between invocations.
			for deadline := time.Now().Add(5 * time.Second); len(f.posts) < f.handed && time.Now().Before(deadline); {
				f.mu.Unlock()
				time.Sleep(time.Millisecond)
				f.mu.Lock()
			}
			f.mu.Unlock()
			http.Error(w, "no more invocations", http.StatusInternalServerError)
			return
		}
		f.handed++
		e := f.queue[0]
		f.queue = f.queue[1:]
		f.remotes[r.RemoteAddr] = true
		closeEach := f.closeEach
		f.mu.Unlock()
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", e.id)
		h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:f")
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-trace-"+e.id)
		if !e.deadline.IsZero() {
			h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(e.deadline.UnixMilli(), 10))
		}
		if closeEach {
			h.Set("Connection", "close")
		}
		_, _ = io.WriteString(w, e.payload)
	})
	record := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.posts = append(f.posts, post{Path: r.URL.EscapedPath(), ErrorType: r.Header.Get("Lambda-Runtime-Function-Error-Type"), Body: string(body)})
		closeEach := f.closeEach
		f.mu.Unlock()
		if closeEach {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"OK"}`)
	}
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", record)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", record)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeAPI) recorded() []post {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]post(nil), f.posts...)
}

type in struct {
	N int `json:"n"`
}

type out struct {
	Double int    `json:"double"`
	ID     string `json:"id"`
}

// double answers n*2 with the request ID from the context; n < 0 is an
// error, n == 13 a panic.
func double(ctx context.Context, e in) (out, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	switch {
	case e.N < 0:
		return out{}, errors.New("Unauthorized")
	case e.N == 13:
		panic("thirteen")
	}
	return out{Double: 2 * e.N, ID: lc.AwsRequestID}, nil
}

// TestServe: each invocation's response or error reaches the Runtime API as
// lambda.Start would post it; a panic is posted and ends the loop; so does
// a failing GET next.
func TestServe(t *testing.T) {
	tests := []struct {
		name      string
		events    []event
		closeEach bool
		want      []post
		wantErr   string // in Serve's error
	}{
		{
			name:   "responses, then the API fails",
			events: []event{{id: "a1", payload: `{"n":2}`}, {id: "a2", payload: `{"n":5}`}},
			want: []post{
				{Path: "/2018-06-01/runtime/invocation/a1/response", Body: `{"double":4,"id":"a1"}`},
				{Path: "/2018-06-01/runtime/invocation/a2/response", Body: `{"double":10,"id":"a2"}`},
			},
			wantErr: "GET next: status 500",
		},
		{
			name:      "the API closes the connection after every reply",
			events:    []event{{id: "c1", payload: `{"n":1}`}, {id: "c2", payload: `{"n":3}`}},
			closeEach: true,
			want: []post{
				{Path: "/2018-06-01/runtime/invocation/c1/response", Body: `{"double":2,"id":"c1"}`},
				{Path: "/2018-06-01/runtime/invocation/c2/response", Body: `{"double":6,"id":"c2"}`},
			},
			wantErr: "status 500",
		},
		{
			name:   "a handler error is posted with its message and type, and the loop goes on",
			events: []event{{id: "e1", payload: `{"n":-1}`}, {id: "e2", payload: `{"n":1}`}},
			want: []post{
				{Path: "/2018-06-01/runtime/invocation/e1/error", ErrorType: "errorString",
					Body: `{"errorMessage":"Unauthorized","errorType":"errorString","stackTrace":[]}`},
				{Path: "/2018-06-01/runtime/invocation/e2/response", Body: `{"double":2,"id":"e2"}`},
			},
			wantErr: "status 500",
		},
		{
			name:   "a payload that does not decode is the invocation's error",
			events: []event{{id: "j1", payload: `{"n":`}},
			want: []post{{Path: "/2018-06-01/runtime/invocation/j1/error", ErrorType: "SyntaxError",
				Body: `{"errorMessage":"unexpected end of JSON input","errorType":"SyntaxError","stackTrace":[]}`}},
			wantErr: "status 500",
		},
		{
			name:   "a panic is posted and ends the loop",
			events: []event{{id: "p1", payload: `{"n":13}`}, {id: "p2", payload: `{"n":1}`}},
			want: []post{{Path: "/2018-06-01/runtime/invocation/p1/error", ErrorType: "Runtime.Panic",
				Body: `{"errorMessage":"thirteen","errorType":"Runtime.Panic","stackTrace":[]}`}},
			wantErr: "the handler panicked: thirteen",
		},
		{
			name:   "a request ID is escaped into the path",
			events: []event{{id: "id with/odd?chars", payload: `{"n":0}`}},
			want: []post{{Path: "/2018-06-01/runtime/invocation/id%20with%2Fodd%3Fchars/response",
				Body: `{"double":0,"id":"id with/odd?chars"}`}},
			wantErr: "status 500",
		},
	}
	var logged strings.Builder
	panicLog = &logged
	t.Cleanup(func() { panicLog = os.Stderr })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.events...)
			f.closeEach = tt.closeEach
			err := Serve(f.addr(), JSON(double), false)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Serve returned %v, want an error containing %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, f.recorded()); diff != "" {
				t.Errorf("posts (-want +got):\n%s", diff)
			}
		})
	}
	// The panic's stack went to the log, naming the invocation and the
	// handler.
	for _, want := range []string{"panicked on invocation p1: thirteen", "runtimeapi.double("} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("panic log lacks %q:\n%s", want, logged.String())
		}
	}
}

// TestServeContext: the handler's context carries Lambda's deadline and
// the invocation's metadata, and _X_AMZN_TRACE_ID follows each invocation
// when asked.
func TestServeContext(t *testing.T) {
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	f := startFake(t, event{id: "d1", payload: `{}`, deadline: deadline}, event{id: "d2", payload: `{}`})
	type seen struct {
		Deadline    time.Time
		HasDeadline bool
		ID, ARN     string
		Trace       string
	}
	var got []seen
	h := func(ctx context.Context, _ []byte) ([]byte, error) {
		d, ok := ctx.Deadline()
		lc, _ := lambdacontext.FromContext(ctx)
		got = append(got, seen{Deadline: d, HasDeadline: ok, ID: lc.AwsRequestID, ARN: lc.InvokedFunctionArn, Trace: os.Getenv("_X_AMZN_TRACE_ID")})
		return []byte(`{}`), nil
	}
	t.Setenv("_X_AMZN_TRACE_ID", "")
	_ = Serve(f.addr(), h, true)
	arn := "arn:aws:lambda:us-east-1:123456789012:function:f"
	want := []seen{
		{Deadline: deadline, HasDeadline: true, ID: "d1", ARN: arn, Trace: "Root=1-trace-d1"},
		{ID: "d2", ARN: arn, Trace: "Root=1-trace-d2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("what the handler saw (-want +got):\n%s", diff)
	}
}

// TestStartSettings: Start refuses a missing Runtime API address and a
// bad concurrency, naming the variable.
func TestStartSettings(t *testing.T) {
	tests := []struct {
		name, api, concurrency, want string
	}{
		{name: "no address", want: "AWS_LAMBDA_RUNTIME_API is not set"},
		{name: "bad concurrency", api: "127.0.0.1:1", concurrency: "zero", want: `AWS_LAMBDA_MAX_CONCURRENCY "zero"`},
		{name: "concurrency below 1", api: "127.0.0.1:1", concurrency: "0", want: `AWS_LAMBDA_MAX_CONCURRENCY "0"`},
		{name: "nothing listens", api: "127.0.0.1:1", want: "connecting to the Runtime API"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_LAMBDA_RUNTIME_API", tt.api)
			t.Setenv("AWS_LAMBDA_MAX_CONCURRENCY", tt.concurrency)
			err := Start(JSON(double))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestStartConcurrent: with AWS_LAMBDA_MAX_CONCURRENCY=3 every invocation
// is answered, over three connections at a time (new ones when the API
// closes them), and the loops end together once the API fails.
func TestStartConcurrent(t *testing.T) {
	tests := []struct {
		name      string
		closeEach bool
		wantConns func(n int) bool
	}{
		{name: "keep-alive", wantConns: func(n int) bool { return n == 3 }},
		{name: "the API closes every connection", closeEach: true, wantConns: func(n int) bool { return n > 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []event
			for i := range 30 {
				events = append(events, event{id: "m" + strconv.Itoa(i), payload: `{"n":` + strconv.Itoa(100+i) + `}`})
			}
			f := startFake(t, events...)
			f.closeEach = tt.closeEach
			t.Setenv("AWS_LAMBDA_RUNTIME_API", f.addr())
			t.Setenv("AWS_LAMBDA_MAX_CONCURRENCY", "3")
			// The first three invocations wait for each other: only three
			// loops at once can answer them.
			var started sync.WaitGroup
			started.Add(3)
			together := func(ctx context.Context, e in) (out, error) {
				if e.N < 103 {
					started.Done()
					done := make(chan struct{})
					go func() { started.Wait(); close(done) }()
					select {
					case <-done:
					case <-time.After(10 * time.Second):
						return out{}, errors.New("the first three invocations did not run at once")
					}
				}
				return double(ctx, e)
			}
			if err := Start(JSON(together)); err == nil || !strings.Contains(err.Error(), "status 500") {
				t.Fatalf("Start = %v, want the API's failure", err)
			}
			got := map[string]string{}
			for _, p := range f.recorded() {
				got[p.Path] = p.Body
			}
			for i := range 30 {
				id := "m" + strconv.Itoa(i)
				b, _ := json.Marshal(out{Double: 2 * (100 + i), ID: id})
				if g := got["/2018-06-01/runtime/invocation/"+id+"/response"]; g != string(b) {
					t.Errorf("%s: response %q, want %q", id, g, b)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if !tt.wantConns(len(f.remotes)) {
				t.Errorf("invocations went to %d connections", len(f.remotes))
			}
		})
	}
}

// TestWarm: the warm-up reads its canned invocation and posts a response
// through the loop's own code, with no Runtime API.
func TestWarm(t *testing.T) {
	if err := warm(); err != nil {
		t.Fatalf("warm: %v", err)
	}
}
