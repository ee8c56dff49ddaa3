package benchmarks

import (
	"os"
	"testing"
)

// TestBench measures every figure of docs/BENCHMARKS.md; it skips unless
// BUCKETGATE_BENCH=1. Subtests run one after another (never in parallel:
// they would skew each other's timings on a 2-core machine). When
// BUCKETGATE_BENCH_OUT names a file, it is rewritten with this run's
// tables; when BUCKETGATE_BENCH_CHARTS names one, it is rewritten with the
// data of this run's charts (benchmarks/charts/render draws them).
func TestBench(t *testing.T) {
	requireBench(t)
	if path := os.Getenv(envBenchOut); path != "" {
		header := "# bucketgate benchmark results\n\nWritten by `TestBench` (package benchmarks); see docs/BENCHMARKS.md for the reading.\n"
		if err := os.WriteFile(path, []byte(header), 0o644); err != nil {
			t.Fatalf("%s: %v", envBenchOut, err)
		}
	}
	if path := os.Getenv(envBenchCharts); path != "" {
		t.Cleanup(func() { writeCharts(t, path) })
	}
	t.Run("cost", benchCost)
	t.Run("policies", benchPolicies)
	t.Run("denials", benchDenials)
	t.Run("latency", benchLatency)
	t.Run("rtt", benchRTT)
	t.Run("prime", benchPrime)
	t.Run("global", benchGlobal)
	t.Run("metrics", benchMetrics)
	t.Run("throughput", benchThroughput)
	t.Run("memory", benchMemory)
	t.Run("coldstart", benchColdStart)
}
