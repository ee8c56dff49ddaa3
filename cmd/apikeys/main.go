// Command apikeys creates, lists and revokes API keys in a key file
// (API_KEYS_FILE, local use) or a DynamoDB table (API_KEYS_TABLE).
//
//	apikeys create --tier TIER --name NAME (--file F | --table T)
//	apikeys list (--file F | --table T)
//	apikeys revoke (--file F | --table T) ID
//	apikeys create-table --table T
//
// create prints one JSON object, {"id", "key", "tier", "name"}: the only
// time the plaintext key is shown; only its SHA-256 is stored. A missing key
// file is created (mode 0600). Tiers are authenticated and premium;
// --allow-custom-tier accepts any other name of a-z, 0-9, _ and - (for tiers
// added to TIER_LIMITS). anonymous is never a key's tier: it is the tier of
// callers without a key.
//
// list prints one JSON object per key and line, oldest first:
// {"id", "name", "tier", "createdAt", "revoked"[, "revokedAt"]}; neither keys
// nor hashes. revoke takes a key's ID (as printed by create and list), not
// the key. create-table creates a table with the schema the authorizer
// expects, for local DynamoDB-compatible endpoints (template.yaml creates
// the real one).
//
// Flags come before positional arguments. --table uses the AWS SDK's default
// configuration (AWS_REGION or --region, credentials, and
// AWS_ENDPOINT_URL_DYNAMODB for a local endpoint). Exit status: 0 on
// success, 1 on failure, 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
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
)

const usage = `usage:
  apikeys create --tier TIER --name NAME (--file F | --table T) [--allow-custom-tier]
  apikeys list (--file F | --table T)
  apikeys revoke (--file F | --table T) ID
  apikeys create-table --table T
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

// usageError is a mistake on the command line (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := dispatch(ctx, args, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "apikeys: %s\n%s", ue.msg, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "apikeys: %v\n", err)
		return 1
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("missing command")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("apikeys "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints the usage once
	file := fs.String("file", "", "JSON key file (created when missing)")
	table := fs.String("table", "", "DynamoDB table")
	region := fs.String("region", "", "AWS region for --table (default: from the AWS configuration)")
	var tier, name *string
	var customTier *bool
	switch cmd {
	case "create":
		tier = fs.String("tier", "", "the key's tier: "+strings.Join(standardTiers, " or "))
		name = fs.String("name", "", "a name for humans (who or what holds the key)")
		customTier = fs.Bool("allow-custom-tier", false, "accept a tier other than "+strings.Join(standardTiers, " and "))
	case "list", "revoke", "create-table":
	case "help", "-h", "-help", "--help":
		return flag.ErrHelp
	default:
		return usagef("unknown command %q", cmd)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", cmd, err)
	}
	rest := fs.Args()
	for _, a := range rest {
		if strings.HasPrefix(a, "-") {
			return usagef("%s: flags come before arguments (found %s after one)", cmd, a)
		}
	}

	if cmd == "create-table" {
		if *file != "" || *table == "" {
			return usagef("create-table needs --table (and no --file)")
		}
		if len(rest) != 0 {
			return usagef("create-table takes no arguments")
		}
		client, err := dynamoClient(ctx, *region)
		if err != nil {
			return err
		}
		if err := apikey.CreateTable(ctx, client, *table); err != nil {
			return err
		}
		return writeJSON(stdout, map[string]string{"table": *table, "status": "ACTIVE"})
	}

	if (*file == "") == (*table == "") {
		return usagef("%s needs exactly one of --file and --table", cmd)
	}
	if *file != "" && *region != "" {
		return usagef("--region goes with --table")
	}
	switch cmd {
	case "create":
		if len(rest) != 0 {
			return usagef("create takes no arguments; got %d", len(rest))
		}
		if err := checkTier(*tier, *customTier); err != nil {
			return err
		}
		if strings.TrimSpace(*name) == "" {
			return usagef("create needs --name")
		}
	case "list":
		if len(rest) != 0 {
			return usagef("list takes no arguments")
		}
	case "revoke":
		if len(rest) != 1 {
			return usagef("revoke takes one key ID after the flags; got %d arguments", len(rest))
		}
		if apikey.ValidFormat(rest[0]) || strings.HasPrefix(rest[0], apikey.Prefix) {
			// Never echo it: it is (or looks like) a secret.
			return usagef("revoke takes a key's ID (%s...), not the key itself; `apikeys list` shows the IDs", apikey.IDPrefix)
		}
		if !apikey.ValidID(rest[0]) {
			return usagef("revoke: %q is not a key ID (%s + 16 characters of a-z and 2-7); `apikeys list` shows the IDs", rest[0], apikey.IDPrefix)
		}
	}

	store, err := openStore(ctx, *file, *table, *region)
	if err != nil {
		return err
	}
	switch cmd {
	case "create":
		return create(ctx, store, *name, *tier, stdout)
	case "list":
		return list(ctx, store, stdout)
	default: // revoke
		if err := store.Revoke(ctx, rest[0]); errors.Is(err, apikey.ErrNotFound) {
			return fmt.Errorf("revoke: no key with ID %s", rest[0])
		} else if err != nil {
			return err
		}
		return writeJSON(stdout, struct {
			ID      string `json:"id"`
			Revoked bool   `json:"revoked"`
		}{rest[0], true})
	}
}

func checkTier(tier string, custom bool) error {
	switch {
	case tier == "":
		return usagef("create needs --tier (%s)", strings.Join(standardTiers, " or "))
	case tier == "anonymous":
		return usagef("anonymous is the tier of callers without a key; give keys %s", strings.Join(standardTiers, " or "))
	case !apikey.ValidTier(tier):
		return usagef("--tier must be 1-%d characters of a-z, 0-9, _ and -", apikey.MaxTierLen)
	}
	for _, t := range standardTiers {
		if tier == t {
			return nil
		}
	}
	if !custom {
		return usagef("--tier %q is not %s (add --allow-custom-tier for a tier defined in TIER_LIMITS)", tier, strings.Join(standardTiers, " or "))
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

func create(ctx context.Context, store apikey.Admin, name, tier string, stdout io.Writer) error {
	key, rec, err := apikey.New(name, tier, time.Now())
	if err != nil {
		return err
	}
	if err := store.Create(ctx, rec); err != nil {
		return err
	}
	return writeJSON(stdout, struct {
		ID   string `json:"id"`
		Key  string `json:"key"`
		Tier string `json:"tier"`
		Name string `json:"name"`
	}{rec.ID, key, rec.Tier, rec.Name})
}

// listed is one line of `apikeys list`.
type listed struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Tier      string    `json:"tier"`
	CreatedAt time.Time `json:"createdAt"`
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

func list(ctx context.Context, store apikey.Admin, stdout io.Writer) error {
	recs, err := store.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := writeJSON(stdout, listed{r.ID, r.Name, r.Tier, r.CreatedAt, r.Revoked, r.RevokedAt}); err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
