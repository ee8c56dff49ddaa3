package limiter

import (
	"strconv"
	"strings"
)

// known remembers, per bucket key, what this container last saw the shared
// store hold: the stored state and when its key expires. It serves two
// purposes, both without a request to Upstash:
//
//   - Guesses. The script writes first and compares after (see decide.lua):
//     when the key holds what this container saw last — it wrote it itself,
//     or the key expired as foreseen — an allowed decision costs one SET per
//     bucket and nothing else.
//   - Denials. A remembered token bucket, refilled to now, is an upper bound
//     on the real one (other containers only take from it); a remembered
//     quota is a lower bound on the tokens spent. So when they cannot pay a
//     request, the store would refuse it too, and a repeat denial is
//     answered here (Source "cache") until the retry time. This answer is
//     given only when every bucket of the request is remembered and not yet
//     expired, so that its RetryAfter and Remaining are what the store would
//     report, and only while the live settings are fresh (see
//     UpstashConfig.SettingsTTL): a flood of denials costs one request per
//     SettingsTTL. The one
//     exception to "never denies what the store allows" is clock skew: a
//     bucket last written by a container whose clock ran ahead (at most
//     MaxClockSkew) is read here without the refill of that gap.
//
// Bounded like the memory store; entries drain away once their key would
// have expired. Safe for concurrent use.
type known struct{ t *table }

// absent is the fullAt of an entry for a key the store did not hold: a full
// bucket (an upper bound however the key changed since), guessed absent.
const absent int64 = -1

func newKnown(maxKeys int) *known { return &known{t: newTable(16, maxKeys)} }

// get returns the entry for key.
func (k *known) get(key string) (entry, bool) {
	r := k.t.ref(key)
	mu := &k.t.shards[r.shard].mu
	mu.Lock()
	defer mu.Unlock()
	if p := k.t.findLocked(r, key); p >= 0 {
		return *k.t.atLocked(r, p), true
	}
	return entry{}, false
}

// put records e for key at now (ms).
func (k *known) put(key string, e entry, now int64) {
	r := k.t.ref(key)
	mu := &k.t.shards[r.shard].mu
	mu.Lock()
	if p := k.t.findLocked(r, key); p >= 0 {
		*k.t.atLocked(r, p) = e
	} else {
		k.t.insertLocked(r, key, e, now)
	}
	k.t.tickLocked(r, now)
	mu.Unlock()
}

// guess is what key is believed to hold at now: "" when nothing (never
// seen, or expired by now).
func (k *known) guess(key string, p params, now int64) string {
	if k == nil {
		return ""
	}
	e, ok := k.get(key)
	if !ok || e.fullAt <= now { // absent entries too
		return ""
	}
	return encodeState(e.state, p)
}

// encodeState is a state as the script stores it.
func encodeState(s state, p params) string {
	if p.quota {
		return strconv.FormatInt(s.units, 10) // the key names the window
	}
	return strconv.FormatInt(s.units, 10) + ":" + strconv.FormatInt(s.at, 10)
}

// decodeState reads a stored value ("" for an absent key: ok false).
func decodeState(v string, p params) (s state, ok bool) {
	if v == "" {
		return state{}, false
	}
	if p.quota {
		n, err := strconv.ParseInt(v, 10, 64)
		return state{units: n}, err == nil
	}
	us, as, found := strings.Cut(v, ":")
	u, err1 := strconv.ParseInt(us, 10, 64)
	a, err2 := strconv.ParseInt(as, 10, 64)
	return state{units: u, at: a}, found && err1 == nil && err2 == nil
}
