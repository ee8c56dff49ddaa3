// Package soak runs bucketgate for minutes under mixed traffic while a
// schedule injects overlapping faults, and checks its invariants the whole
// time. It has no code of its own: everything is in its tests.
//
// What runs: cmd/local start-api's engine (internal/local/startapi) serving
// template.yaml with up to four authorizer and four predict processes,
// real redis-server behind the Upstash-compatible server, dynalite for the
// key table, fault proxies in front of both. The authorizer is built with
// the soak tag (functions/authorizer/clock_soak.go), which skews each
// process's clock by -1 s, 0 or +1 s. The traffic: anonymous callers,
// keyed callers, batch calls, premium calls (and other tiers refused on
// the premium route), one flooding address, one address trying made-up
// keys next to a valid one. The schedule: Upstash hanging, answering 500,
// resetting connections; SCRIPT FLUSH; redis-server restarted; the key
// store resetting connections; function processes killed.
//
// The invariants (docs/RELIABILITY.md, "Soak under rolling faults"): no caller admitted beyond
// its bucket's bound (burst + rate × elapsed, plus the documented clock-skew,
// fallback and data-loss allowances); no 5xx but the documented 503s (and a
// 502 or 503 per killed process); every process's RSS bounded; decisions
// back on Upstash within 10 s of each fault's end; no log flood.
//
// Run it with `make soak` (SOAK_DURATION, default 10m; `go test -short`
// or SOAK_DURATION=60s for a quick run). It is skipped unless
// BUCKETGATE_SOAK=1, so `make test` does not run it. It writes a plot of
// decisions by source over time to SOAK_SVG (make soak:
// docs/soak-decisions.svg).
package soak
