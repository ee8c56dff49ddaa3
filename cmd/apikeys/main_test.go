package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/testutil/dynamotest"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// mustRun runs args and fails the test unless they exit 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := runCLI(t, args...)
	if r.code != 0 {
		t.Fatalf("apikeys %s: exit %d, stderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

type created struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	Tier      string `json:"tier"`
	Name      string `json:"name"`
	Limit     string `json:"limit,omitempty"`
	ExpiresAt string `json:"expiresAt,omitempty"`
}

func decodeCreated(t *testing.T, out string) created {
	t.Helper()
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("create printed %q, want exactly one JSON line", out)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var c created
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("create output %q: %v", out, err)
	}
	return c
}

// decodeList parses list output, one object per line, with exactly the
// documented fields; it also returns the raw lines.
func decodeList(t *testing.T, out string) ([]listed, []string) {
	t.Helper()
	var recs []listed
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if out == "" {
		return nil, nil
	}
	for _, line := range lines {
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var l listed
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("list line %q: %v", line, err)
		}
		recs = append(recs, l)
	}
	return recs, lines
}

// testLifecycle drives create -> list -> revoke -> list through run, with
// lookups through store to check the keys really work (and then stop).
func testLifecycle(t *testing.T, where []string, store apikey.Store) {
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	// args puts the store flags right after the command, before the rest.
	args := func(cmd string, a ...string) []string {
		return append(append([]string{cmd}, where...), a...)
	}

	alice := decodeCreated(t, mustRun(t, args("create", "--tier", "premium", "--name", "alice laptop")...))
	bob := decodeCreated(t, mustRun(t, args("create", "--tier", "authenticated", "--name", "bob <ci>")...))
	carol := decodeCreated(t, mustRun(t, args("create", "--tier", "gold", "--allow-custom-tier", "--name", "carol")...))
	dave := decodeCreated(t, mustRun(t, args("create", "--tier", "authenticated", "--name", "dave",
		"--limit", " 100/Minute:quota=10000/month:burst=150 ", "--expires", "2999-01-01T00:30:00.5+01:00")...))
	const daveLimit, daveExpires = "100/minute:burst=150:quota=10000/month", "2998-12-31T23:30:00.5Z"
	for _, c := range []struct {
		got  created
		want created
	}{
		{alice, created{ID: alice.ID, Key: alice.Key, Tier: "premium", Name: "alice laptop"}},
		{bob, created{ID: bob.ID, Key: bob.Key, Tier: "authenticated", Name: "bob <ci>"}},
		{carol, created{ID: carol.ID, Key: carol.Key, Tier: "gold", Name: "carol"}},
		{dave, created{ID: dave.ID, Key: dave.Key, Tier: "authenticated", Name: "dave", Limit: daveLimit, ExpiresAt: daveExpires}},
	} {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("create output (-want +got):\n%s", diff)
		}
		if !apikey.ValidFormat(c.got.Key) || !apikey.ValidID(c.got.ID) {
			t.Errorf("create printed a malformed key or id (id %q)", c.got.ID)
		}
		rec, err := store.Lookup(ctx, c.got.Key)
		gotExpires := ""
		if !rec.ExpiresAt.IsZero() {
			gotExpires = rec.ExpiresAt.Format(time.RFC3339Nano)
		}
		if err != nil || rec.ID != c.got.ID || rec.Tier != c.got.Tier || rec.Limit.String() != c.want.Limit || gotExpires != c.want.ExpiresAt {
			t.Errorf("Lookup of the created key = %+v, %v; want id %s tier %s limit %q expiresAt %q",
				rec, err, c.got.ID, c.got.Tier, c.want.Limit, c.want.ExpiresAt)
		}
	}

	out := mustRun(t, args("list")...)
	for _, k := range []created{alice, bob, carol, dave} {
		if strings.Contains(out, k.Key) || strings.Contains(out, apikey.Hash(k.Key)) {
			t.Errorf("list shows a key or a hash: %s", out)
		}
	}
	got, lines := decodeList(t, out)
	if len(got) != 4 {
		t.Fatalf("list printed %d records, want 4:\n%s", len(got), out)
	}
	for i, want := range []created{alice, bob, carol, dave} {
		g := got[i]
		gotExpires := ""
		if !g.ExpiresAt.IsZero() {
			gotExpires = g.ExpiresAt.Format(time.RFC3339Nano)
		}
		if g.ID != want.ID || g.Name != want.Name || g.Tier != want.Tier || g.Revoked || !g.RevokedAt.IsZero() ||
			g.Limit != want.Limit || gotExpires != want.ExpiresAt || g.Expired {
			t.Errorf("list[%d] = %+v, want %+v not revoked, not expired", i, g, want)
		}
		if g.CreatedAt.Before(start) || g.CreatedAt.After(time.Now()) {
			t.Errorf("list[%d].createdAt = %v, want about now", i, g.CreatedAt)
		}
	}

	if strings.Contains(lines[0], "limit") || strings.Contains(lines[0], "expire") {
		t.Errorf("limit and expiresAt should appear only when set:\n%s", lines[0])
	}

	// set-limit gives alice a limit and clears dave's.
	for _, c := range []struct {
		args []string
		want string
		key  string
	}{
		{args("set-limit", "--limit", "5/SECOND", alice.ID), `{"id":"` + alice.ID + `","limit":"5/second"}`, alice.Key},
		{args("set-limit", "--clear", dave.ID), `{"id":"` + dave.ID + `","limit":null}`, dave.Key},
	} {
		if got := mustRun(t, c.args...); got != c.want+"\n" {
			t.Errorf("apikeys %v printed %q, want %q", c.args, got, c.want)
		}
	}
	if rec, err := store.Lookup(ctx, alice.Key); err != nil || rec.Limit.String() != "5/second" {
		t.Errorf("Lookup after set-limit = %+v, %v; want limit 5/second", rec, err)
	}
	if rec, err := store.Lookup(ctx, dave.Key); err != nil || !rec.Limit.IsZero() {
		t.Errorf("Lookup after set-limit --clear = %+v, %v; want no limit", rec, err)
	}

	revokeOut := mustRun(t, args("revoke", bob.ID)...)
	if want := `{"id":"` + bob.ID + `","revoked":true}` + "\n"; revokeOut != want {
		t.Errorf("revoke printed %q, want %q", revokeOut, want)
	}
	if _, err := store.Lookup(ctx, bob.Key); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("Lookup of the revoked key: err = %v, want ErrNotFound", err)
	}
	if _, err := store.Lookup(ctx, alice.Key); err != nil {
		t.Errorf("Lookup of alice's key after revoking bob's: %v", err)
	}
	got, lines = decodeList(t, mustRun(t, args("list")...))
	if len(got) != 4 || !got[1].Revoked || got[1].RevokedAt.Before(got[1].CreatedAt) || got[0].Revoked || got[2].Revoked {
		t.Errorf("list after revoke = %+v, want only bob's key revoked", got)
	}
	if len(got) == 4 && (got[0].Limit != "5/second" || got[3].Limit != "") {
		t.Errorf("list after set-limit: limits %q and %q, want 5/second and none", got[0].Limit, got[3].Limit)
	}
	if len(lines) == 4 && (strings.Contains(lines[0], "revokedAt") || !strings.Contains(lines[1], `"revokedAt"`)) {
		t.Errorf("revokedAt should appear only on revoked keys:\n%s", strings.Join(lines, "\n"))
	}

	// Unknown IDs and revoked keys fail (exit 1) and say so.
	for _, c := range []struct {
		args []string
		want string
	}{
		{args("revoke", "key_aaaaaaaaaaaaaaaa"), "no key with ID key_aaaaaaaaaaaaaaaa"},
		{args("set-limit", "--limit", "1/second", "key_aaaaaaaaaaaaaaaa"), "set-limit: no key with ID key_aaaaaaaaaaaaaaaa"},
		{args("set-limit", "--clear", bob.ID), "set-limit: the key with ID " + bob.ID + " is revoked"},
	} {
		r := runCLI(t, c.args...)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Errorf("apikeys %v = %+v, want exit 1 and %q", c.args, r, c.want)
		}
	}
	var r result
	// A key given instead of an ID is refused without being echoed.
	r = runCLI(t, args("revoke", alice.Key)...)
	if r.code != 2 || strings.Contains(r.stderr+r.stdout, alice.Key) {
		t.Errorf("revoke with a key: exit %d, output contains the key: %v", r.code, strings.Contains(r.stderr+r.stdout, alice.Key))
	}
}

func TestLifecycleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json") // missing: create makes it
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	testLifecycle(t, []string{"--file", path}, store)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", info.Mode().Perm())
	}
}

// TestLifecycleTable runs the CLI against dynalite through the default AWS
// configuration, so it also shows that AWS_ENDPOINT_URL_DYNAMODB is honoured.
func TestLifecycleTable(t *testing.T) {
	endpoint := dynamotest.Start(t)
	dynamotest.SetEnv(t, endpoint)
	const table = "api-keys-cli"

	out := mustRun(t, "create-table", "--table", table)
	if want := `{"status":"ACTIVE","table":"api-keys-cli"}` + "\n"; out != want {
		t.Errorf("create-table printed %q, want %q", out, want)
	}
	if r := runCLI(t, "create-table", "--table", table); r.code != 1 {
		t.Errorf("create-table of an existing table: exit %d, want 1", r.code)
	}

	store, err := apikey.NewDynamoStore(apikey.DynamoConfig{Client: dynamotest.Client(t, endpoint), Table: table})
	if err != nil {
		t.Fatal(err)
	}
	testLifecycle(t, []string{"--table", table}, store)

	if r := runCLI(t, "list", "--table", "no-such-table"); r.code != 1 || !strings.Contains(r.stderr, "apikeys: ") {
		t.Errorf("list of a missing table = %+v, want exit 1 with a message", r)
	}
}

// TestListExpiry: list shows expiresAt, and expired: true once it has
// passed (the keys are stored directly: create refuses a past --expires).
func TestListExpiry(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.json")
	store, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	keys := []struct {
		name    string
		expires time.Time
		want    string // the list line's end, after "revoked":false
	}{
		{name: "expired", expires: t0.Add(24 * time.Hour), want: `,"expiresAt":"2020-01-03T03:04:05Z","expired":true}`},
		{name: "expires later", expires: time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC), want: `,"expiresAt":"2999-01-01T00:00:00Z"}`},
		{name: "never expires", want: `}`},
	}
	var want []string
	for i, k := range keys {
		_, rec, err := apikey.New(k.name, "premium", t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		rec.ExpiresAt = k.expires
		if err := store.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf(`{"id":%q,"name":%q,"tier":"premium","createdAt":%q,"revoked":false%s`,
			rec.ID, k.name, rec.CreatedAt.Format(time.RFC3339), k.want))
	}
	_, got := decodeList(t, mustRun(t, "list", "--file", path))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
}

func TestNoRegion(t *testing.T) {
	endpoint := dynamotest.Start(t)
	dynamotest.SetEnv(t, endpoint)
	t.Setenv("AWS_REGION", "")
	_ = os.Unsetenv("AWS_REGION")
	r := runCLI(t, "list", "--table", "t-region")
	if r.code != 1 || !strings.Contains(r.stderr, "AWS_REGION") {
		t.Errorf("list without a region = %+v, want exit 1 mentioning AWS_REGION", r)
	}
	if r := runCLI(t, "create-table", "--table", "t-region", "--region", "us-east-1"); r.code != 0 {
		t.Errorf("create-table --region: exit %d, stderr %s", r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	key, _, _, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	create := func(extra ...string) []string {
		return append([]string{"create", "--tier", "premium", "--name", "a", "--file", file}, extra...)
	}
	tests := []struct {
		name    string
		args    []string
		wantMsg string
		secret  string // must not appear in the output
	}{
		{name: "no command", args: nil, wantMsg: "missing command"},
		{name: "unknown command", args: []string{"delete"}, wantMsg: `unknown command "delete"`},
		{name: "unknown flag", args: []string{"list", "--fil", file}, wantMsg: "fil"},
		{name: "neither file nor table", args: []string{"list"}, wantMsg: "exactly one of --file and --table"},
		{name: "both file and table", args: []string{"list", "--file", file, "--table", "t"}, wantMsg: "exactly one"},
		{name: "region with file", args: []string{"list", "--file", file, "--region", "eu-west-1"}, wantMsg: "--region goes with --table"},
		{name: "create without tier", args: []string{"create", "--name", "a", "--file", file}, wantMsg: "needs --tier"},
		{name: "create without name", args: []string{"create", "--tier", "premium", "--file", file}, wantMsg: "needs --name"},
		{name: "blank name", args: []string{"create", "--tier", "premium", "--name", "  ", "--file", file}, wantMsg: "needs --name"},
		{name: "anonymous tier", args: []string{"create", "--tier", "anonymous", "--name", "a", "--file", file}, wantMsg: "without a key"},
		{name: "custom tier without the flag", args: []string{"create", "--tier", "gold", "--name", "a", "--file", file}, wantMsg: "--allow-custom-tier"},
		{name: "malformed tier", args: []string{"create", "--tier", "Gold!", "--allow-custom-tier", "--name", "a", "--file", file}, wantMsg: "--tier must be"},
		{name: "create with an argument", args: []string{"create", "--tier", "premium", "--name", "a", "--file", file, "extra"}, wantMsg: "no arguments"},
		{name: "flag after argument", args: []string{"create", "--tier", "premium", "x", "--name", "a", "--file", file}, wantMsg: "flags come before arguments (found --name after one)"},
		{name: "list with an argument", args: []string{"list", "--file", file, "x"}, wantMsg: "no arguments"},
		{name: "revoke without id", args: []string{"revoke", "--file", file}, wantMsg: "one key ID"},
		{name: "revoke with flags after the id", args: []string{"revoke", "key_aaaaaaaaaaaaaaaa", "--file", file}, wantMsg: "flags come before arguments"},
		{name: "revoke with a malformed id", args: []string{"revoke", "--file", file, "42"}, wantMsg: `"42" is not a key ID`},
		{name: "limit with an unknown period", args: create("--limit", "10/fortnight"), wantMsg: `--limit: unknown period "fortnight" (want second, minute, hour or day)`},
		{name: "limit with an unknown option", args: create("--limit", "10/minute:brust=5"), wantMsg: `--limit: unknown option "brust=5"`},
		{name: "limit with a bad quota period", args: create("--limit", "10/minute:quota=5/year"), wantMsg: `--limit: unknown quota period "year"`},
		{name: "limit with a zero rate", args: create("--limit", "0/minute"), wantMsg: "--limit: rate must be at least 1"},
		{name: "empty limit", args: create("--limit", ""), wantMsg: "--limit is empty"},
		{name: "key given as a limit", args: create("--limit", key), wantMsg: "--limit: want RATE/PERIOD", secret: key},
		{name: "expires without a time", args: create("--expires", "2999-01-31"), wantMsg: `--expires: "2999-01-31" is not an RFC 3339 time`},
		{name: "expires without a zone", args: create("--expires", "2999-01-31T00:00:00"), wantMsg: "is not an RFC 3339 time"},
		{name: "expires in the past", args: create("--expires", "2020-01-01T00:00:00+02:00"), wantMsg: "--expires: 2020-01-01T00:00:00+02:00 is not in the future"},
		{name: "empty expires", args: create("--expires", ""), wantMsg: `--expires: "" is not an RFC 3339 time`},
		{name: "key given as an expiry", args: create("--expires", key), wantMsg: "--expires: want an RFC 3339 time", secret: key},
		{name: "clear on create", args: create("--clear"), wantMsg: "-clear"},
		{name: "set-limit without limit or clear", args: []string{"set-limit", "--file", file, "key_aaaaaaaaaaaaaaaa"}, wantMsg: "exactly one of --limit and --clear"},
		{name: "set-limit with limit and clear", args: []string{"set-limit", "--file", file, "--clear", "--limit", "1/second", "key_aaaaaaaaaaaaaaaa"}, wantMsg: "exactly one of --limit and --clear"},
		{name: "set-limit with a bad limit", args: []string{"set-limit", "--file", file, "--limit", "1/second:burst=x", "key_aaaaaaaaaaaaaaaa"}, wantMsg: `--limit: burst "x" is not a whole number`},
		{name: "set-limit without id", args: []string{"set-limit", "--file", file, "--clear"}, wantMsg: "set-limit takes one key ID"},
		{name: "set-limit with a malformed id", args: []string{"set-limit", "--file", file, "--clear", "42"}, wantMsg: `set-limit: "42" is not a key ID`},
		{name: "set-limit with a key for an id", args: []string{"set-limit", "--file", file, "--clear", key}, wantMsg: "not the key itself", secret: key},
		{name: "expires on set-limit", args: []string{"set-limit", "--file", file, "--expires", "2999-01-01T00:00:00Z", "key_aaaaaaaaaaaaaaaa"}, wantMsg: "-expires"},
		{name: "create-table without table", args: []string{"create-table"}, wantMsg: "needs --table"},
		{name: "create-table with file", args: []string{"create-table", "--table", "t", "--file", file}, wantMsg: "needs --table (and no --file)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != 2 {
				t.Errorf("exit = %d, want 2", r.code)
			}
			if !strings.Contains(r.stderr, tt.wantMsg) || !strings.Contains(r.stderr, "usage:") {
				t.Errorf("stderr = %q, want %q and the usage", r.stderr, tt.wantMsg)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if tt.secret != "" && strings.Contains(r.stderr, tt.secret) {
				t.Errorf("stderr shows the key: %q", r.stderr)
			}
		})
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a usage error wrote the key file (stat: %v)", err)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"list", "-h"}} {
		r := runCLI(t, args...)
		if r.code != 0 || !strings.Contains(r.stderr, "usage:") {
			t.Errorf("apikeys %v = %+v, want exit 0 and the usage", args, r)
		}
	}
}

func TestBrokenKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"list", "--file", path},
		{"create", "--tier", "premium", "--name", "a", "--file", path},
		{"revoke", "--file", path, "key_aaaaaaaaaaaaaaaa"},
	} {
		r := runCLI(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, path) || r.stdout != "" {
			t.Errorf("apikeys %v = %+v, want exit 1 naming the file, nothing on stdout", args, r)
		}
	}
	if data, _ := os.ReadFile(path); string(data) != "not json" {
		t.Error("a failed command rewrote the broken file")
	}
}
