package apikey_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/testutil/dynamotest"
	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
)

// recordingClient is an HTTP client that counts requests and keeps their
// bodies, to show what leaves the process.
type recordingClient struct {
	mu     sync.Mutex
	bodies []string
	ops    []string
}

func (c *recordingClient) Do(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	c.mu.Lock()
	c.bodies = append(c.bodies, string(body))
	c.ops = append(c.ops, strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "DynamoDB_20120810."))
	c.mu.Unlock()
	return http.DefaultClient.Do(req)
}

func (c *recordingClient) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.bodies)
}

func (c *recordingClient) sent() (ops, bodies []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ops...), append([]string(nil), c.bodies...)
}

type dynamoEnv struct {
	endpoint string
	client   *dynamodb.Client
	rec      *recordingClient
}

// startDynamo starts one dynalite for the test and a client that records
// its requests.
func startDynamo(t *testing.T) dynamoEnv {
	t.Helper()
	endpoint := dynamotest.Start(t)
	rec := &recordingClient{}
	client := dynamotest.Client(t, endpoint, func(o *dynamodb.Options) { o.HTTPClient = rec })
	return dynamoEnv{endpoint: endpoint, client: client, rec: rec}
}

func newDynamoStore(t *testing.T, client apikey.DynamoAPI, table string, clk *fakeclock.Clock) *apikey.DynamoStore {
	t.Helper()
	cfg := apikey.DynamoConfig{Client: client, Table: table}
	if clk != nil {
		cfg.Now = clk.Now
	}
	s, err := apikey.NewDynamoStore(cfg)
	if err != nil {
		t.Fatalf("NewDynamoStore: %v", err)
	}
	return s
}

// dynamoHarness runs the shared store tests on a new table per store.
func dynamoHarness(env dynamoEnv) storeHarness {
	return storeHarness{
		open: func(t *testing.T, clk *fakeclock.Clock) apikey.Admin {
			return newDynamoStore(t, env.client, dynamotest.KeysTable(t, env.client), clk)
		},
		calls: env.rec.calls,
		corrupt: func(t *testing.T, s apikey.Admin, hash, attr, value string) {
			t.Helper()
			_, err := env.client.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
				TableName:                 aws.String(s.(*apikey.DynamoStore).Table()),
				Key:                       map[string]types.AttributeValue{apikey.AttrKeyHash: &types.AttributeValueMemberS{Value: hash}},
				UpdateExpression:          aws.String("SET #a = :v"),
				ExpressionAttributeNames:  map[string]string{"#a": attr},
				ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: value}},
			})
			if err != nil {
				t.Fatalf("corrupt %s: %v", attr, err)
			}
		},
	}
}

func TestDynamoStoreAdmin(t *testing.T) {
	testAdmin(t, dynamoHarness(startDynamo(t)))
}

func TestDynamoStoreLimitsAndExpiry(t *testing.T) {
	testLimitsAndExpiry(t, dynamoHarness(startDynamo(t)))
}

// TestDynamoStoreRequests checks what goes over the wire: one
// eventually consistent GetItem per lookup, with a projection that
// includes the limit and the expiry, a Scan and an UpdateItem for SetLimit
// and Revoke, and never the plaintext key.
func TestDynamoStoreRequests(t *testing.T) {
	ctx := context.Background()
	env := startDynamo(t)
	table := dynamotest.KeysTable(t, env.client)
	s := newDynamoStore(t, env.client, table, nil)
	k := issue(t, "n", "premium", time.Now())
	k.rec.Limit = mustPolicy(t, "10/second")
	k.rec.ExpiresAt = k.rec.CreatedAt.Add(time.Hour)
	if err := s.Create(ctx, k.rec); err != nil {
		t.Fatal(err)
	}
	before := env.rec.calls()
	if _, err := s.Lookup(ctx, k.key); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLimit(ctx, k.rec.ID, mustPolicy(t, "20/second")); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, k.rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(ctx); err != nil {
		t.Fatal(err)
	}
	ops, bodies := env.rec.sent()
	if diff := cmp.Diff([]string{"GetItem", "Scan", "UpdateItem", "Scan", "UpdateItem", "Scan"}, ops[before:]); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
	get := bodies[before]
	for _, want := range []string{`"ConsistentRead":false`, `"ProjectionExpression"`, `"limit"`, `"expiresAt"`, k.rec.Hash} {
		if !strings.Contains(get, want) {
			t.Errorf("GetItem body %s lacks %s", get, want)
		}
	}
	for i, b := range bodies {
		if strings.Contains(b, k.key) {
			t.Errorf("request %d (%s) carries the plaintext key", i, ops[i])
		}
	}
}

// TestDynamoStoreBadItems: items the store did not write (or a
// hand-edited table) are backend errors, not ErrNotFound and not panics.
func TestDynamoStoreBadItems(t *testing.T) {
	ctx := context.Background()
	env := startDynamo(t)
	k := issue(t, "n", "premium", time.Now())
	tests := []struct {
		name    string
		item    map[string]types.AttributeValue
		wantMsg string
	}{
		{
			name: "tier is a number",
			item: map[string]types.AttributeValue{
				"keyHash": &types.AttributeValueMemberS{Value: k.rec.Hash}, "id": &types.AttributeValueMemberS{Value: k.rec.ID},
				"tier": &types.AttributeValueMemberN{Value: "1"}, "createdAt": &types.AttributeValueMemberS{Value: "2025-01-01T00:00:00Z"},
			},
			wantMsg: "tier is not a string",
		},
		{
			name: "id missing",
			item: map[string]types.AttributeValue{
				"keyHash": &types.AttributeValueMemberS{Value: k.rec.Hash}, "tier": &types.AttributeValueMemberS{Value: "premium"},
				"createdAt": &types.AttributeValueMemberS{Value: "2025-01-01T00:00:00Z"},
			},
			wantMsg: "id is missing",
		},
		{
			name: "revoked is a string",
			item: map[string]types.AttributeValue{
				"keyHash": &types.AttributeValueMemberS{Value: k.rec.Hash}, "id": &types.AttributeValueMemberS{Value: k.rec.ID},
				"tier": &types.AttributeValueMemberS{Value: "premium"}, "revoked": &types.AttributeValueMemberS{Value: "false"},
				"createdAt": &types.AttributeValueMemberS{Value: "2025-01-01T00:00:00Z"},
			},
			wantMsg: "revoked is not a boolean",
		},
		{
			name: "limit is a number",
			item: map[string]types.AttributeValue{
				"keyHash": &types.AttributeValueMemberS{Value: k.rec.Hash}, "id": &types.AttributeValueMemberS{Value: k.rec.ID},
				"tier": &types.AttributeValueMemberS{Value: "premium"}, "limit": &types.AttributeValueMemberN{Value: "6"},
				"createdAt": &types.AttributeValueMemberS{Value: "2025-01-01T00:00:00Z"},
			},
			wantMsg: "limit is not a string",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := dynamotest.KeysTable(t, env.client)
			if _, err := env.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: tt.item}); err != nil {
				t.Fatal(err)
			}
			s := newDynamoStore(t, env.client, table, nil)
			_, err := s.Lookup(ctx, k.key)
			if err == nil || errors.Is(err, apikey.ErrNotFound) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Lookup err = %v, want an error mentioning %q", err, tt.wantMsg)
			}
			if _, err := s.List(ctx); err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("List err = %v, want an error mentioning %q", err, tt.wantMsg)
			}
		})
	}
}

// TestDynamoStoreBackendDown: a missing table or an unreachable endpoint is
// a backend error, which callers must not mistake for an unknown key.
func TestDynamoStoreBackendDown(t *testing.T) {
	ctx := context.Background()
	env := startDynamo(t)
	k := issue(t, "n", "premium", time.Now())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedEndpoint := "http://" + l.Addr().String()
	_ = l.Close()

	tests := []struct {
		name   string
		client *dynamodb.Client
		table  string
	}{
		{name: "missing table", client: env.client, table: "no-such-table"},
		{name: "nothing listening", client: dynamotest.Client(t, closedEndpoint), table: "api-keys"},
	}
	kc := &keyChecker{keys: []string{k.key}}
	defer kc.check(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newDynamoStore(t, tt.client, tt.table, nil)
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := s.Lookup(ctx, k.key)
			if kc.add(err) == nil || errors.Is(err, apikey.ErrNotFound) {
				t.Errorf("Lookup err = %v, want a backend error", err)
			}
			if err := kc.add(s.Create(ctx, k.rec)); err == nil || errors.Is(err, apikey.ErrExists) {
				t.Errorf("Create err = %v, want a backend error", err)
			}
			if err := kc.add(s.Revoke(ctx, k.rec.ID)); err == nil || errors.Is(err, apikey.ErrNotFound) {
				t.Errorf("Revoke err = %v, want a backend error", err)
			}
			if _, err := s.List(ctx); kc.add(err) == nil {
				t.Error("List succeeded, want a backend error")
			}
		})
	}
}

func TestCreateTable(t *testing.T) {
	ctx := context.Background()
	env := startDynamo(t)
	table := dynamotest.KeysTable(t, env.client)
	out, err := env.client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	type attr struct{ Name, Type string }
	var keys, attrs []attr
	for _, k := range out.Table.KeySchema {
		keys = append(keys, attr{aws.ToString(k.AttributeName), string(k.KeyType)})
	}
	for _, a := range out.Table.AttributeDefinitions {
		attrs = append(attrs, attr{aws.ToString(a.AttributeName), string(a.AttributeType)})
	}
	if diff := cmp.Diff([]attr{{"keyHash", "HASH"}}, keys); diff != "" {
		t.Errorf("key schema (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]attr{{"keyHash", "S"}}, attrs); diff != "" {
		t.Errorf("attribute definitions (-want +got):\n%s", diff)
	}
	if len(out.Table.GlobalSecondaryIndexes) != 0 {
		t.Errorf("table has %d global secondary indexes, want none", len(out.Table.GlobalSecondaryIndexes))
	}
	if got := out.Table.TableStatus; got != types.TableStatusActive {
		t.Errorf("status = %s, want ACTIVE", got)
	}
	if err := apikey.CreateTable(ctx, env.client, table); err == nil {
		t.Error("creating an existing table succeeded, want an error")
	}
}

func TestNewDynamoStoreConfig(t *testing.T) {
	env := startDynamo(t)
	tests := []struct {
		name string
		cfg  apikey.DynamoConfig
	}{
		{name: "no client", cfg: apikey.DynamoConfig{Table: "t"}},
		{name: "no table", cfg: apikey.DynamoConfig{Client: env.client}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := apikey.NewDynamoStore(tt.cfg); err == nil {
				t.Error("NewDynamoStore succeeded, want an error")
			}
		})
	}
}

// TestDynamoStorePagination: List and Revoke follow Scan pages.
func TestDynamoStorePagination(t *testing.T) {
	ctx := context.Background()
	env := startDynamo(t)
	s := newDynamoStore(t, env.client, dynamotest.KeysTable(t, env.client), nil)
	apikey.SetScanLimit(s, 2)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var want []apikey.Record
	var last issued
	for i := 0; i < 7; i++ {
		last = issue(t, fmt.Sprint("k", i), "authenticated", t0.Add(time.Duration(i)*time.Second))
		if err := s.Create(ctx, last.rec); err != nil {
			t.Fatal(err)
		}
		want = append(want, last.rec)
	}
	before := env.rec.calls()
	got, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if pages := env.rec.calls() - before; pages < 4 {
		t.Errorf("List made %d Scan calls, want at least 4 pages of 2", pages)
	}
	for _, r := range want {
		if err := s.Revoke(ctx, r.ID); err != nil {
			t.Fatalf("Revoke(%s): %v", r.ID, err)
		}
	}
	if _, err := s.Lookup(ctx, last.key); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("Lookup after revoking every key: err = %v, want ErrNotFound", err)
	}
}
