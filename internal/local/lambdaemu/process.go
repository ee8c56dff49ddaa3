package lambdaemu

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// process states; guarded by Function.mu.
type procState int

const (
	stateStarting  procState = iota // started, has not asked for an invocation yet
	stateIdle                       // blocked in GET /next
	stateBusy                       // running an invocation
	stateFinishing                  // posted its result, has not asked for the next one yet
	stateLost                       // its GET /next connection went away; about to exit
	stateKilled                     // being killed
	stateDead                       // exited
)

// Why the emulator killed a process; "" when it exited on its own (a crash).
const (
	killTimeout     = "timeout"
	killInitTimeout = "init-timeout"
	killClose       = "close"
)

const runtimePrefix = "/2018-06-01/runtime"

// process is one running instance of the function with its own Runtime API
// endpoint. Fields after the first group are guarded by Function.mu.
type process struct {
	f     *Function
	n     int // sequence number within the function
	cmd   *exec.Cmd
	pid   int
	srv   *http.Server
	start time.Time
	next  chan *invocation // the invocation for a blocked GET /next; capacity 1

	state        procState
	cur          *invocation
	initDone     bool // has asked for its first invocation
	firstDone    bool // its first invocation has finished (ColdStart reported)
	initDuration time.Duration
	initTimer    *time.Timer
	initErr      *FunctionError // posted to /runtime/init/error
	killReason   string
}

// spawn starts a process with a fresh Runtime API endpoint. f.mu is held.
func (f *Function) spawn() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("runtime api listener: %w", err)
	}
	f.seq++
	p := &process{f: f, n: f.seq, next: make(chan *invocation, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+runtimePrefix+"/invocation/next", p.handleNext)
	mux.HandleFunc("POST "+runtimePrefix+"/invocation/{id}/response", p.handleResponse)
	mux.HandleFunc("POST "+runtimePrefix+"/invocation/{id}/error", p.handleError)
	mux.HandleFunc("POST "+runtimePrefix+"/init/error", p.handleInitError)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	stream := fmt.Sprintf("%s/[$LATEST]%s", time.Now().UTC().Format("2006/01/02"), randomHex(16))
	cmd := exec.Command(f.cfg.Executable)
	cmd.Dir = f.cfg.Dir
	cmd.Env = append(append([]string(nil), f.env...),
		"AWS_LAMBDA_RUNTIME_API="+ln.Addr().String(),
		"AWS_LAMBDA_LOG_STREAM_NAME="+stream,
	)
	stdout := &lineWriter{out: f.logs}
	stderr := &lineWriter{out: f.logs}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second // a grandchild holding our pipes must not block Wait
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		_ = ln.Close()
		return err
	}
	p.cmd, p.pid, p.start = cmd, cmd.Process.Pid, time.Now()
	p.state = stateStarting
	f.procs[p] = struct{}{}
	f.stats.Starts++
	f.stats.PeakRunning = max(f.stats.PeakRunning, len(f.procs))
	p.initTimer = time.AfterFunc(f.cfg.InitTimeout, p.initTimedOut)

	go func() { _ = p.srv.Serve(ln) }()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		werr := cmd.Wait()
		stdout.flush()
		stderr.flush()
		status := "exit status 0"
		if cmd.ProcessState != nil {
			status = cmd.ProcessState.String()
		} else if werr != nil {
			status = werr.Error()
		}
		f.mu.Lock()
		reason := p.killReason
		p.initTimer.Stop()
		f.exited(p, status)
		f.mu.Unlock()
		_ = p.srv.Close()
		if reason == "" {
			f.logs.line(fmt.Sprintf("process %d (pid %d) exited: %s", p.n, p.pid, status))
		}
	}()
	return nil
}

// kill ends the process (and any children it started). f.mu may be held.
func (p *process) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		killProcess(p.cmd)
	}
}

func (p *process) initTimedOut() {
	f := p.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.initDone || p.state == stateDead || p.killReason != "" {
		return
	}
	f.logs.line(fmt.Sprintf("process %d (pid %d) did not finish init within %v; killing it", p.n, p.pid, f.cfg.InitTimeout))
	p.state = stateKilled
	p.killReason = killInitTimeout
	p.kill()
}

// handleNext is GET /invocation/next: it blocks until an invocation is handed
// to this process.
func (p *process) handleNext(w http.ResponseWriter, r *http.Request) {
	f := p.f
	f.mu.Lock()
	switch p.state {
	case stateKilled, stateDead, stateLost:
		f.mu.Unlock()
		http.Error(w, "process is shutting down", http.StatusGone)
		return
	}
	if inv := p.cur; inv != nil && !inv.finished {
		// Asked for the next invocation without answering this one.
		f.finish(inv, Result{Error: &FunctionError{
			Type:    ErrorTypeUnknown,
			Message: fmt.Sprintf("RequestId: %s Error: runtime asked for the next invocation without posting a result", inv.id),
		}}, nil)
	}
	p.cur = nil
	if !p.initDone {
		p.initDone = true
		p.initTimer.Stop()
		p.initDuration = time.Since(p.start)
	}
	p.state = stateIdle
	if !f.closed && len(f.queue) > 0 {
		inv := f.queue[0]
		f.queue = f.queue[1:]
		f.deliver(p, inv)
	} else {
		f.idle = append(f.idle, p)
	}
	f.mu.Unlock()

	select {
	case inv := <-p.next:
		p.writeInvocation(w, inv)
	case <-r.Context().Done():
		f.mu.Lock()
		select {
		case inv := <-p.next:
			// Handed over just as the connection went away: give it to
			// another process.
			inv.timer.Stop()
			inv.proc = nil
			p.cur = nil
			if !inv.finished {
				f.queue = append([]*invocation{inv}, f.queue...)
			}
		default:
			for i, q := range f.idle {
				if q == p {
					f.idle = append(f.idle[:i], f.idle[i+1:]...)
					break
				}
			}
		}
		if p.state != stateDead && p.state != stateKilled {
			p.state = stateLost
		}
		f.scale()
		f.mu.Unlock()
	}
}

func (p *process) writeInvocation(w http.ResponseWriter, inv *invocation) {
	f := p.f
	deadline := inv.delivered.Add(f.cfg.Timeout)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(deadline.UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", f.arn)
	h.Set("Lambda-Runtime-Trace-Id", traceID(inv.delivered))
	f.logs.line("START RequestId: " + inv.id + " Version: $LATEST")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.payload)
}

// handleResponse is POST /invocation/{id}/response.
func (p *process) handleResponse(w http.ResponseWriter, r *http.Request) {
	body, tooLarge, readErr := readLimited(r.Body, MaxPayloadBytes)
	var res Result
	status := http.StatusAccepted
	switch {
	case tooLarge:
		res.Error = &FunctionError{Type: ErrorTypeResponseTooLarge, Message: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxPayloadBytes)}
		status = http.StatusRequestEntityTooLarge
	case readErr != nil:
		res.Error = &FunctionError{Type: ErrorTypeUnknown, Message: "reading the function response: " + readErr.Error()}
		status = http.StatusBadRequest
	case r.Trailer.Get("Lambda-Runtime-Function-Error-Type") != "":
		// The runtime failed while streaming the response and said so in
		// trailers (aws-lambda-go does this when the response reader fails).
		res.Error = trailerError(r.Trailer)
	default:
		res.Payload = body
	}
	p.complete(w, r.PathValue("id"), res, status)
}

// handleError is POST /invocation/{id}/error.
func (p *process) handleError(w http.ResponseWriter, r *http.Request) {
	body, _, _ := readLimited(r.Body, MaxPayloadBytes)
	p.complete(w, r.PathValue("id"), Result{Error: parseError(body, r.Header.Get("Lambda-Runtime-Function-Error-Type"))}, http.StatusAccepted)
}

func (p *process) complete(w http.ResponseWriter, id string, res Result, status int) {
	f := p.f
	f.mu.Lock()
	inv := p.cur
	if inv == nil || inv.id != id || inv.finished {
		f.mu.Unlock()
		writeRuntimeError(w, http.StatusBadRequest, "InvalidRequestID", "no invocation "+id+" is in progress on this runtime")
		return
	}
	p.cur = nil
	p.state = stateFinishing
	f.finish(inv, res, nil)
	f.mu.Unlock()
	if status == http.StatusAccepted {
		writeAccepted(w)
		return
	}
	writeRuntimeError(w, status, res.Error.Type, res.Error.Message)
}

// writeAccepted is the Runtime API's answer to a posted result.
func writeAccepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

// handleInitError is POST /init/error: the runtime reports that it cannot
// start; it is expected to exit next.
func (p *process) handleInitError(w http.ResponseWriter, r *http.Request) {
	body, _, _ := readLimited(r.Body, MaxPayloadBytes)
	fe := parseError(body, r.Header.Get("Lambda-Runtime-Function-Error-Type"))
	f := p.f
	f.mu.Lock()
	p.initErr = fe
	f.mu.Unlock()
	f.logs.line("init error: " + fe.Error())
	writeAccepted(w)
}

func writeRuntimeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(FunctionError{Type: typ, Message: msg})
}

// parseError decodes an error object posted by a runtime; anything else
// becomes a Runtime.Unknown error carrying (a bounded prefix of) the body.
func parseError(body []byte, headerType string) *FunctionError {
	var fe FunctionError
	if err := json.Unmarshal(body, &fe); err == nil && (fe.Message != "" || fe.Type != "") {
		return &fe
	}
	typ := headerType
	if typ == "" {
		typ = ErrorTypeUnknown
	}
	msg := string(body)
	if len(msg) > 1024 {
		msg = msg[:1024] + "..."
	}
	return &FunctionError{Type: typ, Message: msg}
}

func trailerError(tr http.Header) *FunctionError {
	if b, err := base64.StdEncoding.DecodeString(tr.Get("Lambda-Runtime-Function-Error-Body")); err == nil {
		if fe := parseError(b, tr.Get("Lambda-Runtime-Function-Error-Type")); fe.Message != "" {
			return fe
		}
	}
	return &FunctionError{Type: tr.Get("Lambda-Runtime-Function-Error-Type"), Message: "the function failed while sending its response"}
}

// readLimited reads r up to limit bytes; tooLarge reports that r had more
// (the rest is drained so the connection can be reused).
func readLimited(r io.Reader, limit int64) (body []byte, tooLarge bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(body)) > limit {
		_, _ = io.Copy(io.Discard, r)
		return nil, true, nil
	}
	return body, false, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// traceID renders an X-Ray trace header with a new root, unsampled.
func traceID(t time.Time) string {
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", t.Unix(), randomHex(24), randomHex(16))
}

// lineOutput writes whole lines onto one writer, one Write each, prefixed
// with "[Name] ", and shows each line of the function's own output to
// onLine first.
type lineOutput struct {
	mu     sync.Mutex
	out    io.Writer
	prefix string
	onLine func([]byte) // nil = none
}

// write writes one line (without its newline) with the prefix.
func (o *lineOutput) write(line []byte) {
	b := make([]byte, 0, len(o.prefix)+len(line)+1)
	b = append(append(append(b, o.prefix...), line...), '\n')
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.out.Write(b)
}

// line writes every line of s (trailing newlines dropped) with the prefix.
func (o *lineOutput) line(s string) {
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		o.write([]byte(l))
	}
}

// lineWriter splits a process's output stream into lines. Used by one
// goroutine (exec's copier) plus flush after Wait.
type lineWriter struct {
	out *lineOutput
	buf []byte // the current partial line
}

// maxLine is the length at which a line without a newline is emitted
// anyway.
const maxLine = 64 * 1024

func (w *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.buf = append(w.buf, b...)
			if len(w.buf) >= maxLine {
				w.emit()
			}
			break
		}
		w.buf = append(w.buf, b[:i]...)
		w.emit()
		b = b[i+1:]
	}
	return n, nil
}

// emit writes the buffered line, a carriage return before its end dropped.
func (w *lineWriter) emit() {
	line := bytes.TrimSuffix(w.buf, []byte("\r"))
	if w.out.onLine != nil {
		w.out.onLine(line)
	}
	w.out.write(line)
	w.buf = w.buf[:0]
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit()
	}
}
