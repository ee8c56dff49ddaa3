package authorizer

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/bucketgate/bucketgate/internal/limiter"
)

// MetricsNamespace is the CloudWatch namespace of the authorizer's metrics.
const MetricsNamespace = "Bucketgate"

// emf writes CloudWatch Embedded Metric Format lines: one JSON object per
// decision that CloudWatch Logs turns into metrics without an API call
// (README, "Monitoring"). Every line counts one request by outcome, with
// the dimension sets [] (the total), [Tier] and [Route]; a denial (or a shadow denial) also
// counts under [Policy], the policy that denied. Cardinality is bounded:
// tiers come from TIER_LIMITS, routes from the template's resources (at
// most maxRoutes, then "other"), policies from the configuration.
type emf struct {
	mu     sync.Mutex
	w      io.Writer
	routes map[string]bool
}

// maxRoutes bounds the Route dimension's values per container.
const maxRoutes = 64

type outcome int

const (
	outcomeAllowed outcome = iota
	outcomeDenied
	outcomeForbidden
	outcomeUnauthorized
	outcomeShadowDenied
)

// metric is one decision, as the metrics see it.
type metric struct {
	tier, route, caller, policy string
	outcome                     outcome
	source                      limiter.Source
	upstash                     time.Duration // 0: no Upstash call
	limit, remaining            int64
	reset                       time.Duration
	// shadowDenied marks an unauthorized request whose failed-key bucket
	// refused it in shadow mode: counted as ShadowDenied under policy.
	shadowDenied bool
}

func (m metric) unauthorized() metric {
	m.tier, m.outcome = "none", outcomeUnauthorized
	return m
}

// routeName is the Route dimension: METHOD and the template's resource
// path (never the raw path, which a client chooses).
func routeName(method, resource string) string {
	if resource == "" || method == "" || len(resource) > 256 {
		return "other"
	}
	return method + " " + resource
}

type emfLine struct {
	AWS             emfMeta  `json:"_aws"`
	Tier            string   `json:"Tier"`
	Route           string   `json:"Route"`
	Policy          string   `json:"Policy,omitempty"`
	Source          string   `json:"Source"`
	Requests        int      `json:"Requests"`
	Allowed         int      `json:"Allowed"`
	Denied          int      `json:"Denied"`
	Forbidden       int      `json:"Forbidden"`
	Unauthorized    int      `json:"Unauthorized"`
	Fallback        int      `json:"Fallback"`
	ShadowDenied    int      `json:"ShadowDenied"`
	DecisionLatency float64  `json:"DecisionLatency"`
	UpstashLatency  *float64 `json:"UpstashLatency,omitempty"`
	Caller          string   `json:"Caller,omitempty"`
	Limit           *int64   `json:"Limit,omitempty"`
	Remaining       *int64   `json:"Remaining,omitempty"`
	ResetMs         *int64   `json:"ResetMs,omitempty"`
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

var (
	emfCounts = emfDirective{
		Namespace: MetricsNamespace,
		// [] is the total over every tier and route, which alarms need
		// (they cannot SEARCH); the EMF specification allows an empty set.
		Dimensions: [][]string{{}, {"Tier"}, {"Route"}},
		Metrics: []emfMetric{
			{Name: "Requests", Unit: "Count"},
			{Name: "Allowed", Unit: "Count"},
			{Name: "Denied", Unit: "Count"},
			{Name: "Forbidden", Unit: "Count"},
			{Name: "Unauthorized", Unit: "Count"},
			{Name: "Fallback", Unit: "Count"},
			{Name: "ShadowDenied", Unit: "Count"},
			{Name: "DecisionLatency", Unit: "Milliseconds"},
			{Name: "UpstashLatency", Unit: "Milliseconds"},
		},
	}
	emfPolicy = emfDirective{
		Namespace:  MetricsNamespace,
		Dimensions: [][]string{{"Policy"}},
		Metrics:    []emfMetric{{Name: "Denied", Unit: "Count"}, {Name: "ShadowDenied", Unit: "Count"}},
	}
	emfPlain  = []emfDirective{emfCounts}
	emfDenied = []emfDirective{emfCounts, emfPolicy}
	// Lines of decisions without an Upstash call carry no UpstashLatency,
	// so they must not declare it: the EMF specification requires the root
	// to hold every metric a directive names.
	emfCountsLocal = emfCounts.without("UpstashLatency")
	emfPlainLocal  = []emfDirective{emfCountsLocal}
	emfDeniedLocal = []emfDirective{emfCountsLocal, emfPolicy}
)

// without returns d less the metric named name.
func (d emfDirective) without(name string) emfDirective {
	out := emfDirective{Namespace: d.Namespace, Dimensions: d.Dimensions}
	for _, m := range d.Metrics {
		if m.Name != name {
			out.Metrics = append(out.Metrics, m)
		}
	}
	return out
}

// record writes the metrics of one decision that started at start.
func (h *Handler) record(m metric, start time.Time) {
	if h.metrics != nil {
		now := h.now()
		h.metrics.write(m, now, now.Sub(start))
	}
}

// write writes one line. Write errors are ignored: metrics must never fail
// a decision.
func (e *emf) write(m metric, now time.Time, latency time.Duration) {
	l := emfLine{
		AWS:             emfMeta{Timestamp: now.UnixMilli(), CloudWatchMetrics: emfPlain},
		Tier:            m.tier,
		Source:          m.source.String(),
		Requests:        1,
		DecisionLatency: ms(latency),
		Caller:          m.caller,
	}
	switch m.outcome {
	case outcomeAllowed:
		l.Allowed = 1
	case outcomeDenied:
		l.Denied = 1
	case outcomeForbidden:
		l.Forbidden = 1
	case outcomeUnauthorized:
		l.Unauthorized = 1
	case outcomeShadowDenied:
		l.Allowed, l.ShadowDenied = 1, 1
	}
	if m.shadowDenied {
		l.ShadowDenied = 1
	}
	denied := m.outcome == outcomeDenied || m.outcome == outcomeShadowDenied || m.shadowDenied
	if denied {
		l.Policy, l.AWS.CloudWatchMetrics = m.policy, emfDenied
	}
	switch m.source {
	case limiter.SourceMemory, limiter.SourceFailOpen, limiter.SourceFailClosed:
		l.Fallback = 1
	}
	if m.upstash > 0 {
		v := ms(m.upstash)
		l.UpstashLatency = &v
	} else if denied {
		l.AWS.CloudWatchMetrics = emfDeniedLocal
	} else {
		l.AWS.CloudWatchMetrics = emfPlainLocal
	}
	if m.outcome == outcomeAllowed || m.outcome == outcomeDenied || m.outcome == outcomeShadowDenied {
		reset := m.reset.Milliseconds()
		l.Limit, l.Remaining, l.ResetMs = &m.limit, &m.remaining, &reset
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	l.Route = m.route
	if e.routes == nil {
		e.routes = make(map[string]bool)
	}
	if !e.routes[l.Route] {
		if len(e.routes) >= maxRoutes {
			l.Route = "other"
		} else {
			e.routes[l.Route] = true
		}
	}
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	_, _ = e.w.Write(append(b, '\n'))
}
