// Package bench holds peer benchmarks for bucketgate's limiter: the same
// keyed workload run against bucketgate's MemoryStore, golang.org/x/time/rate
// in a mutex-guarded map, and github.com/sethvargo/go-limiter's memorystore.
//
// It is a separate module so that bucketgate itself does not require the
// peers. Run from this directory:
//
//	go test -run '^$' -bench KeyedInterleaved -benchtime 1x   # the comparison
//	go test -run '^$' -bench . -benchmem -count 5
//
// Results and their reading are in ../docs/BENCHMARKS-memory.md and
// ../docs/BENCHMARKS.md ("Memory path").
package bench
