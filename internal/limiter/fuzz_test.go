package limiter_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// Fuzz targets for everything the limiter reads from outside: the
// configuration strings (TIER_LIMITS, ROUTE_COSTS, LIMITER_FAILURE_MODE)
// and the Upstash reply to the token-bucket script. Their seed corpora run
// in every `go test`; `make fuzz` explores further. Properties: no panic;
// an accepted value renders back to itself; a refused one gets an error
// that matches ErrInvalidConfig (or, for replies, a typed error) and is
// bounded in size.

// fuzzConfigError checks the shape of a configuration error for input s.
func fuzzConfigError(t *testing.T, s string, err error) {
	t.Helper()
	if !errors.Is(err, limiter.ErrInvalidConfig) {
		t.Fatalf("error %v does not match ErrInvalidConfig", err)
	}
	msg := err.Error()
	if msg == "" {
		t.Fatal("empty error message")
	}
	// Errors quote the offending part (%q: at most 10 bytes per input
	// byte, \U0010ffff), nothing more.
	if len(msg) > 10*len(s)+200 {
		t.Fatalf("error of %d bytes for an input of %d bytes", len(msg), len(s))
	}
}

func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{
		"6/minute:burst=10", "6/minute", " 120 / Hour : BURST = 200 ", "1/second", "1/day:burst=52000000",
		"0/minute", "-1/minute", "6/fortnight", "6/m", "6", "/minute", "6/minute:burst=", "6/minute:burst=0",
		"6/minute:rate=3", "9223372036854775807/second", "99999999999999999999/second", "6/minute:burst=10:burst=11",
		"6/minute:burst=1e3", "６/minute", "6/minute\x00", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := limiter.ParseLimit(s)
		if err != nil {
			fuzzConfigError(t, s, err)
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("ParseLimit(%q) = %+v, which Validate refuses: %v", s, l, err)
		}
		if l.Window() <= 0 {
			t.Fatalf("ParseLimit(%q) = %+v with window %s", s, l, l.Window())
		}
		back, err := limiter.ParseLimit(l.String())
		if err != nil || back != l {
			t.Fatalf("ParseLimit(%q).String() = %q parses to %+v, %v; want %+v", s, l.String(), back, err, l)
		}
	})
}

func FuzzParseTierLimits(f *testing.F) {
	for _, s := range []string{
		"anonymous=6/minute:burst=10,authenticated=30/minute:burst=50,premium=120/minute:burst=200",
		"a=1/second,", ",,a=1/second,,", "a=1/second,a=2/second", "a b=1/second", "=1/second", "a=",
		"a=1/second:burst=2,b", "premium=12/fortnight", "x.y-z_1=5/hour", "ünicode=1/second", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tiers, err := limiter.ParseTierLimits(s)
		if err != nil {
			fuzzConfigError(t, s, err)
			return
		}
		if len(tiers) == 0 {
			t.Fatalf("ParseTierLimits(%q) accepted no tiers", s)
		}
		rendered := limiter.Tiers(tiers).String()
		back, err := limiter.ParseTierLimits(rendered)
		if err != nil {
			t.Fatalf("ParseTierLimits(%q) renders as %q, which does not parse: %v", s, rendered, err)
		}
		if diff := cmp.Diff(tiers, back); diff != "" {
			t.Fatalf("round trip through %q (-first +second):\n%s", rendered, diff)
		}
	})
}

func FuzzParseRouteCosts(f *testing.F) {
	for _, s := range []string{
		"POST /predict/batch=5", "post /a=1, GET /b=2,", "POST /a=1,POST /a=2", "POST a=1", "POST /a", "/a=1",
		"PO ST /a=1", "POST /a b=1", "POST /a=0", "POST /a=99999999999999", "P0ST /a=1", "POST /=1=2", "",
	} {
		f.Add(s, "POST", "/predict/batch")
	}
	f.Fuzz(func(t *testing.T, s, method, path string) {
		rc, err := limiter.ParseRouteCosts(s)
		if err != nil {
			fuzzConfigError(t, s, err)
			return
		}
		if c := rc.Cost(method, path); c < 1 || c > limiter.MaxCost || c > rc.Max() {
			t.Fatalf("Cost(%q, %q) = %d, Max() = %d", method, path, c, rc.Max())
		}
		back, err := limiter.ParseRouteCosts(rc.String())
		if err != nil {
			t.Fatalf("ParseRouteCosts(%q).String() = %q does not parse: %v", s, rc.String(), err)
		}
		if back.String() != rc.String() || back.Len() != rc.Len() || back.Max() != rc.Max() ||
			back.Cost(method, path) != rc.Cost(method, path) {
			t.Fatalf("round trip of %q through %q changed it to %q", s, rc.String(), back.String())
		}
	})
}

func FuzzParseFailureMode(f *testing.F) {
	for _, s := range []string{"", "fallback", "open", "closed", " OPEN ", "fail-open", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := limiter.ParseFailureMode(s)
		if err != nil {
			fuzzConfigError(t, s, err)
			return
		}
		if back, err := limiter.ParseFailureMode(m.String()); err != nil || back != m {
			t.Fatalf("ParseFailureMode(%q) = %v, which renders as %q and parses to %v, %v", s, m, m.String(), back, err)
		}
	})
}

// fuzzReplyTransport answers every request with status and body: a server (or
// a proxy in the way) sending anything at all.
type fuzzReplyTransport struct {
	status int
	body   []byte
}

func (rt fuzzReplyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode:    rt.status,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(rt.body)),
		ContentLength: int64(len(rt.body)),
		Request:       req,
	}, nil
}

var fuzzStatuses = []int{200, 200, 200, 400, 401, 404, 500, 502, 204, 302}

// FuzzUpstashReply runs UpstashStore.Allow against a server answering with
// an arbitrary status and body. The store must
// return a typed error or a Result a client can be shown: consistent
// fields, never a bucket key in an error.
func FuzzUpstashReply(f *testing.F) {
	for _, s := range []string{
		`{"result":[1,"-","",1000000,1000000,777600000,1700000000000,"777600000:1700000000000"]}`,
		`{"result":[0,"","",1000000,1000000,0,1700000000000,""]}`,
		`{"result":[1,"*=200000,1,0,0","1699999999000",200000,200000,100,1700000000000,"100:1700000000000",5,1700000000000,"5:1700000000000"]}`,
		`{"result":["1","-","","1000000","1000000","864000000","1700000000000",""]}`,
		`{"result":[2,"-","",1,1,1,1,""]}`, `{"result":[1,"-","",1000000,1000000,-1,1,""]}`, `{"result":[1,"-","",1e300,1,1,1,""]}`,
		`{"result":[1,1]}`, `{"result":null}`, `{"result":"OK"}`, `{"result":[[1],[2],[3]]}`,
		`{"error":"NOSCRIPT No matching script. Please use EVAL."}`, `{"error":"ERR bucket bg:ip:203.0.113.9"}`,
		`<html>502</html>`, `{"result":[1,864000000000,`, ``,
	} {
		f.Add(uint8(0), s)
	}
	f.Add(uint8(4), `{"error":"WRONGPASS invalid or missing auth token"}`)
	f.Fuzz(func(t *testing.T, statusIdx uint8, body string) {
		status := fuzzStatuses[int(statusIdx)%len(fuzzStatuses)]
		client, err := upstash.New(upstash.Config{
			URL: "http://upstash.invalid", Token: "fuzz-token", MaxReplyBytes: 4096,
			HTTPClient: &http.Client{Transport: fuzzReplyTransport{status: status, body: []byte(body)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		store, err := limiter.NewUpstashStore(limiter.UpstashConfig{Client: client})
		if err != nil {
			t.Fatal(err)
		}
		limits := []limiter.Limit{limiter.PerMinute(6).WithBurst(10), limiter.PerSecond(5)}
		const key = "ip:203.0.113.9"
		req := limiter.Request{Cost: 1, Buckets: []limiter.Bucket{{Key: key, Limit: limits[0]}}}
		if strings.Count(body, ",") > 8 {
			req.Buckets = append(req.Buckets, limiter.Bucket{Key: "global", Limit: limits[1]})
		}
		r, err := store.Allow(context.Background(), req, time.UnixMilli(1_700_000_000_000))
		if err != nil {
			if !errors.Is(err, limiter.ErrBadReply) && upstash.KindOf(err) == 0 {
				var ue *upstash.Error
				if !errors.As(err, &ue) {
					t.Fatalf("untyped error %v", err)
				}
			}
			if strings.Contains(err.Error(), "203.0.113.9") && !strings.Contains(body, "203.0.113.9") {
				t.Fatalf("error %q names the bucket key", err)
			}
			return
		}
		// Whatever the factors the reply claims, a Result is consistent.
		top := r.Buckets[r.Reported]
		switch {
		case r.Source != limiter.SourceUpstash:
			t.Fatalf("source %v", r.Source)
		case r.N != len(req.Buckets) || r.Reported < 0 || r.Reported >= r.N:
			t.Fatalf("N %d, Reported %d for %d buckets", r.N, r.Reported, len(req.Buckets))
		case r.Limit != top.Limit || r.Remaining != top.Remaining || r.Window != top.Window || r.ResetAfter != top.ResetAfter:
			t.Fatalf("top-level numbers %+v are not the reported bucket's %+v", r, top)
		case r.Limit < 0 || r.Limit > 10*int64(limiter.MaxFactor) || r.Remaining < 0 || r.Remaining > r.Limit:
			t.Fatalf("Limit %d, Remaining %d", r.Limit, r.Remaining)
		case r.ResetAfter < 0 || r.RetryAfter < 0 || r.Window <= 0:
			t.Fatalf("durations: %+v", r)
		case r.Allowed && (r.RetryAfter != 0 || r.Reason != limiter.ReasonNone):
			t.Fatalf("allowed with RetryAfter %s, Reason %v", r.RetryAfter, r.Reason)
		case !r.Allowed && (r.RetryAfter <= 0 || r.Reason == limiter.ReasonNone):
			t.Fatalf("denied with RetryAfter %s, Reason %v", r.RetryAfter, r.Reason)
		}
	})
}
