package apikey_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
)

// clock is a settable clock for stores and caches.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// issued is a key with its record, as cmd/apikeys create makes them.
type issued struct {
	key string
	rec apikey.Record
}

func issue(t *testing.T, name, tier string, at time.Time) issued {
	t.Helper()
	key, rec, err := apikey.New(name, tier, at)
	if err != nil {
		t.Fatalf("apikey.New: %v", err)
	}
	return issued{key: key, rec: rec}
}

// wellFormedUnknownKey returns a key that passes the format check but was
// never stored.
func wellFormedUnknownKey(t *testing.T) string {
	t.Helper()
	key, _, _, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// malformedKeys are keys a store must refuse without a backend call.
func malformedKeys(valid string) map[string]string {
	last := valid[len(valid)-1]
	swapped := byte('a')
	if last == 'a' {
		swapped = 'b'
	}
	return map[string]string{
		"empty":          "",
		"garbage":        "hello",
		"wrong prefix":   "sk_" + valid[3:],
		"truncated":      valid[:len(valid)-1],
		"extra char":     valid + "x",
		"bad checksum":   valid[:len(valid)-1] + string(swapped),
		"sql-ish":        "bg_' OR 1=1 --",
		"hash of a key":  apikey.Hash(valid),
		"trailing space": valid[:len(valid)-1] + " ",
	}
}

// keyChecker collects every error a test provokes and checks at the end that
// no plaintext key appears in any of them.
type keyChecker struct {
	keys []string
	errs []error
}

func (k *keyChecker) add(err error) error {
	if err != nil {
		k.errs = append(k.errs, err)
	}
	return err
}

func (k *keyChecker) check(t *testing.T) {
	t.Helper()
	if len(k.errs) == 0 {
		t.Fatal("keyChecker: no errors were collected; the check would be vacuous")
	}
	for _, err := range k.errs {
		for _, key := range k.keys {
			if key != "" && strings.Contains(err.Error(), key) {
				t.Errorf("error %q contains a plaintext key", err)
			}
		}
	}
}

// storeHarness describes an Admin implementation under test.
type storeHarness struct {
	// open returns a fresh, empty store using clk for revocation times.
	open func(t *testing.T, clk *clock) apikey.Admin
	// calls counts backend requests made so far (nil: not countable).
	calls func() int
	// lookupIsFull: Lookup returns the whole record (else ID, Tier, Hash).
	lookupIsFull bool
}

// testAdmin runs the behaviour every Admin must share: create, lookup,
// list, revoke, unknown, revoked and malformed keys, conflicts, and no keys
// in errors.
func testAdmin(t *testing.T, h storeHarness) {
	ctx := context.Background()
	clk := newClock()
	s := h.open(t, clk)
	t0 := clk.Now()
	alice := issue(t, "alice", "premium", t0)
	bob := issue(t, "bob", "authenticated", t0.Add(time.Second))
	carol := issue(t, "carol", "authenticated", t0.Add(2*time.Second))
	unknown := wellFormedUnknownKey(t)
	kc := &keyChecker{keys: []string{alice.key, bob.key, carol.key, unknown}}
	defer kc.check(t)

	// Created out of order: List sorts by creation time.
	for _, k := range []issued{carol, alice, bob} {
		if err := kc.add(s.Create(ctx, k.rec)); err != nil {
			t.Fatalf("Create(%s): %v", k.rec.Name, err)
		}
	}

	lookupView := func(r apikey.Record) apikey.Record {
		if h.lookupIsFull {
			return r
		}
		return apikey.Record{ID: r.ID, Tier: r.Tier, Hash: r.Hash}
	}

	t.Run("lookup", func(t *testing.T) {
		tests := []struct {
			name    string
			key     string
			want    apikey.Record
			wantErr error
		}{
			{name: "alice", key: alice.key, want: lookupView(alice.rec)},
			{name: "bob", key: bob.key, want: lookupView(bob.rec)},
			{name: "unknown well-formed key", key: unknown, wantErr: apikey.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.Lookup(ctx, tt.key)
				kc.add(err)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
					t.Fatalf("Lookup err = %v, want %v", err, tt.wantErr)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Lookup (-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("malformed keys make no backend call", func(t *testing.T) {
		for name, key := range malformedKeys(alice.key) {
			t.Run(name, func(t *testing.T) {
				before := 0
				if h.calls != nil {
					before = h.calls()
				}
				_, err := s.Lookup(ctx, key)
				kc.add(err)
				if !errors.Is(err, apikey.ErrNotFound) {
					t.Fatalf("Lookup err = %v, want ErrNotFound", err)
				}
				if h.calls != nil {
					if got := h.calls() - before; got != 0 {
						t.Errorf("backend calls = %d, want 0", got)
					}
				}
			})
		}
	})

	t.Run("create conflicts and invalid records", func(t *testing.T) {
		again := alice.rec
		again.ID = bob.rec.ID // same hash wins over the id
		badTier := issue(t, "x", "premium", t0).rec
		badTier.Tier = "Premium Plus"
		tests := []struct {
			name    string
			rec     apikey.Record
			wantErr error
		}{
			{name: "same record twice", rec: alice.rec, wantErr: apikey.ErrExists},
			{name: "same hash, other id", rec: again, wantErr: apikey.ErrExists},
			{name: "invalid tier", rec: badTier, wantErr: apikey.ErrInvalidRecord},
			{name: "empty record", rec: apikey.Record{}, wantErr: apikey.ErrInvalidRecord},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := kc.add(s.Create(ctx, tt.rec)); !errors.Is(err, tt.wantErr) {
					t.Fatalf("Create err = %v, want %v", err, tt.wantErr)
				}
			})
		}
	})

	t.Run("list", func(t *testing.T) {
		got, err := s.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if diff := cmp.Diff([]apikey.Record{alice.rec, bob.rec, carol.rec}, got); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		clk.Advance(time.Hour)
		revokedAt := clk.Now()
		if err := s.Revoke(ctx, bob.rec.ID); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if _, err := s.Lookup(ctx, bob.key); !errors.Is(kc.add(err), apikey.ErrNotFound) {
			t.Fatalf("Lookup of a revoked key: err = %v, want ErrNotFound", err)
		}
		// Revoking again succeeds and keeps the first time.
		clk.Advance(time.Hour)
		if err := s.Revoke(ctx, bob.rec.ID); err != nil {
			t.Fatalf("second Revoke: %v", err)
		}
		// A key pasted where an id belongs is refused without being echoed.
		for _, id := range []string{"key_zzzzzzzzzzzzzzzz", "", "not-an-id", alice.key} {
			if err := kc.add(s.Revoke(ctx, id)); !errors.Is(err, apikey.ErrNotFound) {
				t.Errorf("Revoke(%q) err = %v, want ErrNotFound", id, err)
			}
		}
		// Other keys are untouched.
		if got, err := s.Lookup(ctx, alice.key); err != nil || got.ID != alice.rec.ID {
			t.Errorf("Lookup(alice) after revoking bob = %+v, %v", got, err)
		}
		wantBob := bob.rec
		wantBob.Revoked, wantBob.RevokedAt = true, revokedAt
		got, err := s.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if diff := cmp.Diff([]apikey.Record{alice.rec, wantBob, carol.rec}, got); diff != "" {
			t.Errorf("List after revoke (-want +got):\n%s", diff)
		}
	})
}
