// Command limits changes bucketgate's limits while it runs: it scales the
// rate and burst of every token bucket, or of one tier's callers, by a
// factor stored in Upstash, which every authorizer container reads within a
// second (README, "Policies: several limits on one request").
//
//	limits scale [--tier T] [--ramp DURATION] [--for DURATION] FACTOR
//	limits show
//	limits clear [--tier T]
//
// scale replaces the change of its scope (every limit, or --tier's): from
// now on that scope's buckets are multiplied by FACTOR (0.001 to 100, e.g.
// 0.2 while a model warms up, 2 for an event); with --ramp the factor moves
// linearly back to 1 over DURATION, with --for the change ends after
// DURATION. A tier's factor multiplies the every-limit one. Quotas are never
// scaled. It prints the change as show does.
//
// show prints one JSON object per stored change, {"tier" ("*" for every
// limit), "factorNow", "factor", "start", "ramp", "expires", "over"}
// ("expires" and "over" null when the change has no end), then one per
// warm-up start the authorizer recorded (WARMUP), {"warmup": VERSION,
// "start"}. clear removes the change of --tier, or every change, and prints
// {"cleared": [scopes]}.
//
// The database is the one UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN
// name (--url and --token override them; prefer the variables, which other
// users of the machine cannot read in the process list). The token never
// appears in output or errors. Flags come before arguments. Exit status: 0
// on success, 1 on failure, 2 on a usage error.
//
// Every change is a read-modify-write of one key that never loses a
// concurrent change: the write is a compare-and-set (store.go).
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bucketgate/bucketgate/internal/cmdline"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

const usage = `usage:
  limits scale [--tier T] [--ramp DURATION] [--for DURATION] FACTOR
  limits show
  limits clear [--tier T]
FACTOR is 0.001 to 100; DURATION a Go duration such as 90s, 10m or 2h (--ramp: whole seconds, at most 720h).
Common flags: --url URL, --token TOKEN (default: UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN).
Flags come before arguments.
`

// timeout bounds one command, retries included.
const timeout = 30 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], cli{getenv: os.Getenv, now: time.Now}, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli is what a command reads from its surroundings.
type cli struct {
	getenv func(string) string
	now    func() time.Time
	// beforeWrite, when set, runs between reading the stored changes and
	// writing the new ones (tests use it to interleave another change).
	beforeWrite func()
}

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, env cli, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return cmdline.Exit("limits", usage, dispatch(ctx, args, env, stdout), stderr)
}

func dispatch(ctx context.Context, args []string, env cli, stdout io.Writer) error {
	if len(args) == 0 {
		return cmdline.Usagef("missing command")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("limits "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints the usage once
	urlFlag := fs.String("url", "", "Upstash REST URL (default: UPSTASH_REDIS_REST_URL)")
	tokenFlag := fs.String("token", "", "Upstash REST token (default: UPSTASH_REDIS_REST_TOKEN)")
	var tier, rampFlag, forFlag *string
	switch cmd {
	case "scale":
		tier = fs.String("tier", "", "scale only this tier's buckets (default: every limit)")
		rampFlag = fs.String("ramp", "", "move the factor linearly back to 1 over this duration")
		forFlag = fs.String("for", "", "end the change after this duration")
	case "clear":
		tier = fs.String("tier", "", "clear only this tier's change (default: every change)")
	case "show":
	case "help", "-h", "-help", "--help":
		return flag.ErrHelp
	default:
		return cmdline.Usagef("unknown command %q", cmd)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cmdline.Usagef("%s: %s", cmd, scrub(err.Error(), *tokenFlag))
	}
	rest := fs.Args()
	for _, a := range rest {
		if strings.HasPrefix(a, "-") {
			return cmdline.Usagef("%s: flags come before arguments (found %s after one)", cmd, scrub(a, *tokenFlag))
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// Changes are stored to the millisecond: print them as stored.
	now := env.now().Truncate(time.Millisecond)

	var change limiter.Scale
	switch cmd {
	case "scale":
		if len(rest) != 1 {
			return cmdline.Usagef("scale takes one FACTOR after the flags; got %d arguments", len(rest))
		}
		var err error
		if change, err = parseScale(*tier, set["tier"], *rampFlag, *forFlag, rest[0], now); err != nil {
			return err
		}
	case "clear":
		if len(rest) != 0 {
			return cmdline.Usagef("clear takes no arguments; got %d", len(rest))
		}
		if set["tier"] {
			if err := checkTier(*tier); err != nil {
				return err
			}
		}
	case "show":
		if len(rest) != 0 {
			return cmdline.Usagef("show takes no arguments; got %d", len(rest))
		}
	}

	st, err := open(*urlFlag, *tokenFlag, env)
	if err != nil {
		return err
	}
	defer st.client.CloseIdleConnections()
	switch cmd {
	case "scale":
		if _, err := st.update(ctx, now, func(scales []limiter.Scale) []limiter.Scale {
			return append(without(scales, change.Tier), change)
		}); err != nil {
			return err
		}
		return cmdline.WriteJSON(stdout, viewOf(change, now))
	case "clear":
		var cleared []string
		if _, err := st.update(ctx, now, func(scales []limiter.Scale) []limiter.Scale {
			cleared = cleared[:0]
			if !set["tier"] {
				for _, s := range scales {
					cleared = append(cleared, scopeName(s.Tier))
				}
				return nil
			}
			kept := without(scales, *tier)
			if len(kept) != len(scales) {
				cleared = append(cleared, *tier)
			}
			return kept
		}); err != nil {
			return err
		}
		slices.Sort(cleared)
		cleared = slices.Compact(cleared)
		return cmdline.WriteJSON(stdout, struct {
			Cleared []string `json:"cleared"`
		}{append([]string{}, cleared...)})
	default: // show
		return show(ctx, st, now, stdout)
	}
}

// parseScale checks scale's flags and FACTOR; errors name the bad one.
func parseScale(tier string, tierSet bool, rampFlag, forFlag, factor string, now time.Time) (limiter.Scale, error) {
	s := limiter.Scale{Start: now}
	if tierSet {
		if err := checkTier(tier); err != nil {
			return s, err
		}
		s.Tier = tier
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(factor), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return s, cmdline.Usagef("FACTOR %q is not a number (e.g. 0.5 or 2)", factor)
	}
	s.Factor = f
	if rampFlag != "" {
		d, err := time.ParseDuration(strings.TrimSpace(rampFlag))
		switch {
		case err != nil:
			return s, cmdline.Usagef("--ramp %q is not a duration (e.g. 90s, 10m, 2h)", rampFlag)
		case d <= 0 || d%time.Second != 0 || d > limiter.MaxRamp:
			return s, cmdline.Usagef("--ramp %s must be whole seconds from 1s to %s", d, limiter.MaxRamp)
		}
		s.Ramp = d
	}
	if forFlag != "" {
		d, err := time.ParseDuration(strings.TrimSpace(forFlag))
		switch {
		case err != nil:
			return s, cmdline.Usagef("--for %q is not a duration (e.g. 90s, 10m, 2h)", forFlag)
		case d < time.Millisecond:
			return s, cmdline.Usagef("--for %s must be at least 1ms", d)
		}
		s.Expires = now.Add(d)
	}
	if err := s.Validate(); err != nil {
		// The flags were checked above: what is left is the factor.
		return s, cmdline.Usagef("FACTOR: %v", err)
	}
	return s, nil
}

// checkTier checks a --tier value the way the limiter checks tier names.
func checkTier(tier string) error {
	if tier == "" {
		return cmdline.Usagef("--tier is empty (leave it out for every limit)")
	}
	if err := (limiter.Scale{Tier: tier, Factor: 1, Start: time.UnixMilli(1)}).Validate(); err != nil {
		return cmdline.Usagef("--tier: %v", err)
	}
	return nil
}

// open returns the store named by the flags, else the environment.
func open(rawURL, token string, env cli) (*store, error) {
	if rawURL == "" {
		rawURL = strings.TrimSpace(env.getenv(upstash.EnvURL))
	}
	if token == "" {
		token = strings.TrimSpace(env.getenv(upstash.EnvToken))
	}
	switch {
	case rawURL == "" && token == "":
		return nil, cmdline.Usagef("no database: set %s and %s (or pass --url and --token)", upstash.EnvURL, upstash.EnvToken)
	case rawURL == "":
		return nil, cmdline.Usagef("no URL: set %s or pass --url", upstash.EnvURL)
	case token == "":
		return nil, cmdline.Usagef("no token: set %s or pass --token", upstash.EnvToken)
	}
	c, err := upstash.New(upstash.Config{URL: rawURL, Token: token})
	if err != nil {
		return nil, cmdline.Usagef("%s", scrub(err.Error(), token)) // upstash.New never includes it; belt and braces
	}
	return &store{client: c, prefix: limiter.DefaultPrefix, beforeWrite: env.beforeWrite}, nil
}

// scrub removes secret from s.
func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[token]")
}

// without returns scales less the change of scope tier ("" = every limit).
func without(scales []limiter.Scale, tier string) []limiter.Scale {
	out := make([]limiter.Scale, 0, len(scales))
	for _, s := range scales {
		if s.Tier != tier {
			out = append(out, s)
		}
	}
	return out
}

// scopeName is a change's scope as shown: its tier, or "*".
func scopeName(tier string) string {
	if tier == "" {
		return "*"
	}
	return tier
}

// view is one line of show (and scale's output).
type view struct {
	Tier      string     `json:"tier"`      // "*": every limit
	FactorNow float64    `json:"factorNow"` // the factor at the time of the command
	Factor    float64    `json:"factor"`    // the factor set
	Start     time.Time  `json:"start"`
	Ramp      string     `json:"ramp"`    // Go duration; "0s": none
	Expires   *time.Time `json:"expires"` // null: never
	Over      *time.Time `json:"over"`    // when it stops changing anything; null: never
}

func viewOf(s limiter.Scale, now time.Time) view {
	v := view{Tier: scopeName(s.Tier), FactorNow: s.FactorAt(now), Factor: s.Factor, Start: s.Start.UTC(), Ramp: s.Ramp.String()}
	if !s.Expires.IsZero() {
		e := s.Expires.UTC()
		v.Expires = &e
	}
	if o := s.Over(); !o.IsZero() {
		o = o.UTC()
		v.Over = &o
	}
	return v
}

// warmupView is one warm-up start of show.
type warmupView struct {
	Warmup string    `json:"warmup"` // the version (a hash of the code and function version)
	Start  time.Time `json:"start"`
}

func show(ctx context.Context, st *store, now time.Time, stdout io.Writer) error {
	raw, err := st.get(ctx, st.settingsKey())
	if err != nil {
		return err
	}
	for _, s := range limiter.ParseScales(raw) {
		if err := cmdline.WriteJSON(stdout, viewOf(s, now)); err != nil {
			return err
		}
	}
	raw, err = st.get(ctx, st.warmupKey())
	if err != nil {
		return err
	}
	for _, w := range parseWarmups(raw) {
		if err := cmdline.WriteJSON(stdout, w); err != nil {
			return err
		}
	}
	return nil
}

// parseWarmups reads the warm-up key, "version=startMs;..." (oldest first),
// skipping what is not an entry.
func parseWarmups(raw string) []warmupView {
	var out []warmupView
	for _, e := range strings.Split(raw, ";") {
		ver, ms, ok := strings.Cut(e, "=")
		n, err := strconv.ParseInt(ms, 10, 64)
		if !ok || ver == "" || err != nil || n <= 0 {
			continue
		}
		out = append(out, warmupView{Warmup: ver, Start: time.UnixMilli(n).UTC()})
	}
	return out
}
