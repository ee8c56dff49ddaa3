// Command auth is a test REQUEST authorizer for startapi and cmd/local,
// shaped like the real one: it keeps a token bucket per caller in memory
// and writes one CloudWatch EMF line per decision on stdout. Headers decide:
//
//	X-Test-Auth: unauthorized  fails with "Unauthorized" (401)
//	X-Test-Auth: error         fails with another error (500)
//	X-Test-Auth: deny          denies (429) with retryAfter 2, policy X-Test-Policy (default test-deny)
//	X-Test-Auth: forbidden     allows with forbidden=true (echo answers 403)
//	otherwise                  the caller's bucket decides (429 when empty)
//	X-Test-Caller              the caller (default ip:<source ip>)
//	X-Test-Tier                its tier (default test)
//	X-Test-Policy              the policy named when the bucket denies (default the tier)
//	X-Test-Limit               the bucket's capacity, refilled in full every minute (default 1000)
//	X-Test-Fallback: 1         the decision was made without Upstash (Source memory)
//	X-Test-Upstash-Ms          the Upstash latency to report, in milliseconds (default 0.25)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// bucket is one caller's tokens; the runtime runs one invocation at a
// time, so no lock.
type bucket struct {
	tokens float64
	at     time.Time
}

var buckets = map[string]*bucket{}

type directive struct {
	Namespace  string              `json:"Namespace"`
	Dimensions [][]string          `json:"Dimensions"`
	Metrics    []map[string]string `json:"Metrics"`
}

// emfLine is the authorizer's EMF line (see README.md, "Monitoring").
type emfLine struct {
	AWS struct {
		Timestamp         int64       `json:"Timestamp"`
		CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
	} `json:"_aws"`
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

func metricsLine(l emfLine, start time.Time) {
	names := []string{"Requests", "Allowed", "Denied", "Forbidden", "Unauthorized", "Fallback", "ShadowDenied"}
	var metrics []map[string]string
	for _, n := range names {
		metrics = append(metrics, map[string]string{"Name": n, "Unit": "Count"})
	}
	metrics = append(metrics, map[string]string{"Name": "DecisionLatency", "Unit": "Milliseconds"}, map[string]string{"Name": "UpstashLatency", "Unit": "Milliseconds"})
	l.AWS.Timestamp = time.Now().UnixMilli()
	l.AWS.CloudWatchMetrics = []directive{{Namespace: "Bucketgate", Dimensions: [][]string{{"Tier"}, {"Route"}}, Metrics: metrics}}
	if l.Policy != "" {
		l.AWS.CloudWatchMetrics = append(l.AWS.CloudWatchMetrics, directive{Namespace: "Bucketgate", Dimensions: [][]string{{"Policy"}},
			Metrics: []map[string]string{{"Name": "Denied", "Unit": "Count"}, {"Name": "ShadowDenied", "Unit": "Count"}}})
	}
	l.Requests = 1
	l.DecisionLatency = float64(time.Since(start).Microseconds()) / 1000
	if l.UpstashLatency != nil {
		l.DecisionLatency += *l.UpstashLatency // the call this stand-in does not make
	}
	b, _ := json.Marshal(l)
	_, _ = os.Stdout.Write(append(b, '\n'))
}

func handle(_ context.Context, e events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	start := time.Now()
	ip := e.RequestContext.Identity.SourceIP
	l := emfLine{Tier: header(e, "X-Test-Tier", "test"), Route: e.HTTPMethod + " " + e.Resource, Source: "upstash", Caller: header(e, "X-Test-Caller", "ip:"+ip)}
	if e.Headers["X-Test-Fallback"] == "1" {
		l.Source, l.Fallback = "memory", 1
	} else {
		upstash, err := strconv.ParseFloat(header(e, "X-Test-Upstash-Ms", "0.25"), 64)
		if err != nil {
			return events.APIGatewayCustomAuthorizerResponse{}, errors.New("bad X-Test-Upstash-Ms")
		}
		l.UpstashLatency = &upstash
	}
	effect, retryAfter := "Allow", 0
	ctx := map[string]any{"tier": l.Tier, "sourceIp": ip}
	switch e.Headers["X-Test-Auth"] {
	case "unauthorized":
		l.Tier, l.Source, l.Caller, l.UpstashLatency, l.Fallback = "none", "none", "", nil, 0
		l.Unauthorized = 1
		metricsLine(l, start)
		return events.APIGatewayCustomAuthorizerResponse{}, errors.New("Unauthorized")
	case "error":
		return events.APIGatewayCustomAuthorizerResponse{}, errors.New("key store down")
	case "deny":
		effect, retryAfter = "Deny", 2
		l.Denied, l.Policy = 1, header(e, "X-Test-Policy", "test-deny")
	case "forbidden":
		ctx["forbidden"] = "true"
		l.Forbidden = 1
	default:
		limit, err := strconv.ParseInt(header(e, "X-Test-Limit", "1000"), 10, 64)
		if err != nil || limit < 1 {
			return events.APIGatewayCustomAuthorizerResponse{}, errors.New("bad X-Test-Limit")
		}
		b, ok := buckets[l.Caller]
		if !ok {
			b = &bucket{tokens: float64(limit), at: start}
			buckets[l.Caller] = b
		}
		perMs := float64(limit) / 60000 // a full bucket every minute
		b.tokens = math.Min(float64(limit), b.tokens+float64(start.Sub(b.at).Milliseconds())*perMs)
		b.at = start
		if b.tokens >= 1 {
			b.tokens--
			l.Allowed = 1
		} else {
			effect, retryAfter = "Deny", int(math.Ceil((1-b.tokens)/perMs/1000))
			l.Denied, l.Policy = 1, header(e, "X-Test-Policy", l.Tier)
		}
		remaining := int64(b.tokens)
		resetMs := int64(math.Ceil((float64(limit) - b.tokens) / perMs))
		l.Limit, l.Remaining, l.ResetMs = &limit, &remaining, &resetMs
	}
	ctx["retryAfter"] = strconv.Itoa(retryAfter)
	metricsLine(l, start)
	return events.APIGatewayCustomAuthorizerResponse{
		PrincipalID: "tester",
		PolicyDocument: events.APIGatewayCustomAuthorizerPolicy{
			Version:   "2012-10-17",
			Statement: []events.IAMPolicyStatement{{Action: []string{"execute-api:Invoke"}, Effect: effect, Resource: []string{e.MethodArn}}},
		},
		Context: ctx,
	}, nil
}

func header(e events.APIGatewayCustomAuthorizerRequestTypeRequest, name, def string) string {
	if v := e.Headers[name]; v != "" {
		return v
	}
	return def
}

func main() { lambda.Start(handle) }
