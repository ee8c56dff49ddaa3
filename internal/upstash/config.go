package upstash

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Environment variables read by ConfigFromEnv: Upstash's own names, as the
// console shows them.
const (
	EnvURL   = "UPSTASH_REDIS_REST_URL"
	EnvToken = "UPSTASH_REDIS_REST_TOKEN"
)

// Defaults applied by New.
const (
	// DefaultMaxReplyBytes is the reply body limit when Config.MaxReplyBytes is 0.
	DefaultMaxReplyBytes = 32 << 20
	// DefaultTimeout bounds a call whose context has no deadline, when
	// Config.Timeout is 0.
	DefaultTimeout = 10 * time.Second
)

// Config configures a Client. Only URL and Token are required.
type Config struct {
	// URL is the REST endpoint, e.g. "https://eu1-xxx.upstash.io"; a
	// trailing slash is ignored. http is allowed (local servers); a path is
	// kept as a prefix; user info, a query and a fragment are refused (the
	// token travels in the Authorization header only).
	URL string
	// Token is the REST token, sent as "Authorization: Bearer TOKEN". It is
	// never printed, logged or put into an error.
	Token string
	// RootCAs are the certificate authorities the default transport trusts
	// for an https URL, e.g. a local server's self-signed certificate. nil:
	// the system's roots (on Linux, Go also reads the files named by the
	// standard SSL_CERT_FILE and SSL_CERT_DIR variables, once per process).
	// Must be nil when HTTPClient is set: give that client's transport the
	// CAs instead.
	RootCAs *x509.CertPool
	// HTTPClient supplies the transport. nil: a transport tuned for this
	// use (keep-alive, 128 idle connections per host, HTTP/2 when the
	// server offers it, 5 s dial and TLS handshake timeouts, no
	// compression, proxies from the environment). Of a given client, only
	// Transport (nil: http.DefaultTransport) and Timeout are used: requests
	// go straight to the transport, redirects are never followed (a
	// redirect is a KindMalformed error) and cookies never kept. All
	// requests share one header map, so the Transport must not modify
	// requests (as the http.RoundTripper contract requires; wrappers that
	// add headers must clone the request first).
	HTTPClient *http.Client
	// MaxReplyBytes limits a reply body; a longer reply is a KindMalformed
	// error. 0: DefaultMaxReplyBytes.
	MaxReplyBytes int64
	// Timeout bounds a call whose context carries no deadline. 0:
	// DefaultTimeout; negative: no bound. A context deadline always applies.
	Timeout time.Duration
}

// ConfigFromEnv reads UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN
// through getenv (for example os.Getenv); surrounding white space is
// trimmed. It returns ErrNotConfigured when both are unset or empty, and an
// error naming the variable (wrapping ErrInvalidConfig) when only one is set
// or a value is malformed. The error never contains the token or the URL.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	rawURL := strings.TrimSpace(getenv(EnvURL))
	token := strings.TrimSpace(getenv(EnvToken))
	switch {
	case rawURL == "" && token == "":
		return Config{}, ErrNotConfigured
	case rawURL == "":
		return Config{}, fmt.Errorf("%w: %s is set but %s is not", ErrInvalidConfig, EnvToken, EnvURL)
	case token == "":
		return Config{}, fmt.Errorf("%w: %s is set but %s is not", ErrInvalidConfig, EnvURL, EnvToken)
	}
	if _, err := parseBaseURL(rawURL); err != nil {
		return Config{}, fmt.Errorf("%w: %s %s", ErrInvalidConfig, EnvURL, err.Error())
	}
	if err := checkToken(token); err != nil {
		return Config{}, fmt.Errorf("%w: %s %s", ErrInvalidConfig, EnvToken, err.Error())
	}
	return Config{URL: rawURL, Token: token}, nil
}

// configProblem completes a sentence whose subject is the URL or the token.
type configProblem string

func (p configProblem) Error() string { return string(p) }

// parseBaseURL checks the endpoint and returns it without a trailing slash.
// Its errors never quote the URL (a misplaced token could be in it).
func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, configProblem("is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, configProblem("is not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, configProblem("must start with https:// (or http:// for a local server)")
	case u.Host == "" || u.Opaque != "":
		return nil, configProblem("has no host")
	case u.User != nil:
		return nil, configProblem("must not contain user info (the token goes in UPSTASH_REDIS_REST_TOKEN)")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, configProblem("must not contain a query (the token goes in UPSTASH_REDIS_REST_TOKEN)")
	case u.Fragment != "":
		return nil, configProblem("must not contain a fragment")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// checkToken accepts what can travel in an Authorization header: visible
// ASCII without spaces.
func checkToken(token string) error {
	if token == "" {
		return configProblem("is empty")
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return configProblem("contains a character that cannot be sent in an HTTP header")
		}
	}
	return nil
}
