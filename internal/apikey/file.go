package apikey

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/bucketgate/bucketgate/internal/limiter"
)

// FileVersion is the value of "version" in the key files this package
// writes; other versions are refused.
const FileVersion = 1

// FileConfig configures a FileStore.
type FileConfig struct {
	// Path of the JSON key file (API_KEYS_FILE). Required. The file need
	// not exist: a missing file is an empty store, and Create writes it.
	Path string
	// Now is the clock for RevokedAt and for expiry. Nil: time.Now.
	Now func() time.Time
}

// FileStore keeps records in a JSON file, for local use (cmd/local,
// cmd/apikeys --file). The file looks like this (keys of "keys" are the
// records' hashes; revokedAt only appears on revoked records, limit and
// expiresAt only when set):
//
//	{
//	  "version": 1,
//	  "keys": {
//	    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": {
//	      "id": "key_mfrggzdfmztwq2lk",
//	      "name": "alice laptop",
//	      "tier": "premium",
//	      "createdAt": "2025-01-02T03:04:05.123456Z",
//	      "revoked": true,
//	      "revokedAt": "2025-02-03T04:05:06Z",
//	      "limit": "30/minute:burst=50:quota=10000/month",
//	      "expiresAt": "2026-01-01T00:00:00Z"
//	    }
//	  }
//	}
//
// Unknown fields, unknown versions, malformed hashes, IDs, tiers, limits or
// times, and duplicate IDs make the whole file an error (a backend error
// for Lookup, not ErrNotFound), so a bad hand edit shows instead of turning
// into 401s or into a key silently falling back to its tier's limit.
//
// Reads: the file is parsed once and parsed again whenever it is replaced
// or its modification time or size changes; each call costs one stat(2).
// So keys created or revoked by another process (cmd/apikeys while
// `cmd/local start-api` runs) take effect on the next lookup.
//
// Writes (Create, Revoke, SetLimit) re-read the file, then write a
// temporary file in the same directory with mode 0600, sync it and rename
// it over the old one, so readers see the old or the new file, never a
// torn one. Writes within one process are serialised; writers in different
// processes are not coordinated (the last rename wins), which suits an
// admin CLI run by hand.
//
// A FileStore is safe for concurrent use.
type FileStore struct {
	path string
	now  func() time.Time

	mu     sync.Mutex
	info   fs.FileInfo // of the parsed file; nil when it was missing
	byHash map[string]Record
	byID   map[string]string // id -> hash
}

var _ Admin = (*FileStore)(nil)

// fileDoc is the on-disk form.
type fileDoc struct {
	Version int                  `json:"version"`
	Keys    map[string]fileEntry `json:"keys"`
}

type fileEntry struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Tier      string     `json:"tier"`
	CreatedAt time.Time  `json:"createdAt"`
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
	Limit     *string    `json:"limit,omitempty"`     // limiter.Policy's String form
	ExpiresAt *string    `json:"expiresAt,omitempty"` // RFC 3339; parsed here, so an error can name the entry
}

// NewFileStore returns a store over cfg.Path. It reads the file once, so a
// malformed or unreadable file is reported here, at start-up; a missing
// file is not an error.
func NewFileStore(cfg FileConfig) (*FileStore, error) {
	if cfg.Path == "" {
		return nil, errors.New("apikey: key file path is empty")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &FileStore{path: cfg.Path, now: cfg.Now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path returns the key file's path.
func (s *FileStore) Path() string { return s.path }

// Lookup implements Store.
func (s *FileStore) Lookup(ctx context.Context, key string) (Record, error) {
	return lookup(ctx, key, s.now, s.find)
}

func (s *FileStore) find(_ context.Context, hash string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return Record{}, err
	}
	rec, ok := s.byHash[hash]
	if !ok {
		return Record{}, ErrNotFound
	}
	return rec, nil
}

// Create implements Admin. It creates the file (mode 0600) when missing;
// its directory must exist.
func (s *FileStore) Create(_ context.Context, rec Record) error {
	if err := ValidateRecord(rec); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return err
	}
	if _, ok := s.byHash[rec.Hash]; ok {
		return fmt.Errorf("%w: a key with this hash", ErrExists)
	}
	if _, ok := s.byID[rec.ID]; ok {
		return fmt.Errorf("%w: a key with id %s", ErrExists, quoteID(rec.ID))
	}
	return s.writeLocked(s.with(rec))
}

// List implements Admin.
func (s *FileStore) List(context.Context) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(s.byHash))
	for _, r := range s.byHash {
		out = append(out, r)
	}
	sortRecords(out)
	return out, nil
}

// Revoke implements Admin.
func (s *FileStore) Revoke(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.byIDLocked(id)
	if err != nil || rec.Revoked {
		return err
	}
	rec.Revoked, rec.RevokedAt = true, s.now().UTC().Truncate(time.Microsecond)
	return s.writeLocked(s.with(rec))
}

// SetLimit implements Admin.
func (s *FileStore) SetLimit(_ context.Context, id string, p limiter.Policy) error {
	if err := ValidateLimit(p); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.byIDLocked(id)
	if err != nil {
		return err
	}
	if rec.Revoked {
		return fmt.Errorf("%w: key with id %s is revoked", ErrRevoked, quoteID(id))
	}
	if rec.Limit == p {
		return nil
	}
	rec.Limit = p
	return s.writeLocked(s.with(rec))
}

// byIDLocked returns the record with id, from the file as it is now.
func (s *FileStore) byIDLocked(id string) (Record, error) {
	if err := s.refreshLocked(); err != nil {
		return Record{}, err
	}
	hash, ok := s.byID[id]
	if !ok {
		return Record{}, fmt.Errorf("%w: no key with id %s", ErrNotFound, quoteID(id))
	}
	return s.byHash[hash], nil
}

// with returns a copy of the records with rec put in.
func (s *FileStore) with(rec Record) map[string]Record {
	next := make(map[string]Record, len(s.byHash)+1)
	for h, r := range s.byHash {
		next[h] = r
	}
	next[rec.Hash] = rec
	return next
}

// refreshLocked re-reads the file when it changed since the last read.
func (s *FileStore) refreshLocked() error {
	info, err := os.Stat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.info, s.byHash, s.byID = nil, map[string]Record{}, map[string]string{}
		return nil
	case err != nil:
		return fmt.Errorf("apikey: key file: %w", err)
	}
	if s.info != nil && os.SameFile(s.info, info) && s.info.ModTime().Equal(info.ModTime()) && s.info.Size() == info.Size() {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("apikey: key file: %w", err)
	}
	byHash, byID, err := parseKeyFile(data)
	if err != nil {
		return fmt.Errorf("apikey: key file %s: %w", s.path, err)
	}
	s.info, s.byHash, s.byID = info, byHash, byID
	return nil
}

func parseKeyFile(data []byte) (map[string]Record, map[string]string, error) {
	byHash, byID := map[string]Record{}, map[string]string{}
	if len(bytes.TrimSpace(data)) == 0 {
		return byHash, byID, nil // an empty file is an empty store
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var doc fileDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("not a key file: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("not a key file: data after the JSON object")
	}
	if doc.Version != FileVersion {
		return nil, nil, fmt.Errorf("version %d, want %d", doc.Version, FileVersion)
	}
	for hash, e := range doc.Keys {
		rec := Record{ID: e.ID, Name: e.Name, Tier: e.Tier, Hash: hash, CreatedAt: e.CreatedAt, Revoked: e.Revoked}
		if e.RevokedAt != nil {
			rec.RevokedAt = *e.RevokedAt
		}
		if e.ExpiresAt != nil {
			at, err := time.Parse(time.RFC3339Nano, *e.ExpiresAt)
			if err != nil || at.IsZero() {
				return nil, nil, fmt.Errorf("entry with id %s: expiresAt is not an RFC 3339 time (leave it out for a key that never expires)", quoteID(e.ID))
			}
			rec.ExpiresAt = at.UTC()
		}
		if e.Limit != nil {
			p, err := parseStoredLimit(*e.Limit)
			if err != nil {
				return nil, nil, fmt.Errorf("entry with id %s: limit: %w", quoteID(e.ID), err)
			}
			rec.Limit = p
		}
		if err := ValidateRecord(rec); err != nil {
			return nil, nil, fmt.Errorf("entry with id %s: %w", quoteID(e.ID), err)
		}
		if _, dup := byID[rec.ID]; dup {
			return nil, nil, fmt.Errorf("id %s appears twice", quoteID(rec.ID))
		}
		byHash[hash], byID[rec.ID] = rec, hash
	}
	return byHash, byID, nil
}

// writeLocked replaces the file with recs and adopts them as the state.
func (s *FileStore) writeLocked(recs map[string]Record) error {
	doc := fileDoc{Version: FileVersion, Keys: make(map[string]fileEntry, len(recs))}
	for h, r := range recs {
		e := fileEntry{ID: r.ID, Name: r.Name, Tier: r.Tier, CreatedAt: r.CreatedAt, Revoked: r.Revoked}
		if r.Revoked {
			at := r.RevokedAt
			e.RevokedAt = &at
		}
		if !r.ExpiresAt.IsZero() {
			at := r.ExpiresAt.UTC().Format(time.RFC3339Nano)
			e.ExpiresAt = &at
		}
		if !r.Limit.IsZero() {
			l := r.Limit.String()
			e.Limit = &l
		}
		doc.Keys[h] = e
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("apikey: key file: encode: %w", err)
	}
	data = append(data, '\n')
	if err := writeFileAtomic(s.path, data); err != nil {
		return fmt.Errorf("apikey: key file: %w", err)
	}
	info, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("apikey: key file: %w", err)
	}
	byID := make(map[string]string, len(recs))
	for h, r := range recs {
		byID[r.ID] = h
	}
	s.info, s.byHash, s.byID = info, recs, byID
	return nil
}

// writeFileAtomic writes data to a temporary file (mode 0600) next to path,
// syncs it and renames it to path.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		_ = f.Close()
		return err
	}
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable; best effort
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func sortRecords(recs []Record) {
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].CreatedAt.Equal(recs[j].CreatedAt) {
			return recs[i].CreatedAt.Before(recs[j].CreatedAt)
		}
		return recs[i].ID < recs[j].ID
	})
}
