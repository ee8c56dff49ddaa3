// Package upstash is a small client for the Upstash Redis REST API, for the
// authorizer's hot path: one command or one Lua script per HTTPS POST, the
// reply decoded into a typed Go value. Upstash publishes no Go SDK, and its
// REST API suits Lambda better than a Redis connection: an HTTP keep-alive
// connection that went stale while the environment was frozen costs one
// failed call, not a broken pool.
//
// Arguments travel as JSON strings (Redis receives every argument as a bulk
// string anyway); the reply's "result" is decoded with encoding/json into
// the caller's value, e.g. *[]int64 for a script returning integers. The
// client's own work is small next to a network round trip, so it stays
// plain: no hand-written codec, no object pools.
//
// The client retries nothing: a command may have run even when its reply
// was lost, and a rate limiter must not charge twice. The one exception is
// Script.Run, which sends EVAL after a NOSCRIPT reply (the script did not
// run). Requests carry no GetBody, so net/http does not re-send them either.
//
// Every failure is a *Error whose Kind tells the caller what to do (fall
// back, log a misconfiguration); errors never contain the token, the
// command or a key.
//
// Client and Script are safe for concurrent use. The package starts no
// goroutines of its own (a Lambda environment freezes between invocations).
package upstash
