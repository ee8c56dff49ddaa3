// Package benchmarks is bucketgate's measurement harness: the figures in
// docs/BENCHMARKS.md come from its tests. It has no code of its own outside
// tests; everything lives in _test.go files.
//
// Two kinds of tests:
//
//   - TestSmoke*: run by plain `go test` (and `make test`). They exercise
//     the harness on a few requests and assert what must hold whatever the
//     machine (one Upstash request per allowed decision, three Redis
//     commands, a flood answered from the deny cache, the peer driver's
//     protocol and the peer's known bill), in about a second.
//   - TestBench: the measurements. It skips unless BUCKETGATE_BENCH=1, so
//     `go test ./...` stays fast. Each subtest is one figure of
//     docs/BENCHMARKS.md; comparisons are measured in one run.
//
// The figures (subtests of TestBench):
//
//	cost       Upstash requests and Redis commands per decision, bucketgate vs
//	           @upstash/ratelimit (tools/node/ratelimit-peer.mjs) against the
//	           same upstashlocal server and redis-server; dollars per 1M
//	latency    authorizer decision vs a raw one-command REST round trip vs the
//	           peer's limit(), p50/p99
//	rtt        the same decision vs raw round trip comparison with a fixed
//	           network delay added by a TCP proxy both go through (loopback,
//	           +1 ms, +5 ms round trip)
//	memory     the memory store at 1M keys: bounded, eviction works
//	e2e        requests/s and p50/p99 through `cmd/local start-api`
//	coldstart  process start to first decision through the Runtime API;
//	           arm64 binary sizes
//
// Reproduce every figure (make bench; about 3 minutes on 2 cores):
//
//	BUCKETGATE_INTEGRATION=1 BUCKETGATE_BENCH=1 BUCKETGATE_BENCH_OUT=$PWD/bin/bench-results.md \
//	  go test -count=1 -timeout 20m -run '^TestBench$' -v ./benchmarks/
//
// or one figure: -run '^TestBench$/^cost$'. The tables are printed on
// stdout and, when BUCKETGATE_BENCH_OUT names a file (relative paths are
// relative to this directory), written to it in Markdown: TestBench
// rewrites the file, each figure appends its tables. They need
// redis-server, node with tools/node/node_modules (npm ci), make and the go
// tool; under BUCKETGATE_INTEGRATION=1 a missing one is a failure, not a
// skip.
package benchmarks
