package benchmarks

import (
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"
)

// delayProxy is a TCP proxy on 127.0.0.1 that models a network link of
// constant latency and unlimited bandwidth: every chunk of bytes it reads
// from one side is written to the other side oneWay after it was read, in
// order, in both directions. An HTTP exchange through it (request out,
// reply back) therefore takes 2 × oneWay longer than a direct one, plus
// the proxy's own hop, whatever the client and the server are; it knows
// nothing of HTTP, so both contenders of a latency comparison meet exactly
// the same delay. The first byte of each request and of each reply is held
// oneWay, as a real network holds it; the TCP handshake is not delayed
// (keep-alive connections are opened during warm-up).
//
// The hold is a nanosleep on a thread with a 1 ns timer slack
// (holdUntil), because Go's timers wake up to ~0.6 ms late for sub-ms and
// few-ms waits on an idle Linux machine; it still overshoots by some tens
// of µs on a VM, so figures built on it report the round trip actually
// measured, not only the nominal delay.
//
// Options (proxyConfig) make it model more of a network: the TCP
// handshake of each new connection, a server that refuses the first
// connections, or one that accepts connections and never answers.
//
// Methods are safe for concurrent use; close stops everything.
type delayProxy struct {
	URL    string // the target's URL with the proxy's host and port, to use in its place
	ln     net.Listener
	target string // host:port
	oneWay time.Duration
	cfg    proxyConfig

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	accepted int // connections accepted so far
	wg       sync.WaitGroup
}

// proxyConfig are a delayProxy's options beyond its delay.
type proxyConfig struct {
	// Handshake holds the first bytes the client sends on each connection
	// one round trip (2 × oneWay) longer, as if connecting had taken the
	// TCP handshake's round trip: the proxy's own accept is immediate.
	Handshake bool
	// RefuseFirst closes the first RefuseFirst connections as soon as they
	// are accepted (a server not reachable yet); later ones are served.
	RefuseFirst int
	// Blackhole accepts every connection and never forwards or answers
	// anything (a server that hangs); the connections stay open until the
	// proxy closes.
	Blackhole bool
}

// startDelayProxy starts a proxy in front of targetURL (an http:// or
// https:// base URL such as upstashtest.Env.URL: the proxy forwards TCP,
// so TLS passes through it) holding each direction's bytes for oneWay (0:
// forward at once). It is closed at t's cleanup.
func startDelayProxy(t testing.TB, targetURL string, oneWay time.Duration) *delayProxy {
	t.Helper()
	return startProxy(t, targetURL, oneWay, proxyConfig{})
}

// startProxy is startDelayProxy with options.
func startProxy(t testing.TB, targetURL string, oneWay time.Duration, cfg proxyConfig) *delayProxy {
	t.Helper()
	u, err := url.Parse(targetURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.Fatalf("delay proxy: target %q is not an http:// or https:// base URL", targetURL)
	}
	if oneWay < 0 {
		t.Fatalf("delay proxy: negative delay %s", oneWay)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("delay proxy: %v", err)
	}
	p := &delayProxy{URL: u.Scheme + "://" + ln.Addr().String(), ln: ln, target: u.Host, oneWay: oneWay, cfg: cfg, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// close stops accepting, closes every connection and waits for the
// proxy's goroutines to end. It is safe to call more than once.
func (p *delayProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// track registers c so that close closes it; false when the proxy is
// already closed (c is then closed here).
func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// admit counts an accepted connection and says whether to serve it.
func (p *delayProxy) admit() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accepted++
	return p.accepted > p.cfg.RefuseFirst
}

func (p *delayProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
		delete(p.conns, c)
	}
}

func (p *delayProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		if !p.track(client) {
			return
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

// serve connects client to the target and relays both directions until
// both have ended.
func (p *delayProxy) serve(client net.Conn) {
	defer p.wg.Done()
	if !p.admit() {
		p.untrack(client)
		return
	}
	if p.cfg.Blackhole {
		return // tracked: closed by close
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.untrack(client)
		return
	}
	if !p.track(server) {
		p.untrack(client)
		return
	}
	var both sync.WaitGroup
	both.Add(2)
	var handshake time.Duration
	if p.cfg.Handshake {
		handshake = 2 * p.oneWay
	}
	go func() { defer both.Done(); p.relay(server, client, handshake) }()
	go func() { defer both.Done(); p.relay(client, server, 0) }()
	both.Wait()
	p.untrack(client, server)
}

// chunk is bytes read from one side and when they were read.
type chunk struct {
	b  []byte
	at time.Time
}

// relay reads src and, on a goroutine of its own, writes each chunk to
// dst oneWay after it was read (the first chunk first extra later). When
// src ends, dst's write side is shut (a half-close, as TCP forwards a
// FIN); when a write fails, both connections are closed so that the other
// direction ends too.
func (p *delayProxy) relay(dst, src net.Conn, first time.Duration) {
	queue := make(chan chunk, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		failed := false
		holdThread()
		for c := range queue {
			if failed {
				continue // drain, so the reader never blocks
			}
			holdUntil(c.at.Add(p.oneWay))
			if _, err := dst.Write(c.b); err != nil {
				failed = true
				_ = dst.Close()
				_ = src.Close()
			}
		}
		if !failed {
			if hc, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = hc.CloseWrite()
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			queue <- chunk{b: append([]byte(nil), buf[:n]...), at: time.Now().Add(first)}
			first = 0
		}
		if err != nil {
			break
		}
	}
	close(queue)
	<-done
}

// TestSmokeDelayProxy checks the proxy on a loopback echo server: bytes
// arrive unchanged and in order (a small message and 1 MiB, which takes
// many chunks), a half-close travels through, and an exchange takes at
// least the two one-way delays. (A lower bound only: it fails when the
// proxy does not delay, never because the machine is slow.)
func TestSmokeDelayProxy(t *testing.T) {
	target := echoServer(t)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	tests := []struct {
		name    string
		oneWay  time.Duration
		payload []byte
	}{
		{name: "no delay, small", oneWay: 0, payload: []byte(`["GET","k"]`)},
		{name: "2 ms each way, small", oneWay: 2 * time.Millisecond, payload: []byte(`["GET","k"]`)},
		{name: "2 ms each way, 1 MiB", oneWay: 2 * time.Millisecond, payload: big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px := startDelayProxy(t, target, tt.oneWay)
			c, err := net.Dial("tcp", px.URL[len("http://"):])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(tt.payload)
				if err == nil {
					err = c.(*net.TCPConn).CloseWrite()
				}
				werr <- err
			}()
			got, err := io.ReadAll(c) // ends only if the FIN went through and back
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := <-werr; err != nil {
				t.Fatalf("write: %v", err)
			}
			if len(got) != len(tt.payload) || string(got) != string(tt.payload) {
				t.Fatalf("echo through the proxy: got %d bytes, want the %d sent, unchanged", len(got), len(tt.payload))
			}
			if min := 2 * tt.oneWay; elapsed < min {
				t.Errorf("exchange took %s, want at least %s (two one-way delays)", elapsed, min)
			}
		})
	}
	t.Run("target down", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close() // nothing listens there now
		px := startDelayProxy(t, "http://"+addr, 0)
		c, err := net.Dial("tcp", px.URL[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read from a proxy whose target is down: %v, want the connection closed", err)
		}
	})
}

// echoServer is a loopback TCP server echoing what it reads until the
// client's FIN. It stops at t's cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	t.Cleanup(func() { _ = echo.Close(); served.Wait() })
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			served.Add(1)
			go func() {
				defer served.Done()
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}()
		}
	}()
	return "http://" + echo.Addr().String()
}

// exchange sends msg on c and reads as many bytes back, returning how long
// it took and what came back (nil and the error when the read failed).
func exchange(c net.Conn, msg string) (time.Duration, []byte, error) {
	start := time.Now()
	if _, err := c.Write([]byte(msg)); err != nil {
		return 0, nil, err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return 0, nil, err
	}
	return time.Since(start), got, nil
}

// TestSmokeProxyOptions checks the proxy's options on a loopback echo
// server: with Handshake the first exchange of a connection takes at least
// two round trips and the next at least one (lower bounds only: they fail
// when the proxy does not delay, never because the machine is slow);
// RefuseFirst closes the first connections and serves the next; Blackhole
// answers nothing.
func TestSmokeProxyOptions(t *testing.T) {
	target := echoServer(t)
	dial := func(t *testing.T, px *delayProxy) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", px.URL[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	t.Run("handshake", func(t *testing.T) {
		const oneWay = 2 * time.Millisecond
		c := dial(t, startProxy(t, target, oneWay, proxyConfig{Handshake: true}))
		for i, want := range []time.Duration{4 * oneWay, 2 * oneWay} {
			d, got, err := exchange(c, "ping")
			if err != nil || string(got) != "ping" {
				t.Fatalf("exchange %d: %q, %v; want the echo", i+1, got, err)
			}
			if d < want {
				t.Errorf("exchange %d took %s, want at least %s", i+1, d, want)
			}
		}
	})
	t.Run("refuse first", func(t *testing.T) {
		px := startProxy(t, target, 0, proxyConfig{RefuseFirst: 1})
		if _, got, err := exchange(dial(t, px), "ping"); err == nil {
			t.Errorf("first connection echoed %q, want it closed", got)
		}
		if _, got, err := exchange(dial(t, px), "ping"); err != nil || string(got) != "ping" {
			t.Errorf("second connection: %q, %v; want the echo", got, err)
		}
	})
	t.Run("blackhole", func(t *testing.T) {
		c := dial(t, startProxy(t, target, 0, proxyConfig{Blackhole: true}))
		_ = c.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if _, got, err := exchange(c, "ping"); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("exchange through a blackhole: %q, %v; want nothing until the deadline", got, err)
		}
	})
}
