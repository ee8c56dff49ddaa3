// Package runtimeapi is the functions' invocation loop: a client of the
// Lambda Runtime API (GET the next invocation, POST its response or
// error), in place of aws-lambda-go's lambda.Start.
//
// Why not lambda.Start: on a container that does one thing, the runtime
// loop is a measurable share of an invocation. aws-lambda-go sends each
// response as a chunked POST with trailers through net/http's transport
// (a goroutine hand-off for every write and read); this loop keeps one
// keep-alive connection, writes each request in one system call and reads
// each reply on the calling goroutine. Through the Runtime API emulation
// (docs/BENCHMARKS.md, "Follow-up (2026-12-04)") that took a function
// that decides nothing from 293 µs to 94 µs per back-to-back invocation and
// its first invocation from 976 µs to 459 µs. Everything else stays
// aws-lambda-go's: the event types, and lambdacontext in the handler's
// context.
//
// What it does per invocation, as lambda.Start does: the handler's context
// carries the deadline Lambda gives (Lambda-Runtime-Deadline-Ms) and a
// lambdacontext.LambdaContext (request ID, function ARN); with one
// invocation at a time, _X_AMZN_TRACE_ID is set to the invocation's trace
// header (the AWS SDK propagates it). A handler error is posted to
// /error with its message (API Gateway reads "Unauthorized" there as a
// 401) and its type; a panic is posted likewise, its stack written to
// stderr, and then ends the loop, so that Lambda replaces the container.
// AWS_LAMBDA_MAX_CONCURRENCY above 1 (Lambda Managed Instances) runs that
// many loops, each on a connection of its own, which end together.
package runtimeapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Handler handles one invocation: its payload (the event's JSON) in, the
// response's JSON out.
type Handler func(ctx context.Context, payload []byte) ([]byte, error)

// JSON adapts a typed handler: the payload is decoded into In, and the
// result encoded as JSON. A payload that does not decode is the
// invocation's error.
func JSON[In, Out any](f func(context.Context, In) (Out, error)) Handler {
	return func(ctx context.Context, payload []byte) ([]byte, error) {
		var in In
		if err := json.Unmarshal(payload, &in); err != nil {
			return nil, err
		}
		out, err := f(ctx, in)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	}
}

// Start serves invocations from the Runtime API that AWS_LAMBDA_RUNTIME_API
// names, AWS_LAMBDA_MAX_CONCURRENCY loops at once (default 1), until one
// fails; it returns that loop's error, after which the process should exit.
// First it runs the loop's own code once on a canned invocation (warm), so
// that the first real one does not pay for that.
func Start(h Handler) error {
	_ = warm()
	api := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	if api == "" {
		return errors.New("runtimeapi: AWS_LAMBDA_RUNTIME_API is not set (run the function in Lambda or under cmd/local)")
	}
	n := 1
	if v := os.Getenv("AWS_LAMBDA_MAX_CONCURRENCY"); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil || c < 1 {
			return fmt.Errorf("runtimeapi: AWS_LAMBDA_MAX_CONCURRENCY %q is not a positive integer", v)
		}
		n = c
	}
	if n == 1 {
		return Serve(api, h, true)
	}
	// Several loops end together: the first to fail stops the others once
	// they have answered the invocation in hand.
	g := &group{waiting: map[*conn]bool{}}
	errs := make(chan error, n)
	for range n {
		go func() {
			c, err := dial(api)
			if err == nil {
				err = serve(c, h, false, g)
				c.close()
			}
			g.stop()
			errs <- err
		}()
	}
	var first error // the loop's that stopped the others: only stopped ones end without one
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first == nil { // not reached
		first = errors.New("runtimeapi: the invocation loops ended")
	}
	return first
}

// Serve runs one invocation loop on the Runtime API at api (host:port)
// with h until the Runtime API fails or h panics, and returns why. With
// traceEnv it sets _X_AMZN_TRACE_ID for each invocation (only for a single
// loop: the variable is the process's).
func Serve(api string, h Handler, traceEnv bool) error {
	c, err := dial(api)
	if err != nil {
		return err
	}
	defer c.close()
	return serve(c, h, traceEnv, nil)
}

// serve is Serve's loop on c, in g when not nil.
func serve(c *conn, h Handler, traceEnv bool, g *group) error {
	for {
		if !g.waits(c) {
			return nil
		}
		inv, err := c.next()
		stopped := !g.works(c)
		if err != nil {
			if stopped {
				return nil
			}
			return err
		}
		if traceEnv {
			_ = os.Setenv("_X_AMZN_TRACE_ID", inv.traceID)
		}
		out, panicked, herr := call(inv, h)
		if herr != nil {
			err = c.post(inv.id, "error", errorType(herr, panicked), errorBody(herr, panicked))
		} else {
			err = c.post(inv.id, "response", "", out)
		}
		if err != nil {
			return err
		}
		if panicked {
			return fmt.Errorf("runtimeapi: the handler panicked: %w", herr)
		}
		if stopped {
			return nil
		}
	}
}

// group is the loops of one process. Once stopped, a loop waiting for an
// invocation is woken (its read deadline is moved to now), and a loop that
// holds one answers it first; then each ends. A nil group never stops.
type group struct {
	mu      sync.Mutex
	stopped bool
	waiting map[*conn]bool
}

// waits marks c as waiting for an invocation, or reports that the group
// has stopped.
func (g *group) waits(c *conn) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.stopped {
		g.waiting[c] = true
	}
	return !g.stopped
}

// works marks c as done waiting and reports whether the group still runs.
// If it stopped meanwhile, c's deadline is lifted again so that an
// invocation already read can be answered.
func (g *group) works(c *conn) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.waiting, c)
	if g.stopped {
		c.resume()
	}
	return !g.stopped
}

func (g *group) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	for c := range g.waiting {
		c.interrupt()
	}
}

// invocation is one event from GET /next.
type invocation struct {
	id, arn, traceID string
	deadline         time.Time // zero: none given
	payload          []byte
}

// call runs h on inv with the invocation's context, turning a panic into
// an error.
func call(inv invocation, h Handler) (out []byte, panicked bool, err error) {
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{
		AwsRequestID: inv.id, InvokedFunctionArn: inv.arn,
	})
	if !inv.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, inv.deadline)
		defer cancel()
	}
	defer func() {
		if v := recover(); v != nil {
			out, panicked, err = nil, true, fmt.Errorf("%v", v)
			fmt.Fprintf(panicLog, "runtimeapi: the handler panicked on invocation %s: %v\n%s", inv.id, v, debug.Stack())
		}
	}()
	out, err = h(ctx, inv.payload)
	return out, false, err
}

// panicLog receives a panic's stack (the function's log in Lambda); the
// Runtime API gets its message only.
var panicLog io.Writer = os.Stderr

// errorType names err for the Runtime API as lambda.Start does: its type's
// name without the pointer (e.g. "errorString"), or "Runtime.Panic".
func errorType(err error, panicked bool) string {
	if panicked {
		return "Runtime.Panic"
	}
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() == "" {
		return "Error"
	}
	return t.Name()
}

// errorBody is the Runtime API's error document.
func errorBody(err error, panicked bool) []byte {
	b, _ := json.Marshal(struct {
		Message string   `json:"errorMessage"`
		Type    string   `json:"errorType"`
		Stack   []string `json:"stackTrace"`
	}{err.Error(), errorType(err, panicked), []string{}})
	return b
}

// conn is a keep-alive HTTP/1.1 connection to the Runtime API, used by
// one loop; only interrupt and resume come from elsewhere (its group).
type conn struct {
	api string
	br  *bufio.Reader
	buf []byte // the request being written, reused

	mu          sync.Mutex // guards nc against interrupt while it is replaced
	nc          net.Conn
	interrupted bool // reads are cut short (the group stopped)
}

// interrupt cuts short the read in progress on c, if any, and any later
// one, on this connection or the next.
func (c *conn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	_ = c.nc.SetReadDeadline(time.Now())
}

// resume lifts interrupt.
func (c *conn) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = false
	_ = c.nc.SetReadDeadline(time.Time{})
}

const prefix = "/2018-06-01/runtime/invocation/"

func dial(api string) (*conn, error) {
	nc, err := net.Dial("tcp", api)
	if err != nil {
		return nil, fmt.Errorf("runtimeapi: connecting to the Runtime API: %w", err)
	}
	return &conn{api: api, nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}, nil
}

func (c *conn) close() { _ = c.nc.Close() }

// roundTrip writes req (one write) and reads the reply, whose body it
// returns in full. A reply that asks to close the connection gets a new
// one for the next request.
func (c *conn) roundTrip(req []byte) (*http.Response, []byte, error) {
	if _, err := c.nc.Write(req); err != nil {
		return nil, nil, fmt.Errorf("runtimeapi: writing to the Runtime API: %w", err)
	}
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("runtimeapi: reading the Runtime API's reply: %w", err)
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("runtimeapi: reading the Runtime API's reply: %w", err)
	}
	if res.Close {
		c.close()
		nc, derr := net.Dial("tcp", c.api)
		if derr != nil {
			return nil, nil, fmt.Errorf("runtimeapi: reconnecting to the Runtime API: %w", derr)
		}
		c.mu.Lock()
		c.nc, c.br = nc, bufio.NewReaderSize(nc, 16<<10)
		if c.interrupted {
			_ = nc.SetReadDeadline(time.Now())
		}
		c.mu.Unlock()
	}
	return res, body, nil
}

// next blocks until the Runtime API hands over an invocation.
func (c *conn) next() (invocation, error) {
	c.buf = append(c.buf[:0], "GET "+prefix+"next HTTP/1.1\r\nHost: "...)
	c.buf = append(c.buf, c.api...)
	c.buf = append(c.buf, "\r\nUser-Agent: bucketgate\r\n\r\n"...)
	res, body, err := c.roundTrip(c.buf)
	if err != nil {
		return invocation{}, err
	}
	if res.StatusCode != http.StatusOK {
		return invocation{}, fmt.Errorf("runtimeapi: GET next: status %d: %.200s", res.StatusCode, body)
	}
	inv := invocation{
		id:      res.Header.Get("Lambda-Runtime-Aws-Request-Id"),
		arn:     res.Header.Get("Lambda-Runtime-Invoked-Function-Arn"),
		traceID: res.Header.Get("Lambda-Runtime-Trace-Id"),
		payload: body,
	}
	if inv.id == "" {
		return invocation{}, errors.New("runtimeapi: GET next: no Lambda-Runtime-Aws-Request-Id")
	}
	if v := res.Header.Get("Lambda-Runtime-Deadline-Ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return invocation{}, fmt.Errorf("runtimeapi: GET next: Lambda-Runtime-Deadline-Ms %q is not a number", v)
		}
		inv.deadline = time.UnixMilli(ms)
	}
	return inv, nil
}

// post sends an invocation's response or error (what) with body, and
// errType in Lambda-Runtime-Function-Error-Type when not empty.
func (c *conn) post(id, what, errType string, body []byte) error {
	b := append(c.buf[:0], "POST "+prefix...)
	b = append(b, url.PathEscape(id)...)
	b = append(b, '/')
	b = append(b, what...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.api...)
	b = append(b, "\r\nUser-Agent: bucketgate\r\nContent-Type: application/json\r\n"...)
	if errType != "" {
		b = append(b, "Lambda-Runtime-Function-Error-Type: "...)
		b = append(b, headerSafe(errType)...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.buf = b
	res, reply, err := c.roundTrip(b)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusAccepted {
		return fmt.Errorf("runtimeapi: POST %s: status %d: %.200s", what, res.StatusCode, reply)
	}
	return nil
}

// headerSafe keeps s to the printable ASCII a header value may hold.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '_'
		}
		return r
	}, s)
}

// warm runs, without a Runtime API, the code the loop's first invocation
// would otherwise run for the first time in the process: one invocation
// read from a canned reply, and its response posted into nothing. Start
// calls it, still in Lambda's init phase (which ends at the first GET
// next).
func warm() error {
	c := &conn{api: "127.0.0.1:9001", nc: discardConn{}}
	c.br = bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\n" +
		"Lambda-Runtime-Aws-Request-Id: warm\r\nLambda-Runtime-Deadline-Ms: 0\r\n" +
		"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:warm\r\n" +
		"Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\n" +
		"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" +
		"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n"))
	inv, err := c.next()
	if err != nil {
		return err
	}
	return c.post(inv.id, "response", "", inv.payload)
}

// discardConn is a net.Conn that swallows writes (for warm).
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }
func (discardConn) Close() error                { return nil }
