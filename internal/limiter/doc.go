// Package limiter is bucketgate's token-bucket rate limiter: the limit
// vocabulary (Limit, TIER_LIMITS, ROUTE_COSTS), a Lua script run on Upstash
// Redis (UpstashStore), an in-memory store with the same arithmetic
// (MemoryStore), and the Limiter that puts them together with a timeout, a
// circuit breaker, a failure mode and a cache of denials.
//
// # Token bucket
//
// A bucket holds up to Burst tokens and gains Rate tokens every Period,
// continuously (fractions of a token are kept exactly, see bucket.go). A
// request of cost C passes when every bucket it names holds at least C
// tokens; it then takes C from each. A denied request takes nothing. A bucket
// nobody has touched is full. A request costing more than a bucket's Burst
// can never pass (Reason "cost_exceeds_burst"; RetryAfter is the bucket's
// Window, the longest any wait in that bucket can be, and the reason tells
// the client that waiting will not help).
//
// # Upstash: one request, few commands
//
// A decision is one REST request: EVALSHA of tokenbucket.lua, falling back
// to EVAL on NOSCRIPT (after a restart or SCRIPT FLUSH). Each bucket's state
// is one string "units:at" so that the script needs one MGET for all
// buckets and, when the request passes, one SET ... PX per bucket. Upstash
// bills each command, the EVALSHA included: a denial costs 2 (EVALSHA +
// MGET), an allowed single-bucket decision 3 (EVALSHA + MGET + SET), where
// the official JavaScript token bucket spends 4 and 2. Keys expire when
// their bucket would be full, so idle callers cost no memory (a missing key
// reads as a full bucket, which is then exact).
//
// # Clock
//
// The script uses the caller's clock, passed in ARGV, not Redis TIME:
// Upstash asks for deterministic scripts (values from KEYS and ARGV only),
// the memory fallback must agree with the script, and tests inject time.
// Lambda hosts keep their clocks synchronised, but not perfectly, so a
// bucket's timestamp never moves backwards: a caller whose clock lags reads
// the bucket as of the stored instant and cannot mint tokens; a caller whose
// clock runs δ ahead can take at most Rate·δ tokens early, once (after its
// write the bucket's time is its time). To keep one runaway clock (or a
// clock stepped far back) from freezing a bucket, a stored instant is
// believed at most MaxClockSkew (default 2 s) ahead of the reader's clock; a
// bucket stamped further ahead is rebased to the reader's clock plus
// MaxClockSkew, without refill for the gap, and stored so (the one case
// where a denial writes). Only clocks more than MaxClockSkew apart can thus
// repeat the early grant, each time by at most the bucket's Burst.
//
// # allow-key-locking
//
// The script starts with Upstash's "#!lua flags=allow-key-locking" line: on
// Upstash it then locks only its KEYS, so decisions for different callers
// run in parallel instead of taking the database-wide lock. Every key it
// touches is in KEYS, as the flag requires. Plain Redis 7 rejects the
// unknown flag; bucketgate's Upstash-compatible server (internal/upstashlocal)
// strips it before forwarding and answers to the SHA-1 of the script as sent,
// which is ScriptSHA1 — the digest the client computes.
//
// # Failure handling
//
// The Limiter calls the shared store with Config.Timeout (LIMITER_TIMEOUT).
// When the call fails or times out, or while the circuit breaker is open,
// Config.FailureMode decides: fallback (this container's MemoryStore), open
// (allow) or closed (deny for FailClosedRetryAfter). An HTTP 401 is handled
// the same way (availability first) but logged at ERROR as a
// misconfiguration. The breaker opens after BreakerFailures consecutive
// failures (timeouts included), skips the store while open, lets one probe
// through after BreakerCooldown (≤ 5 s) and closes when it succeeds, so
// decisions return to the shared store within 10 s of its recovery. Every
// decision is counted by Source (Stats); failures are logged at most once
// per LogInterval per reason, with the number suppressed. Bucket keys are
// never logged.
//
// # Deny cache
//
// When the shared store denies a request, or allows one with a bucket's
// last tokens for that cost, the Limiter keeps the buckets' states; a repeat
// within the retry time is denied from memory with no Upstash request
// (Source "cache"), so a flood of N requests from one caller costs Burst
// calls, not N. It never denies what the store would allow, and its
// RetryAfter is what the store would say: see denyCache.
//
// # Lambda
//
// Nothing here starts a goroutine or a timer: the Lambda process freezes
// between invocations. Sweeping of idle buckets happens lazily inside calls.
package limiter
