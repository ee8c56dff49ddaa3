// Package faultproxy is an HTTP reverse proxy for tests that injects faults
// between a client and a real server: it forwards requests untouched, or
// hangs, delays, answers a chosen status, sends a garbage or truncated body,
// resets the connection, or lets the server act on a request and then holds
// its reply back (the reply that never arrives: the server did the work, the
// client timed out). The fault is switched at run time (Set) and every
// request is counted, by the fault it met.
//
// It is meant to sit in front of internal/upstashlocal (the Upstash REST
// API) or dynalite (DynamoDB) so that the real client code meets real
// network failures:
//
//	env := upstashtest.Start(t)
//	px := faultproxy.Start(t, env.URL)
//	// point UPSTASH_REDIS_REST_URL at px.URL
//	px.Set(faultproxy.Hang())
//	...
//	px.Set(faultproxy.Pass())
//
// The proxy speaks HTTP/1.1 to its clients (faults that act on the
// connection need to hijack it). It keeps the client's Host header when
// forwarding, so request signatures made for the proxy's address (AWS SigV4)
// stay valid.
package faultproxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Mode is the kind of fault the proxy injects.
type Mode int

// Modes. The zero value is ModePass.
const (
	// ModePass forwards every request to the target unchanged.
	ModePass Mode = iota
	// ModeHang reads the request and never answers: the request stays open
	// until the client gives up or the proxy is closed.
	ModeHang
	// ModeSlow waits Fault.Delay (or until the client gives up), then
	// forwards the request.
	ModeSlow
	// ModeStatus answers Fault.Status with Fault.Body without forwarding.
	ModeStatus
	// ModeGarbage answers 200 with a body that is not JSON, without
	// forwarding.
	ModeGarbage
	// ModeTruncate forwards the request, then sends the target's status and
	// headers (with the full Content-Length) but only the first half of its
	// body, and closes the connection.
	ModeTruncate
	// ModeReset closes the client's connection with a TCP reset (SO_LINGER
	// 0) without answering.
	ModeReset
	// ModeLateReply forwards the request at once and lets the target answer
	// it in full, even if the client gives up meanwhile, then holds the
	// reply for Fault.Delay before sending it — or, with a zero Delay, until
	// the client gives up or the proxy is closed (the reply is dropped). The
	// target has acted on the request either way.
	ModeLateReply
	numModes
)

var modeNames = [numModes]string{"pass", "hang", "slow", "status", "garbage", "truncate", "reset", "late-reply"}

// String returns the mode's name: pass, hang, slow, status, garbage,
// truncate, reset or late-reply.
func (m Mode) String() string {
	if m < 0 || m >= numModes {
		return "Mode(" + strconv.Itoa(int(m)) + ")"
	}
	return modeNames[m]
}

// Fault is what the proxy does to each request. Build one with Pass, Hang,
// Slow, Status, StatusBody, Garbage, Truncate, Reset, DropReply or
// DelayReply. The zero value is
// Pass(). A Fault is a small value; copy it freely.
type Fault struct {
	// Mode is the kind of fault.
	Mode Mode
	// Delay is ModeSlow's wait before forwarding, and ModeLateReply's
	// before replying (0: never, the reply is dropped).
	Delay time.Duration
	// Status is ModeStatus's HTTP status code.
	Status int
	// Body is the body ModeStatus and ModeGarbage send; nil selects a
	// default (see Status and Garbage).
	Body []byte
}

// String describes f, e.g. "slow(2s)", "status(500)", "drop-reply" or
// "delay-reply(1s)".
func (f Fault) String() string {
	switch f.Mode {
	case ModeSlow:
		return fmt.Sprintf("slow(%s)", f.Delay)
	case ModeStatus:
		return fmt.Sprintf("status(%d)", f.Status)
	case ModeLateReply:
		if f.Delay <= 0 {
			return "drop-reply"
		}
		return fmt.Sprintf("delay-reply(%s)", f.Delay)
	}
	return f.Mode.String()
}

// Pass forwards requests unchanged.
func Pass() Fault { return Fault{Mode: ModePass} }

// Hang never answers.
func Hang() Fault { return Fault{Mode: ModeHang} }

// Slow forwards each request after waiting d.
func Slow(d time.Duration) Fault { return Fault{Mode: ModeSlow, Delay: d} }

// Status answers code with an Upstash-shaped JSON error body:
// {"error":"WRONGPASS invalid or missing auth token"} for 401 (what Upstash
// sends for a bad token), {"error":"ERR injected fault: HTTP <code>"}
// otherwise.
func Status(code int) Fault {
	body := `{"error":"ERR injected fault: HTTP ` + strconv.Itoa(code) + `"}`
	if code == http.StatusUnauthorized {
		body = `{"error":"WRONGPASS invalid or missing auth token"}`
	}
	return Fault{Mode: ModeStatus, Status: code, Body: []byte(body)}
}

// StatusBody answers code with body (sent with Content-Type
// application/json).
func StatusBody(code int, body []byte) Fault {
	return Fault{Mode: ModeStatus, Status: code, Body: body}
}

// DefaultGarbage is the body Garbage sends: an HTML error page, as a
// misconfigured load balancer would, followed by bytes that are not UTF-8.
var DefaultGarbage = []byte("<html><body><h1>502 Bad Gateway</h1></body></html>\x00\xff\xfe{\"result\":")

// Garbage answers 200 with DefaultGarbage.
func Garbage() Fault { return Fault{Mode: ModeGarbage} }

// Truncate sends half of the target's reply, then closes the connection.
func Truncate() Fault { return Fault{Mode: ModeTruncate} }

// Reset resets the connection without answering.
func Reset() Fault { return Fault{Mode: ModeReset} }

// DropReply forwards each request and lets the target answer it, but never
// passes the reply on: the client waits until it gives up. A client with a
// timeout sees a timeout for a request the target carried out.
func DropReply() Fault { return Fault{Mode: ModeLateReply} }

// DelayReply forwards each request at once and passes the target's reply on
// d later (d <= 0 is DropReply).
func DelayReply(d time.Duration) Fault { return Fault{Mode: ModeLateReply, Delay: max(d, 0)} }

// Proxy is the fault-injecting reverse proxy, an http.Handler. Serve it with
// an HTTP/1.1 server (Start does). Set, Fault and the counters are safe to
// call concurrently with requests in flight; a new fault applies to requests
// that arrive after Set.
type Proxy struct {
	target    *url.URL
	transport *http.Transport
	rp        *httputil.ReverseProxy

	mu    sync.Mutex
	fault Fault
	late  [][]byte // bodies of the replies ModeLateReply held back

	done      chan struct{} // closed by Close: releases hung and slow requests
	closeOnce sync.Once

	requests atomic.Uint64
	answered atomic.Uint64
	byMode   [numModes]atomic.Uint64
}

var _ http.Handler = (*Proxy)(nil)

// New returns a Proxy forwarding to target, a base URL such as
// "http://127.0.0.1:8079" (its path, if any, prefixes request paths). The
// initial fault is Pass().
func New(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q is not an http(s) base URL", target)
	}
	p := &Proxy{
		target: u,
		transport: &http.Transport{
			Proxy:               nil, // never an environment proxy: tests talk to loopback only
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		done: make(chan struct{}),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.target)
			pr.Out.Host = pr.In.Host // keep the Host the client signed
		},
		Transport: p.transport,
		ModifyResponse: func(*http.Response) error {
			p.answered.Add(1)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The target is down (or the client went away): answer as a
			// gateway would, without logging to the test's stderr.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(`{"error":"ERR faultproxy: target unreachable"}`))
		},
	}
	return p, nil
}

// Set makes f the fault for requests arriving from now on.
func (p *Proxy) Set(f Fault) {
	p.mu.Lock()
	p.fault = f
	p.mu.Unlock()
}

// Fault returns the current fault.
func (p *Proxy) Fault() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault
}

// Requests returns the number of requests the proxy has received.
func (p *Proxy) Requests() uint64 { return p.requests.Load() }

// LateReplies returns the bodies of the replies that ModeLateReply held
// back, in the order the target sent them, whether or not they were passed
// on later: what the target said to requests whose client saw a timeout.
func (p *Proxy) LateReplies() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([][]byte, len(p.late))
	copy(out, p.late)
	return out
}

// Answered returns the number of forwarded requests the target has answered
// (its reply's status line and headers reached the proxy), whether or not
// the reply was then passed on. For a server that acts before it replies,
// as the Upstash REST API does, an answered request is one that took
// effect.
func (p *Proxy) Answered() uint64 { return p.answered.Load() }

// Count returns the number of requests that met mode m.
func (p *Proxy) Count(m Mode) uint64 {
	if m < 0 || m >= numModes {
		return 0
	}
	return p.byMode[m].Load()
}

// Close releases requests held by Hang, Slow and LateReply (they end
// without a reply)
// and closes idle connections to the target. The Proxy forwards no request
// afterwards (they get 503). It is safe to call more than once.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() { close(p.done) })
	p.transport.CloseIdleConnections()
}

// ServeHTTP applies the current fault to r.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := p.Fault()
	p.requests.Add(1)
	if f.Mode >= 0 && f.Mode < numModes {
		p.byMode[f.Mode].Add(1)
	}
	select {
	case <-p.done:
		http.Error(w, "faultproxy closed", http.StatusServiceUnavailable)
		return
	default:
	}
	switch f.Mode {
	case ModeHang:
		p.wait(r.Context(), nil)
	case ModeSlow:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		if p.wait(r.Context(), t.C) {
			p.rp.ServeHTTP(w, r)
		}
	case ModeStatus:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Body)))
		w.WriteHeader(f.Status)
		_, _ = w.Write(f.Body)
	case ModeGarbage:
		body := f.Body
		if body == nil {
			body = DefaultGarbage
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	case ModeTruncate:
		p.truncate(w, r)
	case ModeReset:
		reset(w)
	case ModeLateReply:
		p.lateReply(w, r, f.Delay)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// wait blocks until ready fires (true), or the client goes away or the
// proxy closes (false). A nil ready never fires.
func (p *Proxy) wait(ctx context.Context, ready <-chan time.Time) bool {
	select {
	case <-ready:
		return true
	case <-ctx.Done():
	case <-p.done:
	}
	return false
}

// truncate forwards r, then writes the reply's head with its full length
// and half of its body on the raw connection, and closes it.
func (p *Proxy) truncate(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	conn, buf, err := hijack(w)
	if err != nil {
		return
	}
	defer conn.Close()
	declared := len(body)
	if declared < 2 {
		declared += 16 // nothing to halve: promise more than is sent
	}
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
	for name, vs := range rec.Header() {
		if name == "Content-Length" || name == "Transfer-Encoding" || name == "Connection" {
			continue
		}
		for _, v := range vs {
			fmt.Fprintf(buf, "%s: %s\r\n", name, v)
		}
	}
	fmt.Fprintf(buf, "Content-Length: %d\r\nConnection: close\r\n\r\n", declared)
	_, _ = buf.Write(body[:len(body)/2])
	_ = buf.Flush()
}

// lateReply forwards r, detached from the client's cancellation so that the
// target always gets it and answers in full, then holds the reply for delay
// (0: until the client gives up or the proxy closes) and sends it if the
// client is still there.
func (p *Proxy) lateReply(w http.ResponseWriter, r *http.Request, delay time.Duration) {
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
	p.mu.Lock()
	p.late = append(p.late, bytes.Clone(rec.Body.Bytes()))
	p.mu.Unlock()
	var ready <-chan time.Time
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		ready = t.C
	}
	if !p.wait(r.Context(), ready) {
		return // the reply is dropped
	}
	for name, vs := range rec.Header() {
		w.Header()[name] = vs
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// reset closes the client's connection with an RST.
func reset(w http.ResponseWriter) {
	conn, _, err := hijack(w)
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("faultproxy: hijack: %w", err)
	}
	return conn, rw, nil
}

// Server is a Proxy listening on a loopback port.
type Server struct {
	*Proxy
	// URL is the proxy's base URL, "http://127.0.0.1:PORT" (no trailing
	// slash): use it where the target's URL would go.
	URL string
}

// Start serves a Proxy for target on a free 127.0.0.1 port. t.Cleanup
// closes it: held requests are released first, then the server stops.
func Start(t testing.TB, target string) *Server {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(p)
	t.Cleanup(func() {
		p.Close()
		hs.CloseClientConnections()
		hs.Close()
	})
	return &Server{Proxy: p, URL: hs.URL}
}
