package apikey_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
)

func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)) }

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
	open func(t *testing.T, clk *fakeclock.Clock) apikey.Admin
	// calls counts backend requests made so far (nil: not countable).
	calls func() int
	// lookupIsFull: Lookup returns the whole record (else ID, Tier, Hash,
	// Limit and ExpiresAt).
	lookupIsFull bool
	// corrupt overwrites one stored attribute of the record with the given
	// hash with a raw string, as a bad hand edit would.
	corrupt func(t *testing.T, s apikey.Admin, hash, attr, value string)
}

// lookupView is what h's Lookup returns of r.
func (h storeHarness) lookupView(r apikey.Record) apikey.Record {
	if h.lookupIsFull {
		return r
	}
	return apikey.Record{ID: r.ID, Tier: r.Tier, Hash: r.Hash, Limit: r.Limit, ExpiresAt: r.ExpiresAt}
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

	lookupView := h.lookupView

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

func mustPolicy(t *testing.T, s string) limiter.Policy {
	t.Helper()
	p, err := limiter.ParsePolicy(s)
	if err != nil {
		t.Fatalf("ParsePolicy(%q): %v", s, err)
	}
	return p
}

// testLimitsAndExpiry is the table of per-key limit and expiry behaviours
// every Admin shares. Each case starts from an empty store and one key
// created at the clock's start.
func testLimitsAndExpiry(t *testing.T, h storeHarness) {
	own := mustPolicy(t, "100/minute:burst=150:quota=10000/month")
	other := mustPolicy(t, "5/second")
	// A valid bucket whose period has no name: String renders "5/100ms",
	// which ParsePolicy rejects, so no store could read it back.
	unreadable := limiter.Policy{Limit: limiter.Limit{Rate: 5, Period: 100 * time.Millisecond, Burst: 5}}
	zero := limiter.Policy{}
	tests := []struct {
		name       string
		limit      limiter.Policy  // the key is created with it
		expiresIn  time.Duration   // ExpiresAt = CreatedAt + expiresIn; 0: never
		wantCreate error           // Create's error (then nothing else happens)
		revoke     bool            // revoke the key after creating it
		advance    time.Duration   // clock move after creating (and revoking)
		setLimit   *limiter.Policy // SetLimit after that
		setID      string          // SetLimit's id; "": the key's
		wantSet    error           // SetLimit's error
		corrupt    [2]string       // attribute and raw value stored over the record's
		wantLimit  limiter.Policy  // the record's limit in the end
		wantFound  error           // Lookup's error: nil, ErrNotFound, or errBackend for any other
		wantText   []string        // substrings of Lookup's and List's errors
	}{
		{name: "no limit, no expiry", wantLimit: zero},
		{name: "created with a limit", limit: own, wantLimit: own},
		{name: "created with an expiry, just before it", expiresIn: time.Hour, advance: time.Hour - time.Microsecond},
		{name: "expired at its ExpiresAt", limit: own, expiresIn: time.Hour, advance: time.Hour, wantLimit: own, wantFound: apikey.ErrNotFound},
		{name: "expired long ago", expiresIn: time.Hour, advance: 1000 * time.Hour, wantFound: apikey.ErrNotFound},
		{name: "set-limit on a key without one", setLimit: &own, wantLimit: own},
		{name: "set-limit replaces the limit", limit: own, setLimit: &other, wantLimit: other},
		{name: "set-limit with the zero policy clears it", limit: own, setLimit: &zero, wantLimit: zero},
		{name: "clearing a key without a limit", setLimit: &zero, wantLimit: zero},
		{name: "set-limit on an expired key is allowed", expiresIn: time.Hour, advance: 2 * time.Hour, setLimit: &own, wantLimit: own, wantFound: apikey.ErrNotFound},
		{name: "set-limit on an unknown id", limit: own, setLimit: &other, setID: "key_zzzzzzzzzzzzzzzz", wantSet: apikey.ErrNotFound, wantLimit: own},
		{name: "set-limit on a malformed id", setLimit: &other, setID: "nope", wantSet: apikey.ErrNotFound},
		{name: "set-limit on a revoked key", limit: own, revoke: true, setLimit: &other, wantSet: apikey.ErrRevoked, wantLimit: own, wantFound: apikey.ErrNotFound},
		{name: "set-limit with a policy stores cannot keep", setLimit: &unreadable, wantSet: apikey.ErrInvalidRecord},
		{name: "create with a policy stores cannot keep", limit: unreadable, wantCreate: apikey.ErrInvalidRecord},
		{name: "create expiring when created", expiresIn: -time.Second, wantCreate: apikey.ErrInvalidRecord},
		{name: "stored limit that does not parse", corrupt: [2]string{"limit", "7/fortnight"}, wantFound: errBackend, wantText: []string{"limit", "fortnight"}},
		{name: "stored limit that is empty", corrupt: [2]string{"limit", ""}, wantFound: errBackend, wantText: []string{"limit"}},
		{name: "stored expiresAt that does not parse", corrupt: [2]string{"expiresAt", "tomorrow"}, wantFound: errBackend, wantText: []string{"expiresAt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clk := newClock()
			s := h.open(t, clk)
			k := issue(t, "k", "authenticated", clk.Now())
			k.rec.Limit = tt.limit
			if tt.expiresIn != 0 {
				k.rec.ExpiresAt = k.rec.CreatedAt.Add(tt.expiresIn)
			}
			kc := &keyChecker{keys: []string{k.key}}
			defer func() {
				if len(kc.errs) > 0 {
					kc.check(t)
				}
			}()

			err := kc.add(s.Create(ctx, k.rec))
			if !errors.Is(err, tt.wantCreate) || (tt.wantCreate == nil && err != nil) {
				t.Fatalf("Create err = %v, want %v", err, tt.wantCreate)
			}
			if tt.wantCreate != nil {
				if got, err := s.List(ctx); err != nil || len(got) != 0 {
					t.Errorf("List after a failed Create = %v, %v; want nothing", got, err)
				}
				return
			}
			want := k.rec
			if tt.revoke {
				if err := s.Revoke(ctx, k.rec.ID); err != nil {
					t.Fatalf("Revoke: %v", err)
				}
				want.Revoked, want.RevokedAt = true, clk.Now()
			}
			clk.Advance(tt.advance)
			if tt.setLimit != nil {
				id := tt.setID
				if id == "" {
					id = k.rec.ID
				}
				err := kc.add(s.SetLimit(ctx, id, *tt.setLimit))
				if !errors.Is(err, tt.wantSet) || (tt.wantSet == nil && err != nil) {
					t.Fatalf("SetLimit err = %v, want %v", err, tt.wantSet)
				}
			}
			if tt.corrupt[0] != "" {
				h.corrupt(t, s, k.rec.Hash, tt.corrupt[0], tt.corrupt[1])
			}
			want.Limit = tt.wantLimit

			got, err := s.Lookup(ctx, k.key)
			kc.add(err)
			switch {
			case tt.wantFound == errBackend:
				if err == nil || errors.Is(err, apikey.ErrNotFound) {
					t.Fatalf("Lookup err = %v, want a store error (not ErrNotFound)", err)
				}
			case !errors.Is(err, tt.wantFound) || (tt.wantFound == nil && err != nil):
				t.Fatalf("Lookup err = %v, want %v", err, tt.wantFound)
			case err == nil:
				if diff := cmp.Diff(h.lookupView(want), got); diff != "" {
					t.Errorf("Lookup (-want +got):\n%s", diff)
				}
			}
			list, listErr := s.List(ctx)
			kc.add(listErr)
			if tt.wantFound == errBackend {
				for _, e := range []error{err, listErr} {
					if e == nil {
						t.Fatal("List succeeded, want the store error")
					}
					for _, sub := range append([]string{k.rec.ID}, tt.wantText...) {
						if !strings.Contains(e.Error(), sub) {
							t.Errorf("error %q does not mention %q", e, sub)
						}
					}
				}
				return
			}
			if listErr != nil {
				t.Fatalf("List: %v", listErr)
			}
			if diff := cmp.Diff([]apikey.Record{want}, list); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
		})
	}
}

// errBackend stands for "any error but ErrNotFound" in test tables.
var errBackend = errors.New("a store error")
