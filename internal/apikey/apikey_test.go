package apikey

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestGenerateFormat(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		key, hash, id, err := Generate()
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if len(key) != KeyLen || !strings.HasPrefix(key, Prefix) {
			t.Fatalf("key has length %d and prefix %q, want %d and %q", len(key), key[:3], KeyLen, Prefix)
		}
		if !ValidFormat(key) {
			t.Fatalf("ValidFormat(generated key) = false")
		}
		if got, want := hash, Hash(key); got != want {
			t.Fatalf("hash = %s, want Hash(key) = %s", got, want)
		}
		if !ValidID(id) {
			t.Fatalf("ValidID(%q) = false", id)
		}
		if strings.Contains(key, id[len(IDPrefix):]) {
			t.Fatalf("id %q is visible in its key", id)
		}
		if seen[key] || seen[id] {
			t.Fatalf("repeated key or id after %d draws", i)
		}
		seen[key], seen[id] = true, true
	}
}

// TestSecretEncodingKeepsAllBits checks that the 43 base62 digits encode 32
// bytes without loss: the extreme values survive a round trip through
// math/big and distinct inputs give distinct digits.
func TestSecretEncodingKeepsAllBits(t *testing.T) {
	tests := []struct {
		name string
		in   [32]byte
	}{
		{name: "zero", in: [32]byte{}},
		{name: "all ones", in: [32]byte{0: 0xff, 1: 0xff, 2: 0xff, 3: 0xff, 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff, 8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff, 16: 0xff, 17: 0xff, 18: 0xff, 19: 0xff, 20: 0xff, 21: 0xff, 22: 0xff, 23: 0xff, 24: 0xff, 25: 0xff, 26: 0xff, 27: 0xff, 28: 0xff, 29: 0xff, 30: 0xff, 31: 0xff}},
		{name: "top bit only", in: [32]byte{0: 0x80}},
		{name: "low bit only", in: [32]byte{31: 1}},
	}
	got := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base62(tt.in[:], secretChars)
			if len(s) != secretChars {
				t.Fatalf("len = %d, want %d", len(s), secretChars)
			}
			if prev, dup := got[s]; dup {
				t.Fatalf("same digits as %s", prev)
			}
			got[s] = tt.name
			key := Prefix + s + checksum(s)
			if !ValidFormat(key) {
				t.Errorf("ValidFormat = false for an encoded %s secret", tt.name)
			}
		})
	}
	if got, want := base62([]byte{0xff, 0xff, 0xff, 0xff}, checksumChars), "4gfFC3"; got != want {
		t.Errorf("base62(max uint32) = %q, want %q", got, want)
	}
}

func TestHash(t *testing.T) {
	// SHA-256("test"), a published test vector.
	if got, want := Hash("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; got != want {
		t.Errorf("Hash(test) = %s, want %s", got, want)
	}
}

func TestValidFormat(t *testing.T) {
	key, _, _, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	body := key[len(Prefix) : len(Prefix)+secretChars]
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name string
		key  string
		want bool
	}{
		{name: "generated", key: key, want: true},
		{name: "empty", key: "", want: false},
		{name: "prefix only", key: Prefix, want: false},
		{name: "wrong prefix", key: "xx_" + key[3:], want: false},
		{name: "upper-case prefix", key: "BG_" + key[3:], want: false},
		{name: "one short", key: key[:len(key)-1], want: false},
		{name: "one long", key: key + "a", want: false},
		{name: "surrounding space", key: " " + key[:len(key)-1], want: false},
		{name: "non-base62 character", key: key[:10] + "-" + key[11:], want: false},
		{name: "non-ASCII character", key: key[:10] + "é" + key[12:], want: false},
		{name: "secret changed (checksum mismatch)", key: Prefix + flip(body, 5) + key[len(Prefix)+secretChars:], want: false},
		{name: "checksum changed", key: flip(key, len(key)-1), want: false},
		{name: "hand-made", key: Prefix + strings.Repeat("a", secretChars) + checksum(strings.Repeat("a", secretChars)), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidFormat(tt.key); got != tt.want {
				t.Errorf("ValidFormat = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{name: "good", id: "key_abcdefghijklmnop", want: true},
		{name: "digits 2-7", id: "key_234567abcdefghij", want: true},
		{name: "empty", id: "", want: false},
		{name: "no prefix", id: "abcdefghijklmnopqrst", want: false},
		{name: "short", id: "key_abc", want: false},
		{name: "upper case", id: "key_ABCDEFGHIJKLMNOP", want: false},
		{name: "digit 1", id: "key_1bcdefghijklmnop", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidID(tt.id); got != tt.want {
				t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestValidateRecord(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	good := Record{ID: "key_abcdefghijklmnop", Name: "alice", Tier: "premium", Hash: Hash("x"), CreatedAt: t0}
	with := func(f func(*Record)) Record { r := good; f(&r); return r }
	tests := []struct {
		name    string
		rec     Record
		wantMsg string // "" for valid
	}{
		{name: "good", rec: good},
		{name: "empty name", rec: with(func(r *Record) { r.Name = "" })},
		{name: "revoked with time", rec: with(func(r *Record) { r.Revoked, r.RevokedAt = true, t0 })},
		{name: "bad id", rec: with(func(r *Record) { r.ID = "nope" }), wantMsg: "id"},
		{name: "upper-case hash", rec: with(func(r *Record) { r.Hash = strings.ToUpper(r.Hash) }), wantMsg: "hash"},
		{name: "short hash", rec: with(func(r *Record) { r.Hash = r.Hash[:10] }), wantMsg: "hash"},
		{name: "empty tier", rec: with(func(r *Record) { r.Tier = "" }), wantMsg: "tier"},
		{name: "tier with space", rec: with(func(r *Record) { r.Tier = "pre mium" }), wantMsg: "tier"},
		{name: "long tier", rec: with(func(r *Record) { r.Tier = strings.Repeat("t", MaxTierLen+1) }), wantMsg: "tier"},
		{name: "long name", rec: with(func(r *Record) { r.Name = strings.Repeat("n", MaxNameLen+1) }), wantMsg: "name"},
		{name: "control character in name", rec: with(func(r *Record) { r.Name = "a\nb" }), wantMsg: "name"},
		{name: "invalid UTF-8 name", rec: with(func(r *Record) { r.Name = "\xff" }), wantMsg: "name"},
		{name: "zero created-at", rec: with(func(r *Record) { r.CreatedAt = time.Time{} }), wantMsg: "created-at"},
		{name: "revoked without time", rec: with(func(r *Record) { r.Revoked = true }), wantMsg: "revoked-at"},
		{name: "time without revoked", rec: with(func(r *Record) { r.RevokedAt = t0 }), wantMsg: "revoked-at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRecord(tt.rec)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("ValidateRecord = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("ValidateRecord = %v, want ErrInvalidRecord naming %q", err, tt.wantMsg)
			}
		})
	}
}

func TestNew(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	key, rec, err := New("bob", "authenticated", now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	want := Record{ID: rec.ID, Name: "bob", Tier: "authenticated", Hash: Hash(key), CreatedAt: time.Date(2025, 1, 2, 2, 4, 5, 123456000, time.UTC)}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if _, _, err := New("bob", "Premium!", now); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("New with a bad tier: err = %v, want ErrInvalidRecord", err)
	}
}

// TestLookupComparesStoredHash drives the shared lookup algorithm with
// finders that misbehave: the record a backend returns is trusted only when
// its stored hash equals the computed one (compared in constant time) and it
// is not revoked; a malformed key never reaches the backend.
func TestLookupComparesStoredHash(t *testing.T) {
	key, rec, err := New("n", "premium", time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := New("n", "premium", time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	backendDown := errors.New("backend down")
	revoked := rec
	revoked.Revoked, revoked.RevokedAt = true, time.Unix(2, 0)
	tests := []struct {
		name      string
		key       string
		found     Record
		findErr   error
		wantRec   Record
		wantErr   error
		wantCalls int
	}{
		{name: "match", key: key, found: rec, wantRec: rec, wantCalls: 1},
		{name: "stored hash differs", key: key, found: Record{ID: rec.ID, Tier: rec.Tier, Hash: Hash(other)}, wantErr: ErrNotFound, wantCalls: 1},
		{name: "stored hash empty", key: key, found: Record{ID: rec.ID, Tier: rec.Tier}, wantErr: ErrNotFound, wantCalls: 1},
		{name: "stored hash upper-case", key: key, found: Record{ID: rec.ID, Tier: rec.Tier, Hash: strings.ToUpper(rec.Hash)}, wantErr: ErrNotFound, wantCalls: 1},
		{name: "revoked", key: key, found: revoked, wantErr: ErrNotFound, wantCalls: 1},
		{name: "not found", key: key, findErr: ErrNotFound, wantErr: ErrNotFound, wantCalls: 1},
		{name: "backend error passes through", key: key, findErr: backendDown, wantErr: backendDown, wantCalls: 1},
		{name: "malformed key", key: "bg_nope", found: rec, wantErr: ErrNotFound, wantCalls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			var gotHash string
			got, err := lookup(context.Background(), tt.key, time.Now, func(_ context.Context, h string) (Record, error) {
				calls++
				gotHash = h
				return tt.found, tt.findErr
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantRec, got); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
			if calls != tt.wantCalls {
				t.Errorf("backend calls = %d, want %d", calls, tt.wantCalls)
			}
			if calls > 0 && gotHash != Hash(tt.key) {
				t.Errorf("backend asked for %q, want the key's hash", gotHash)
			}
		})
	}
}
