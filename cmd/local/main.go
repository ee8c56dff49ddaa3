// Command local runs template.yaml on this machine, standing in for
// `sam local` (which needs Docker): it builds the functions for the host
// with the template's build method, runs them as warm processes through the
// Lambda Runtime API, and emulates API Gateway (routes, the Lambda
// authorizer, gateway responses) in front of them.
//
//	local start-api [--host 127.0.0.1] [--port 3000] [--template template.yaml]
//	                [--env-vars env.json] [--parameter-overrides 'K=V K2=V2']
//	                [--max-procs 4] [--build-dir DIR] [--demo-keys FILE]
//	local invoke FunctionLogicalId [--event events/X.json] [--env-vars env.json]
//	                [--template template.yaml] [--parameter-overrides ...]
//
// --env-vars takes SAM's format, {"Parameters": {...}} for every function and
// {"LogicalId": {...}} for one; as with SAM, only variables the template
// declares are overridden (the others are warned about and ignored).
// --parameter-overrides takes SAM's syntax (space-separated Key=Value pairs,
// or ParameterKey=K,ParameterValue=V); a comma followed by a declared
// parameter name also separates pairs, and may be repeated.
//
// Without UPSTASH_REDIS_REST_URL (empty after overrides), an embedded
// Upstash-compatible endpoint is started and injected.
//
// start-api also serves, outside the API, a live dashboard of the
// authorizer's decisions at /_local/ and its data at /_local/metrics; the
// banner prints the URL.
//
// --demo-keys FILE (used by `make run`) makes one fresh key per keyed tier in
// the key file FILE, and one with its own quota, revoking the demo keys of
// earlier runs (only hashes are stored, so a key can be shown once only),
// points API_KEYS_FILE at it, sets a route limit on the batch route unless
// the command line sets RouteLimits or ROUTE_LIMITS, and prints the keys
// with curl commands that work as printed.
//
// invoke prints the function's result on stdout. A function error is
// printed there too, as Lambda's error object {"errorMessage", "errorType"},
// and the exit status is still 0, as with `sam local invoke`; the exit
// status is 1 only when the invocation could not run (bad template, unknown
// function, unreadable event, build failure). Logs go to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bucketgate/bucketgate/internal/local/sam"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage:
  local start-api [--host 127.0.0.1] [--port 3000] [--template template.yaml] [--env-vars env.json]
                  [--parameter-overrides 'K=V K2=V2'] [--max-procs N] [--build-dir DIR]
                  [--demo-keys FILE]
  local invoke FunctionLogicalId [--event events/X.json | --event -] [--env-vars env.json]
                  [--template template.yaml] [--parameter-overrides ...] [--build-dir DIR]
`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "start-api":
		err = startAPI(ctx, args[1:], stdout, stderr)
	case "invoke":
		err = invoke(ctx, args[1:], stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "local: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "local: %v\n%s", err, usage)
		return 2
	}
	fmt.Fprintf(stderr, "local: %v\n", err)
	return 1
}

var errUsage = errors.New("usage")

// common holds the flags both commands share.
type common struct {
	template  string
	envVars   string
	overrides multiFlag
	buildDir  string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.template, "template", "template.yaml", "SAM template")
	fs.StringVar(&c.envVars, "env-vars", "", "JSON file of environment overrides in SAM's format")
	fs.Var(&c.overrides, "parameter-overrides", "template parameter overrides: 'Key=Value Key2=Value2' (repeatable)")
	fs.StringVar(&c.buildDir, "build-dir", "", "where function builds go (default: the user cache directory)")
}

// options turns the shared flags into localapi options.
func (c *common) options(stderr io.Writer) (startapi.Options, error) {
	opts := startapi.Options{Template: c.template, BuildDir: c.buildDir, Logs: stderr}
	if _, err := os.Stat(c.template); err != nil {
		return opts, fmt.Errorf("template: %w", err)
	}
	if c.envVars != "" {
		ev, err := startapi.LoadEnvVars(c.envVars)
		if err != nil {
			return opts, err
		}
		opts.EnvVars = ev
	}
	if len(c.overrides) > 0 {
		t, err := sam.Load(c.template)
		if err != nil {
			return opts, fmt.Errorf("template: %w", err)
		}
		names := make([]string, 0, len(t.Parameters))
		for n := range t.Parameters {
			names = append(names, n)
		}
		opts.Parameters = map[string]string{}
		for _, o := range c.overrides {
			p, err := startapi.ParseParameterOverrides(o, names)
			if err != nil {
				return opts, err
			}
			for k, v := range p {
				opts.Parameters[k] = v
			}
		}
	}
	return opts, nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func startAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("start-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 3000, "port to listen on")
	maxProcs := fs.Int("max-procs", 4, "processes per function (concurrent requests a function serves)")
	demoKeys := fs.String("demo-keys", "", "key file: make one fresh demo key per tier in it (revoking earlier demo keys), use it as API_KEYS_FILE and print the keys with curl examples")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: start-api takes no arguments, got %q", errUsage, fs.Args())
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("%w: --port %d is not a TCP port", errUsage, *port)
	}
	opts, err := c.options(stderr)
	if err != nil {
		return err
	}
	opts.MaxProcs = *maxProcs
	var demo []demoKey
	demoRoute := false
	if *demoKeys != "" {
		if demo, err = rotateDemoKeys(ctx, *demoKeys, time.Now()); err != nil {
			return fmt.Errorf("--demo-keys: %w", err)
		}
		if err := useKeyFile(&opts, *demoKeys); err != nil {
			return fmt.Errorf("--demo-keys: %w", err)
		}
		demoRoute = useDemoRouteLimit(&opts)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	app, err := startapi.StartAPI(ctx, opts)
	if err != nil {
		return err
	}
	defer app.Close()

	base := "http://" + ln.Addr().String()
	for _, r := range app.Gateway.Routes() {
		auth := ""
		if r.Authorizer != "" {
			auth = " (authorizer " + r.Authorizer + ")"
		}
		fmt.Fprintf(stdout, "Mounting %s at %s%s [%s]%s\n", r.FunctionLogicalID, base, r.Path, r.Method, auth)
	}
	if u := app.UpstashURL(); u != "" {
		fmt.Fprintf(stdout, "Embedded Upstash-compatible endpoint at %s (set UPSTASH_REDIS_REST_URL in --env-vars to use another)\n", u)
	}
	if demo != nil {
		printDemo(stdout, base, demo, demoRoute)
	}
	fmt.Fprintf(stdout, "Dashboard: %s/_local/ (live rate-limit metrics; /_local/metrics for JSON)\n", base)
	fmt.Fprintf(stdout, "API %s, stage %s. Running on %s (Ctrl+C to quit)\n", app.API.LogicalID, app.API.StageName, base)

	srv := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return app.Close()
}

func invoke(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	// The logical ID may come before or after the flags.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("invoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	eventPath := fs.String("event", "", "JSON event file, - for stdin (default: {})")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	rest := fs.Args()
	if id == "" && len(rest) > 0 {
		id, rest = rest[0], rest[1:]
	}
	if id == "" {
		return fmt.Errorf("%w: invoke needs a function logical ID", errUsage)
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, rest)
	}

	event := []byte("{}")
	switch *eventPath {
	case "":
	case "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("event: reading stdin: %w", err)
		}
		event = b
	default:
		b, err := os.ReadFile(*eventPath)
		if err != nil {
			return fmt.Errorf("event: %w", err)
		}
		event = b
	}
	if !json.Valid(event) {
		return fmt.Errorf("event %s is not valid JSON", describe(*eventPath))
	}

	opts, err := c.options(stderr)
	if err != nil {
		return err
	}
	opts.MaxProcs = 1
	app, err := startapi.StartFunction(ctx, opts, id)
	if err != nil {
		return err
	}
	defer app.Close()
	res, err := app.Invoke(ctx, id, event)
	if err != nil {
		return fmt.Errorf("invoke %s: %w", id, err)
	}
	out := res.Payload
	if res.Error != nil {
		if out, err = json.Marshal(res.Error); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s\n", out)
	return app.Close()
}

func describe(path string) string {
	if path == "-" {
		return "from stdin"
	}
	return path
}
