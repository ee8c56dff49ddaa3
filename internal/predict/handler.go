package predict

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/bucketgate/bucketgate/internal/authctx"
)

// Limits of the predict routes.
const (
	MaxBodyBytes   = 1 << 20 // largest accepted body after base64 decoding, in bytes (1 MiB); larger is a 413
	MaxRowsPredict = 100     // rows per request on POST /predict and POST /premium/predict
	MaxRowsBatch   = 1000    // rows per request on POST /predict/batch
)

// Route paths, as the API Gateway resources in template.yaml name them.
const (
	PathModelInfo      = "/model-info"
	PathPredict        = "/predict"
	PathPredictBatch   = "/predict/batch"
	PathPremiumPredict = "/premium/predict"
)

// PremiumTier is the tier /premium/predict is sold to.
const PremiumTier = "premium"

// Config configures a Handler. The zero value is ready to use.
type Config struct {
	// Logger receives one line per request and warnings. nil: logs are
	// discarded.
	Logger *slog.Logger
	// Now is the clock used to measure latency for the logs. nil: time.Now.
	Now func() time.Time
}

// Handler serves the API Gateway REST proxy events of the predict function.
// Build it once with New; it is immutable and safe for concurrent use.
type Handler struct {
	log    *slog.Logger
	now    func() time.Time
	routes map[string]*route
	info   string // GET /model-info body, rendered once
}

type route struct {
	path    string
	method  string
	limited bool   // behind the rate-limiting authorizer
	premium bool   // needs PremiumTier; answered 403 without an authorizer verdict
	maxRows int    // rows per request; 0 for /model-info
	hint    string // appended to the too-many-rows message
	model   *Model // nil for /model-info
	name    string // "POST /predict", for logs and messages
	modelJS []byte // `"model":{"name":...,"version":...}`, rendered once
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	h := &Handler{log: cfg.Logger, now: cfg.Now}
	if h.log == nil {
		h.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if h.now == nil {
		h.now = time.Now
	}
	// Copies: the exported models are variables, and a Handler is immutable.
	std, prem := StandardModel, PremiumModel
	batchHint := fmt.Sprintf(" (POST %s takes up to %d)", PathPredictBatch, MaxRowsBatch)
	rs := []*route{
		{path: PathModelInfo, method: http.MethodGet},
		{path: PathPredict, method: http.MethodPost, limited: true, maxRows: MaxRowsPredict, hint: batchHint, model: &std},
		{path: PathPredictBatch, method: http.MethodPost, limited: true, maxRows: MaxRowsBatch, model: &std},
		{path: PathPremiumPredict, method: http.MethodPost, limited: true, premium: true, maxRows: MaxRowsPredict, model: &prem},
	}
	h.routes = make(map[string]*route, len(rs))
	for _, r := range rs {
		r.name = r.method + " " + r.path
		if r.model != nil {
			js, _ := json.Marshal(struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			}{r.model.Name, r.model.Version}) // cannot fail: two strings
			r.modelJS = append([]byte(`"model":`), js...)
		}
		h.routes[r.path] = r
	}
	h.info = renderModelInfo(rs, std, prem)
	return h
}

// answer is what serve decided, before headers and logging.
type answer struct {
	status int
	body   string
	allow  string // Allow header, for 405
	reason string // for logs, "" on 200
	rows   int
}

func errorAnswer(e *requestError) answer {
	js, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{e.msg}) // cannot fail: one string
	return answer{status: e.status, body: string(js), reason: e.reason}
}

// Handle serves one API Gateway REST proxy request. It never returns an
// error: every problem is an HTTP answer (see the package doc).
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	start := h.now()
	method := req.HTTPMethod
	if method == "" {
		method = req.RequestContext.HTTPMethod
	}
	rt := h.lookup(req)
	echo, ctxErr := authctx.FromRequest(req.RequestContext.Authorizer)
	hasCtx := ctxErr == nil

	if !hasCtx && rt != nil && rt.limited {
		h.log.LogAttrs(ctx, slog.LevelWarn, "no authorizer context on a rate-limited route; is the authorizer attached to it?",
			slog.String("requestId", req.RequestContext.RequestID),
			slog.String("route", rt.name),
			slog.String("error", ctxErr.Error()))
	}

	a := h.serve(rt, method, req, echo, hasCtx)

	headers := make(map[string]string, 8)
	headers["Content-Type"] = "application/json"
	if hasCtx {
		for k, v := range echo.Headers {
			headers[k] = v
		}
	}
	if a.allow != "" {
		headers["Allow"] = a.allow
	}

	routeName := "unknown"
	if rt != nil {
		routeName = rt.name
	}
	tier := ""
	if hasCtx {
		tier = echo.Tier
	}
	h.log.LogAttrs(ctx, slog.LevelInfo, "request",
		slog.String("requestId", req.RequestContext.RequestID),
		slog.String("method", logMethod(method)),
		slog.String("route", routeName),
		slog.Int("status", a.status),
		slog.String("tier", tier),
		slog.Int("rows", a.rows),
		slog.String("reason", a.reason),
		slog.Float64("latencyMs", float64(h.now().Sub(start))/float64(time.Millisecond)))

	return events.APIGatewayProxyResponse{StatusCode: a.status, Headers: headers, Body: a.body}, nil
}

// logMethod returns method when it is a standard one, else "other": the
// method is client input, and only fixed values are logged.
func logMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

// lookup finds the route on the path the authorizer priced and gated
// (authctx.RoutePath: the resource with its path parameters, so routing
// works the same behind /{proxy+} and a custom domain's base path).
func (h *Handler) lookup(req events.APIGatewayProxyRequest) *route {
	return h.routes[authctx.RoutePath(req.Resource, req.PathParameters, req.Path)]
}

func (h *Handler) serve(rt *route, method string, req events.APIGatewayProxyRequest, echo authctx.Echo, hasCtx bool) answer {
	// The authorizer's verdict covers a path prefix, known route or not.
	if hasCtx && echo.Forbidden {
		msg := echo.ForbiddenReason
		if msg == "" && echo.RequiredTier != "" {
			msg = fmt.Sprintf("this route requires the %s tier", echo.RequiredTier)
		}
		if msg == "" {
			msg = "Forbidden"
		}
		return errorAnswer(&requestError{status: http.StatusForbidden, reason: reasonForbidden, msg: msg})
	}
	if rt == nil {
		return errorAnswer(&requestError{status: http.StatusNotFound, reason: reasonNotFound,
			msg: "no such route; routes: " + routeList})
	}
	if method != rt.method {
		a := errorAnswer(&requestError{status: http.StatusMethodNotAllowed, reason: reasonMethod,
			msg: fmt.Sprintf("method not allowed: %s takes %s", rt.path, rt.method)})
		a.allow = rt.method
		return a
	}
	if rt.premium && !hasCtx {
		return errorAnswer(&requestError{status: http.StatusForbidden, reason: reasonNoAuthorizerCtx,
			msg: fmt.Sprintf("this route requires the %s tier, and the request carries no authorizer verdict", PremiumTier)})
	}
	if rt.model == nil {
		return answer{status: http.StatusOK, body: h.info}
	}

	body := req.Body
	if req.IsBase64Encoded {
		if n := base64Len(body); n > MaxBodyBytes {
			return errorAnswer(tooLarge(n)) // without decoding it
		}
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return errorAnswer(badRequest(reasonInvalidBase64, "request body is marked base64-encoded (isBase64Encoded) but is not valid base64"))
		}
		body = string(b)
	}
	if len(body) > MaxBodyBytes {
		return errorAnswer(tooLarge(len(body)))
	}

	vals, rows, rerr := parseInputs(body, rt.maxRows, rt.name, rt.hint)
	if rerr != nil {
		a := errorAnswer(rerr)
		a.rows = rows
		return a
	}
	tier := ""
	if hasCtx {
		tier = echo.Tier
	}
	return answer{status: http.StatusOK, body: renderPredictions(rt, vals, tier), rows: rows}
}

// base64Len returns the decoded length of a standard base64 text, which is
// exact when the text is valid. Like the decoder, it ignores CR and LF.
func base64Len(s string) int {
	n := len(s) - strings.Count(s, "\n") - strings.Count(s, "\r")
	pad := 0
	for i := len(s) - 1; i >= 0 && pad < 2; i-- {
		if c := s[i]; c == '=' {
			pad++
		} else if c != '\r' && c != '\n' {
			break
		}
	}
	return max(0, n/4*3-pad)
}

func tooLarge(n int) *requestError {
	return &requestError{status: http.StatusRequestEntityTooLarge, reason: reasonBodyTooLarge,
		msg: fmt.Sprintf("request body is too large: %d bytes, at most %d (1 MiB)", n, MaxBodyBytes)}
}

const routeList = "GET " + PathModelInfo + ", POST " + PathPredict + ", POST " + PathPredictBatch + ", POST " + PathPremiumPredict

// renderPredictions writes the 200 body by hand: it is the hot path, and the
// shape is fixed.
func renderPredictions(rt *route, vals []float64, tier string) string {
	rows := len(vals) / NumFeatures
	b := make([]byte, 0, 64+len(rt.modelJS)+len(tier)+rows*32)
	b = append(b, `{"predictions":[`...)
	for r := 0; r < rows; r++ {
		if r > 0 {
			b = append(b, ',')
		}
		p := rt.model.Predict(vals[r*NumFeatures : (r+1)*NumFeatures])
		b = append(b, `{"score":`...)
		b = strconv.AppendFloat(b, p.Score, 'f', -1, 64)
		b = append(b, `,"label":`...)
		b = strconv.AppendInt(b, int64(p.Label), 10)
		b = append(b, '}')
	}
	b = append(b, "],"...)
	b = append(b, rt.modelJS...)
	b = append(b, `,"tier":`...)
	b = appendJSONString(b, tier)
	b = append(b, '}')
	return string(b)
}

// appendJSONString appends s as a JSON string, or null when s is empty.
func appendJSONString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			js, _ := json.Marshal(s) // cannot fail for a string
			return append(b, js...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// modelInfo is the GET /model-info body.
type modelInfo struct {
	Name          string      `json:"name"`
	Version       string      `json:"version"`
	Description   string      `json:"description"`
	InputFeatures int         `json:"input_features"`
	FeatureNames  []string    `json:"feature_names"`
	Output        string      `json:"output"`
	MaxBodyBytes  int         `json:"max_body_bytes"`
	Example       any         `json:"example_request"`
	Routes        []routeInfo `json:"routes"`
	Models        []modelDesc `json:"models"`
}

type routeInfo struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	MaxRows     int    `json:"max_rows,omitempty"`
	Model       string `json:"model,omitempty"`
	Tier        string `json:"tier"` // "any" or the one tier allowed
	RateLimited bool   `json:"rate_limited"`
}

type modelDesc struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Weights []float64 `json:"weights"`
	Bias    float64   `json:"bias"`
}

func renderModelInfo(rs []*route, std, prem Model) string {
	info := modelInfo{
		Name:          std.Name,
		Version:       std.Version,
		Description:   "Mock churn-risk model: logistic regression with fixed weights over standardized features.",
		InputFeatures: NumFeatures,
		FeatureNames:  FeatureNames[:],
		Output:        `"predictions": one {"score", "label"} per row; score = sigmoid(weights·inputs + bias) rounded to 6 decimals, label = 1 when score >= 0.5`,
		MaxBodyBytes:  MaxBodyBytes,
		Example:       map[string][][]float64{"inputs": {{0.5, -1.2, 2.0, 0.3}}},
	}
	for _, r := range rs {
		ri := routeInfo{Method: r.method, Path: r.path, MaxRows: r.maxRows, Tier: "any", RateLimited: r.limited}
		if r.model != nil {
			ri.Model = r.model.Name
		}
		if r.premium {
			ri.Tier = PremiumTier
		}
		info.Routes = append(info.Routes, ri)
	}
	for _, m := range []Model{std, prem} {
		info.Models = append(info.Models, modelDesc{Name: m.Name, Version: m.Version, Weights: m.Weights[:], Bias: m.Bias})
	}
	js, _ := json.Marshal(info) // cannot fail: plain data
	return string(js)
}
