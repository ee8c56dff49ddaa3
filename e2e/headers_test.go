package e2e_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Checking every rate-limit header of a response that several policies
// applied to (README, "Policies: several limits on one request").

// pol is what one policy of a response should show: RateLimit-Policy's q
// and w, RateLimit's r, and its t within [t[0], t[1]] seconds (timing
// moves it; see resetAfter and toMidnight).
type pol struct {
	name    string
	q, w, r int64
	t       [2]int64
}

// limited is what a 200 or 429 should carry: the policies in order, the
// deciding one (X-RateLimit-* and the 429 body), and for a 429 the range
// of Retry-After.
type limited struct {
	status   int
	tier     string
	policies []pol
	deciding int
	retry    [2]int64
	message  string // the 429 body's message; "" = the default
}

var (
	policyItemRE = regexp.MustCompile(`"([^"]+)";q=(\d+);w=(\d+)`)
	rateItemRE   = regexp.MustCompile(`"([^"]+)";r=(\d+);t=(\d+)`)
)

// items splits a structured-field list into its items' submatches,
// failing unless re matches every item exactly.
func items(t *testing.T, field, h string, re *regexp.Regexp) [][]string {
	t.Helper()
	ms := re.FindAllStringSubmatch(h, -1)
	var parts []string
	for _, m := range ms {
		parts = append(parts, m[0])
	}
	if strings.Join(parts, ", ") != h || h == "" {
		t.Errorf("%s = %q is not a list of items %s", field, h, re)
	}
	return ms
}

func atoi(t *testing.T, what, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Errorf("%s = %q, want a whole number", what, s)
	}
	return n
}

// body429 is the 429 body's exact shape.
type body429 struct {
	Message    string `json:"message"`
	RetryAfter int64  `json:"retryAfter"`
	Limit      int64  `json:"limit"`
	Remaining  int64  `json:"remaining"`
	Reset      int64  `json:"reset"`
	Tier       string `json:"tier"`
	Policy     string `json:"policy"`
}

// check asserts r: status, every rate-limit header, and the 429 body. It
// returns Retry-After (0 for a 200).
func (w limited) check(t *testing.T, r reply) int64 {
	t.Helper()
	if r.status != w.status {
		t.Fatalf("got %s, want %d", r, w.status)
	}
	h := r.header
	if got := h.Get("X-RateLimit-Tier"); got != w.tier {
		t.Errorf("X-RateLimit-Tier = %q, want %q", got, w.tier)
	}
	ps := items(t, "RateLimit-Policy", h.Get("RateLimit-Policy"), policyItemRE)
	rs := items(t, "RateLimit", h.Get("RateLimit"), rateItemRE)
	if len(ps) != len(w.policies) || len(rs) != len(w.policies) {
		t.Fatalf("RateLimit-Policy %q and RateLimit %q, want %d policies: %v", h.Get("RateLimit-Policy"), h.Get("RateLimit"), len(w.policies), w.policies)
	}
	for i, p := range w.policies {
		if got := ps[i][1]; got != p.name {
			t.Errorf("RateLimit-Policy item %d names %q, want %q", i, got, p.name)
		}
		if got := rs[i][1]; got != p.name {
			t.Errorf("RateLimit item %d names %q, want %q", i, got, p.name)
		}
		if q, win := atoi(t, "q", ps[i][2]), atoi(t, "w", ps[i][3]); q != p.q || win != p.w {
			t.Errorf("%s: q=%d;w=%d, want q=%d;w=%d", p.name, q, win, p.q, p.w)
		}
		if got := atoi(t, "r", rs[i][2]); got != p.r {
			t.Errorf("%s: r=%d, want %d", p.name, got, p.r)
		}
		if got := atoi(t, "t", rs[i][3]); got < p.t[0] || got > p.t[1] {
			t.Errorf("%s: t=%d, want %d..%d", p.name, got, p.t[0], p.t[1])
		}
	}
	d := w.policies[w.deciding]
	dr := rs[w.deciding]
	for _, hv := range []struct{ name, want string }{
		{"X-RateLimit-Limit", strconv.FormatInt(d.q, 10)},
		{"X-RateLimit-Remaining", strconv.FormatInt(d.r, 10)},
		{"X-RateLimit-Reset", dr[3]}, // the deciding policy's t
	} {
		if got := h.Get(hv.name); got != hv.want {
			t.Errorf("%s = %q, want %q (policy %s)", hv.name, got, hv.want, d.name)
		}
	}
	if w.status == http.StatusOK {
		if got := h.Get("Retry-After"); got != "" {
			t.Errorf("a 200 carries Retry-After %q", got)
		}
		return 0
	}
	retry := atoi(t, "Retry-After", h.Get("Retry-After"))
	if retry < w.retry[0] || retry > w.retry[1] {
		t.Errorf("Retry-After = %d, want %d..%d", retry, w.retry[0], w.retry[1])
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	var b body429
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("429 body %s: %v", r.body, err)
	}
	msg := w.message
	if msg == "" {
		msg = "Too Many Requests"
	}
	want := body429{Message: msg, RetryAfter: retry, Limit: d.q, Remaining: d.r, Reset: atoi(t, "t", dr[3]), Tier: w.tier, Policy: d.name}
	if b != want {
		t.Errorf("429 body = %+v, want %+v", b, want)
	}
	return retry
}

// slack is how far a test's own duration may move a reset time: the
// tests' buckets refill by 1 token an hour, so their resets are whole
// hours less the seconds the test took.
const slack = 120

// resetAfter is the t of a token bucket refilling one token per perToken
// that lacks missing tokens.
func resetAfter(missing int64, perToken time.Duration) [2]int64 {
	full := missing * int64(perToken/time.Second)
	return [2]int64{max(full-slack, 0), full}
}

// toMidnight is the range of seconds until the next 00:00 UTC, from before
// to after (the instants around the request), within 2 s.
func toMidnight(before, after time.Time) [2]int64 {
	next := func(t time.Time) time.Time {
		t = t.UTC()
		return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
	}
	lo := int64(next(after).Sub(after)/time.Second) - 2
	hi := int64((next(before).Sub(before)+time.Second-1)/time.Second) + 2
	return [2]int64{lo, hi}
}

const hour = time.Hour
