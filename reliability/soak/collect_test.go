package soak_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// decision is one decision of the authorizer, from its log line.
type decision struct {
	At       time.Time     // the line's time, on the real clock: the decision's end
	Latency  time.Duration // latencyMs: the decision took this long before At
	PID      int
	OffsetMs int64 // the process's clock offset (soak build)
	Decision string
	Tier     string
	Caller   string
	Policy   string
	Source   string
	Cost     int64
}

// Start is when the decision began (it read its clock between Start and At).
func (d decision) Start() time.Time { return d.At.Add(-d.Latency) }

// logLine is one JSON line of a function, as this collector sees it.
type logLine struct {
	At  time.Time
	PID int
	Msg string
}

// collector is the start-api output sink: it parses the authorizer's
// lines as they arrive (one whole line per Write, as startapi writes them)
// and keeps what the invariants need, not the lines.
type collector struct {
	mu        sync.Mutex
	decisions []decision
	keyFailed []logLine // "key store failed": a 503's line
	other     []logLine // authorizer JSON lines besides decisions and EMF
	emf       int       // authorizer EMF lines
	exits     []string  // emulator lines about processes that exited
	predict   int       // predict function lines
	plain     int       // other lines (START/END/REPORT, non-JSON)
	bytes     int64
}

const (
	authPrefix    = "[AuthorizerFunction] "
	predictPrefix = "[PredictFunction] "
)

func (c *collector) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		c.line(string(line))
	}
	return len(p), nil
}

func (c *collector) line(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes += int64(len(s)) + 1
	switch {
	case strings.HasPrefix(s, predictPrefix):
		c.predict++
		return
	case !strings.HasPrefix(s, authPrefix):
		c.plain++
		return
	}
	body := s[len(authPrefix):]
	if !strings.HasPrefix(body, "{") {
		if strings.HasPrefix(body, "process ") {
			c.exits = append(c.exits, body)
		}
		c.plain++
		return
	}
	var l struct {
		Time          time.Time `json:"time"`
		Msg           string    `json:"msg"`
		AWS           any       `json:"_aws"`
		PID           int       `json:"pid"`
		ClockOffsetMs int64     `json:"clockOffsetMs"`
		Decision      string    `json:"decision"`
		Tier          string    `json:"tier"`
		Caller        string    `json:"caller"`
		Policy        string    `json:"policy"`
		Source        string    `json:"source"`
		Cost          int64     `json:"cost"`
		LatencyMs     float64   `json:"latencyMs"`
	}
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		c.plain++
		return
	}
	switch {
	case l.AWS != nil:
		c.emf++
	case l.Msg == "decision":
		if l.Decision == "forbidden" && l.Source == "" {
			l.Source = "none" // no bucket was asked
		}
		c.decisions = append(c.decisions, decision{At: l.Time, Latency: time.Duration(l.LatencyMs * float64(time.Millisecond)),
			PID: l.PID, OffsetMs: l.ClockOffsetMs, Decision: l.Decision, Tier: l.Tier, Caller: l.Caller,
			Policy: l.Policy, Source: l.Source, Cost: l.Cost})
	case l.Msg == "key store failed":
		c.keyFailed = append(c.keyFailed, logLine{At: l.Time, PID: l.PID, Msg: l.Msg})
	default:
		c.other = append(c.other, logLine{At: l.Time, PID: l.PID, Msg: l.Msg})
	}
}

// snapshot returns copies of what was collected.
func (c *collector) snapshot() (ds []decision, keyFailed, other []logLine) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]decision(nil), c.decisions...), append([]logLine(nil), c.keyFailed...), append([]logLine(nil), c.other...)
}
