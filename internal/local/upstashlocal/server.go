// Package upstashlocal is an Upstash-compatible Redis REST server for
// development and tests, so that the product's real Upstash code path (and
// the official @upstash/redis client, in the conformance suite) runs with
// nothing installed: the same HTTP API, status codes, error bodies and
// quirks as Upstash, in front of a real Redis or an embedded miniredis.
//
//	POST /             one command as a JSON array: ["SET", "k", "v", "EX", 100]
//	POST /pipeline     an array of commands; replies [{"result": ...} | {"error": "..."}, ...]
//	POST /multi-exec   the same, as one MULTI/EXEC transaction
//	GET|POST /cmd/a/b  path style (segments are arguments; a POST body one more)
//
// Authentication is "Authorization: Bearer TOKEN" or ?_token=, compared in
// constant time (401 WRONGPASS otherwise). Replies are {"result": v} or
// {"error": "ERR ..."} with 400; "Upstash-Encoding: base64" encodes every
// string but a top-level "OK", as Upstash does. Commands that would change
// a pooled connection's state (SELECT, MULTI, SUBSCRIBE, ...) are refused as
// Upstash refuses unavailable commands. Bodies over Config.MaxBodyBytes get
// Upstash's "max request size exceeded". SelfSignedCert serves HTTPS with a
// certificate clients can be told to trust.
//
// Scripts may start with Upstash's "#!lua flags=allow-key-locking", which
// Redis 7 rejects: the server rewrites the shebang before forwarding and
// answers to the original script's SHA-1 (EVAL, EVALSHA, SCRIPT LOAD and
// EXISTS are mapped; at most 4096 scripts remembered, a forgotten one costs
// the client one NOSCRIPT and an EVAL). Line numbers in Lua errors match the
// client's script.
//
// Backends: Config.RedisAddr forwards through a go-redis pool (RESP2, no
// retries, so a write is never applied twice); without it an embedded
// miniredis on loopback is reached the same way, with miniredis's limits
// (gopher-lua, TTLs advanced lazily per request). Safe for concurrent use.
package upstashlocal

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// DefaultMaxBodyBytes is the request body limit used when
// Config.MaxBodyBytes is 0: 10 MiB, generous for local development (Upstash's
// smaller plans stop at 1 MB; pass 1<<20 to mimic them).
const DefaultMaxBodyBytes = 10 << 20

// Config configures a Server. Token is required; every other field has a
// usable zero value.
type Config struct {
	// Token is the REST token clients must present. Required. It is never
	// logged or echoed.
	Token string
	// RedisAddr is the "host:port" of a real Redis to forward to. Empty:
	// an embedded in-process store (miniredis) started by New.
	RedisAddr string
	// MaxBodyBytes limits request bodies, in bytes. 0: DefaultMaxBodyBytes.
	// Negative values are an error.
	MaxBodyBytes int64
	// Logger receives request logs (debug) and backend failures (error).
	// nil: logs are discarded.
	Logger *slog.Logger
}

// Server is an http.Handler speaking Upstash's Redis REST API. Create it with
// New and release it with Close. It is safe for concurrent use.
type Server struct {
	tokenSum [sha256.Size]byte
	rdb      *redis.Client
	mini     *miniredis.Miniredis // nil when forwarding to Config.RedisAddr
	maxBody  int64
	log      *slog.Logger
	scripts  *scriptRewriter
	requests atomic.Uint64

	now         func() time.Time // wall clock; tests replace it
	clockMu     sync.Mutex       // guards lastForward
	lastForward time.Time        // wall time up to which the embedded store's TTLs have run

	closeOnce sync.Once
	closeErr  error
}

var _ http.Handler = (*Server)(nil)

// ErrNoToken is returned by New when Config.Token is empty.
var ErrNoToken = errors.New("upstashlocal: token is required")

// New validates cfg, connects the backend (starting the embedded store when
// cfg.RedisAddr is empty) and returns a Server. It does not contact an
// external Redis: a wrong RedisAddr shows up as 502 replies.
func New(cfg Config) (*Server, error) {
	if cfg.Token == "" {
		return nil, ErrNoToken
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("upstashlocal: max body bytes %d is negative", cfg.MaxBodyBytes)
	}
	s := &Server{
		tokenSum: sha256.Sum256([]byte(cfg.Token)),
		maxBody:  cfg.MaxBodyBytes,
		log:      cfg.Logger,
		now:      time.Now,
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	addr := cfg.RedisAddr
	if addr == "" {
		s.mini = miniredis.NewMiniRedis()
		if err := s.mini.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("upstashlocal: start embedded store: %w", err)
		}
		addr = s.mini.Addr()
		s.lastForward = s.now()
	} else if !strings.Contains(addr, ":") {
		return nil, fmt.Errorf("upstashlocal: redis address %q is not host:port", addr)
	}
	s.scripts = newScriptRewriter(s.mini != nil)
	s.rdb = redis.NewClient(&redis.Options{
		Addr:                  addr,
		Protocol:              2, // RESP2: the reply shapes Upstash's JSON has
		DisableIdentity:       true,
		MaxRetries:            -1, // never replay a write; a failure is reported as 502
		DialTimeout:           2 * time.Second,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		ContextTimeoutEnabled: true, // a client that hangs up cancels its command
		PoolSize:              64,
		MaxIdleConns:          64,
		ConnMaxIdleTime:       5 * time.Minute,
	})
	return s, nil
}

// Requests returns the number of HTTP requests the server has received,
// whatever their outcome (401s and 400s included). Benchmarks divide it by
// decisions made to get requests per decision.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Close releases the connection pool and stops the embedded store, if any.
// It is safe to call more than once; requests after Close fail with 502.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.rdb.Close()
		if s.mini != nil {
			s.mini.Close()
		}
	})
	return s.closeErr
}

// Error texts shared with clients. They follow Upstash's wording where it is
// known.
const (
	msgUnauthorized   = "WRONGPASS invalid or missing auth token"
	msgBodyTooLarge   = "ERR max request size exceeded"
	msgMethod         = "ERR method not allowed: use GET, HEAD, POST or PUT"
	msgMethodBody     = "ERR method not allowed: this endpoint takes a POST or PUT with a JSON body"
	msgResp2          = "ERR Upstash-Response-Format resp2 is not supported by upstash-local; use json"
	msgResponseFormat = "ERR unsupported Upstash-Response-Format: only json is allowed"
	msgBackend        = "ERR redis backend unavailable"
)

// ServeHTTP implements the Upstash REST API; see the package documentation.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	start := time.Now()
	endpoint, status, ncmd := s.serve(w, r)
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("method", r.Method),
		slog.String("endpoint", endpoint),
		slog.Int("commands", ncmd),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)))
}

// serve handles one request and reports what it was for the request log
// (never a key or argument: only the kind of endpoint and a count).
func (s *Server) serve(w http.ResponseWriter, r *http.Request) (endpoint string, status, ncmd int) {
	w.Header().Set("Content-Type", "application/json")
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT")
		return "-", writeError(w, http.StatusMethodNotAllowed, msgMethod), 0
	}
	if !s.authorized(r) {
		return "-", writeError(w, http.StatusUnauthorized, msgUnauthorized), 0
	}
	switch f := r.Header.Get("Upstash-Response-Format"); {
	case f == "" || strings.EqualFold(f, "json"):
	case strings.EqualFold(f, "resp2"):
		return "-", writeError(w, http.StatusBadRequest, msgResp2), 0
	default:
		return "-", writeError(w, http.StatusBadRequest, msgResponseFormat), 0
	}
	b64 := strings.EqualFold(r.Header.Get("Upstash-Encoding"), "base64")

	path := r.URL.EscapedPath()
	switch path {
	case "/pipeline", "/pipeline/", "/multi-exec", "/multi-exec/":
		endpoint = strings.Trim(path, "/")
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			return endpoint, writeError(w, http.StatusMethodNotAllowed, msgMethodBody), 0
		}
		body, status, msg := s.readBody(w, r)
		if msg != "" {
			return endpoint, writeError(w, status, msg), 0
		}
		cmds, err := parseBatch(body)
		if err != nil {
			return endpoint, writeError(w, http.StatusBadRequest, err.Error()), 0
		}
		s.advanceClock()
		if endpoint == "pipeline" {
			return endpoint, s.servePipeline(w, r, cmds, b64), len(cmds)
		}
		return endpoint, s.serveMultiExec(w, r, cmds, b64), len(cmds)
	}

	var cmd []string
	body, status, msg := s.readBody(w, r)
	if msg != "" {
		return "command", writeError(w, status, msg), 0
	}
	if path == "/" || path == "" {
		endpoint = "command"
		c, err := parseCommand(body)
		if err != nil {
			return endpoint, writeError(w, http.StatusBadRequest, err.Error()), 0
		}
		cmd = c
	} else {
		endpoint = "path"
		c, err := pathCommand(path, r.URL.RawQuery, body)
		if err != nil {
			return endpoint, writeError(w, http.StatusBadRequest, err.Error()), 0
		}
		cmd = c
	}
	s.advanceClock()
	return endpoint, s.serveCommand(w, r, cmd, b64), 1
}

// authorized reports whether r carries the token, as a Bearer token or the
// _token query parameter. Both sides are hashed first, so the comparison
// takes the same time whatever the presented token's length or content.
func (s *Server) authorized(r *http.Request) bool {
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		token, ok = queryToken(r.URL.RawQuery)
	}
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

func bearer(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

// readBody reads the whole body within the size limit. On failure it returns
// the status and message to answer with.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, 0, ""
	}
	if r.ContentLength > s.maxBody {
		return nil, http.StatusBadRequest, msgBodyTooLarge
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, http.StatusBadRequest, msgBodyTooLarge
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, http.StatusBadRequest, "ERR request body ended early"
		}
		return nil, http.StatusBadRequest, "ERR could not read request body"
	}
	return buf.Bytes(), 0, ""
}

// advanceClock lets the embedded store's TTLs follow the wall clock:
// miniredis only expires keys when told time has passed. It runs lazily at
// the start of each request instead of from a background goroutine.
func (s *Server) advanceClock() {
	if s.mini == nil {
		return
	}
	s.clockMu.Lock()
	now := s.now()
	d := now.Sub(s.lastForward)
	if d <= 0 {
		s.clockMu.Unlock()
		return
	}
	s.lastForward = now
	s.clockMu.Unlock()
	s.mini.FastForward(d)
}
