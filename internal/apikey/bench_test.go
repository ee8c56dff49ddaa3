package apikey_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/testutil/dynamotest"
)

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		if _, _, _, err := apikey.Generate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidFormat(b *testing.B) {
	key, _, _, err := apikey.Generate()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !apikey.ValidFormat(key) {
			b.Fatal("invalid")
		}
	}
}

// BenchmarkCacheHit is the authorizer's usual path: a known key within the
// hit TTL (format check, SHA-256, map lookup under a mutex).
func BenchmarkCacheHit(b *testing.B) {
	key, rec, err := apikey.New("n", "premium", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	c := apikey.NewCache(newFakeStore(rec), apikey.CacheConfig{})
	ctx := context.Background()
	if _, err := c.Lookup(ctx, key); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Lookup(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileStoreLookup: one stat(2) per lookup, the file parsed once.
func BenchmarkFileStoreLookup(b *testing.B) {
	key, rec, err := apikey.New("n", "premium", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	s, err := apikey.NewFileStore(apikey.FileConfig{Path: filepath.Join(b.TempDir(), "keys.json")})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Create(ctx, rec); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Lookup(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDynamoStoreLookup: one GetItem against dynalite on loopback
// (dynalite's speed, not DynamoDB's; it shows the client-side cost).
func BenchmarkDynamoStoreLookup(b *testing.B) {
	endpoint := dynamotest.Start(b)
	client := dynamotest.Client(b, endpoint)
	s, err := apikey.NewDynamoStore(apikey.DynamoConfig{Client: client, Table: dynamotest.KeysTable(b, client)})
	if err != nil {
		b.Fatal(err)
	}
	key, rec, err := apikey.New("n", "premium", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Create(ctx, rec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Lookup(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}
