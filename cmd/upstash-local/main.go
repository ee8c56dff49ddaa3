// Command upstash-local serves Upstash's Redis REST API on a local port, in
// front of a real Redis or an embedded in-process store, for development
// and tests:
//
//	upstash-local --listen 127.0.0.1:8079 --token TOKEN [--redis-addr HOST:PORT]
//
// Point UPSTASH_REDIS_REST_URL at http://LISTEN and UPSTASH_REDIS_REST_TOKEN
// at TOKEN. The token may also come from UPSTASH_REDIS_REST_TOKEN. Without
// --redis-addr data lives in memory and is lost on exit. See package
// internal/local/upstashlocal for the API and its limits.
//
// It prints one line, "upstash-local listening on http://ADDR", on stdout
// once it accepts connections; logs go to stderr. SIGINT or SIGTERM stops it
// gracefully (requests in flight get up to 10 seconds).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
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
	listen    string
	token     string
	redisAddr string
	maxBody   int64
	logLevel  slog.Level
}

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
	}
	backend := o.redisAddr
	if backend == "" {
		backend = "embedded"
	}
	log.Info("listening", "addr", ln.Addr().String(), "backend", backend)
	fmt.Fprintf(stdout, "upstash-local listening on http://%s\n", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
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

// redisLogger routes go-redis's internal log lines to slog at WARN.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
