package predict

import "math"

// NumFeatures is the number of input features per row (N): every row of
// "inputs" must hold exactly this many numbers.
const NumFeatures = 4

// FeatureNames names the input features, in row order. The mock models expect
// standardized values (z-scores: 0 is the population mean, 1 one standard
// deviation above it), but any finite number is accepted.
var FeatureNames = [NumFeatures]string{
	"tenure_z",          // how long the customer has been subscribed
	"monthly_spend_z",   // what they pay per month
	"support_tickets_z", // support tickets opened in the last 90 days
	"inactive_days_z",   // days since they last logged in
}

// Model is a deterministic mock ML model: a logistic regression with fixed
// weights that scores the churn risk of a customer from NumFeatures
// standardized features. The zero value scores every row 0.5.
//
// A Model is a small immutable value; it is safe for concurrent use.
type Model struct {
	Name    string               // stable model name, e.g. "bucketgate-churn"
	Version string               // semantic version of the weights
	Weights [NumFeatures]float64 // one weight per feature, in FeatureNames order
	Bias    float64              // intercept
}

// StandardModel serves POST /predict and POST /predict/batch.
//
//	score = sigmoid(-0.8*tenure + 0.3*spend + 0.9*tickets + 0.6*inactive - 0.5)
//
// Long tenure lowers the risk; support tickets and inactivity raise it.
var StandardModel = Model{
	Name:    "bucketgate-churn",
	Version: "1.0.0",
	Weights: [NumFeatures]float64{-0.8, 0.3, 0.9, 0.6},
	Bias:    -0.5,
}

// PremiumModel serves POST /premium/predict: the same features with weights
// "trained on more data" (a mock of a better model sold to the premium tier).
//
//	score = sigmoid(-0.95*tenure + 0.25*spend + 1.1*tickets + 0.75*inactive - 0.65)
var PremiumModel = Model{
	Name:    "bucketgate-churn-premium",
	Version: "1.1.0",
	Weights: [NumFeatures]float64{-0.95, 0.25, 1.1, 0.75},
	Bias:    -0.65,
}

// Prediction is the model's answer for one row.
type Prediction struct {
	Score float64 // probability of churn in [0, 1], rounded to 6 decimal places
	Label int     // 1 when Score >= 0.5 (predicted to churn), else 0
}

// Predict scores one row. x must hold NumFeatures finite numbers; extra
// values are ignored and missing ones count as 0. The result is never NaN,
// whatever the magnitude of the inputs (for weights and bias of magnitude
// below 1e300, as every model here has).
func (m Model) Predict(x []float64) Prediction {
	s := round6(sigmoid(m.logit(x)))
	p := Prediction{Score: s}
	if s >= 0.5 {
		p.Label = 1
	}
	return p
}

// logit returns w·x + b. Computed directly, w_i*x_i can overflow to +Inf for
// one feature and -Inf for another, and their sum is NaN. So the inputs are
// first scaled into [-1, 1] by their largest magnitude (when it exceeds 1):
// the scaled sum is always finite, and multiplying it back can only overflow
// to ±Inf (which the sigmoid maps to 1 or 0), never to NaN. Rows of values
// within [-1, 1] are computed without scaling.
func (m Model) logit(x []float64) float64 {
	scale := 1.0
	for i := 0; i < NumFeatures && i < len(x); i++ {
		scale = max(scale, math.Abs(x[i]))
	}
	z := m.Bias / scale
	for i := 0; i < NumFeatures && i < len(x); i++ {
		z += m.Weights[i] * (x[i] / scale)
	}
	return z * scale
}

func sigmoid(z float64) float64 {
	// Two forms so exp never overflows to a misleading result: exp(-z) for
	// z >= 0 and exp(z) for z < 0 are both in (0, 1].
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

func round6(p float64) float64 { return math.Round(p*1e6) / 1e6 }
