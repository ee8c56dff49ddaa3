// Package startapi runs a SAM template on this machine, without Docker or
// AWS: it builds the template's functions for the host, runs them as warm
// processes through the Lambda Runtime API (internal/lambdaemu) and serves
// the template's REST API in front of them (internal/apigw). cmd/local's
// start-api and invoke commands and the end-to-end tests are thin wrappers
// around it.
//
// Environment of the functions, in order of precedence (last wins):
//
//  1. the template's variables (Globals.Function merged with the
//     function's own), resolved against the parameter overrides;
//  2. --env-vars (EnvVars): "Parameters" for every function, then the
//     function's own section. As with SAM, only variables the template
//     declares are overridden; the others are logged as warnings;
//  3. when a function declares UPSTASH_REDIS_REST_URL and it is empty after
//     1 and 2, an embedded Upstash-compatible endpoint
//     (internal/upstashlocal over an in-process store) is started on a free
//     loopback port, and its URL and a random token are injected as
//     UPSTASH_REDIS_REST_URL / UPSTASH_REDIS_REST_TOKEN, so the real Upstash
//     code path runs with nothing installed;
//  4. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
//     AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_DYNAMODB from the host, when set
//     there and not by 1-3 (SAM passes credentials through the same way);
//  5. Lambda's reserved variables, set by internal/lambdaemu.
//
// Nothing else of the host's environment reaches the functions. Their
// working directory is their CodeUri directory (relative paths in variables,
// such as API_KEYS_FILE=events/demo-keys.json, resolve against it).
//
// App.Handler also answers /_local/ itself, before routing: the metrics
// aggregated from the functions' EMF lines and a live dashboard
// (internal/local/startapi/dashboard).
package startapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bucketgate/bucketgate/internal/local/apigw"
	"github.com/bucketgate/bucketgate/internal/local/lambdaemu"
	"github.com/bucketgate/bucketgate/internal/local/sam"
	"github.com/bucketgate/bucketgate/internal/local/startapi/dashboard"
	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
)

// Variables startapi treats specially.
const (
	envUpstashURL   = "UPSTASH_REDIS_REST_URL"
	envUpstashToken = "UPSTASH_REDIS_REST_TOKEN"
)

// passthrough are host variables handed to every function when set.
var passthrough = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"}

// Sentinel errors for what a caller (cmd/local) reports differently.
var (
	// ErrUnknownFunction: no AWS::Serverless::Function with that logical ID.
	ErrUnknownFunction = errors.New("unknown function")
	// ErrNoAPI: the template's functions use no REST API, or several.
	ErrNoAPI = errors.New("no API to serve")
)

// Options configures StartAPI and StartFunction. Only Template is required.
type Options struct {
	// Template is the path of the SAM template.
	Template string
	// EnvVars are the --env-vars overrides; nil = none.
	EnvVars EnvVars
	// Parameters are the --parameter-overrides; nil = the defaults.
	Parameters map[string]string
	// BuildDir receives the builds; "" = a directory per template under
	// the user's cache directory.
	BuildDir string
	// Prebuilt maps logical IDs to executables to run instead of building
	// (tests build once and start many Apps).
	Prebuilt map[string]string
	// MaxProcs caps the processes per function; 0 = lambdaemu's default.
	MaxProcs int
	// IntegrationTimeout bounds authorizer and integration calls; 0 =
	// API Gateway's 29 s.
	IntegrationTimeout time.Duration
	// Logs receives the functions' output, build output and the emulator's
	// own log lines; nil = os.Stderr.
	Logs io.Writer
	// Logger, when set, receives the emulator's log records instead of a
	// text logger on Logs.
	Logger *slog.Logger
	// Getenv reads the host environment for the pass-through variables;
	// nil = os.Getenv.
	Getenv func(string) string
}

// App is a running template: its functions, and for StartAPI the gateway.
// Close releases everything.
type App struct {
	// API is the served API; zero for StartFunction.
	API sam.API
	// Gateway serves API; nil for StartFunction. Handler serves it too,
	// with /_local/ in front.
	Gateway *apigw.Gateway
	// Functions by logical ID: the ones the API uses, or the one invoked.
	Functions map[string]*lambdaemu.Function

	template *sam.Template
	// env is the environment each function runs with (before Lambda's
	// reserved variables). It holds the embedded Upstash token: never log
	// it.
	env      map[string]map[string]string
	warnings []string           // about the configuration (ignored env-vars entries)
	metrics  *dashboard.Metrics // the functions' EMF lines; nil for StartFunction
	log      *slog.Logger
	out      *lockedWriter // everything written to Options.Logs goes through it
	upstash  *embeddedUpstash
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

// StartAPI prepares everything the template's REST API needs: the routes'
// and authorizers' functions (built for the host unless prebuilt), their
// environment, the embedded Upstash endpoint when needed, and the gateway.
// Serve it with App.Gateway (an http.Handler).
func StartAPI(ctx context.Context, opts Options) (*App, error) {
	a, fns, err := load(opts)
	if err != nil {
		return nil, err
	}
	apiID, err := chooseAPI(fns)
	if err != nil {
		return nil, err
	}
	api, err := a.template.API(apiID, opts.Parameters)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", opts.Template, err)
	}
	a.API = api
	a.metrics = dashboard.New(time.Now())
	needed := map[string]bool{}
	for _, r := range api.Routes {
		needed[r.FunctionLogicalID] = true
	}
	for _, au := range api.Authorizers {
		if au.FunctionLogicalID != "" {
			needed[au.FunctionLogicalID] = true
		}
	}
	if err := a.startFunctions(ctx, opts, fns, needed); err != nil {
		return nil, err
	}
	g, err := apigw.New(apigw.Config{
		API:                api,
		Invoker:            apigw.Functions(a.Functions),
		Region:             sam.LocalRegion,
		AccountID:          sam.LocalAccountID,
		IntegrationTimeout: opts.IntegrationTimeout,
		Logger:             a.log,
	})
	if err != nil {
		_ = a.Close()
		return nil, err
	}
	a.Gateway = g
	return a, nil
}

// Handler serves the API (Gateway) and, before routing, start-api's own
// paths: /_local/metrics and the /_local/ dashboard. It is what cmd/local
// start-api serves; use it on an App from StartAPI only.
func (a *App) Handler() http.Handler {
	local := a.metrics.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == strings.TrimSuffix(dashboard.Prefix, "/") || strings.HasPrefix(r.URL.Path, dashboard.Prefix) {
			local.ServeHTTP(w, r)
			return
		}
		a.Gateway.ServeHTTP(w, r)
	})
}

// StartFunction prepares one function for direct invocation (cmd/local
// invoke).
func StartFunction(ctx context.Context, opts Options, logicalID string) (*App, error) {
	a, fns, err := load(opts)
	if err != nil {
		return nil, err
	}
	if _, ok := fns[logicalID]; !ok {
		ids := make([]string, 0, len(fns))
		for id := range fns {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return nil, fmt.Errorf("%w %q in %s (functions: %s)", ErrUnknownFunction, logicalID, opts.Template, strings.Join(ids, ", "))
	}
	if err := a.startFunctions(ctx, opts, fns, map[string]bool{logicalID: true}); err != nil {
		return nil, err
	}
	return a, nil
}

func load(opts Options) (*App, map[string]sam.Function, error) {
	if opts.Template == "" {
		return nil, nil, errors.New("no template given")
	}
	t, err := sam.Load(opts.Template)
	if err != nil {
		return nil, nil, fmt.Errorf("template: %w", err)
	}
	fns, err := t.Functions(opts.Parameters)
	if err != nil {
		return nil, nil, fmt.Errorf("template %s: %w", opts.Template, err)
	}
	logs := opts.Logs
	if logs == nil {
		logs = os.Stderr
	}
	out := newLockedWriter(logs)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(out, nil))
	}
	return &App{template: t, Functions: map[string]*lambdaemu.Function{}, log: log, out: out}, fns, nil
}

// chooseAPI picks the one API the functions' events use.
func chooseAPI(fns map[string]sam.Function) (string, error) {
	used := map[string]bool{}
	for _, f := range fns {
		for _, e := range f.Events {
			used[e.RestAPI] = true
		}
	}
	ids := make([]string, 0, len(used))
	for id := range used {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("%w: no function has an Api event", ErrNoAPI)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%w: functions use several APIs (%s); cmd/local serves one", ErrNoAPI, strings.Join(ids, ", "))
}

func (a *App) startFunctions(ctx context.Context, opts Options, fns map[string]sam.Function, needed map[string]bool) (err error) {
	defer func() {
		if err != nil {
			_ = a.Close()
		}
	}()
	lw := a.out
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	templateDir := filepath.Dir(opts.Template)
	if templateDir, err = filepath.Abs(templateDir); err != nil {
		return err
	}

	declared := map[string]map[string]string{}
	for id, f := range fns {
		declared[id] = f.Environment
	}
	envs, warnings := applyEnvVars(declared, opts.EnvVars)
	a.warnings = warnings
	for _, w := range warnings {
		a.log.Warn(w)
	}

	ids := make([]string, 0, len(needed))
	for id := range needed {
		if _, ok := fns[id]; !ok {
			return fmt.Errorf("%w %q: the API refers to it but the template has no such function", ErrUnknownFunction, id)
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)

	exes := map[string]string{}
	var toBuild []sam.Function
	for _, id := range ids {
		if p, ok := opts.Prebuilt[id]; ok {
			exes[id] = p
			continue
		}
		toBuild = append(toBuild, fns[id])
	}
	if len(toBuild) > 0 {
		dir := opts.BuildDir
		if dir == "" {
			if dir, err = defaultBuildDir(opts.Template); err != nil {
				return err
			}
		}
		start := time.Now()
		built, err := Build(ctx, templateDir, toBuild, dir, lw)
		if err != nil {
			return err
		}
		for id, exe := range built {
			exes[id] = exe
		}
		a.log.Info("built functions for this machine", "functions", strings.Join(ids, ","), "dir", dir, "ms", time.Since(start).Milliseconds())
	}

	a.env = map[string]map[string]string{}
	needUpstash := false
	for _, id := range ids {
		env := envs[id]
		if v, declares := env[envUpstashURL]; declares && v == "" {
			needUpstash = true
		}
		a.env[id] = env
	}
	if needUpstash {
		up, err := startEmbeddedUpstash(a.log)
		if err != nil {
			return err
		}
		a.upstash = up
		a.log.Info("started an embedded Upstash-compatible endpoint (set UPSTASH_REDIS_REST_URL to use another)", "url", up.url)
		for _, id := range ids {
			if v, declares := a.env[id][envUpstashURL]; declares && v == "" {
				a.env[id][envUpstashURL] = up.url
				a.env[id][envUpstashToken] = up.token
			}
		}
	}
	for _, id := range ids {
		for _, k := range passthrough {
			if _, set := a.env[id][k]; !set {
				if v := getenv(k); v != "" {
					a.env[id][k] = v
				}
			}
		}
	}

	var onLine func([]byte)
	if m := a.metrics; m != nil {
		onLine = func(line []byte) { m.Observe(time.Now(), line) }
	}
	for _, id := range ids {
		f := fns[id]
		fn, err := lambdaemu.New(lambdaemu.Config{
			Name:       id,
			Executable: exes[id],
			Dir:        codeDir(templateDir, f),
			Env:        a.env[id],
			Handler:    f.Handler,
			Timeout:    f.Timeout,
			MemoryMB:   f.MemorySize,
			MaxProcs:   opts.MaxProcs,
			Region:     sam.LocalRegion,
			AccountID:  sam.LocalAccountID,
			Logs:       lw,
			OnLine:     onLine,
		})
		if err != nil {
			return err
		}
		a.Functions[id] = fn
	}
	return nil
}

// Invoke runs a prepared function with payload (JSON) as its event.
func (a *App) Invoke(ctx context.Context, logicalID string, payload []byte) (lambdaemu.Result, error) {
	f, ok := a.Functions[logicalID]
	if !ok {
		return lambdaemu.Result{}, fmt.Errorf("%w %q", apigw.ErrUnknownFunction, logicalID)
	}
	return f.Invoke(ctx, payload)
}

// UpstashURL is the embedded Upstash endpoint's URL; "" when none was
// started.
func (a *App) UpstashURL() string {
	if a.upstash == nil {
		return ""
	}
	return a.upstash.url
}

// Close stops every function process and the embedded Upstash endpoint. It
// is safe to call more than once.
func (a *App) Close() error {
	a.closeMu.Lock()
	defer a.closeMu.Unlock()
	if a.closed {
		return a.closeErr
	}
	a.closed = true
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, f := range a.Functions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.Close(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if a.upstash != nil {
		if err := a.upstash.close(); err != nil {
			errs = append(errs, err)
		}
	}
	a.closeErr = errors.Join(errs...)
	return a.closeErr
}

// embeddedUpstash is an upstashlocal server over an in-process store, on a
// loopback port.
type embeddedUpstash struct {
	url, token string
	srv        *upstashlocal.Server
	http       *http.Server
}

func startEmbeddedUpstash(log *slog.Logger) (*embeddedUpstash, error) {
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(raw[:])
	srv, err := upstashlocal.New(upstashlocal.Config{Token: token, Logger: log.With("component", "upstash-local")})
	if err != nil {
		return nil, fmt.Errorf("embedded upstash: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("embedded upstash: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return &embeddedUpstash{url: "http://" + ln.Addr().String(), token: token, srv: srv, http: hs}, nil
}

func (u *embeddedUpstash) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := u.http.Shutdown(ctx)
	return errors.Join(err, u.srv.Close())
}

// lockedWriter serializes writes to w: the functions' output, the builds'
// and the emulator's log records share one output, one whole line (or
// record) per Write, written straight through.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func newLockedWriter(w io.Writer) *lockedWriter {
	if lw, ok := w.(*lockedWriter); ok {
		return lw
	}
	if w == nil {
		w = io.Discard
	}
	return &lockedWriter{w: w}
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lines writes every line of s with the prefix.
func (l *lockedWriter) lines(prefix, s string) {
	for _, line := range strings.Split(s, "\n") {
		_, _ = l.Write([]byte(prefix + line + "\n"))
	}
}
