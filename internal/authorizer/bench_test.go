package authorizer

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// BenchmarkFailedKey is the authorizer's time per made-up key, side by
// side: refused from a failed-key bucket this container knows is empty
// (429, no key-store read, no Upstash request) and refused after a
// key-store read that charges the bucket on Upstash (401). The key store
// here answers from memory: in AWS the 401 path adds a DynamoDB GetItem.
func BenchmarkFailedKey(b *testing.B) {
	up := upstashtest.Start(b)
	keys := make([]string, 50_000) // made-up, well formed: each needs a read to refuse
	for i := range keys {
		k, _, _, err := apikey.Generate()
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k
	}
	for _, bc := range []struct {
		name     string
		failures limiter.Limit
		want     error // ErrUnauthorized, or nil for the 429 (a Deny)
	}{
		{name: "429 known empty", failures: limiter.Limit{Rate: 1, Period: 24 * time.Hour, Burst: 1}},
		{name: "401 read and charged", failures: limiter.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}, want: ErrUnauthorized},
	} {
		b.Run(bc.name, func(b *testing.B) {
			store := &countingKeys{recs: map[string]apikey.Record{}}
			clk := fakeclock.New(time.Now())
			c := newContainer(b, up, store, clk, false, bc.failures)
			ip := fmt.Sprintf("198.51.100.%d", len(bc.name)) // a bucket per sub-benchmark
			ev := event("POST", "/predict", ip, map[string]string{"X-Api-Key": keys[0]})
			_, _ = c.h.Handle(context.Background(), ev) // drains a burst of 1; loads the script
			reads, requests := store.count(), up.Server.Requests()
			i := 0
			for b.Loop() {
				clk.Advance(time.Microsecond) // no refill worth a token in a day-long window
				c.metrics.Reset()             // the EMF line is written, not kept
				ev.Headers["X-Api-Key"] = keys[i%len(keys)]
				i++
				res, err := c.h.Handle(context.Background(), ev)
				if !errors.Is(err, bc.want) || (bc.want == nil && res.PolicyDocument.Statement[0].Effect != "Deny") {
					b.Fatalf("Handle = %v, %v; want %v", res.Context, err, bc.want)
				}
			}
			b.ReportMetric(float64(store.count()-reads)/float64(i), "key-reads/op")
			b.ReportMetric(float64(up.Server.Requests()-requests)/float64(i), "upstash-req/op")
		})
	}
}
