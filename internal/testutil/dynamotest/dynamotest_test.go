package dynamotest_test

import (
	"context"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/bucketgate/bucketgate/internal/testutil/dynamotest"
)

func TestStartServesAndStops(t *testing.T) {
	var endpoint string
	t.Run("server", func(t *testing.T) {
		endpoint = dynamotest.Start(t)
		u, err := url.Parse(endpoint)
		if err != nil || u.Hostname() != "127.0.0.1" || u.Port() == "" {
			t.Fatalf("endpoint %q, want http://127.0.0.1:PORT", endpoint)
		}
		client := dynamotest.Client(t, endpoint)
		a, b := dynamotest.KeysTable(t, client), dynamotest.KeysTable(t, client)
		if a == b {
			t.Fatalf("KeysTable returned the same name twice: %s", a)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := client.ListTables(ctx, &dynamodb.ListTablesInput{})
		if err != nil {
			t.Fatalf("ListTables: %v", err)
		}
		for _, name := range []string{a, b} {
			if !slices.Contains(out.TableNames, name) {
				t.Errorf("ListTables = %v, want it to include %s", out.TableNames, name)
			}
		}
	})
	// The subtest's cleanup has stopped the server.
	if endpoint == "" {
		return // the subtest was skipped or failed and said why
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("dynalite still accepts connections on %s after cleanup", u.Host)
	}
}
