package benchmarks

import (
	"os"
	"testing"
)

// TestBench measures every figure of docs/BENCHMARKS.md; it skips unless
// BUCKETGATE_BENCH=1. Subtests run one after another (never in parallel:
// they would skew each other's timings on a 2-core machine). When
// BUCKETGATE_BENCH_OUT names a file, it is rewritten with this run's tables.
func TestBench(t *testing.T) {
	requireBench(t)
	if path := os.Getenv(envBenchOut); path != "" {
		header := "# bucketgate benchmark results\n\nWritten by `TestBench` (package benchmarks); see docs/BENCHMARKS.md for the reading.\n"
		if err := os.WriteFile(path, []byte(header), 0o644); err != nil {
			t.Fatalf("%s: %v", envBenchOut, err)
		}
	}
	t.Run("cost", benchCost)
	t.Run("latency", benchLatency)
	t.Run("rtt", benchRTT)
	t.Run("memory", benchMemory)
	t.Run("e2e", benchE2E)
	t.Run("coldstart", benchColdStart)
}
