// Command apikeys creates, lists and revokes API keys and sets their own
// limits, in a key file (API_KEYS_FILE, local use) or a DynamoDB table
// (API_KEYS_TABLE).
//
//	apikeys create --tier TIER --name NAME (--file F | --table T) [--limit LIMIT] [--expires RFC3339]
//	apikeys set-limit (--file F | --table T) (--limit LIMIT | --clear) ID
//	apikeys list (--file F | --table T)
//	apikeys revoke (--file F | --table T) ID
//	apikeys create-table --table T
//
// create prints one JSON object, {"id", "key", "tier", "name"[, "limit"]
// [, "expiresAt"]}: the only time the plaintext key is shown; only its
// SHA-256 is stored. A missing key file is created (mode 0600). Tiers are
// authenticated and premium; --allow-custom-tier accepts any other name of
// a-z, 0-9, _ and - (for tiers added to TIER_LIMITS). anonymous is never a
// key's tier: it is the tier of callers without a key.
//
// LIMIT is RATE/PERIOD[:burst=N][:quota=N/QPERIOD], as in TIER_LIMITS
// (PERIOD second, minute, hour or day; QPERIOD day, week or month): the
// key's own token bucket and quota, replacing its tier's; the tier still
// decides premium routes and route limits. It is stored in its canonical
// form. --expires is an RFC 3339 time in the future (e.g.
// 2026-01-31T00:00:00Z); from then on the key is refused like a revoked one.
//
// set-limit gives an existing key its own limit, or with --clear returns it
// to its tier's, and prints {"id", "limit"} ("limit" null after --clear).
// The authorizer caches a key's record, limit included, for up to 60 s per
// container, so a change takes effect within a minute; revocation likewise.
// Revoked keys cannot be given a limit.
//
// list prints one JSON object per key and line, oldest first:
// {"id", "name", "tier", "createdAt", "revoked"[, "revokedAt"][, "limit"]
// [, "expiresAt"][, "expired"]}, where "expired" is true once expiresAt
// has passed; neither keys nor hashes. revoke takes a key's ID (as printed
// by create and list), not the key. create-table creates a table with the
// schema the authorizer expects, for local DynamoDB-compatible endpoints
// (template.yaml creates the real one).
//
// Flags come before positional arguments. --table uses the AWS SDK's default
// configuration (AWS_REGION or --region, credentials, and
// AWS_ENDPOINT_URL_DYNAMODB for a local endpoint). Exit status: 0 on
// success, 1 on failure, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/cmdline"
	"github.com/bucketgate/bucketgate/internal/limiter"
)

const usage = `usage:
  apikeys create --tier TIER --name NAME (--file F | --table T) [--allow-custom-tier] [--limit LIMIT] [--expires RFC3339]
  apikeys set-limit (--file F | --table T) (--limit LIMIT | --clear) ID
  apikeys list (--file F | --table T)
  apikeys revoke (--file F | --table T) ID
  apikeys create-table --table T
LIMIT is RATE/PERIOD[:burst=N][:quota=N/QPERIOD], e.g. 100/minute:burst=150:quota=100000/month.
Common flags: --region R (with --table). Flags come before arguments.
`

// standardTiers are the tiers a key may have without --allow-custom-tier.
var standardTiers = []string{"authenticated", "premium"}

// timeout bounds one command, DynamoDB retries included.
const timeout = 2 * time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return cmdline.Exit("apikeys", usage, dispatch(ctx, args, stdout, stderr), stderr)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cmdline.Usagef("missing command")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("apikeys "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints the usage once
	file := fs.String("file", "", "JSON key file (created when missing)")
	table := fs.String("table", "", "DynamoDB table")
	region := fs.String("region", "", "AWS region for --table (default: from the AWS configuration)")
	var tier, name, limitFlag, expires *string
	var customTier, clearLimit *bool
	switch cmd {
	case "create":
		tier = fs.String("tier", "", "the key's tier: "+strings.Join(standardTiers, " or "))
		name = fs.String("name", "", "a name for humans (who or what holds the key)")
		customTier = fs.Bool("allow-custom-tier", false, "accept a tier other than "+strings.Join(standardTiers, " and "))
		limitFlag = fs.String("limit", "", "the key's own limit, RATE/PERIOD[:burst=N][:quota=N/QPERIOD] (default: its tier's)")
		expires = fs.String("expires", "", "when the key stops working, RFC 3339 (default: never)")
	case "set-limit":
		limitFlag = fs.String("limit", "", "the key's own limit, RATE/PERIOD[:burst=N][:quota=N/QPERIOD]")
		clearLimit = fs.Bool("clear", false, "remove the key's own limit: it returns to its tier's")
	case "list", "revoke", "create-table":
	case "help", "-h", "-help", "--help":
		return flag.ErrHelp
	default:
		return cmdline.Usagef("unknown command %q", cmd)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cmdline.Usagef("%s: %v", cmd, err)
	}
	rest := fs.Args()
	for _, a := range rest {
		if strings.HasPrefix(a, "-") {
			return cmdline.Usagef("%s: flags come before arguments (found %s after one)", cmd, a)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	now := time.Now()

	if cmd == "create-table" {
		if *file != "" || *table == "" {
			return cmdline.Usagef("create-table needs --table (and no --file)")
		}
		if len(rest) != 0 {
			return cmdline.Usagef("create-table takes no arguments")
		}
		client, err := dynamoClient(ctx, *region)
		if err != nil {
			return err
		}
		if err := apikey.CreateTable(ctx, client, *table); err != nil {
			return err
		}
		return cmdline.WriteJSON(stdout, map[string]string{"table": *table, "status": "ACTIVE"})
	}

	if (*file == "") == (*table == "") {
		return cmdline.Usagef("%s needs exactly one of --file and --table", cmd)
	}
	if *file != "" && *region != "" {
		return cmdline.Usagef("--region goes with --table")
	}
	var (
		limit     limiter.Policy
		expiresAt time.Time
		err       error
	)
	switch cmd {
	case "create":
		if len(rest) != 0 {
			return cmdline.Usagef("create takes no arguments; got %d", len(rest))
		}
		if err := checkTier(*tier, *customTier); err != nil {
			return err
		}
		if strings.TrimSpace(*name) == "" {
			return cmdline.Usagef("create needs --name")
		}
		if set["limit"] {
			if limit, err = parseLimit(*limitFlag); err != nil {
				return err
			}
		}
		if set["expires"] {
			if expiresAt, err = parseExpires(*expires, now); err != nil {
				return err
			}
		}
	case "set-limit":
		if set["limit"] == *clearLimit {
			return cmdline.Usagef("set-limit needs exactly one of --limit and --clear")
		}
		if !*clearLimit {
			if limit, err = parseLimit(*limitFlag); err != nil {
				return err
			}
		}
		if err := checkIDArg(cmd, rest); err != nil {
			return err
		}
	case "list":
		if len(rest) != 0 {
			return cmdline.Usagef("list takes no arguments")
		}
	case "revoke":
		if err := checkIDArg(cmd, rest); err != nil {
			return err
		}
	}

	store, err := openStore(ctx, *file, *table, *region)
	if err != nil {
		return err
	}
	switch cmd {
	case "create":
		return create(ctx, store, *name, *tier, limit, expiresAt, now, stdout)
	case "set-limit":
		return setLimit(ctx, store, rest[0], limit, stdout)
	case "list":
		return list(ctx, store, now, stdout)
	default: // revoke
		if err := store.Revoke(ctx, rest[0]); errors.Is(err, apikey.ErrNotFound) {
			return fmt.Errorf("revoke: no key with ID %s", rest[0])
		} else if err != nil {
			return err
		}
		return cmdline.WriteJSON(stdout, struct {
			ID      string `json:"id"`
			Revoked bool   `json:"revoked"`
		}{rest[0], true})
	}
}

// checkIDArg checks that args is one key ID, never echoing a key given by
// mistake.
func checkIDArg(cmd string, args []string) error {
	if len(args) != 1 {
		return cmdline.Usagef("%s takes one key ID after the flags; got %d arguments", cmd, len(args))
	}
	if looksLikeKey(args[0]) {
		// Never echo it: it is (or looks like) a secret.
		return cmdline.Usagef("%s takes a key's ID (%s...), not the key itself; `apikeys list` shows the IDs", cmd, apikey.IDPrefix)
	}
	if !apikey.ValidID(args[0]) {
		return cmdline.Usagef("%s: %q is not a key ID (%s + 16 characters of a-z and 2-7); `apikeys list` shows the IDs", cmd, args[0], apikey.IDPrefix)
	}
	return nil
}

// looksLikeKey reports whether s is, or may contain, an API key: such input
// is never echoed.
func looksLikeKey(s string) bool { return strings.Contains(s, apikey.Prefix) }

// parseLimit reads --limit; the error names the flag and the bad part.
func parseLimit(s string) (limiter.Policy, error) {
	if looksLikeKey(s) {
		return limiter.Policy{}, cmdline.Usagef("--limit: want RATE/PERIOD[:burst=N][:quota=N/QPERIOD], got something that looks like an API key (not shown)")
	}
	if strings.TrimSpace(s) == "" {
		return limiter.Policy{}, cmdline.Usagef("--limit is empty: want RATE/PERIOD[:burst=N][:quota=N/QPERIOD] (or, with set-limit, --clear)")
	}
	p, err := limiter.ParsePolicy(s)
	if err != nil {
		return limiter.Policy{}, cmdline.Usagef("--limit: %v", err)
	}
	if err := apikey.ValidateLimit(p); err != nil { // cannot fail for a parsed policy; checked all the same
		return limiter.Policy{}, cmdline.Usagef("--limit: %v", err)
	}
	return p, nil
}

// parseExpires reads --expires: an RFC 3339 time after now.
func parseExpires(s string, now time.Time) (time.Time, error) {
	if looksLikeKey(s) {
		return time.Time{}, cmdline.Usagef("--expires: want an RFC 3339 time, got something that looks like an API key (not shown)")
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, cmdline.Usagef("--expires: %q is not an RFC 3339 time such as 2026-01-31T00:00:00Z (a date needs a time and a zone)", s)
	}
	if !t.After(now) {
		return time.Time{}, cmdline.Usagef("--expires: %s is not in the future", t.Format(time.RFC3339))
	}
	return t.UTC(), nil
}

func checkTier(tier string, custom bool) error {
	switch {
	case tier == "":
		return cmdline.Usagef("create needs --tier (%s)", strings.Join(standardTiers, " or "))
	case tier == "anonymous":
		return cmdline.Usagef("anonymous is the tier of callers without a key; give keys %s", strings.Join(standardTiers, " or "))
	case !apikey.ValidTier(tier):
		return cmdline.Usagef("--tier must be 1-%d characters of a-z, 0-9, _ and -", apikey.MaxTierLen)
	}
	for _, t := range standardTiers {
		if tier == t {
			return nil
		}
	}
	if !custom {
		return cmdline.Usagef("--tier %q is not %s (add --allow-custom-tier for a tier defined in TIER_LIMITS)", tier, strings.Join(standardTiers, " or "))
	}
	return nil
}

func openStore(ctx context.Context, file, table, region string) (apikey.Admin, error) {
	if file != "" {
		return apikey.NewFileStore(apikey.FileConfig{Path: file})
	}
	client, err := dynamoClient(ctx, region)
	if err != nil {
		return nil, err
	}
	return apikey.NewDynamoStore(apikey.DynamoConfig{Client: client, Table: table})
}

// dynamoClient builds a client from the default AWS configuration, which
// honours AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL.
func dynamoClient(ctx context.Context, region string) (*dynamodb.Client, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: set AWS_REGION or pass --region")
	}
	return dynamodb.NewFromConfig(cfg), nil
}

func create(ctx context.Context, store apikey.Admin, name, tier string, limit limiter.Policy, expiresAt, now time.Time, stdout io.Writer) error {
	key, rec, err := apikey.New(name, tier, now)
	if err != nil {
		return err
	}
	rec.Limit, rec.ExpiresAt = limit, expiresAt
	if err := store.Create(ctx, rec); err != nil {
		return err
	}
	return cmdline.WriteJSON(stdout, struct {
		ID        string    `json:"id"`
		Key       string    `json:"key"`
		Tier      string    `json:"tier"`
		Name      string    `json:"name"`
		Limit     string    `json:"limit,omitempty"`
		ExpiresAt time.Time `json:"expiresAt,omitzero"`
	}{rec.ID, key, rec.Tier, rec.Name, rec.Limit.String(), rec.ExpiresAt})
}

func setLimit(ctx context.Context, store apikey.Admin, id string, limit limiter.Policy, stdout io.Writer) error {
	err := store.SetLimit(ctx, id, limit)
	switch {
	case errors.Is(err, apikey.ErrNotFound):
		return fmt.Errorf("set-limit: no key with ID %s", id)
	case errors.Is(err, apikey.ErrRevoked):
		return fmt.Errorf("set-limit: the key with ID %s is revoked", id)
	case err != nil:
		return err
	}
	var shown *string // null: the tier's limit
	if !limit.IsZero() {
		s := limit.String()
		shown = &s
	}
	return cmdline.WriteJSON(stdout, struct {
		ID    string  `json:"id"`
		Limit *string `json:"limit"`
	}{id, shown})
}

// listed is one line of `apikeys list`.
type listed struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Tier      string    `json:"tier"`
	CreatedAt time.Time `json:"createdAt"`
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	Limit     string    `json:"limit,omitempty"`    // canonical form; absent: the tier's
	ExpiresAt time.Time `json:"expiresAt,omitzero"` // absent: never
	Expired   bool      `json:"expired,omitempty"`  // expiresAt has passed
}

func list(ctx context.Context, store apikey.Admin, now time.Time, stdout io.Writer) error {
	recs, err := store.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		l := listed{
			ID: r.ID, Name: r.Name, Tier: r.Tier, CreatedAt: r.CreatedAt, Revoked: r.Revoked, RevokedAt: r.RevokedAt,
			Limit: r.Limit.String(), ExpiresAt: r.ExpiresAt, Expired: r.Expired(now),
		}
		if err := cmdline.WriteJSON(stdout, l); err != nil {
			return err
		}
	}
	return nil
}
