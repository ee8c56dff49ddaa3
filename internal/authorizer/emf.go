package authorizer

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// MetricsNamespace is the CloudWatch namespace of the authorizer's metrics.
const MetricsNamespace = "Bucketgate"

// emf writes CloudWatch Embedded Metric Format lines: one JSON object per
// decision that CloudWatch Logs turns into metrics without an API call.
// Metrics: Allowed, Denied, Forbidden, Fallback (decisions not made on
// Upstash or the deny cache: memory, fail-open, fail-closed) as counts, and
// DecisionLatency in milliseconds, with the Tier as the one dimension.
type emf struct {
	mu sync.Mutex
	w  io.Writer
}

type emfLine struct {
	AWS             emfMeta `json:"_aws"`
	Tier            string  `json:"Tier"`
	Source          string  `json:"Source"`
	Allowed         int     `json:"Allowed"`
	Denied          int     `json:"Denied"`
	Forbidden       int     `json:"Forbidden"`
	Fallback        int     `json:"Fallback"`
	DecisionLatency float64 `json:"DecisionLatency"`
}

type emfMeta struct {
	Timestamp         int64          `json:"Timestamp"`
	CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

var emfDirectives = []emfDirective{{
	Namespace:  MetricsNamespace,
	Dimensions: [][]string{{"Tier"}},
	Metrics: []emfMetric{
		{Name: "Allowed", Unit: "Count"},
		{Name: "Denied", Unit: "Count"},
		{Name: "Forbidden", Unit: "Count"},
		{Name: "Fallback", Unit: "Count"},
		{Name: "DecisionLatency", Unit: "Milliseconds"},
	},
}}

// record writes one line; a nil *emf writes nothing. Write errors are
// ignored: metrics must never fail a decision.
func (e *emf) record(now time.Time, tier, decision, source string, latency time.Duration) {
	if e == nil {
		return
	}
	l := emfLine{
		AWS:             emfMeta{Timestamp: now.UnixMilli(), CloudWatchMetrics: emfDirectives},
		Tier:            tier,
		Source:          source,
		DecisionLatency: ms(latency),
	}
	switch decision {
	case "allowed":
		l.Allowed = 1
	case "denied":
		l.Denied = 1
	case "forbidden":
		l.Forbidden = 1
	}
	switch source {
	case "memory", "fail-open", "fail-closed":
		l.Fallback = 1
	}
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	b = append(b, '\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(b)
}
