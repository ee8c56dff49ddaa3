package upstash

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
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
	url      *url.URL    // the command endpoint, "BASE/"; shared read-only
	header   http.Header // shared read-only by every request
	rt       http.RoundTripper
	hcTime   time.Duration // Timeout of a given http.Client, applied to every call
	token    string        // only to scrub it from server-provided messages
	maxReply int64
	timeout  time.Duration
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
	if cfg.RootCAs != nil && cfg.HTTPClient != nil {
		return nil, fmt.Errorf("%w: RootCAs and HTTPClient are both set (give HTTPClient's transport the CAs instead)", ErrInvalidConfig)
	}
	u := *base
	u.Path += "/"
	if u.RawPath != "" {
		u.RawPath += "/"
	}
	c := &Client{
		url:      &u,
		token:    cfg.Token,
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
	switch hc := cfg.HTTPClient; {
	case hc != nil:
		c.rt, c.hcTime = hc.Transport, hc.Timeout
		if c.rt == nil {
			c.rt = http.DefaultTransport
		}
	case cfg.RootCAs != nil:
		c.rt = newTransport(&tls.Config{RootCAs: cfg.RootCAs})
	default:
		c.rt = newTransport(nil)
	}
	return c, nil
}

// newTransport returns the default transport.
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
		// Replies are small; gzip would cost CPU on every call and would
		// make MaxReplyBytes count inflated bytes.
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

// Do sends one command (POST / with a JSON array) and decodes the reply's
// "result" into out as json.Unmarshal would (out is a pointer; nil
// discards the result). A Redis error is a *Error of KindCommand.
//
// args are the command name and its arguments: string, []byte (valid
// UTF-8) or one of Go's integer types (int, int8 ... uint64; not a named
// type such as time.Duration, whose unit would be lost), sent as JSON
// strings (integers in base 10). Anything else, or a string that is not
// valid UTF-8, is refused with an error wrapping ErrInvalidArgument before
// anything is sent: a JSON string cannot carry other bytes, and replacing
// them would change a key or a value.
func (c *Client) Do(ctx context.Context, out any, args ...any) error {
	if err := c.check(ctx, out); err != nil {
		return err
	}
	if len(args) == 0 {
		return fmt.Errorf("%w: no command given", ErrInvalidArgument)
	}
	cmd := make([]string, len(args))
	for i, a := range args {
		s, err := argString(a)
		if err != nil {
			return fmt.Errorf("%w: argument %d %s", ErrInvalidArgument, i+1, err.Error())
		}
		cmd[i] = s
	}
	return c.call(ctx, out, cmd)
}

var errNilClient = fmt.Errorf("%w: nil client", ErrInvalidArgument)

// check refuses what would make a call fail for the caller's own reasons.
func (c *Client) check(ctx context.Context, out any) error {
	switch {
	case c == nil:
		return errNilClient
	case ctx == nil:
		return fmt.Errorf("%w: nil context", ErrInvalidArgument)
	case out == nil:
		return nil
	}
	if v := reflect.ValueOf(out); v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("%w: out is a %T, want nil or a non-nil pointer", ErrInvalidArgument, out)
	}
	return nil
}

// argProblem completes a sentence whose subject is an argument.
type argProblem string

func (p argProblem) Error() string { return string(p) }

const errNotUTF8 argProblem = "is not valid UTF-8"

// argString converts one argument to the string Redis will receive.
func argString(a any) (string, error) {
	switch v := a.(type) {
	case string:
		if !utf8.ValidString(v) {
			return "", errNotUTF8
		}
		return v, nil
	case []byte:
		if !utf8.Valid(v) {
			return "", errNotUTF8
		}
		return string(v), nil
	case int:
		return strconv.Itoa(v), nil
	case int8:
		return strconv.FormatInt(int64(v), 10), nil
	case int16:
		return strconv.FormatInt(int64(v), 10), nil
	case int32:
		return strconv.FormatInt(int64(v), 10), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint8:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint16:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint32:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	}
	return "", argProblem(fmt.Sprintf("has type %T; want a string, []byte or an integer", a))
}

// call sends cmd (every element valid UTF-8) and decodes the reply into out.
func (c *Client) call(ctx context.Context, out any, cmd []string) error {
	body, err := json.Marshal(cmd)
	if err != nil { // cannot happen for a []string
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	reply, status, err := c.post(ctx, body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return c.statusError(status, reply)
	}
	return c.decode(reply, out)
}

// envelope is a reply to POST /: {"result": R} or {"error": "MSG"}.
type envelope struct {
	Result json.RawMessage `json:"result"` // "null" for a nil reply; empty when absent
	Error  *string         `json:"error"`
}

// decode reads a 200 reply into out.
func (c *Client) decode(reply []byte, out any) error {
	var env envelope
	if err := json.Unmarshal(reply, &env); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		msg := "reply is not a JSON object"
		switch {
		case errors.As(err, &se):
			msg = "reply is not valid JSON (at byte " + strconv.FormatInt(se.Offset, 10) + ")"
		case errors.As(err, &te) && te.Field != "": // only "error" can fail
			msg = `reply's "error" member is not a string`
		}
		return &Error{Kind: KindMalformed, StatusCode: http.StatusOK, Message: msg}
	}
	switch {
	case env.Error != nil:
		return &Error{Kind: KindCommand, StatusCode: http.StatusOK, Message: c.scrub(*env.Error)}
	case env.Result == nil:
		return &Error{Kind: KindMalformed, StatusCode: http.StatusOK, Message: `reply has neither "result" nor "error"`}
	case out == nil:
		return nil
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return &Error{Kind: KindMalformed, StatusCode: http.StatusOK, Message: decodeProblem(err, out)}
	}
	return nil
}

// decodeProblem describes why a result did not decode into out, without
// quoting the result (json's own messages quote numbers; an Unmarshaler's
// error could quote anything).
func decodeProblem(err error, out any) string {
	msg := fmt.Sprintf("result does not decode into %T", out)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		kind, _, _ := strings.Cut(te.Value, " ") // "number 1.5" -> "number"
		msg += ": a JSON " + kind + " where " + te.Type.String() + " is expected"
		if te.Field != "" {
			msg += " (field " + te.Field + ")"
		}
	}
	return msg
}

// post sends body to the command endpoint and reads the whole reply.
func (c *Client) post(ctx context.Context, body []byte) ([]byte, int, error) {
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
	// parsed once in New, the header map is shared (RoundTrippers must not
	// modify requests), and GetBody stays unset so that net/http never
	// re-sends the request on another connection. *bytes.Reader (also
	// behind io.NopCloser) is a reader net/http knows to be in memory: it
	// writes headers and body in one TCP segment. The request goes straight
	// to the transport: http.Client would clone the headers on every call
	// for redirects that are never followed, and keep cookies.
	req := (&http.Request{
		Method:        http.MethodPost,
		URL:           c.url,
		Header:        c.header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
	}).WithContext(ctx)
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return nil, 0, c.callError(ctx, err, 0)
	}
	// Reading to EOF (below) and closing returns the connection to the
	// pool; a reply abandoned early closes it.
	defer resp.Body.Close()
	if resp.ContentLength > c.maxReply {
		return nil, resp.StatusCode, c.callError(ctx, errTooLarge, resp.StatusCode)
	}
	lr := &io.LimitedReader{R: resp.Body, N: c.maxReply + 1}
	reply, err := io.ReadAll(lr)
	if err == nil && lr.N <= 0 {
		err = errTooLarge
	}
	if err != nil {
		return nil, resp.StatusCode, c.callError(ctx, err, resp.StatusCode)
	}
	return reply, resp.StatusCode, nil
}

var errTooLarge = errors.New("reply too large")

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
	var env struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &env) == nil {
		msg = c.scrub(env.Error)
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

// scrub removes the token from a server-provided message, should a server
// or proxy ever echo it, and then bounds the message. In that order: cut
// first, a token straddling the cut would leave its prefix behind.
func (c *Client) scrub(msg string) string {
	if c.token != "" {
		msg = strings.ReplaceAll(msg, c.token, "[redacted]")
	}
	if len(msg) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return strings.ToValidUTF8(msg, "\uFFFD")
}
