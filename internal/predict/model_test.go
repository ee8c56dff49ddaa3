package predict

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPredict(t *testing.T) {
	// Expected scores computed independently (Python: 1/(1+exp(-(w·x+b))),
	// rounded to 6 decimals).
	tests := []struct {
		name  string
		model Model
		x     []float64
		want  Prediction
	}{
		{"standard zeros is sigmoid of bias", StandardModel, []float64{0, 0, 0, 0}, Prediction{Score: 0.377541}},
		{"standard churner", StandardModel, []float64{0.5, -1.2, 2.0, 0.3}, Prediction{Score: 0.672607, Label: 1}},
		{"standard loyal", StandardModel, []float64{1.5, 0.2, 0.0, -0.3}, Prediction{Score: 0.139434}},
		{"standard inactive", StandardModel, []float64{-0.2, 1.1, 0.9, 1.4}, Prediction{Score: 0.837535, Label: 1}},
		{"premium churner", PremiumModel, []float64{0.5, -1.2, 2.0, 0.3}, Prediction{Score: 0.731059, Label: 1}},
		{"premium zeros", PremiumModel, []float64{0, 0, 0, 0}, Prediction{Score: 0.34299}},
		{"premium loyal", PremiumModel, []float64{-1.0, 0.4, -0.5, -0.8}, Prediction{Score: 0.320821}},
		{"zero model scores one half, label 1", Model{}, []float64{3, -7, 1, 2}, Prediction{Score: 0.5, Label: 1}},
		{"large finite inputs saturate to 1", StandardModel, []float64{-1e6, 0, 1e6, 0}, Prediction{Score: 1, Label: 1}},
		{"large finite inputs saturate to 0", StandardModel, []float64{1e6, 0, -1e6, 0}, Prediction{Score: 0}},
		{"inputs beyond 1 take the scaled path", StandardModel, []float64{2, -3, 4, 5}, Prediction{Score: 0.973403, Label: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.model.Predict(tt.x)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Predict(%v) (-want +got):\n%s", tt.x, diff)
			}
		})
	}
}

func TestPredictNeverNaN(t *testing.T) {
	// JSON cannot carry NaN, so no input may produce one.
	extremes := []float64{math.MaxFloat64, -math.MaxFloat64, 1e300, -1e300, math.SmallestNonzeroFloat64, 0, -1, 1}
	for _, m := range []Model{StandardModel, PremiumModel} {
		for _, a := range extremes {
			for _, b := range extremes {
				for _, c := range extremes {
					x := []float64{a, b, c, -a}
					p := m.Predict(x)
					if math.IsNaN(p.Score) || p.Score < 0 || p.Score > 1 {
						t.Fatalf("%s.Predict(%v) = %v, want a score in [0, 1]", m.Name, x, p)
					}
				}
			}
		}
	}
	// A model whose naive w·x overflows to +Inf and -Inf (NaN) for one row.
	steep := Model{Name: "steep", Weights: [NumFeatures]float64{2, 0, -2, 0}}
	x := []float64{math.MaxFloat64, 0, math.MaxFloat64, 0}
	if naive := steep.Weights[0]*x[0] + steep.Weights[2]*x[2]; !math.IsNaN(naive) {
		t.Fatalf("naive w·x = %v, want NaN: the row does not exercise the overflow", naive)
	}
	if got, want := steep.Predict(x), (Prediction{Score: 0.5, Label: 1}); got != want {
		t.Errorf("steep.Predict(%v) = %v, want %v (the contributions cancel)", x, got, want)
	}
}

func TestPredictShortOrLongRows(t *testing.T) {
	// Predict is total: missing features count as 0, extra ones are ignored.
	if got, want := StandardModel.Predict(nil), StandardModel.Predict([]float64{0, 0, 0, 0}); got != want {
		t.Errorf("Predict(nil) = %v, want %v", got, want)
	}
	if got, want := StandardModel.Predict([]float64{0.5, -1.2, 2.0, 0.3, 99}), StandardModel.Predict([]float64{0.5, -1.2, 2.0, 0.3}); got != want {
		t.Errorf("Predict(5 values) = %v, want %v", got, want)
	}
}
