package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
)

// demoPrefix names the keys --demo-keys manages.
const demoPrefix = "demo-"

// demoTiers are the keyed tiers a demo key is made for, in display order.
var demoTiers = []string{"authenticated", "premium"}

// Demo policies: a key with its own quota (an authenticated key whose own
// limit replaces its tier's), and a route limit on the batch route (cost 5:
// two batches, then one every 30 s), so that the printed commands show
// both kinds of 429.
const (
	demoQuotaTier  = "authenticated"
	demoQuotaLimit = "30/minute:burst=50:quota=5/day"
	demoQuotaName  = demoPrefix + "quota"
	demoQuota      = 5
	// demoRouteLimit is the template parameter RouteLimits (ROUTE_LIMITS)
	// in demo mode, unless the command line sets one.
	demoRouteLimit = "POST /predict/batch=10/minute:burst=10"
	demoRouteCalls = 2 // batches that fit in its burst
)

// demoKey is a freshly made demo key: the plaintext exists only in memory
// and on the terminal, never on disk. Limit is its own limit ("": its
// tier's).
type demoKey struct {
	Tier, ID, Key, Limit string
}

// rotateDemoKeys revokes the demo keys an earlier run left in the key file
// at path (created when missing) and creates one new key per tier. Since
// only hashes are stored, a key cannot be shown twice: each run makes new
// ones. Keys not named demo-* are left alone.
func rotateDemoKeys(ctx context.Context, path string, now time.Time) ([]demoKey, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
	if err != nil {
		return nil, err
	}
	recs, err := store.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if strings.HasPrefix(r.Name, demoPrefix) && !r.Revoked {
			if err := store.Revoke(ctx, r.ID); err != nil {
				return nil, fmt.Errorf("revoke old demo key %s: %w", r.ID, err)
			}
		}
	}
	var out []demoKey
	add := func(name, tier, limit string) error {
		key, rec, err := apikey.New(name, tier, now)
		if err != nil {
			return err
		}
		if limit != "" {
			if rec.Limit, err = limiter.ParsePolicy(limit); err != nil {
				return err
			}
		}
		if err := store.Create(ctx, rec); err != nil {
			return err
		}
		out = append(out, demoKey{Tier: tier, ID: rec.ID, Key: key, Limit: limit})
		return nil
	}
	for _, tier := range demoTiers {
		if err := add(demoPrefix+tier, tier, ""); err != nil {
			return nil, err
		}
	}
	if err := add(demoQuotaName, demoQuotaTier, demoQuotaLimit); err != nil {
		return nil, err
	}
	return out, nil
}

// useDemoRouteLimit sets the template parameter RouteLimits to
// demoRouteLimit unless the command line gives a route limit (the
// parameter, or ROUTE_LIMITS in --env-vars); it reports whether it did.
func useDemoRouteLimit(opts *startapi.Options) bool {
	if _, ok := opts.Parameters["RouteLimits"]; ok {
		return false
	}
	for _, section := range opts.EnvVars {
		if _, ok := section["ROUTE_LIMITS"]; ok {
			return false
		}
	}
	if opts.Parameters == nil {
		opts.Parameters = map[string]string{}
	}
	opts.Parameters["RouteLimits"] = demoRouteLimit
	return true
}

// useKeyFile points every function's API_KEYS_FILE at path (absolute, as
// functions run in their CodeUri directory) and clears API_KEYS_TABLE.
func useKeyFile(opts *startapi.Options, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if opts.EnvVars == nil {
		opts.EnvVars = startapi.EnvVars{}
	}
	if opts.EnvVars["Parameters"] == nil {
		opts.EnvVars["Parameters"] = map[string]string{}
	}
	opts.EnvVars["Parameters"]["API_KEYS_FILE"] = abs
	opts.EnvVars["Parameters"]["API_KEYS_TABLE"] = ""
	return nil
}

// printDemo shows the demo keys with curl commands that work as printed:
// the tiers, a premium route, the anonymous burst running out, the route
// limit (when routeLimit: demo mode set it) and a key's own quota.
func printDemo(w io.Writer, base string, keys []demoKey, routeLimit bool) {
	body := `'{"inputs": [[0.5, 1.2, -0.3, 2.0]]}'`
	fmt.Fprintf(w, "\nDemo keys (new on every run; only their SHA-256 is stored):\n")
	for _, k := range keys {
		own := ""
		if k.Limit != "" {
			own = ", own limit " + k.Limit
		}
		fmt.Fprintf(w, "  %-13s %s  (id %s%s)\n", k.Tier, k.Key, k.ID, own)
	}
	fmt.Fprintf(w, "\nTry:\n")
	fmt.Fprintf(w, "  curl -s %s/model-info\n", base)
	fmt.Fprintf(w, "  curl -si -X POST %s/predict -d %s\n", base, body)
	var premium, quota string
	for _, k := range keys {
		switch {
		case k.Limit != "":
			quota = k.Key
			continue
		case k.Tier == "premium":
			premium = k.Key
			fmt.Fprintf(w, "  curl -si -X POST %s/premium/predict -H 'X-Api-Key: %s' -d %s\n", base, k.Key, body)
			continue
		}
		fmt.Fprintf(w, "  curl -si -X POST %s/predict -H 'X-Api-Key: %s' -d %s\n", base, k.Key, body)
	}
	fmt.Fprintf(w, "  for i in $(seq 12); do curl -s -o /dev/null -w '%%{http_code} ' -X POST %s/predict -d %s; done; echo\n", base, body)
	if routeLimit && premium != "" {
		fmt.Fprintf(w, "  # route limit %s (a batch costs 5): the third batch within a minute gets 429, policy route:POST /predict/batch\n", demoRouteLimit)
		fmt.Fprintf(w, "  for i in 1 2 3; do curl -s -w ' %%{http_code}\\n' -X POST %s/predict/batch -H 'X-Api-Key: %s' -d %s; done\n", base, premium, body)
	}
	if quota != "" {
		fmt.Fprintf(w, "  # a key's own quota (%s): the sixth request today gets 429 until 00:00 UTC, policy key-quota\n", demoQuotaLimit)
		fmt.Fprintf(w, "  for i in $(seq %d); do curl -s -w ' %%{http_code}\\n' -X POST %s/predict -H 'X-Api-Key: %s' -d %s; done\n", demoQuota+1, base, quota, body)
	}
	fmt.Fprintln(w)
}
