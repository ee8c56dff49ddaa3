package upstash

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Client sends commands to one Upstash database over its REST API.
//
// A Client is safe for concurrent use by multiple goroutines and starts no
// goroutines of its own (the HTTP transport's connection goroutines aside).
// Create one per process and reuse it: it keeps connections alive.
type Client struct {
	urls     [3]*url.URL // by endpoint; shared read-only by every request
	header   http.Header // shared read-only by every request
	rt       http.RoundTripper
	hcTime   time.Duration // Timeout of a given http.Client, applied to every call
	token    string        // only to scrub it from server-provided messages
	b64      bool
	maxReply int64
	timeout  time.Duration
}

// Endpoints, indexes into Client.urls.
const (
	epCommand = iota
	epPipeline
	epMultiExec
)

// Result is the outcome of one command of a pipeline or transaction.
type Result struct {
	// Value is the reply; the zero (nil) Value when Err is set.
	Value Value
	// Err is a *Error of KindCommand carrying the Redis message when this
	// command failed; nil otherwise.
	Err error
}

// New returns a Client for cfg. It checks the URL and token (errors wrap
// ErrInvalidConfig and never contain either) and applies the defaults
// documented on Config. It does not contact the server.
func New(cfg Config) (*Client, error) {
	base, err := parseBaseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: URL %s", ErrInvalidConfig, err.Error())
	}
	if err := checkToken(cfg.Token); err != nil {
		return nil, fmt.Errorf("%w: token %s", ErrInvalidConfig, err.Error())
	}
	if cfg.MaxReplyBytes < 0 {
		return nil, fmt.Errorf("%w: MaxReplyBytes is negative", ErrInvalidConfig)
	}
	c := &Client{
		token:    cfg.Token,
		b64:      cfg.Base64,
		maxReply: cfg.MaxReplyBytes,
		timeout:  cfg.Timeout,
		header: http.Header{
			"Authorization": {"Bearer " + cfg.Token},
			"Content-Type":  {"application/json"},
			"User-Agent":    {"bucketgate-upstash"},
		},
	}
	if c.maxReply == 0 {
		c.maxReply = DefaultMaxReplyBytes
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if cfg.Base64 {
		c.header["Upstash-Encoding"] = []string{"base64"}
	}
	for ep, path := range [...]string{epCommand: "/", epPipeline: "/pipeline", epMultiExec: "/multi-exec"} {
		u := *base
		u.Path = base.Path + path
		if base.RawPath != "" {
			u.RawPath = base.RawPath + path
		}
		c.urls[ep] = &u
	}
	c.rt = newTransport(nil)
	if hc := cfg.HTTPClient; hc != nil {
		c.rt, c.hcTime = hc.Transport, hc.Timeout
		if c.rt == nil {
			c.rt = http.DefaultTransport
		}
	}
	return c, nil
}

// newTransport returns the default transport; tlsConfig is for tests.
func newTransport(tlsConfig *tls.Config) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConfig,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    128,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    5 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		// Replies are small; gzip would cost allocations and CPU on every
		// call and would make MaxReplyBytes count inflated bytes.
		DisableCompression: true,
	}
}

// CloseIdleConnections closes the idle keep-alive connections of the
// client's transport (when it has that method, as *http.Transport does).
func (c *Client) CloseIdleConnections() {
	if t, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// Do sends one command (POST / with a JSON array body) and returns its
// reply. args are the command name and its arguments, each a string,
// []byte (valid UTF-8), int, int8-64, uint, uint8-64, float32 or float64;
// they are sent as JSON strings. A Redis error is a *Error of KindCommand.
func (c *Client) Do(ctx context.Context, args ...any) (Value, error) {
	if c == nil {
		return Value{}, errNilClient
	}
	body := getBuffer()
	var err error
	if body.b, err = appendCommand(body.b[:0], -1, args); err != nil {
		putBuffer(body)
		return Value{}, err
	}
	return c.doSingle(ctx, body)
}

// Pipeline sends cmds in one request (POST /pipeline). Upstash runs them in
// order but not atomically. The error is set when the whole request failed;
// otherwise there is one Result per command, each with its own Err.
func (c *Client) Pipeline(ctx context.Context, cmds ...[]any) ([]Result, error) {
	return c.doMulti(ctx, epPipeline, cmds)
}

// MultiExec sends cmds as one transaction (POST /multi-exec): Upstash runs
// them atomically, in MULTI/EXEC. Results are reported as for Pipeline; a
// command failing at run time does not undo the others (as in Redis).
func (c *Client) MultiExec(ctx context.Context, cmds ...[]any) ([]Result, error) {
	return c.doMulti(ctx, epMultiExec, cmds)
}

var errNilClient = fmt.Errorf("%w: nil client", ErrInvalidArgument)

// doSingle posts body (taking it over) to / and parses the reply.
func (c *Client) doSingle(ctx context.Context, body *buffer) (Value, error) {
	reply, status, err := c.post(ctx, epCommand, body)
	if err != nil {
		return Value{}, err
	}
	defer putBuffer(reply)
	if status != http.StatusOK {
		return Value{}, c.statusError(status, reply.b)
	}
	v, msg, hasErr, err := parseSingle(reply.b, c.b64)
	if err != nil {
		return Value{}, &Error{Kind: KindMalformed, StatusCode: status, Message: err.Error()}
	}
	if hasErr {
		return Value{}, &Error{Kind: KindCommand, StatusCode: status, Message: c.scrub(msg)}
	}
	return v, nil
}

func (c *Client) doMulti(ctx context.Context, ep int, cmds [][]any) ([]Result, error) {
	if c == nil {
		return nil, errNilClient
	}
	body := getBuffer()
	var err error
	if body.b, err = appendCommands(body.b[:0], cmds); err != nil {
		putBuffer(body)
		return nil, err
	}
	reply, status, err := c.post(ctx, ep, body)
	if err != nil {
		return nil, err
	}
	defer putBuffer(reply)
	if status != http.StatusOK {
		return nil, c.statusError(status, reply.b)
	}
	out := make([]Result, len(cmds))
	if err := parseMulti(reply.b, c.b64, out, status); err != nil {
		return nil, &Error{Kind: KindMalformed, StatusCode: status, Message: err.Error()}
	}
	for i := range out {
		if e, ok := out[i].Err.(*Error); ok {
			e.Message = c.scrub(e.Message)
		}
	}
	return out, nil
}

// post sends the request body encoded in scratch (which it returns to the
// pool) and reads the whole reply into a pooled buffer, which the caller
// must return with putBuffer.
func (c *Client) post(ctx context.Context, ep int, scratch *buffer) (*buffer, int, error) {
	if ctx == nil {
		putBuffer(scratch)
		return nil, 0, fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	// The transport may still read the body after Client.Do returns
	// (http.RoundTripper's contract), so it gets its own exact-size copy and
	// the scratch buffer goes back to the pool now. The body is a
	// *bytes.Reader behind io.NopCloser because net/http writes headers and
	// body in one TCP segment only for known in-memory readers; any other
	// type costs a separate flush and, measured on loopback, ~15% latency.
	body := bytes.Clone(scratch.b)
	putBuffer(scratch)
	if c.hcTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.hcTime)
		defer cancel()
	} else if c.timeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.timeout)
			defer cancel()
		}
	}
	// Built by hand rather than with http.NewRequestWithContext: the URL is
	// parsed once in New and the header map is shared; RoundTrippers must
	// not modify requests. The request goes straight to the transport:
	// http.Client would only add what the client does not want (it clones
	// the headers on every call to follow redirects, and keeps cookies).
	req := (&http.Request{
		Method:        http.MethodPost,
		URL:           c.urls[ep],
		Header:        c.header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
	}).WithContext(ctx)
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return nil, 0, c.callError(ctx, err, 0)
	}
	// Reading to EOF (below) and closing returns the connection to the pool.
	defer resp.Body.Close()
	if resp.ContentLength > c.maxReply {
		return nil, resp.StatusCode, c.callError(ctx, errTooLarge, resp.StatusCode)
	}
	reply := getBuffer()
	if reply.b, err = readBody(resp.Body, reply.b[:0], resp.ContentLength, c.maxReply); err != nil {
		putBuffer(reply)
		return nil, resp.StatusCode, c.callError(ctx, err, resp.StatusCode)
	}
	return reply, resp.StatusCode, nil
}

var errTooLarge = errors.New("reply too large")

// readBody reads r to EOF, appending to b, failing with errTooLarge past
// limit bytes. cl is the Content-Length, or -1.
func readBody(r io.Reader, b []byte, cl, limit int64) ([]byte, error) {
	if cl >= 0 && int64(cap(b)) < cl+1 {
		// +1: room for the read that sees EOF without growing.
		b = slices.Grow(b[:0], int(cl)+1)
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		room := b[len(b):cap(b)]
		if left := limit + 1 - int64(len(b)); int64(len(room)) > left {
			room = room[:left]
		}
		n, err := r.Read(room)
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			return b, errTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// callError classifies a failure of the HTTP exchange.
func (c *Client) callError(ctx context.Context, err error, status int) *Error {
	var ne net.Error
	switch {
	case err == errTooLarge:
		return &Error{Kind: KindMalformed, StatusCode: status,
			Message: "reply exceeds " + strconv.FormatInt(c.maxReply, 10) + " bytes"}
	case ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()):
		return &Error{Kind: KindTimeout, StatusCode: status, err: err}
	case ctx.Err() == context.Canceled || errors.Is(err, context.Canceled):
		return &Error{Kind: KindCanceled, StatusCode: status, err: err}
	case status != 0 && errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Kind: KindMalformed, StatusCode: status, Message: "reply truncated", err: err}
	}
	return &Error{Kind: KindTransport, StatusCode: status, err: err}
}

// statusError turns a reply with a status other than 200 into an *Error,
// keeping Upstash's {"error": "..."} message when there is one.
func (c *Client) statusError(status int, body []byte) *Error {
	var kind ErrorKind
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		kind = KindAuth
	case status >= 500:
		kind = KindServer
	case status >= 400:
		kind = KindCommand
	default: // 1xx (other than those net/http absorbs), 2xx other than 200, 3xx
		kind = KindMalformed
	}
	msg := ""
	if _, m, hasErr, err := parseSingle(body, false); err == nil && hasErr {
		msg = c.scrub(m)
	}
	if msg == "" {
		msg = http.StatusText(status)
		if kind == KindMalformed {
			msg = "unexpected HTTP status"
		}
	}
	return &Error{Kind: kind, StatusCode: status, Message: msg}
}

const maxMessage = 512 // bytes of a server-provided message kept in an Error

// scrub bounds a server-provided message and removes the token from it,
// should a server or proxy ever echo it.
func (c *Client) scrub(msg string) string {
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + "…"
	}
	if c.token != "" && strings.Contains(msg, c.token) {
		msg = strings.ReplaceAll(msg, c.token, "[redacted]")
	}
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "\uFFFD")
	}
	return msg
}
