package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
	"github.com/google/go-cmp/cmp"
)

func TestRotateDemoKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "keys.json")
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

	first, err := rotateDemoKeys(ctx, path, now) // creates the missing directory and file
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	// A user's own key survives rotations.
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ownKey, own, err := apikey.New("alice", "premium", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, own); err != nil {
		t.Fatal(err)
	}
	second, err := rotateDemoKeys(ctx, path, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	var tiers []string
	for _, k := range second {
		tiers = append(tiers, k.Tier)
	}
	if diff := cmp.Diff(demoTiers, tiers); diff != "" {
		t.Errorf("tiers (-want +got):\n%s", diff)
	}
	for i, k := range first {
		if _, err := store.Lookup(ctx, k.Key); err != apikey.ErrNotFound {
			t.Errorf("first run's %s key: Lookup error = %v, want ErrNotFound (revoked)", k.Tier, err)
		}
		rec, err := store.Lookup(ctx, second[i].Key)
		if err != nil || rec.Tier != second[i].Tier {
			t.Errorf("second run's %s key: Lookup = %+v, %v", second[i].Tier, rec, err)
		}
	}
	if rec, err := store.Lookup(ctx, ownKey); err != nil || rec.Name != "alice" {
		t.Errorf("user's own key: Lookup = %+v, %v, want it untouched", rec, err)
	}
}

func TestUseKeyFileAndPrintDemo(t *testing.T) {
	opts := startapi.Options{EnvVars: startapi.EnvVars{"Parameters": {"LOG_LEVEL": "debug"}}}
	if err := useKeyFile(&opts, "tmp/keys.json"); err != nil {
		t.Fatal(err)
	}
	p := opts.EnvVars["Parameters"]
	if !filepath.IsAbs(p["API_KEYS_FILE"]) || p["API_KEYS_TABLE"] != "" || p["LOG_LEVEL"] != "debug" {
		t.Errorf("Parameters = %v, want an absolute API_KEYS_FILE, empty API_KEYS_TABLE, LOG_LEVEL kept", p)
	}
	var out bytes.Buffer
	printDemo(&out, "http://127.0.0.1:3000", []demoKey{{Tier: "premium", ID: "key_x", Key: "bg_secret"}})
	for _, want := range []string{"curl -s http://127.0.0.1:3000/model-info", "/premium/predict -H 'X-Api-Key: bg_secret'"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
