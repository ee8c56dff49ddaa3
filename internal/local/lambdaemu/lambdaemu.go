// Package lambdaemu runs Lambda functions locally, as real processes speaking
// the Lambda Runtime API (the protocol the aws-lambda-go runtime and every
// custom runtime "bootstrap" speak).
//
// A Function starts processes of one executable on demand and keeps them warm
// between invocations, like Lambda's execution environments: state a function
// keeps in memory (a per-container fallback bucket, a cache) survives from one
// invocation to the next within a process. Concurrent invocations are served
// by up to Config.MaxProcs processes; an invocation arriving while all of them
// are busy waits for the next one to become idle.
//
// Every process gets its own Runtime API endpoint (a loopback listener of its
// own, passed as AWS_LAMBDA_RUNTIME_API), so a process only ever sees the
// invocations handed to it. Implemented endpoints, as in
// https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html:
//
//	GET  /2018-06-01/runtime/invocation/next
//	POST /2018-06-01/runtime/invocation/{id}/response
//	POST /2018-06-01/runtime/invocation/{id}/error
//	POST /2018-06-01/runtime/init/error
//
// Failures are reported the way Lambda reports them, as a FunctionError in
// the Result: a function's own error as it posted it; a process that exits
// mid-invocation as Runtime.ExitError (the process is replaced on demand); an
// invocation that outlives Config.Timeout as Sandbox.Timedout, after the
// process has been killed. An invocation never hangs: a process that fails
// to start, exits or times out during init fails the oldest waiting
// invocation, and Invoke honours its context.
//
// The processes' stdout and stderr are copied to Config.Logs line by line,
// each line prefixed with "[Name] ", together with Lambda's START, END and
// REPORT lines: one whole line per Write. Config.OnLine sees the same lines
// as CloudWatch Logs would, for tools that read them (metrics in EMF).
package lambdaemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Defaults applied by New to zero Config fields, and Lambda's fixed limits.
const (
	DefaultTimeout     = 3 * time.Second  // Lambda's default function timeout
	DefaultMemoryMB    = 128              // Lambda's default memory size
	DefaultMaxProcs    = 4                // processes per function
	DefaultInitTimeout = 10 * time.Second // Lambda's limit for the init phase
	DefaultRegion      = "us-east-1"
	DefaultAccountID   = "123456789012"

	// MaxPayloadBytes is Lambda's limit for a synchronous invocation's
	// request and response payloads (6 MB).
	MaxPayloadBytes = 6 * 1024 * 1024
)

// Error types the emulator itself reports in FunctionError.Type, as Lambda
// names them.
const (
	ErrorTypeTimeout          = "Sandbox.Timedout"              // invocation or init outlived its limit; the process was killed
	ErrorTypeExit             = "Runtime.ExitError"             // the process exited during init or an invocation
	ErrorTypeInvalidEntry     = "Runtime.InvalidEntrypoint"     // the executable could not be started
	ErrorTypeResponseTooLarge = "Function.ResponseSizeTooLarge" // response over MaxPayloadBytes
	ErrorTypeUnknown          = "Runtime.Unknown"               // the runtime posted an error that was not a JSON error object
)

// Sentinel errors returned by Invoke for invocations that never ran or whose
// result is not available.
var (
	ErrClosed          = errors.New("lambdaemu: function is closed")
	ErrPayloadTooLarge = errors.New("lambdaemu: request payload exceeds 6 MB")
	ErrInvalidPayload  = errors.New("lambdaemu: request payload is not valid JSON")
)

// Config describes one function. The zero value of every optional field
// selects the default documented on it.
type Config struct {
	// Name is the function's name: the log prefix, AWS_LAMBDA_FUNCTION_NAME
	// and the last part of its ARN (cmd/local uses the logical ID). Required.
	Name string
	// Executable is the path of the program to run (the "bootstrap").
	// Required; it must exist and be executable.
	Executable string
	// Dir is the working directory of the processes and LAMBDA_TASK_ROOT;
	// "" = the directory of Executable.
	Dir string
	// Env is the function's environment (the template's variables with
	// overrides applied). Lambda's reserved variables (AWS_REGION,
	// AWS_LAMBDA_*, LAMBDA_TASK_ROOT, _HANDLER, TZ) are set by the emulator
	// and win over entries here. PATH is the host's unless Env sets it;
	// nothing else of the host's environment is passed on.
	Env map[string]string
	// Handler is passed as _HANDLER; "" leaves it unset.
	Handler string
	// Timeout bounds each invocation, from the moment it is handed to a
	// process; 0 = DefaultTimeout.
	Timeout time.Duration
	// MemoryMB is reported as AWS_LAMBDA_FUNCTION_MEMORY_SIZE (not
	// enforced); 0 = DefaultMemoryMB.
	MemoryMB int
	// MaxProcs caps the processes running at once; 0 = DefaultMaxProcs.
	MaxProcs int
	// InitTimeout bounds the time from starting a process to its first
	// request for an invocation; 0 = DefaultInitTimeout.
	InitTimeout time.Duration
	// Region and AccountID appear in the environment and the function ARN;
	// "" = DefaultRegion / DefaultAccountID.
	Region, AccountID string
	// Logs receives the processes' output and the START/END/REPORT lines,
	// one whole line per Write. It must be safe for concurrent use when
	// shared with other Functions (os.Stderr is). nil = os.Stderr.
	Logs io.Writer
	// OnLine, when set, is called with every line a process writes to its
	// stdout or stderr (without prefix or newline) just before the line
	// goes to Logs. It may be called concurrently (one goroutine per
	// stream), must not block, and must not keep line after it returns.
	OnLine func(line []byte)
}

// Result is the outcome of one invocation.
type Result struct {
	// Payload is the function's response, exactly as it posted it. Empty
	// when Error is set.
	Payload []byte
	// Error is set when the invocation failed: an error the function
	// returned or a panic (as the runtime posted it), or a failure the
	// emulator observed (ErrorType* constants).
	Error *FunctionError
	// RequestID is the invocation's ID (Lambda-Runtime-Aws-Request-Id).
	RequestID string
	// PID of the process that ran the invocation; 0 when none did.
	PID int
	// ColdStart reports that the process was started for this invocation's
	// function and this was its first invocation; InitDuration is then its
	// init time.
	ColdStart    bool
	InitDuration time.Duration
	// Duration from handing the invocation to a process to its result.
	Duration time.Duration
}

// FunctionError is Lambda's error object, as runtimes post it and as Lambda's
// Invoke API returns it.
type FunctionError struct {
	Message    string          `json:"errorMessage"`
	Type       string          `json:"errorType"`
	StackTrace json.RawMessage `json:"stackTrace,omitempty"`
}

// Error returns the error type and message.
func (e *FunctionError) Error() string {
	if e.Type == "" {
		return e.Message
	}
	return e.Type + ": " + e.Message
}

// Stats counts what a Function did. All counts are since New.
type Stats struct {
	Invocations uint64 // invocations that got a result (success or FunctionError)
	Errors      uint64 // of which failed
	Timeouts    uint64 // invocations killed at Config.Timeout
	Starts      uint64 // processes started (cold starts)
	Crashes     uint64 // processes that exited without being asked to
	Running     int    // processes alive now
	PeakRunning int    // most processes alive at once
}

// Function runs one Lambda function's processes. Its methods are safe for
// concurrent use.
type Function struct {
	cfg  Config
	arn  string
	env  []string // base environment, without AWS_LAMBDA_RUNTIME_API and the log stream
	logs *lineOutput

	mu     sync.Mutex
	closed bool
	procs  map[*process]struct{}
	idle   []*process // blocked in GET /next; the most recently idle last
	queue  []*invocation
	seq    int
	stats  Stats

	wg sync.WaitGroup // one per live process (its exit watcher)
}

// New validates cfg and returns a Function. No process starts until the
// first Invoke (like Lambda, the first invocation is a cold start).
func New(cfg Config) (*Function, error) {
	if cfg.Name == "" {
		return nil, errors.New("lambdaemu: function name is empty")
	}
	if cfg.Executable == "" {
		return nil, fmt.Errorf("lambdaemu: function %s: executable path is empty", cfg.Name)
	}
	abs, err := filepath.Abs(cfg.Executable)
	if err != nil {
		return nil, fmt.Errorf("lambdaemu: function %s: %w", cfg.Name, err)
	}
	cfg.Executable = abs
	st, err := os.Stat(cfg.Executable)
	if err != nil {
		return nil, fmt.Errorf("lambdaemu: function %s: executable: %w", cfg.Name, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("lambdaemu: function %s: %s is not an executable file", cfg.Name, cfg.Executable)
	}
	if cfg.Dir == "" {
		cfg.Dir = filepath.Dir(cfg.Executable)
	}
	if cfg.Timeout < 0 || cfg.InitTimeout < 0 || cfg.MemoryMB < 0 || cfg.MaxProcs < 0 {
		return nil, fmt.Errorf("lambdaemu: function %s: negative timeout, memory size or process limit", cfg.Name)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = DefaultInitTimeout
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = DefaultMemoryMB
	}
	if cfg.MaxProcs == 0 {
		cfg.MaxProcs = DefaultMaxProcs
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.AccountID == "" {
		cfg.AccountID = DefaultAccountID
	}
	if cfg.Logs == nil {
		cfg.Logs = os.Stderr
	}
	f := &Function{
		cfg:   cfg,
		arn:   fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", cfg.Region, cfg.AccountID, cfg.Name),
		logs:  &lineOutput{out: cfg.Logs, prefix: "[" + cfg.Name + "] ", onLine: cfg.OnLine},
		procs: map[*process]struct{}{},
	}
	f.env = f.baseEnv()
	return f, nil
}

func (f *Function) baseEnv() []string {
	env := map[string]string{}
	if p := os.Getenv("PATH"); p != "" {
		env["PATH"] = p
	}
	env["LANG"] = "en_US.UTF-8"
	for k, v := range f.cfg.Env {
		env[k] = v
	}
	reserved := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        f.cfg.Name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(f.cfg.MemoryMB),
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_TIMEOUT":     strconv.Itoa(int((f.cfg.Timeout + time.Second - 1) / time.Second)),
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + f.cfg.Name,
		"AWS_REGION":                      f.cfg.Region,
		"AWS_DEFAULT_REGION":              f.cfg.Region,
		"LAMBDA_TASK_ROOT":                f.cfg.Dir,
		"TZ":                              ":UTC",
	}
	if f.cfg.Handler != "" {
		reserved["_HANDLER"] = f.cfg.Handler
	}
	for k, v := range reserved {
		env[k] = v
	}
	delete(env, "AWS_LAMBDA_RUNTIME_API")
	delete(env, "AWS_LAMBDA_LOG_STREAM_NAME")
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Invoke runs one invocation with payload (a JSON document, at most
// MaxPayloadBytes) as the event and waits for its result.
//
// A failed invocation is a Result with Error set and a nil error. The error
// is non-nil only when no result is available: the payload was rejected
// (ErrPayloadTooLarge, ErrInvalidPayload), the Function was closed
// (ErrClosed), or ctx ended first (an error wrapping ctx.Err()). An
// invocation already handed to a process when ctx ends keeps running until it
// finishes or times out, as in Lambda; one still waiting for a process is
// withdrawn.
func (f *Function) Invoke(ctx context.Context, payload []byte) (Result, error) {
	if len(payload) > MaxPayloadBytes {
		return Result{}, ErrPayloadTooLarge
	}
	if !json.Valid(payload) {
		return Result{}, ErrInvalidPayload
	}
	inv := &invocation{id: newUUID(), payload: payload, done: make(chan struct{})}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return Result{}, ErrClosed
	}
	f.dispatch(inv)
	f.mu.Unlock()

	select {
	case <-inv.done:
		return inv.res, inv.err
	case <-ctx.Done():
		f.mu.Lock()
		if inv.proc == nil && !inv.finished {
			f.withdraw(inv)
		}
		f.mu.Unlock()
		return Result{}, fmt.Errorf("lambdaemu: invoke %s: %w", f.cfg.Name, ctx.Err())
	}
}

// Stats returns a snapshot of the counters.
func (f *Function) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.Running = len(f.procs)
	return s
}

// Close stops accepting invocations, fails the waiting ones with ErrClosed,
// kills every process (in-flight invocations also end with ErrClosed) and
// waits for them to exit. It is safe to call more than once.
func (f *Function) Close() error {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		for _, inv := range f.queue {
			f.finish(inv, Result{RequestID: inv.id}, ErrClosed)
		}
		f.queue = nil
		f.idle = nil
		for p := range f.procs {
			if p.killReason == "" {
				p.killReason = killClose
			}
			p.kill()
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

// invocation is one Invoke call. Its fields are guarded by Function.mu.
type invocation struct {
	id      string
	payload []byte
	done    chan struct{} // closed by finish

	proc      *process // the process running it; nil while queued
	delivered time.Time
	timer     *time.Timer // the invocation timeout, from delivery
	finished  bool
	res       Result
	err       error
}

// dispatch hands inv to an idle process or queues it, starting processes as
// needed. f.mu is held.
func (f *Function) dispatch(inv *invocation) {
	for len(f.idle) > 0 {
		p := f.idle[len(f.idle)-1]
		f.idle = f.idle[:len(f.idle)-1]
		if p.state == stateIdle {
			f.deliver(p, inv)
			return
		}
	}
	f.queue = append(f.queue, inv)
	f.scale()
}

// withdraw removes a queued invocation whose caller went away. f.mu is held.
func (f *Function) withdraw(inv *invocation) {
	for i, q := range f.queue {
		if q == inv {
			f.queue = append(f.queue[:i], f.queue[i+1:]...)
			break
		}
	}
	inv.finished = true
	close(inv.done)
}

// deliver hands inv to p, which is blocked in GET /next, and starts the
// invocation's timeout. f.mu is held.
func (f *Function) deliver(p *process, inv *invocation) {
	p.state = stateBusy
	p.cur = inv
	inv.proc = p
	inv.delivered = time.Now()
	inv.timer = time.AfterFunc(f.cfg.Timeout, func() { f.timeout(inv) })
	p.next <- inv // buffered; p takes at most one at a time
}

// finish records inv's outcome once, logs its END and REPORT lines and
// wakes its caller. f.mu is held.
func (f *Function) finish(inv *invocation, res Result, err error) {
	if inv.finished {
		return
	}
	inv.finished = true
	if inv.timer != nil {
		inv.timer.Stop()
	}
	res.RequestID = inv.id
	if p := inv.proc; p != nil {
		res.PID = p.pid
		res.Duration = time.Since(inv.delivered)
		if !p.firstDone {
			p.firstDone = true
			res.ColdStart = true
			res.InitDuration = p.initDuration
		}
	}
	inv.res, inv.err = res, err
	if err == nil {
		f.stats.Invocations++
		if res.Error != nil {
			f.stats.Errors++
		}
	}
	if inv.proc != nil {
		f.logEnd(res)
	}
	close(inv.done)
}

// timeout fires Config.Timeout after delivery: the invocation fails and its
// process is killed (Lambda resets the execution environment).
func (f *Function) timeout(inv *invocation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inv.finished || inv.proc == nil {
		return
	}
	p := inv.proc
	f.stats.Timeouts++
	msg := fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", inv.id, f.cfg.Timeout.Seconds())
	f.logs.line(msg)
	f.finish(inv, Result{Error: &FunctionError{Type: ErrorTypeTimeout, Message: msg}}, nil)
	p.state = stateKilled
	p.killReason = killTimeout
	p.kill()
}

// scale starts processes while invocations wait and fewer processes than
// waiting invocations are (or are about to be) free. f.mu is held.
func (f *Function) scale() {
	if f.closed {
		return
	}
	free := 0
	for p := range f.procs {
		switch p.state {
		case stateStarting, stateIdle, stateFinishing:
			free++
		}
	}
	for len(f.queue) > free && len(f.procs) < f.cfg.MaxProcs {
		if err := f.spawn(); err != nil {
			inv := f.queue[0]
			f.queue = f.queue[1:]
			f.logs.line("could not start process: " + err.Error())
			f.finish(inv, Result{Error: &FunctionError{
				Type:    ErrorTypeInvalidEntry,
				Message: fmt.Sprintf("RequestId: %s Error: could not start %s: %v", inv.id, filepath.Base(f.cfg.Executable), err),
			}}, nil)
			continue
		}
		free++
	}
}

// exited runs when p's process has exited. f.mu is held.
func (f *Function) exited(p *process, status string) {
	p.state = stateDead
	delete(f.procs, p)
	for i, q := range f.idle {
		if q == p {
			f.idle = append(f.idle[:i], f.idle[i+1:]...)
			break
		}
	}
	if p.killReason == "" {
		f.stats.Crashes++
	}
	if inv := p.cur; inv != nil && !inv.finished {
		if p.killReason == killClose {
			f.finish(inv, Result{}, ErrClosed)
		} else {
			f.finish(inv, Result{Error: &FunctionError{
				Type:    ErrorTypeExit,
				Message: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s", inv.id, status),
			}}, nil)
		}
	}
	if !p.initDone && p.killReason != killClose && len(f.queue) > 0 {
		// Init failed: in Lambda the invocation that caused the cold start
		// fails with the init error. Fail the oldest waiting one, so a
		// function that cannot start never leaves callers hanging.
		inv := f.queue[0]
		f.queue = f.queue[1:]
		fe := p.initErr
		switch {
		case fe != nil:
		case p.killReason == killInitTimeout:
			fe = &FunctionError{Type: ErrorTypeTimeout, Message: fmt.Sprintf("RequestId: %s Error: init phase timed out after %.2f seconds", inv.id, f.cfg.InitTimeout.Seconds())}
		default:
			fe = &FunctionError{Type: ErrorTypeExit, Message: fmt.Sprintf("RequestId: %s Error: Runtime exited during init: %s", inv.id, status)}
		}
		f.finish(inv, Result{Error: fe}, nil)
	}
	f.scale()
}

// logEnd writes the END and REPORT lines of a finished invocation.
func (f *Function) logEnd(res Result) {
	f.logs.line("END RequestId: " + res.RequestID)
	report := fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB",
		res.RequestID, float64(res.Duration.Microseconds())/1000, (res.Duration+time.Millisecond-1)/time.Millisecond, f.cfg.MemoryMB)
	if res.ColdStart {
		report += fmt.Sprintf("\tInit Duration: %.2f ms", float64(res.InitDuration.Microseconds())/1000)
	}
	if res.Error != nil {
		report += "\tStatus: error\tError Type: " + res.Error.Type
	}
	f.logs.line(report)
}
