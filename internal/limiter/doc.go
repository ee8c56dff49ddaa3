// Package limiter decides requests on token buckets and quotas kept in
// Upstash Redis, all of a request's buckets in one REST request, with this
// container's memory as the fallback.
//
// Upstash bills per command and every decision waits on the network, so the
// design counts commands and round trips, not microseconds: one EVALSHA of
// decide.lua per decision (EVAL once after a SCRIPT FLUSH), which writes each
// bucket with one SET ... GET and compares the old value with what this
// container last saw (known.go). When they match — the caller was idle (no
// key) or this container wrote last — an allowed decision costs 1+N commands
// for N buckets; otherwise the script repairs its write in the same call
// (3 for one bucket), so no other call ever sees it. Denials charge nothing,
// and repeated ones are answered from memory without a request (Peek asks
// the same question without deciding: the authorizer's failed-key check).
//
// Amounts are exact integers (bucket.go: 86,400,000 units per token) that
// Lua's doubles hold; live factors (cmd/limits) and warm-up scale token
// buckets in integer millionths (settings.go), identically in Go and Lua.
// Quotas count whole tokens per calendar window in UTC, one key per window.
//
// The clock is the caller's, passed in ARGV: Upstash asks for deterministic
// scripts, the memory fallback must agree with the script, tests inject
// time. A bucket's timestamp never moves backwards, so a lagging clock
// mints nothing; a clock δ ahead gains at most Rate·δ once; a stored
// instant more than MaxClockSkew ahead is rebased (the one denial that
// writes). Every key a script touches is in KEYS, as Upstash's
// "#!lua flags=allow-key-locking" requires; scripts on different callers
// then run in parallel there.
//
// When Upstash fails, times out or its circuit breaker is open, the
// FailureMode decides (this container's MemoryStore, open or closed), every
// such decision counted and logged without flooding. Nothing here starts a
// goroutine: a Lambda process freezes between invocations.
package limiter
