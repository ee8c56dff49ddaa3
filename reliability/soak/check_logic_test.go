package soak_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }

// TestCheckAdmissions: the soak's over-admission check finds exactly the
// admissions beyond burst + rate × elapsed (+ allowances).
func TestCheckAdmissions(t *testing.T) {
	spec := bucketSpec{Burst: 5, Rate: 1}
	shared := func(s float64, n int) []admission {
		out := make([]admission, n)
		for i := range out {
			out[i] = admission{At: at(s), Cost: 1, Shared: true}
		}
		return out
	}
	memory := func(pid int, s float64, n int) []admission {
		out := shared(s, n)
		for i := range out {
			out[i].Shared, out[i].PID = false, pid
		}
		return out
	}
	cat := func(parts ...[]admission) []admission {
		var out []admission
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name  string
		adm   []admission
		allow allowances
		want  []float64 // excess of each violation, in order
	}{
		{name: "the burst at once", adm: shared(0, 5)},
		{name: "one beyond the burst", adm: shared(0, 6), want: []float64{1}},
		{name: "burst, then the rate", adm: cat(shared(0, 5), shared(1, 1), shared(3, 2))},
		{name: "burst, then faster than the rate", adm: cat(shared(0, 5), shared(1, 2)), want: []float64{1}},
		{name: "any window is checked, not only from the start", adm: cat(shared(0, 1), shared(10, 5), shared(10.5, 1)), want: []float64{0.5}},
		{name: "costs count", adm: []admission{{At: at(0), Cost: 5, Shared: true}, {At: at(0), Cost: 5, Shared: true}}, want: []float64{5}},
		{name: "skew allowance", adm: shared(0, 7), allow: allowances{Skew: 2 * time.Second}},
		{name: "skew allowance exceeded", adm: shared(0, 8), allow: allowances{Skew: 2 * time.Second}, want: []float64{1}},
		{name: "data loss refills", adm: cat(shared(0, 5), shared(1, 5)), allow: allowances{DataLoss: []time.Time{at(0.5)}}},
		{name: "each process's memory has its own burst", adm: cat(memory(1, 0, 5), memory(2, 0, 5), shared(0, 5))},
		{name: "one process's memory beyond its burst", adm: cat(memory(1, 0, 5), memory(1, 0.5, 1)), want: []float64{0.5}},
		{name: "a decision's latency widens its window", adm: []admission{
			{At: at(0), Cost: 5, Shared: true}, {At: at(0.5), Latency: 500 * time.Millisecond, Cost: 1, Shared: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []float64
			for _, v := range checkAdmissions("c", spec, tt.adm, tt.allow) {
				got = append(got, v.Excess)
			}
			approx := cmp.Comparer(func(a, b float64) bool { d := a - b; return d < 0.01 && d > -0.01 })
			if diff := cmp.Diff(tt.want, got, approx); diff != "" {
				t.Errorf("excesses (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRecoveryChecks: a fallback is explained by an Upstash fault under
// way or ended at most 10 s before; recoveries are measured from the end
// of each stretch of overlapping faults.
func TestRecoveryChecks(t *testing.T) {
	faults := []window{
		{Kind: "hang", Start: at(10), End: at(20), Upstash: true},
		{Kind: "redis down", Start: at(18), End: at(25), Upstash: true},
		{Kind: "key store", Start: at(40), End: at(50), KeyStore: true},
		{Kind: "500", Start: at(60), End: at(62), Upstash: true},
	}
	starts := []time.Time{at(9), at(12), at(27), at(35.5), at(45), at(61), at(63), at(80)}
	var spans []span
	for _, s := range starts {
		spans = append(spans, span{s, s.Add(10 * time.Millisecond)})
	}
	// One began 5 ms before a fault and met it in flight: explained.
	spans = append(spans, span{at(59.995), at(60.005)})
	if diff := cmp.Diff([]time.Time{at(9), at(35.5), at(45), at(80)}, lateFallbacks(spans, faults)); diff != "" {
		t.Errorf("late fallbacks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{20 * time.Second, 18 * time.Second}, recoveries(spans, faults)); diff != "" {
		t.Errorf("recoveries (-want +got):\n%s", diff)
	}
}
