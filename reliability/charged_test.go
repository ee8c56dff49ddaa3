package reliability_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/faultproxy"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// Timeouts that charged (docs/RELIABILITY.md): a limiter call that times
// out after Upstash ran the script has charged the shared bucket, and the
// failure mode then decides again. The tests below measure what that costs
// the caller. Whether a timed-out call charged is read from the reply the
// fault proxy held back: the script's reply starts with 1 when it charged
// every bucket, 0 when it charged none. (The bucket's key cannot tell: it
// expires as soon as the bucket is full again, 50 ms after one charge at
// this rate, well before the limiter's timeout ends.)

const (
	chargedRate  = 20 // tokens per second
	chargedBurst = 10
	chargedTiers = "anonymous=20/second:burst=10,authenticated=30/minute:burst=50,premium=120/minute:burst=200"
	// chargedTimeout is LIMITER_TIMEOUT for these tests: every dropped reply
	// costs this long, and an undropped call must never reach it.
	chargedTimeout = 500 * time.Millisecond
	chargedTarget  = 8 // timeouts per scenario
)

// scriptCharged reads a held Upstash reply to the decision script (one
// command, or a pipeline of one): {"result":[allowed, settings, warm-up
// start, ppm, ppm, units, at, stored, ...]} (internal/limiter/decide.lua).
// It reports whether the script charged; a reply that is not the script's
// (an error such as NOSCRIPT) charged nothing.
func scriptCharged(t *testing.T, body []byte) bool {
	t.Helper()
	var one struct {
		Result []json.RawMessage `json:"result"`
		Error  string            `json:"error"`
	}
	var many []json.RawMessage
	raw := body
	if err := json.Unmarshal(body, &many); err == nil {
		if len(many) != 1 {
			t.Fatalf("held reply is a pipeline of %d, want 1: %s", len(many), body)
		}
		raw = many[0]
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&one); err != nil {
		t.Fatalf("held reply %s: %v", body, err)
	}
	if one.Error != "" {
		return false
	}
	if len(one.Result) < 8 || (string(one.Result[0]) != "0" && string(one.Result[0]) != "1") {
		t.Fatalf("held reply %s is not the decision script's", body)
	}
	return string(one.Result[0]) == "1"
}

// chargeStep is one decision and what it did to the shared bucket.
type chargeStep struct {
	d        decision
	calls    uint64 // HTTP requests the decision sent towards Upstash
	timedOut bool   // one of them met the dropped reply
	charged  bool   // the shared bucket was charged one cost
}

// chargeTally is what a caller saw over one scenario.
type chargeTally struct {
	decisions, allowed       int
	upstashAllowed           int
	timeouts, chargedTimeout int // decisions whose reply was dropped; of those, the ones the script charged
	lost                     int // charged on the shared bucket but denied: tokens the caller lost
	over                     int // allowed without a charge on the shared bucket (by the failure mode)
	sharedGave               int // tokens the shared bucket gave: Upstash's allows and charged timeouts
	first, last              time.Time
}

// TestTimeoutsThatCharged drops Upstash's reply to isolated decisions (the
// script runs, the limiter times out and decides by its failure mode) for
// one anonymous caller, under demand above and below the refill rate, and
// checks, from what Upstash answered to every decision (the held reply for
// a dropped one):
//
//   - a dropped reply is never mistaken for an answer: its decision comes
//     from the failure mode; a decision that sent nothing is a deny-cache
//     answer;
//   - tokens are lost (charged, yet the caller denied) only by decisions
//     whose call failed: at most one cost per timeout;
//   - fail-closed never admits what the shared bucket did not charge;
//     fail-open never loses a token; the memory fallback loses no more
//     tokens than it admits uncharged (one container: its memory bucket
//     holds at least what the shared bucket holds, less one cost);
//   - the shared bucket itself never admits more than burst + rate ×
//     elapsed, timeouts included.
func TestTimeoutsThatCharged(t *testing.T) {
	keys := newKeySet(t)
	const above, below = time.Millisecond, 100 * time.Millisecond // pacing: ~1,000/s, or half the rate
	tests := []struct {
		name string
		sc   chargeScenario
	}{
		{"fallback, isolated, demand below the rate", chargeScenario{mode: "fallback", pacing: below}},
		{"fallback, isolated, demand above the rate", chargeScenario{mode: "fallback", pacing: above, drainFirst: true}},
		{"fallback, sustained, demand above the rate", chargeScenario{mode: "fallback", pacing: above, sustained: true}},
		{"closed, isolated, demand below the rate", chargeScenario{mode: "closed", pacing: below}},
		{"closed, isolated, demand above the rate", chargeScenario{mode: "closed", pacing: above, drainFirst: true}},
		{"closed, sustained, demand above the rate", chargeScenario{mode: "closed", pacing: above, sustained: true}},
		{"open, isolated, demand above the rate", chargeScenario{mode: "open", pacing: above, drainFirst: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := upstashtest.Start(t)
			px := faultproxy.Start(t, env.URL)
			st := newStack(t, upstashEnv(px.URL, env.Token, keys, "TIER_LIMITS", chargedTiers,
				"LIMITER_TIMEOUT", chargedTimeout.String(), "LIMITER_FAILURE_MODE", tt.sc.mode))
			steps := tt.sc.run(t, px, st)
			ta := checkChargeSteps(t, steps, tt.sc)

			elapsed := ta.last.Sub(ta.first)
			bound := chargedBurst + chargedRate*elapsed.Seconds()
			if float64(ta.sharedGave) > bound+1 {
				t.Errorf("the shared bucket gave %d tokens in %s, more than burst + rate × elapsed + 1 = %.1f", ta.sharedGave, elapsed, bound+1)
			}
			t.Logf("MEASURED charged scenario=%q decisions=%d timeouts=%d charged_timeouts=%d lost_tokens=%d over_admitted=%d allowed=%d (upstash %d) shared_bucket_gave=%d interval=%s bound=%.1f allowed/bound=%.3f",
				tt.name, ta.decisions, ta.timeouts, ta.chargedTimeout, ta.lost, ta.over, ta.allowed, ta.upstashAllowed,
				ta.sharedGave, elapsed.Round(time.Millisecond), bound, float64(ta.allowed)/bound)
		})
	}
}

// chargeScenario is one caller's traffic while Upstash's replies are
// dropped.
type chargeScenario struct {
	mode       string        // LIMITER_FAILURE_MODE
	pacing     time.Duration // between the caller's decisions
	drainFirst bool          // isolated drops only once the caller has been denied since the last one
	sustained  bool          // drop every reply (the breaker opens and probes) instead of isolated ones
}

// timeoutsWanted is how many dropped replies a scenario runs to.
func (sc chargeScenario) timeoutsWanted() int {
	if sc.sustained {
		return 5 // the breaker's three, then a probe per cooldown
	}
	return chargedTarget
}

// run decides for one fresh caller, sequentially. Isolated drops hit one
// decision after every two decided by Upstash, so that the breaker (three
// consecutive failures) stays closed; sustained drops hit every call.
func (sc chargeScenario) run(t *testing.T, px *faultproxy.Server, st *stack) []chargeStep {
	t.Helper()
	// A warm container: the script is loaded (a cold one whose first
	// EVALSHA meets the fault never learns of the NOSCRIPT, and never
	// charges anything).
	if d := st.decide(authEvent(freshIP(), nil)); d.Source != "upstash" {
		t.Fatalf("warm-up: %+v, want a decision from upstash", d)
	}
	ip := freshIP()
	var steps []chargeStep
	timeouts, sinceTimeout, denied := 0, 0, false
	if sc.sustained {
		px.Set(faultproxy.DropReply())
	}
	for deadline := time.Now().Add(time.Minute); timeouts < sc.timeoutsWanted(); {
		if time.Now().After(deadline) {
			t.Fatalf("only %d dropped replies in a minute (%d decisions)", timeouts, len(steps))
		}
		if !sc.sustained && sinceTimeout >= 2 && (denied || !sc.drainFirst) {
			px.Set(faultproxy.DropReply())
		}
		reqs, held := px.Requests(), len(px.LateReplies())
		d := st.decide(authEvent(ip, nil))
		if !sc.sustained {
			px.Set(faultproxy.Pass())
		}
		s := chargeStep{d: d, calls: px.Requests() - reqs, timedOut: px.Count(faultproxy.ModeLateReply) > uint64(timeouts)}
		if s.timedOut {
			// The request reached Upstash when the decision began; its
			// reply is recorded once the server has answered (a hang
			// guard, not a timing assertion).
			for wait := time.Now().Add(10 * time.Second); len(px.LateReplies()) == held; {
				if time.Now().After(wait) {
					t.Fatal("the Upstash-compatible server did not answer the dropped request within 10 s")
				}
				time.Sleep(time.Millisecond)
			}
			replies := px.LateReplies()
			s.charged = scriptCharged(t, replies[len(replies)-1])
			timeouts++
			sinceTimeout, denied = 0, false
		} else {
			s.charged = d.Source == "upstash" && d.Effect == "Allow"
			if d.Source == "upstash" {
				sinceTimeout++
			}
			if d.Effect == "Deny" {
				denied = true
			}
		}
		steps = append(steps, s)
		time.Sleep(sc.pacing) // the caller's demand, not moving a bucket
	}
	px.Set(faultproxy.Pass())
	return steps
}

// checkChargeSteps asserts the per-decision and per-mode invariants and
// returns the tally.
func checkChargeSteps(t *testing.T, steps []chargeStep, sc chargeScenario) chargeTally {
	t.Helper()
	var ta chargeTally
	for i, s := range steps {
		d := s.d
		what := fmt.Sprintf("decision %d (%s from %s, %d calls, reply dropped: %v, charged: %v)", i+1, d.Effect, d.Source, s.calls, s.timedOut, s.charged)
		if d.Err != nil {
			t.Fatalf("%s: error %v", what, d.Err)
		}
		if s.timedOut && d.Source == "upstash" {
			t.Errorf("%s: decided by Upstash although its reply was dropped", what)
		}
		if s.calls == 0 && d.Source != "cache" && !sc.sustained {
			t.Errorf("%s: no call to Upstash, yet not a deny-cache answer", what)
		}
		ta.decisions++
		if ta.first.IsZero() {
			ta.first = d.Start
		}
		ta.last = d.Start.Add(d.Latency)
		allowed := d.Effect == "Allow"
		if allowed {
			ta.allowed++
			if d.Source == "upstash" {
				ta.upstashAllowed++
			}
		}
		if s.charged {
			ta.sharedGave++
		}
		if s.timedOut {
			ta.timeouts++
			if s.charged {
				ta.chargedTimeout++
			}
		}
		switch {
		case s.charged && !allowed:
			ta.lost++
		case allowed && !s.charged:
			ta.over++
		}
	}
	if ta.timeouts < sc.timeoutsWanted() {
		t.Fatalf("%d dropped replies, want %d: the scenario did not run", ta.timeouts, sc.timeoutsWanted())
	}
	if ta.lost > ta.chargedTimeout || ta.chargedTimeout > ta.timeouts {
		t.Errorf("%d tokens lost, %d charged timeouts of %d: want lost <= charged timeouts <= timeouts (one cost per timeout at most)", ta.lost, ta.chargedTimeout, ta.timeouts)
	}
	switch sc.mode {
	case "closed":
		if ta.over != 0 {
			t.Errorf("fail-closed admitted %d requests the shared bucket did not charge", ta.over)
		}
		if ta.lost != ta.chargedTimeout {
			t.Errorf("fail-closed: %d tokens lost, want one per charged timeout (%d)", ta.lost, ta.chargedTimeout)
		}
	case "open":
		if ta.lost != 0 {
			t.Errorf("fail-open lost %d tokens, want none (every failed call is allowed)", ta.lost)
		}
	default:
		if ta.lost > ta.over {
			t.Errorf("memory fallback: %d tokens lost, more than the %d requests it admitted uncharged", ta.lost, ta.over)
		}
	}
	return ta
}
