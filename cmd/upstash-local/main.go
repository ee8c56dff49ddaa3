// Command upstash-local serves Upstash's Redis REST API on a local port, in
// front of a real Redis or an embedded in-process store, for development
// and tests:
//
//	upstash-local --listen 127.0.0.1:8079 --token TOKEN [--redis-addr HOST:PORT]
//	              [--tls-self-signed CERT_OUT.pem | --tls-cert CERT.pem --tls-key KEY.pem]
//
// Point UPSTASH_REDIS_REST_URL at http://LISTEN and UPSTASH_REDIS_REST_TOKEN
// at TOKEN. The token may also come from UPSTASH_REDIS_REST_TOKEN. Without
// --redis-addr data lives in memory and is lost on exit. See package
// internal/local/upstashlocal for the API and its limits.
//
// HTTPS, as Upstash serves: --tls-self-signed generates an ECDSA P-256
// certificate for 127.0.0.1, ::1, localhost (and the --listen host) at
// start, keeps its key in memory and writes the certificate (PEM) to the
// given file before accepting connections, for clients to trust: a Go
// program (such as the authorizer) through SSL_CERT_FILE=FILE, Node through
// NODE_EXTRA_CA_CERTS=FILE, curl through --cacert FILE. --tls-cert and
// --tls-key serve a certificate of your own instead.
//
// It prints one line, "upstash-local listening on http://ADDR" (https with
// TLS), on stdout once it accepts connections; logs go to stderr. SIGINT or
// SIGTERM stops it gracefully (requests in flight get up to 10 seconds).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
)

const shutdownTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	listen     string
	token      string
	redisAddr  string
	maxBody    int64
	logLevel   slog.Level
	selfSigned string // file to write the generated certificate to
	certFile   string
	keyFile    string
}

// tls reports whether the server serves HTTPS.
func (o options) tls() bool { return o.selfSigned != "" || o.certFile != "" }

const usageHeader = `Usage: upstash-local [flags]

Serves Upstash's Redis REST API on --listen, in front of --redis-addr or an
embedded store. With --tls-self-signed FILE it serves HTTPS with a
certificate generated at start and writes that certificate to FILE: point
clients at it (Go: SSL_CERT_FILE=FILE; Node: NODE_EXTRA_CA_CERTS=FILE;
curl: --cacert FILE).

Flags:
`

// parseFlags reads the command line; getenv supplies the token's default.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("upstash-local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8079", "`host:port` to listen on")
	fs.StringVar(&o.token, "token", "", "REST token clients must send (default $UPSTASH_REDIS_REST_TOKEN)")
	fs.StringVar(&o.redisAddr, "redis-addr", "", "`host:port` of a Redis to forward to (default: embedded in-process store)")
	fs.Int64Var(&o.maxBody, "max-body-bytes", upstashlocal.DefaultMaxBodyBytes, "request body limit in `bytes`")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.selfSigned, "tls-self-signed", "", "serve HTTPS with a certificate generated at start for 127.0.0.1, ::1, localhost\n"+
		"and the --listen host; write the certificate (PEM) to `file` for clients to trust")
	fs.StringVar(&o.certFile, "tls-cert", "", "serve HTTPS with the certificate (chain) in this PEM `file` (with --tls-key)")
	fs.StringVar(&o.keyFile, "tls-key", "", "PEM `file` of --tls-cert's private key")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: all options are flags", fs.Arg(0))
	}
	if o.token == "" {
		o.token = getenv("UPSTASH_REDIS_REST_TOKEN")
	}
	if o.token == "" {
		return o, errors.New("--token is required (or set UPSTASH_REDIS_REST_TOKEN)")
	}
	if strings.ContainsAny(o.token, " \t\r\n") {
		return o, errors.New("--token must not contain white space")
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return o, fmt.Errorf("--listen %q is not host:port", o.listen)
	}
	if o.redisAddr != "" {
		if _, _, err := net.SplitHostPort(o.redisAddr); err != nil {
			return o, fmt.Errorf("--redis-addr %q is not host:port", o.redisAddr)
		}
	}
	if o.maxBody <= 0 {
		return o, fmt.Errorf("--max-body-bytes %d must be positive", o.maxBody)
	}
	switch {
	case (o.certFile == "") != (o.keyFile == ""):
		return o, errors.New("--tls-cert and --tls-key go together")
	case o.selfSigned != "" && o.certFile != "":
		return o, errors.New("--tls-self-signed and --tls-cert exclude each other")
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("--log-level %q is not one of debug, info, warn, error", *level)
	}
	return o, nil
}

// run is main without the process: it returns the exit code (0 after a
// graceful stop when ctx is done, 1 on a runtime failure, 2 on bad usage).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "upstash-local: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	redis.SetLogger(redisLogger{log}) // go-redis's own notes (e.g. failed dials) into the same log

	srv, err := upstashlocal.New(upstashlocal.Config{
		Token:        o.token,
		RedisAddr:    o.redisAddr,
		MaxBodyBytes: o.maxBody,
		Logger:       log,
	})
	if err != nil {
		log.Error("start failed", "error", err)
		return 1
	}
	defer srv.Close()

	var tlsConfig *tls.Config
	if o.tls() {
		if tlsConfig, err = loadTLS(o, time.Now()); err != nil {
			log.Error("TLS setup failed", "error", err)
			return 1
		}
		if o.selfSigned != "" {
			log.Info("wrote the self-signed certificate", "file", o.selfSigned)
		}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.Error("listen failed", "error", err)
		return 1
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}
	serve, scheme := hs.Serve, "http"
	if tlsConfig != nil {
		// The certificate is in TLSConfig; ServeTLS adds HTTP/2.
		serve, scheme = func(ln net.Listener) error { return hs.ServeTLS(ln, "", "") }, "https"
	}
	backend := o.redisAddr
	if backend == "" {
		backend = "embedded"
	}
	log.Info("listening", "addr", ln.Addr().String(), "backend", backend, "scheme", scheme)
	fmt.Fprintf(stdout, "upstash-local listening on %s://%s\n", scheme, ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- serve(ln) }()
	select {
	case err := <-errc:
		log.Error("serve failed", "error", err)
		return 1
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("shutdown incomplete", "error", err)
		_ = hs.Close()
	}
	<-errc // Serve returns http.ErrServerClosed
	log.Info("stopped", "requests", srv.Requests())
	return 0
}

// loadTLS returns the server's TLS configuration: the --tls-cert/--tls-key
// pair, or a certificate generated for the loopback names and the --listen
// host, written to --tls-self-signed.
func loadTLS(o options, now time.Time) (*tls.Config, error) {
	cfg := &tls.Config{}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		return cfg, nil
	}
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if h, _, _ := net.SplitHostPort(o.listen); h != "" && !slices.Contains(hosts, h) {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	cert, certPEM, err := upstashlocal.SelfSignedCert(hosts, now, selfSignedValidity)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(o.selfSigned, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("--tls-self-signed: %w", err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, nil
}

// selfSignedValidity is how long a generated certificate is valid: longer
// than any development session, short enough not to matter if copied.
const selfSignedValidity = 30 * 24 * time.Hour

// redisLogger routes go-redis's internal log lines to slog at WARN.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
