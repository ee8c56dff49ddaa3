package upstashlocal

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
)

func TestEmbeddedExpiryFollowsClock(t *testing.T) {
	s, err := New(Config{Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s.now = clock.Now
	s.lastForward = clock.Now()

	do := func(body string) string {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	steps := []struct {
		name    string
		advance time.Duration
		body    string
		want    string
	}{
		{name: "set with ttl", body: `["SET","k","v","PX",1000]`, want: `{"result":"OK"}`},
		{name: "still there", advance: 999 * time.Millisecond, body: `["GET","k"]`, want: `{"result":"v"}`},
		{name: "ttl counts down", body: `["PTTL","k"]`, want: `{"result":1}`},
		{name: "gone after its ttl", advance: time.Millisecond, body: `["GET","k"]`, want: `{"result":null}`},
		{name: "clock going back changes nothing", advance: -time.Hour, body: `["SET","j","v","EX",10]`, want: `{"result":"OK"}`},
		{name: "ttl intact", body: `["TTL","j"]`, want: `{"result":10}`},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		if got := do(st.body); got != st.want {
			t.Errorf("%s: %s = %s, want %s", st.name, st.body, got, st.want)
		}
	}
}
