package upstash

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// ErrorKind says what went wrong with an Upstash call. Callers branch on it
// (for example: fall back on KindTimeout, log KindAuth as a misconfiguration).
type ErrorKind int

// The kinds of *Error. The zero ErrorKind is not used by this package.
const (
	// KindAuth: the token was refused (HTTP 401 or 403).
	KindAuth ErrorKind = iota + 1
	// KindCommand: Redis or Upstash rejected the command (HTTP 400 or another
	// 4xx, or an "error" member in a 200 reply). Message carries the Redis
	// error text, e.g. "ERR wrong number of arguments for 'get' command".
	KindCommand
	// KindServer: Upstash (or a proxy in front of it) answered 5xx.
	KindServer
	// KindTransport: no complete HTTP exchange: dial, TLS, connection reset.
	KindTransport
	// KindTimeout: the context deadline (or Config.Timeout, or the HTTP
	// client's own Timeout) expired. errors.Is(err, context.DeadlineExceeded)
	// is true for every error of this kind.
	KindTimeout
	// KindMalformed: a reply that is not what Upstash sends (bad or
	// truncated JSON, an unexpected shape, a reply over
	// Config.MaxReplyBytes, an unexpected HTTP status such as a redirect),
	// or a result that does not decode into the caller's value.
	KindMalformed
	// KindCanceled: the context was canceled by the caller.
	// errors.Is(err, context.Canceled) is true for every error of this kind.
	KindCanceled
)

// String returns a short lowercase name: "auth", "command", "server",
// "transport", "timeout", "malformed", "canceled".
func (k ErrorKind) String() string {
	switch k {
	case KindAuth:
		return "auth"
	case KindCommand:
		return "command"
	case KindServer:
		return "server"
	case KindTransport:
		return "transport"
	case KindTimeout:
		return "timeout"
	case KindMalformed:
		return "malformed"
	case KindCanceled:
		return "canceled"
	}
	return "ErrorKind(" + strconv.Itoa(int(k)) + ")"
}

// Error is the error returned for every failed call to Upstash (as opposed
// to bad arguments, reported with ErrInvalidArgument before anything is
// sent). Use errors.As to get it, or KindOf.
//
// Its text never contains the token, the command sent, or a key: it holds
// the kind, the HTTP status and the message Redis or Upstash returned.
type Error struct {
	// Kind says what went wrong.
	Kind ErrorKind
	// StatusCode is the HTTP status of the reply; 0 when no reply arrived
	// (KindTransport, KindTimeout, KindCanceled before the headers came).
	StatusCode int
	// Message is the error text from Redis or Upstash for KindCommand,
	// KindAuth and KindServer when the reply carried one (else the HTTP
	// status text), and a short description for KindMalformed. It is empty
	// for KindTransport, KindTimeout and KindCanceled, whose cause is wrapped.
	Message string

	err error // cause, for Unwrap; never holds the token
}

// Error returns "upstash: KIND error[ (HTTP N)]: message[: cause]".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("upstash: ")
	b.WriteString(e.Kind.String())
	b.WriteString(" error")
	if e.StatusCode != 0 && e.StatusCode != 200 {
		b.WriteString(" (HTTP ")
		b.WriteString(strconv.Itoa(e.StatusCode))
		b.WriteString(")")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.err != nil {
		b.WriteString(": ")
		b.WriteString(causeText(e.err))
	}
	return b.String()
}

// Unwrap returns the underlying cause (a net or context error, for example),
// or nil.
func (e *Error) Unwrap() error { return e.err }

// Is makes errors.Is(err, context.DeadlineExceeded) true for KindTimeout and
// errors.Is(err, context.Canceled) true for KindCanceled, whatever layer
// (context, http.Client.Timeout, net.Conn deadline) noticed it.
func (e *Error) Is(target error) bool {
	switch target {
	case context.DeadlineExceeded:
		return e.Kind == KindTimeout
	case context.Canceled:
		return e.Kind == KindCanceled
	}
	return false
}

// KindOf returns the Kind of the *Error in err's chain, or 0 when there is none.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// isNoScript reports whether e is Redis' NOSCRIPT reply to EVALSHA: the
// script is not in the server's script cache (so it did not run).
func (e *Error) isNoScript() bool {
	return e.Kind == KindCommand && strings.HasPrefix(e.Message, "NOSCRIPT")
}

var (
	// ErrNotConfigured is returned by ConfigFromEnv when neither
	// UPSTASH_REDIS_REST_URL nor UPSTASH_REDIS_REST_TOKEN is set.
	ErrNotConfigured = errors.New("upstash: not configured")
	// ErrInvalidConfig is wrapped by every error from ConfigFromEnv and New
	// about a bad URL, token or setting.
	ErrInvalidConfig = errors.New("upstash: invalid configuration")
	// ErrInvalidArgument is wrapped by errors about a call that cannot be
	// made (no command, an argument of an unsupported type or not valid
	// UTF-8, out not a pointer, a nil client or context). Nothing was sent.
	ErrInvalidArgument = errors.New("upstash: invalid argument")
)

// causeText is the text of a cause without the "Post \"URL\": " prefix that
// *url.Error adds: shorter, and the URL is in the configuration anyway.
func causeText(err error) string {
	if ue, ok := err.(*url.Error); ok && ue.Err != nil {
		return ue.Err.Error()
	}
	return err.Error()
}
