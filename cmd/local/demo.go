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
	"github.com/bucketgate/bucketgate/internal/local/startapi"
)

// demoPrefix names the keys --demo-keys manages.
const demoPrefix = "demo-"

// demoTiers are the keyed tiers a demo key is made for, in display order.
var demoTiers = []string{"authenticated", "premium"}

// demoKey is a freshly made demo key: the plaintext exists only in memory
// and on the terminal, never on disk.
type demoKey struct {
	Tier, ID, Key string
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
	for _, tier := range demoTiers {
		key, rec, err := apikey.New(demoPrefix+tier, tier, now)
		if err != nil {
			return nil, err
		}
		if err := store.Create(ctx, rec); err != nil {
			return nil, err
		}
		out = append(out, demoKey{Tier: tier, ID: rec.ID, Key: key})
	}
	return out, nil
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

// printDemo shows the demo keys with curl commands that work as printed.
func printDemo(w io.Writer, base string, keys []demoKey) {
	body := `'{"inputs": [[0.5, 1.2, -0.3, 2.0]]}'`
	fmt.Fprintf(w, "\nDemo keys (new on every run; only their SHA-256 is stored):\n")
	for _, k := range keys {
		fmt.Fprintf(w, "  %-13s %s  (id %s)\n", k.Tier, k.Key, k.ID)
	}
	fmt.Fprintf(w, "\nTry:\n")
	fmt.Fprintf(w, "  curl -s %s/model-info\n", base)
	fmt.Fprintf(w, "  curl -si -X POST %s/predict -d %s\n", base, body)
	for _, k := range keys {
		path := "/predict"
		if k.Tier == "premium" {
			path = "/premium/predict"
		}
		fmt.Fprintf(w, "  curl -si -X POST %s%s -H 'X-Api-Key: %s' -d %s\n", base, path, k.Key, body)
	}
	fmt.Fprintf(w, "  for i in $(seq 12); do curl -s -o /dev/null -w '%%{http_code} ' -X POST %s/predict -d %s; done; echo\n\n", base, body)
}
