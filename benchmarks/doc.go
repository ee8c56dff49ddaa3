// Package benchmarks is bucketgate's measurement harness: the figures and
// pictures in docs/BENCHMARKS.md come from its tests (the pictures through
// benchmarks/charts). It has no code of its own outside tests.
//
// Two kinds of tests:
//
//   - TestSmoke*: run by plain `go test` (and `make test`). They exercise
//     the harness on a few requests and assert what the figures rest on
//     whatever the machine (one Upstash request per decision, 1+N Redis
//     commands when guesses hold and one more per wrong guess, denials
//     answered from the deny cache, the peer driver's protocol and the
//     peer's known bill, one EMF line per decision), in a few seconds.
//   - TestBench: the measurements. It skips unless BUCKETGATE_BENCH=1, so
//     `go test ./...` stays fast. Each subtest is one figure of
//     docs/BENCHMARKS.md; comparisons are measured in one run.
//
// The figures (subtests of TestBench):
//
//	cost        Upstash requests, Redis commands and dollars per allowed
//	            decision by traffic mix, bucketgate vs @upstash/ratelimit
//	            (tools/node/ratelimit-peer.mjs) on the same server
//	policies    commands per decision by policy mix; live-settings reads
//	denials     commands per denial (guess right or wrong); floods
//	latency     authorizer decision vs a raw one-command REST round trip vs
//	            the peer's limit(), p50/p99, loopback
//	rtt         the same at +1 ms and +5 ms through a delaying TCP proxy;
//	            the peer there too
//	prime       first decision of a fresh process vs steady state, over TLS,
//	            with and without Prime; Upstash down at start
//	global      the global bucket: script time, throughput under concurrency
//	metrics     CPU and bytes of the EMF line per decision
//	throughput  the decision path in one process, 8 goroutines
//	memory      the memory store at 1M keys: bounded, eviction works
//	coldstart   process start to first decision; arm64 binary sizes
//
// Reproduce every figure (make bench; about 5 minutes on 2 cores):
//
//	BUCKETGATE_INTEGRATION=1 BUCKETGATE_BENCH=1 BUCKETGATE_BENCH_OUT=$PWD/bin/bench-results.md \
//	  BUCKETGATE_BENCH_CHARTS=$PWD/bin/bench-charts.json \
//	  go test -count=1 -timeout 30m -run '^TestBench$' -v ./benchmarks/
//	go run ./benchmarks/charts/render -in bin/bench-charts.json -out docs/bench
//
// or one figure: -run '^TestBench$/^cost$'. The tables are printed on
// stdout and, when BUCKETGATE_BENCH_OUT names a file (relative paths are
// relative to this directory), written to it in Markdown: TestBench
// rewrites the file, each figure appends its tables. They need
// redis-server, node with tools/node/node_modules (npm ci), make and the go
// tool; under BUCKETGATE_INTEGRATION=1 a missing one is a failure, not a
// skip.
package benchmarks
