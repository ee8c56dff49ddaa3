// Package dashboard gives `cmd/local start-api` the view of rate limiting
// that CloudWatch gives a deployed stack: it reads the authorizer's
// CloudWatch Embedded Metric Format (EMF) lines from the functions' output
// (the lines CloudWatch Logs would turn into metrics), aggregates them in
// memory, and serves GET /_local/metrics (JSON) and GET /_local/, a live
// page that polls it. Neither path is part of the emulated API.
//
// Memory stays bounded whatever the traffic: routes, tiers, policies and
// sources are capped (later names count as "other"), callers are the most
// recently active ones up to a cap, latencies are the last few thousand
// decisions, and the per-second series covers the last five minutes.
package dashboard

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Namespace is the CloudWatch namespace of the lines counted.
const Namespace = "Bucketgate"

// Limits on what is kept.
const (
	maxNames       = 50   // distinct routes, tiers, policies and sources each
	maxCallers     = 1000 // callers tracked
	shownCallers   = 20   // callers in a Snapshot
	latencySamples = 4096 // most recent decisions whose latencies are kept
	seriesSeconds  = 300  // length of the per-second series
	callerHalfLife = 30 * time.Second
	maxCallerLen   = 80
)

// other collects the names beyond maxNames.
const other = "other"

// Counts is how many decisions had each outcome. Fallback and ShadowDenied
// overlap the others (a fallback decision is also allowed or denied).
type Counts struct {
	Requests     int64 `json:"requests"`
	Allowed      int64 `json:"allowed"`
	Denied       int64 `json:"denied"`
	Forbidden    int64 `json:"forbidden"`
	Unauthorized int64 `json:"unauthorized"`
	Fallback     int64 `json:"fallback"`
	ShadowDenied int64 `json:"shadowDenied"`
}

func (c *Counts) add(l *emfLine) {
	c.Requests += l.requests()
	c.Allowed += count(l.Allowed)
	c.Denied += count(l.Denied)
	c.Forbidden += count(l.Forbidden)
	c.Unauthorized += count(l.Unauthorized)
	c.Fallback += count(l.Fallback)
	c.ShadowDenied += count(l.ShadowDenied)
}

// Latency holds percentiles of the most recent decisions, in
// milliseconds; 0 when there are no samples.
type Latency struct {
	P50        float64 `json:"p50"`
	P99        float64 `json:"p99"`
	UpstashP50 float64 `json:"upstash_p50"`
	UpstashP99 float64 `json:"upstash_p99"`
	// Samples and UpstashSamples are the numbers of decisions behind them.
	Samples        int `json:"samples"`
	UpstashSamples int `json:"upstash_samples"`
}

// Caller is one caller's latest bucket as its last decision reported it.
type Caller struct {
	Caller string `json:"caller"` // key ID or ip:<address>
	Tier   string `json:"tier"`
	// Remaining and Limit are whole tokens; ResetMs is the time from At
	// until the bucket is full again. All three are 0 when no decision of
	// the caller reported its bucket (a forbidden one does not).
	Remaining int64 `json:"remaining"`
	Limit     int64 `json:"limit"`
	ResetMs   int64 `json:"resetMs"`
	At        int64 `json:"at"` // Unix milliseconds of the last decision
	Requests  int64 `json:"requests"`
	Denied    int64 `json:"denied"`
}

// Second is one second of the series: decisions by outcome.
type Second struct {
	T            int64 `json:"t"` // Unix milliseconds of the second's start
	Allowed      int64 `json:"allowed"`
	Denied       int64 `json:"denied"`
	Forbidden    int64 `json:"forbidden"`
	Unauthorized int64 `json:"unauthorized"`
	Fallback     int64 `json:"fallback"`
}

// Snapshot is what GET /_local/metrics answers.
type Snapshot struct {
	Totals   Counts            `json:"totals"`
	Routes   map[string]Counts `json:"routes"`
	Tiers    map[string]Counts `json:"tiers"`
	Policies map[string]int64  `json:"policies"` // denials (429) by the policy that denied
	Sources  map[string]int64  `json:"sources"`  // decisions by where they were made: upstash, memory, cache, ...
	Latency  Latency           `json:"latency_ms"`
	Callers  []Caller          `json:"callers"` // busiest (recently) first, at most 20
	// Series holds the last 300 whole seconds before Now, oldest first.
	Series []Second `json:"series"`
	Since  int64    `json:"since"` // Unix milliseconds the counting started
	Now    int64    `json:"now"`   // Unix milliseconds of the snapshot
}

// Metrics aggregates decisions. The zero value is not usable; call New.
// It is safe for concurrent use.
type Metrics struct {
	mu       sync.Mutex
	since    time.Time
	totals   Counts
	routes   map[string]*Counts
	tiers    map[string]*Counts
	policies map[string]int64
	sources  map[string]int64
	latency  ring
	upstash  ring
	callers  map[string]*callerState
	series   [seriesSeconds]Second // indexed by Unix second modulo seriesSeconds
}

type callerState struct {
	Caller
	activity float64   // requests, decaying with callerHalfLife
	seen     time.Time // when activity was last updated
}

// New returns empty Metrics counting from now.
func New(now time.Time) *Metrics {
	return &Metrics{
		since:    now,
		routes:   map[string]*Counts{},
		tiers:    map[string]*Counts{},
		policies: map[string]int64{},
		sources:  map[string]int64{},
		callers:  map[string]*callerState{},
	}
}

// emfLine is the part of an authorizer EMF line that is aggregated.
// Numbers are float64 because EMF values are JSON numbers.
type emfLine struct {
	AWS struct {
		CloudWatchMetrics []struct {
			Namespace string `json:"Namespace"`
		} `json:"CloudWatchMetrics"`
	} `json:"_aws"`
	Tier            string   `json:"Tier"`
	Route           string   `json:"Route"`
	Policy          string   `json:"Policy"`
	Source          string   `json:"Source"`
	Caller          string   `json:"Caller"`
	Requests        *float64 `json:"Requests"`
	Allowed         float64  `json:"Allowed"`
	Denied          float64  `json:"Denied"`
	Forbidden       float64  `json:"Forbidden"`
	Unauthorized    float64  `json:"Unauthorized"`
	Fallback        float64  `json:"Fallback"`
	ShadowDenied    float64  `json:"ShadowDenied"`
	DecisionLatency *float64 `json:"DecisionLatency"`
	UpstashLatency  *float64 `json:"UpstashLatency"`
	Limit           *float64 `json:"Limit"`
	Remaining       *float64 `json:"Remaining"`
	ResetMs         *float64 `json:"ResetMs"`
}

// requests is the line's Requests, 1 when absent (one line, one decision).
func (l *emfLine) requests() int64 {
	if l.Requests == nil {
		return 1
	}
	return count(*l.Requests)
}

// count turns a metric value into a count: negative, fractional or absurd
// values do not corrupt the totals (one line is one decision).
func count(v float64) int64 {
	if !(v > 0) || v > 1e6 {
		return 0
	}
	return int64(v)
}

// whole turns a bucket value (tokens, milliseconds) into a whole number:
// 0 for negative or absurd values.
func whole(v float64) int64 {
	if !(v > 0) || v > 1e15 {
		return 0
	}
	return int64(v)
}

// slot is the series index of a Unix second.
func slot(sec int64) int {
	return int((sec%seriesSeconds + seriesSeconds) % seriesSeconds)
}

var awsKey = []byte(`"_aws"`)

// Observe counts line if it is an EMF line in Namespace (a JSON object
// whose _aws.CloudWatchMetrics names it) and reports whether it was. now is
// when the decision was seen; it places the line in the series and stamps
// the caller's bucket.
func (m *Metrics) Observe(now time.Time, line []byte) bool {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' || !bytes.Contains(line, awsKey) {
		return false
	}
	var l emfLine
	if json.Unmarshal(line, &l) != nil || !l.inNamespace() {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.totals.add(&l)
	if l.Route != "" {
		bounded(m.routes, l.Route).add(&l)
	}
	if l.Tier != "" {
		bounded(m.tiers, l.Tier).add(&l)
	}
	if l.Policy != "" && l.Denied > 0 {
		m.policies[boundedName(m.policies, l.Policy)] += count(l.Denied)
	}
	if l.Source != "" {
		m.sources[boundedName(m.sources, l.Source)] += l.requests()
	}
	if l.DecisionLatency != nil {
		m.latency.add(*l.DecisionLatency)
	}
	if l.UpstashLatency != nil {
		m.upstash.add(*l.UpstashLatency)
	}
	m.addToSeries(now, &l)
	m.addCaller(now, &l)
	return true
}

func (l *emfLine) inNamespace() bool {
	for _, d := range l.AWS.CloudWatchMetrics {
		if d.Namespace == Namespace {
			return true
		}
	}
	return false
}

// bounded returns m's entry for name, created if there is room, else the
// "other" entry.
func bounded(m map[string]*Counts, name string) *Counts {
	if c, ok := m[name]; ok {
		return c
	}
	if len(m) >= maxNames-1 {
		name = other
		if c, ok := m[name]; ok {
			return c
		}
	}
	c := &Counts{}
	m[name] = c
	return c
}

// boundedName is name if m has it or room for it, else "other".
func boundedName(m map[string]int64, name string) string {
	if _, ok := m[name]; ok || len(m) < maxNames-1 {
		return name
	}
	return other
}

func (m *Metrics) addToSeries(now time.Time, l *emfLine) {
	sec := now.Unix()
	s := &m.series[slot(sec)]
	if t := sec * 1000; s.T != t {
		*s = Second{T: t}
	}
	s.Allowed += count(l.Allowed)
	s.Denied += count(l.Denied)
	s.Forbidden += count(l.Forbidden)
	s.Unauthorized += count(l.Unauthorized)
	s.Fallback += count(l.Fallback)
}

// validCaller accepts what the authorizer puts in Caller: a key ID or
// ip:<address>. Anything else is not shown, so that a misbehaving function
// cannot put a raw API key on the dashboard.
func validCaller(c string) bool {
	return len(c) <= maxCallerLen && (strings.HasPrefix(c, "key_") || strings.HasPrefix(c, "ip:"))
}

func (m *Metrics) addCaller(now time.Time, l *emfLine) {
	if !validCaller(l.Caller) {
		return
	}
	c, ok := m.callers[l.Caller]
	if !ok {
		if len(m.callers) >= maxCallers {
			m.evictCallers(now)
		}
		c = &callerState{Caller: Caller{Caller: l.Caller}, seen: now}
		m.callers[l.Caller] = c
	}
	c.activity = c.activityAt(now) + float64(l.requests())
	c.seen = now
	c.Tier = l.Tier
	c.At = now.UnixMilli()
	c.Requests += l.requests()
	c.Denied += count(l.Denied)
	if l.Limit != nil && l.Remaining != nil {
		c.Limit = whole(*l.Limit)
		c.Remaining = min(whole(*l.Remaining), c.Limit)
		c.ResetMs = 0
		if l.ResetMs != nil {
			c.ResetMs = whole(*l.ResetMs)
		}
	}
}

// activityAt is the caller's decayed request count at now.
func (c *callerState) activityAt(now time.Time) float64 {
	dt := now.Sub(c.seen)
	if dt <= 0 {
		return c.activity
	}
	return c.activity * math.Exp2(-float64(dt)/float64(callerHalfLife))
}

// evictCallers drops the least active tenth of the callers.
func (m *Metrics) evictCallers(now time.Time) {
	all := m.sortedCallers(now)
	for _, c := range all[len(all)-max(1, len(all)/10):] {
		delete(m.callers, c.Caller.Caller)
	}
}

// sortedCallers is every caller, most active at now first.
func (m *Metrics) sortedCallers(now time.Time) []*callerState {
	all := make([]*callerState, 0, len(m.callers))
	for _, c := range m.callers {
		all = append(all, c)
	}
	slices.SortFunc(all, func(a, b *callerState) int {
		if d := b.activityAt(now) - a.activityAt(now); d != 0 {
			if d > 0 {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Caller.Caller, b.Caller.Caller)
	})
	return all
}

// Snapshot returns the aggregates as of now.
func (m *Metrics) Snapshot(now time.Time) Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{
		Totals:   m.totals,
		Routes:   make(map[string]Counts, len(m.routes)),
		Tiers:    make(map[string]Counts, len(m.tiers)),
		Policies: make(map[string]int64, len(m.policies)),
		Sources:  make(map[string]int64, len(m.sources)),
		Callers:  []Caller{},
		Series:   make([]Second, 0, seriesSeconds),
		Since:    m.since.UnixMilli(),
		Now:      now.UnixMilli(),
	}
	for k, c := range m.routes {
		s.Routes[k] = *c
	}
	for k, c := range m.tiers {
		s.Tiers[k] = *c
	}
	for k, n := range m.policies {
		s.Policies[k] = n
	}
	for k, n := range m.sources {
		s.Sources[k] = n
	}
	s.Latency.P50, s.Latency.P99, s.Latency.Samples = m.latency.percentiles()
	s.Latency.UpstashP50, s.Latency.UpstashP99, s.Latency.UpstashSamples = m.upstash.percentiles()
	for _, c := range m.sortedCallers(now) {
		if len(s.Callers) == shownCallers {
			break
		}
		s.Callers = append(s.Callers, c.Caller)
	}
	cur := now.Unix()
	for sec := cur - seriesSeconds; sec < cur; sec++ {
		b := m.series[slot(sec)]
		if b.T != sec*1000 {
			b = Second{T: sec * 1000}
		}
		s.Series = append(s.Series, b)
	}
	return s
}

// ring keeps the last latencySamples values.
type ring struct {
	vals [latencySamples]float64
	n    int // values added, in total
}

func (r *ring) add(v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return
	}
	r.vals[r.n%latencySamples] = v
	r.n++
}

// percentiles returns the 50th and 99th percentiles (nearest rank) of the
// kept values and their number.
func (r *ring) percentiles() (p50, p99 float64, n int) {
	n = min(r.n, latencySamples)
	if n == 0 {
		return 0, 0, 0
	}
	v := slices.Clone(r.vals[:n])
	slices.Sort(v)
	rank := func(p float64) float64 { return v[max(0, int(math.Ceil(p*float64(n)))-1)] }
	return rank(0.50), rank(0.99), n
}
