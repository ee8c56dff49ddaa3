// Package apikey issues, hashes and looks up API keys.
//
// # Keys
//
// A key is "bg_" followed by 43 base62 characters carrying 256 random bits
// from crypto/rand and a 6-character base62 CRC-32 checksum of those 43
// characters: 52 characters in all, e.g.
//
//	bg_3kTMd9Qx...(43)...Vb1Qa7
//
// The prefix says nothing about the tier, so a leaked key does not advertise
// its worth. The checksum is not a secret and adds no security: it lets
// [ValidFormat] reject mistyped or made-up keys without a backend read (and
// lets secret scanners recognise real keys with few false positives).
//
// Only the SHA-256 of a key ([Hash], lowercase hex) is ever stored. A lookup
// validates the format, hashes the key, fetches the record indexed by that
// hash, and then compares the stored hash with the computed one using
// crypto/subtle.ConstantTimeCompare before trusting the record.
//
// Every key has an ID ("key_" + 16 base32 characters, 80 random bits,
// unrelated to the key). The ID is safe to log, to show, to use as the
// authorizer's principalId and as a rate-limit bucket key; the admin CLI
// revokes keys by ID.
//
// A record may carry the key's own limit ([Record.Limit], replacing its
// tier's bucket and quota) and an expiry ([Record.ExpiresAt]) after which
// the key is refused like a revoked one.
//
// # Stores
//
// [Store] is what the authorizer needs: Lookup by plaintext key. [Admin]
// adds Create, List, Revoke and SetLimit for cmd/apikeys. [FileStore] keeps
// records in a JSON file (API_KEYS_FILE, local use); [DynamoStore] in a
// DynamoDB table (API_KEYS_TABLE); [Cache] wraps any Store with
// per-container hit and miss TTLs and serves stale hits while the backend
// is down. A record is cached whole, limit included, so a new limit reaches
// a container within the hit TTL (60 s by default); expiry is checked on
// every lookup, cached or not.
//
// Errors never contain a plaintext key. Lookup returns [ErrNotFound] for a
// malformed, unknown, revoked or expired key (the caller answers 401) and
// any other error for a backend failure (the caller must not answer 401).
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bucketgate/bucketgate/internal/limiter"
)

// Key format constants.
const (
	// Prefix starts every key.
	Prefix = "bg_"
	// KeyLen is the length of a key in bytes (all ASCII).
	KeyLen = len(Prefix) + secretChars + checksumChars

	// IDPrefix starts every key ID.
	IDPrefix = "key_"

	secretBytes   = 32 // entropy of a key, bytes
	secretChars   = 43 // base62 digits for 256 bits: 62^43 > 2^256
	checksumChars = 6  // base62 digits for a CRC-32: 62^6 > 2^32
	idBytes       = 10 // entropy of an ID, bytes (80 bits)
	idLen         = len(IDPrefix) + 16
	hashLen       = sha256.Size * 2

	// MaxNameLen bounds a record's Name, in bytes.
	MaxNameLen = 200
	// MaxTierLen bounds a record's Tier, in bytes.
	MaxTierLen = 32
)

const base62Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotFound: the key is malformed, unknown, revoked or expired
	// (Lookup), or no key has the given ID (Revoke, SetLimit).
	ErrNotFound = errors.New("apikey: not found")
	// ErrRevoked: SetLimit was given the ID of a revoked key.
	ErrRevoked = errors.New("apikey: revoked")
	// ErrExists: Create found a record with the same hash or ID.
	ErrExists = errors.New("apikey: already exists")
	// ErrInvalidRecord: Create was given a record with a missing or
	// malformed field; the message names the field.
	ErrInvalidRecord = errors.New("apikey: invalid record")
)

// Record is what a store knows about one key. It never holds the key itself.
type Record struct {
	ID        string    // "key_..." (see package doc); safe to log
	Name      string    // free text for humans, at most MaxNameLen bytes; may be empty
	Tier      string    // rate-limit tier, e.g. "authenticated", "premium"
	Hash      string    // lowercase hex SHA-256 of the key (see Hash)
	CreatedAt time.Time // when the key was issued
	Revoked   bool      // a revoked key is never returned by Lookup
	RevokedAt time.Time // when it was revoked; zero unless Revoked

	// Limit is the key's own token bucket and quota, replacing its tier's
	// (the tier still decides premium routes and route limits). The zero
	// Policy means the tier's. When set it is one that limiter.ParsePolicy
	// reads back from its String form, which is how stores keep it.
	Limit limiter.Policy
	// ExpiresAt is the instant from which the key is refused like a revoked
	// one (Lookup answers ErrNotFound at and after it). Zero: never. When
	// set it is after CreatedAt.
	ExpiresAt time.Time
}

// Expired reports whether the key has expired at now: ExpiresAt is set and
// not after now.
func (r Record) Expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// Store finds the record of a plaintext key. Implementations are safe for
// concurrent use.
type Store interface {
	// Lookup returns the record of key. It returns ErrNotFound (wrapped or
	// not) when the key is malformed, unknown, revoked or expired, without a
	// backend call for a malformed key; any other error is a backend
	// failure. A record returned has at least ID, Tier, Hash, Limit and
	// ExpiresAt set; stores may leave the other fields zero (DynamoStore
	// reads only what the authorizer needs).
	Lookup(ctx context.Context, key string) (Record, error)
}

// Admin is a Store that can also issue, list and revoke keys and set their
// limits (cmd/apikeys).
type Admin interface {
	Store
	// Create stores rec. It never overwrites: a record with the same Hash
	// (or, where the store can tell cheaply, the same ID) gives ErrExists.
	// An invalid record gives ErrInvalidRecord.
	Create(ctx context.Context, rec Record) error
	// List returns every record, revoked ones included, oldest first (ties
	// by ID).
	List(ctx context.Context) ([]Record, error)
	// Revoke marks the key with the given ID revoked, effective for new
	// lookups at once (caches in front of the store keep serving it for
	// their hit TTL). Revoking a revoked key succeeds and keeps the first
	// RevokedAt. An unknown ID gives ErrNotFound.
	Revoke(ctx context.Context, id string) error
	// SetLimit gives the key with the given ID its own limit p, replacing
	// any it had; the zero Policy clears it (the key returns to its tier's
	// limit). Caches in front of the store serve the old limit for up to
	// their hit TTL. An unknown ID gives ErrNotFound, a revoked key
	// ErrRevoked, a Policy that stores cannot keep ErrInvalidRecord.
	SetLimit(ctx context.Context, id string, p limiter.Policy) error
}

// Hash returns the lowercase hex SHA-256 of key: the only form in which keys
// are stored.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Generate returns a new random key, its Hash and a new random ID. The
// plaintext key must be shown to its owner once and then forgotten.
func Generate() (key, hash, id string, err error) {
	var secret [secretBytes]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", "", fmt.Errorf("apikey: random key: %w", err)
	}
	body := base62(secret[:], secretChars)
	key = Prefix + body + checksum(body)
	id, err = NewID()
	if err != nil {
		return "", "", "", err
	}
	return key, Hash(key), id, nil
}

// NewID returns a new random key ID: IDPrefix and 16 lowercase base32
// characters (80 bits).
func NewID() (string, error) {
	var b [idBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("apikey: random id: %w", err)
	}
	return IDPrefix + idEncoding.EncodeToString(b[:]), nil
}

// New issues a key: it generates the key, its hash and ID, and returns the
// plaintext key with a validated record created at now (truncated to
// microseconds and in UTC, so that it survives every store unchanged). Pass
// the record to an Admin's Create.
func New(name, tier string, now time.Time) (key string, rec Record, err error) {
	key, hash, id, err := Generate()
	if err != nil {
		return "", Record{}, err
	}
	rec = Record{ID: id, Name: name, Tier: tier, Hash: hash, CreatedAt: now.UTC().Truncate(time.Microsecond)}
	if err := ValidateRecord(rec); err != nil {
		return "", Record{}, err
	}
	return key, rec, nil
}

// ValidFormat reports whether key is well-formed: the prefix, the length,
// base62 characters and a matching checksum. It is cheap and touches no
// store; a false result means the key cannot exist.
func ValidFormat(key string) bool {
	if len(key) != KeyLen || !strings.HasPrefix(key, Prefix) {
		return false
	}
	rest := key[len(Prefix):]
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(base62Digits, rest[i]) < 0 {
			return false
		}
	}
	var want [checksumChars]byte
	putChecksum(&want, rest[:secretChars])
	return subtle.ConstantTimeCompare(want[:], []byte(rest[secretChars:])) == 1
}

// ValidID reports whether id has the form NewID produces.
func ValidID(id string) bool {
	if len(id) != idLen || !strings.HasPrefix(id, IDPrefix) {
		return false
	}
	for _, c := range id[len(IDPrefix):] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ValidTier reports whether tier is a plausible tier name: 1 to MaxTierLen
// characters from [a-z0-9_-]. Which tiers exist is the authorizer's
// configuration (TIER_LIMITS), not this package's.
func ValidTier(tier string) bool {
	if tier == "" || len(tier) > MaxTierLen {
		return false
	}
	for _, c := range tier {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateRecord checks the fields a store relies on and returns an error
// wrapping ErrInvalidRecord that names the first bad field.
func ValidateRecord(rec Record) error {
	switch {
	case !ValidID(rec.ID):
		return fmt.Errorf("%w: id is not of the form %s + 16 base32 characters", ErrInvalidRecord, IDPrefix)
	case !validHash(rec.Hash):
		return fmt.Errorf("%w: hash is not 64 lowercase hex digits", ErrInvalidRecord)
	case !ValidTier(rec.Tier):
		return fmt.Errorf("%w: tier must be 1-%d characters of a-z, 0-9, _ and -", ErrInvalidRecord, MaxTierLen)
	case len(rec.Name) > MaxNameLen:
		return fmt.Errorf("%w: name is longer than %d bytes", ErrInvalidRecord, MaxNameLen)
	case !utf8.ValidString(rec.Name) || strings.ContainsFunc(rec.Name, unicode.IsControl):
		return fmt.Errorf("%w: name must be UTF-8 text without control characters", ErrInvalidRecord)
	case rec.CreatedAt.IsZero():
		return fmt.Errorf("%w: created-at is zero", ErrInvalidRecord)
	case rec.Revoked && rec.RevokedAt.IsZero():
		return fmt.Errorf("%w: revoked without revoked-at", ErrInvalidRecord)
	case !rec.Revoked && !rec.RevokedAt.IsZero():
		return fmt.Errorf("%w: revoked-at set on a key that is not revoked", ErrInvalidRecord)
	case !rec.ExpiresAt.IsZero() && !rec.ExpiresAt.After(rec.CreatedAt):
		return fmt.Errorf("%w: expires-at is not after created-at", ErrInvalidRecord)
	}
	return ValidateLimit(rec.Limit)
}

// ValidateLimit reports whether stores can keep p: the zero Policy, or one
// that limiter.ParsePolicy reads back unchanged from p.String(). Otherwise
// the error wraps ErrInvalidRecord and says what is wrong.
func ValidateLimit(p limiter.Policy) error {
	if p.IsZero() {
		return nil
	}
	back, err := limiter.ParsePolicy(p.String())
	if err != nil {
		return fmt.Errorf("%w: limit %q: %w", ErrInvalidRecord, p.String(), err)
	}
	if back != p {
		return fmt.Errorf("%w: limit %q does not read back as the same policy", ErrInvalidRecord, p.String())
	}
	return nil
}

// parseStoredLimit reads a limit kept by a store: "" is none.
func parseStoredLimit(s string) (limiter.Policy, error) {
	if s == "" {
		return limiter.Policy{}, errors.New("empty (a key without its own limit has no limit attribute)")
	}
	return limiter.ParsePolicy(s)
}

// quoteID quotes id for an error message, or says it is malformed: input
// that is not an ID is never echoed (it might be a key pasted by mistake).
func quoteID(id string) string {
	if ValidID(id) {
		return strconv.Quote(id)
	}
	return "(malformed id)"
}

func validHash(h string) bool {
	if len(h) != hashLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// lookup is the shared Lookup algorithm: validate the format (no backend
// call for garbage), hash, find by hash, then confirm the stored hash in
// constant time and refuse revoked records and records expired at now().
// find returns ErrNotFound when nothing is stored under the hash.
func lookup(ctx context.Context, key string, now func() time.Time, find func(ctx context.Context, hash string) (Record, error)) (Record, error) {
	if !ValidFormat(key) {
		return Record{}, ErrNotFound
	}
	want := Hash(key)
	rec, err := find(ctx, want)
	if err != nil {
		return Record{}, err
	}
	if subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(want)) != 1 || rec.Revoked || rec.Expired(now()) {
		return Record{}, ErrNotFound
	}
	return rec, nil
}

// base62 renders b as exactly n base62 digits, most significant first.
func base62(b []byte, n int) string {
	v := new(big.Int).SetBytes(b)
	out := make([]byte, n)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := n - 1; i >= 0; i-- {
		v.DivMod(v, base, mod)
		out[i] = base62Digits[mod.Int64()]
	}
	return string(out)
}

// checksum renders the CRC-32 of body as checksumChars base62 digits.
func checksum(body string) string {
	var out [checksumChars]byte
	putChecksum(&out, body)
	return string(out[:])
}

func putChecksum(out *[checksumChars]byte, body string) {
	v := crc32.Update(0, crc32.IEEETable, []byte(body))
	for i := checksumChars - 1; i >= 0; i-- {
		out[i] = base62Digits[v%62]
		v /= 62
	}
}
