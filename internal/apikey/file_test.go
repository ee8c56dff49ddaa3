package apikey_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
)

func newFileStore(t *testing.T, path string, clk *fakeclock.Clock) *apikey.FileStore {
	t.Helper()
	cfg := apikey.FileConfig{Path: path}
	if clk != nil {
		cfg.Now = clk.Now
	}
	s, err := apikey.NewFileStore(cfg)
	if err != nil {
		t.Fatalf("NewFileStore: %v", err)
	}
	return s
}

// fileHarness runs the shared store tests on a new file per store.
var fileHarness = storeHarness{
	open: func(t *testing.T, clk *fakeclock.Clock) apikey.Admin {
		return newFileStore(t, filepath.Join(t.TempDir(), "keys.json"), clk)
	},
	lookupIsFull: true,
	corrupt: func(t *testing.T, s apikey.Admin, hash, attr, value string) {
		t.Helper()
		path := s.(*apikey.FileStore).Path()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		doc["keys"].(map[string]any)[hash].(map[string]any)[attr] = value
		if data, err = json.Marshal(doc); err != nil {
			t.Fatal(err)
		}
		// A new file renamed over the old one, as an editor may save it.
		tmp := path + ".edit"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	},
}

func TestFileStoreAdmin(t *testing.T) {
	testAdmin(t, fileHarness)
}

func TestFileStoreLimitsAndExpiry(t *testing.T) {
	testLimitsAndExpiry(t, fileHarness)
}

// TestFileStoreMalformedKeyReadsNothing makes the file unreadable as a key
// file: a well-formed key then gets the read error, while a malformed key
// still gets ErrNotFound, which proves it never touched the file.
func TestFileStoreMalformedKeyReadsNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.json")
	s := newFileStore(t, path, nil)
	k := issue(t, "a", "premium", time.Now())
	if err := s.Create(ctx, k.rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := &keyChecker{keys: []string{k.key}}
	defer kc.check(t)

	_, err := s.Lookup(ctx, k.key)
	if kc.add(err) == nil || errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("Lookup of a stored key in a broken file: err = %v, want a file error (not ErrNotFound)", err)
	}
	for name, key := range malformedKeys(k.key) {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Lookup(ctx, key); !errors.Is(kc.add(err), apikey.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound without reading the file", err)
			}
		})
	}
}

func TestFileStoreWritesPrivateFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	clk := newClock()
	s := newFileStore(t, path, clk)
	k := issue(t, "alice laptop", "premium", clk.Now())
	k.rec.Limit = mustPolicy(t, "30/Minute:burst=50:quota=10000/month")
	k.rec.ExpiresAt = time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("CET", 3600))
	if err := s.Create(ctx, k.rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	clk.Advance(time.Minute)
	if err := s.Revoke(ctx, k.rec.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("file mode = %v, want %v", got, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only keys.json (no temporary files left)", names)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), k.key) {
		t.Error("the key file contains the plaintext key")
	}
	var got any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("file is not JSON: %v", err)
	}
	want := map[string]any{
		"version": float64(1),
		"keys": map[string]any{
			k.rec.Hash: map[string]any{
				"id":        k.rec.ID,
				"name":      "alice laptop",
				"tier":      "premium",
				"createdAt": "2025-03-04T05:06:07Z",
				"revoked":   true,
				"revokedAt": "2025-03-04T05:07:07Z",
				"limit":     "30/minute:burst=50:quota=10000/month", // canonical form
				"expiresAt": "2026-01-02T02:04:05.0000006Z",         // in UTC
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("file content (-want +got):\n%s", diff)
	}
}

// TestFileStoreSeesOtherWriters: a store notices keys created and revoked
// through another store (another process, in real use) on its next call.
func TestFileStoreSeesOtherWriters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.json")
	reader := newFileStore(t, path, nil) // file missing at this point
	writer := newFileStore(t, path, nil)
	k := issue(t, "a", "authenticated", time.Now())

	if _, err := reader.Lookup(ctx, k.key); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("before Create: err = %v, want ErrNotFound", err)
	}
	if err := writer.Create(ctx, k.rec); err != nil {
		t.Fatal(err)
	}
	if got, err := reader.Lookup(ctx, k.key); err != nil || got.ID != k.rec.ID {
		t.Fatalf("after Create: Lookup = %+v, %v; want the record", got, err)
	}
	if err := writer.Revoke(ctx, k.rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Lookup(ctx, k.key); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("after Revoke: err = %v, want ErrNotFound", err)
	}
	// The reader, writing now, keeps the writer's changes.
	k2 := issue(t, "b", "premium", time.Now())
	if err := reader.Create(ctx, k2.rec); err != nil {
		t.Fatal(err)
	}
	got, err := writer.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Revoked || got[1].ID != k2.rec.ID {
		t.Errorf("List = %+v, want the revoked key then the new one", got)
	}
}

func TestFileStoreMissingFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newFileStore(t, filepath.Join(dir, "keys.json"), nil)
	got, err := s.List(ctx)
	if err != nil || len(got) != 0 {
		t.Errorf("List on a missing file = %v, %v; want empty, nil", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reading created the file (stat err = %v)", err)
	}

	noDir := newFileStore(t, filepath.Join(dir, "missing", "keys.json"), nil)
	if err := noDir.Create(ctx, issue(t, "a", "premium", time.Now()).rec); err == nil {
		t.Error("Create in a missing directory succeeded, want an error")
	}
	if _, err := apikey.NewFileStore(apikey.FileConfig{}); err == nil {
		t.Error("NewFileStore with an empty path succeeded, want an error")
	}
}

func TestFileStoreBadFiles(t *testing.T) {
	k := issue(t, "a", "premium", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	entry := func(fields string) string {
		return `{"version":1,"keys":{"` + k.rec.Hash + `":{` + fields + `}}}`
	}
	good := `"id":"` + k.rec.ID + `","name":"a","tier":"premium","createdAt":"2025-01-01T00:00:00Z","revoked":false`
	tests := []struct {
		name    string
		content string
		wantMsg string // "" when the file is fine
	}{
		{name: "good", content: entry(good)},
		{name: "empty file", content: ""},
		{name: "no keys", content: `{"version":1,"keys":{}}`},
		{name: "not JSON", content: "{", wantMsg: "not a key file"},
		{name: "a JSON array", content: "[]", wantMsg: "not a key file"},
		{name: "two objects", content: entry(good) + entry(good), wantMsg: "data after"},
		{name: "wrong version", content: `{"version":2,"keys":{}}`, wantMsg: "version 2"},
		{name: "missing version", content: `{"keys":{}}`, wantMsg: "version 0"},
		{name: "unknown field", content: entry(good + `,"revokd":true`), wantMsg: "revokd"},
		{name: "bad tier", content: entry(strings.Replace(good, "premium", "Pre mium", 1)), wantMsg: "tier"},
		{name: "bad id", content: entry(strings.Replace(good, k.rec.ID, "nope", 1)), wantMsg: "id"},
		{name: "revoked without time", content: entry(strings.Replace(good, `"revoked":false`, `"revoked":true`, 1)), wantMsg: "revoked-at"},
		{name: "bad hash", content: `{"version":1,"keys":{"abc":{` + good + `}}}`, wantMsg: "hash"},
		{name: "good limit and expiry", content: entry(good + `,"limit":"6/minute:burst=10","expiresAt":"2025-06-01T00:00:00+02:00"`)},
		{name: "limit that does not parse", content: entry(good + `,"limit":"6/fortnight"`), wantMsg: `limit: unknown period "fortnight"`},
		{name: "empty limit", content: entry(good + `,"limit":""`), wantMsg: "limit: empty"},
		{name: "limit that is not a string", content: entry(good + `,"limit":6`), wantMsg: "limit"},
		{name: "expiresAt that does not parse", content: entry(good + `,"expiresAt":"2025-06-01"`), wantMsg: "expiresAt is not an RFC 3339 time"},
		{name: "expiresAt before createdAt", content: entry(good + `,"expiresAt":"2024-06-01T00:00:00Z"`), wantMsg: "expires-at is not after created-at"},
		{
			name:    "duplicate id",
			content: `{"version":1,"keys":{"` + k.rec.Hash + `":{` + good + `},"` + apikey.Hash("other") + `":{` + good + `}}}`,
			wantMsg: "appears twice",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("NewFileStore: %v", err)
				}
				return
			}
			if err == nil || errors.Is(err, apikey.ErrNotFound) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("NewFileStore err = %v, want an error mentioning %q", err, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}
