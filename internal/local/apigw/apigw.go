// Package apigw emulates an API Gateway REST API (v1) in front of Lambda
// functions: it routes requests over a SAM API's routes, calls Lambda
// REQUEST (and TOKEN) authorizers, evaluates the IAM policy they return,
// renders the API's gateway responses, and proxies allowed requests to the
// route's function as Lambda proxy integration events.
//
// Behaviour follows API Gateway where it is observable by a client:
//
//   - Routes match API Gateway's resource syntax (/items/{id}, /{proxy+});
//     a literal segment wins over {param}, which wins over {param+}. An
//     unknown path, or a known path with an undefined method, is 403
//     MISSING_AUTHENTICATION_TOKEN {"message":"Missing Authentication Token"}.
//   - A body over Config.MaxBodyBytes (API Gateway's 10 MB) is 413
//     REQUEST_TOO_LARGE, as is one over Lambda's 6 MB invocation limit.
//   - identity.sourceIp is the TCP peer's address. A client's
//     X-Forwarded-For is never trusted; like API Gateway, the peer address is
//     appended to it in the headers passed on.
//   - Authorizers: identity sources, when configured, must be present (else
//     401 without calling the authorizer); results are cached for
//     ReauthorizeEvery seconds per identity (never when it is 0 or there are
//     no identity sources). The policy must Allow execute-api:Invoke on the
//     method ARN (Deny wins; no matching Allow is an implicit deny) → 403
//     ACCESS_DENIED with $context.authorizer.* available to the gateway
//     response. An authorizer error whose message is exactly "Unauthorized"
//     is 401 UNAUTHORIZED; any other error, a timeout, a crash or malformed
//     output is 500 AUTHORIZER_CONFIGURATION_ERROR {"message":null}, which
//     is what API Gateway answers (x-amzn-ErrorType
//     AuthorizerConfigurationException).
//   - A function error, crash, function timeout or malformed proxy response
//     is 502 {"message":"Internal server error"}; only when the integration
//     itself outlives Config.IntegrationTimeout (29 s) is it 504
//     INTEGRATION_TIMEOUT {"message":"Endpoint request timed out"}. (A
//     function whose own timeout is shorter fails first, so API Gateway
//     answers 502, not 504.) The 502 is not a gateway response type of its
//     own; a DEFAULT_5XX customization supplies its headers and body.
//   - Gateway responses: a type the template customizes is rendered from it
//     (status, header mappings, the application/json body template); an
//     uncustomized type falls back to DEFAULT_4XX/DEFAULT_5XX's headers and
//     template (and status code, if set), else to API Gateway's default body
//     {"message":$context.error.messageString}. AUTHORIZER_FAILURE is never
//     produced: API Gateway reports every Lambda authorizer failure
//     (other than "Unauthorized") as AUTHORIZER_CONFIGURATION_ERROR.
//
// Deliberate differences: requests are served at the root (no /{stage}
// prefix in the URL, as `sam local start-api` does) while events carry the
// stage in requestContext.path; header names in events are Go's canonical
// form (X-Api-Key), because net/http canonicalizes them on arrival; bodies
// are base64-encoded (isBase64Encoded) when their content type matches
// Config.BinaryMediaTypes or when they are not valid UTF-8 and so could not
// travel in a JSON string.
package apigw

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/bucketgate/bucketgate/internal/local/lambdaemu"
	"github.com/bucketgate/bucketgate/internal/local/sam"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxBodyBytes       = 10 * 1024 * 1024 // API Gateway REST payload limit
	DefaultIntegrationTimeout = 29 * time.Second // API Gateway REST integration timeout
	DefaultAPIID              = "localapi01"
	DefaultRegion             = "us-east-1"
	DefaultAccountID          = "123456789012"
)

// Invoker runs a function of the template by logical ID. *lambdaemu.Function
// values behind a map satisfy it through Functions.
type Invoker interface {
	Invoke(ctx context.Context, logicalID string, payload []byte) (lambdaemu.Result, error)
}

// Functions is an Invoker over emulated functions by logical ID.
type Functions map[string]*lambdaemu.Function

// ErrUnknownFunction: the Invoker has no function by that logical ID.
var ErrUnknownFunction = errors.New("apigw: unknown function")

// Invoke runs the named function with an event the gateway built. The
// payload is not checked for being valid JSON (the gateway's events are, by
// construction: see lambdaemu.Function.InvokeValid); call
// lambdaemu.Function.Invoke for payloads from anywhere else.
func (fs Functions) Invoke(ctx context.Context, logicalID string, payload []byte) (lambdaemu.Result, error) {
	f, ok := fs[logicalID]
	if !ok {
		return lambdaemu.Result{}, fmt.Errorf("%w %q", ErrUnknownFunction, logicalID)
	}
	return f.InvokeValid(ctx, payload)
}

// Config describes the API to serve. The zero value of every optional field
// selects the default documented on it.
type Config struct {
	// API is the SAM API: stage, routes, authorizers, gateway responses.
	API sam.API
	// Invoker runs the routes' and authorizers' functions. Required.
	Invoker Invoker
	// APIID appears in events and method ARNs; "" = DefaultAPIID.
	APIID string
	// Region and AccountID appear in method ARNs and events; "" = defaults.
	Region, AccountID string
	// StageVariables are passed in events and to gateway responses; nil =
	// none (events carry null, as API Gateway does).
	StageVariables map[string]string
	// BinaryMediaTypes are content types (wildcards like image/* or */*
	// allowed) whose bodies are passed base64-encoded.
	BinaryMediaTypes []string
	// MaxBodyBytes limits request bodies; 0 = DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// IntegrationTimeout bounds each authorizer and integration call;
	// 0 = DefaultIntegrationTimeout.
	IntegrationTimeout time.Duration
	// Logger receives one line per request and authorizer problems; nil =
	// discard.
	Logger *slog.Logger
	// Now is the clock for requestTime and authorizer caching; nil = time.Now.
	Now func() time.Time
}

// Gateway is an http.Handler serving one REST API. It is safe for
// concurrent use.
type Gateway struct {
	cfg       Config
	routes    []route
	responses map[string]compiledResponse // the API's gateway responses by type

	cacheMu sync.Mutex
	cache   map[string]cachedAuth
}

// maxCachedDecisions bounds the authorizer cache (identities cached at once).
const maxCachedDecisions = 10000

type cachedAuth struct {
	out     AuthorizerOutput
	expires time.Time
}

// New checks cfg (routes, authorizer references, gateway responses) and
// returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Invoker == nil {
		return nil, errors.New("apigw: Config.Invoker is nil")
	}
	if cfg.APIID == "" {
		cfg.APIID = DefaultAPIID
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.AccountID == "" {
		cfg.AccountID = DefaultAccountID
	}
	if cfg.API.StageName == "" {
		cfg.API.StageName = "Prod"
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.IntegrationTimeout <= 0 {
		cfg.IntegrationTimeout = DefaultIntegrationTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Gateway{cfg: cfg, cache: map[string]cachedAuth{}}
	seen := map[string]bool{}
	for _, r := range cfg.API.Routes {
		rt, err := compileRoute(r)
		if err != nil {
			return nil, fmt.Errorf("apigw: %w", err)
		}
		if r.FunctionLogicalID == "" {
			return nil, fmt.Errorf("apigw: route %s %s has no function", r.Method, r.Path)
		}
		key := r.Method + " " + r.Path
		if seen[key] {
			return nil, fmt.Errorf("apigw: route %s is defined twice", key)
		}
		seen[key] = true
		if r.Authorizer != "" {
			a, ok := cfg.API.Authorizers[r.Authorizer]
			if !ok {
				return nil, fmt.Errorf("apigw: route %s uses authorizer %q, which the API does not define", key, r.Authorizer)
			}
			if a.FunctionLogicalID == "" {
				return nil, fmt.Errorf("apigw: authorizer %q calls a function outside the template (%s); it cannot run locally", r.Authorizer, a.FunctionArn)
			}
			if a.PayloadType != "REQUEST" && a.PayloadType != "TOKEN" {
				return nil, fmt.Errorf("apigw: authorizer %q: unsupported payload type %q", r.Authorizer, a.PayloadType)
			}
		}
		g.routes = append(g.routes, rt)
	}
	if err := validateGatewayResponses(cfg.API.GatewayResponses); err != nil {
		return nil, fmt.Errorf("apigw: %w", err)
	}
	g.responses = compileResponses(cfg.API.GatewayResponses)
	return g, nil
}

// Routes returns the API's routes, sorted by path then method.
func (g *Gateway) Routes() []sam.Route {
	out := make([]sam.Route, len(g.routes))
	for i, r := range g.routes {
		out[i] = r.Route
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// requestCtx is what one request carries through the gateway.
type requestCtx struct {
	requestID      string
	start          time.Time
	r              *http.Request
	route          *route
	pathParams     map[string]string
	headers        http.Header // as passed on: with Host and the amended X-Forwarded-For
	query          map[string][]string
	sourceIP       string
	stageVariables map[string]string
	stage, apiID   string
	accountID      string
	authorizer     map[string]string // authorizer context, once known
	principalID    *string
}

func (rc *requestCtx) header(name string) []string {
	return rc.headers.Values(name)
}

// contextVar resolves $context.<name> for gateway responses.
func (rc *requestCtx) contextVar(name string) (string, bool) {
	switch name {
	case "requestId", "extendedRequestId":
		return rc.requestID, true
	case "apiId":
		return rc.apiID, true
	case "stage":
		return rc.stage, true
	case "accountId":
		return rc.accountID, true
	case "httpMethod":
		return rc.r.Method, true
	case "path":
		return "/" + rc.stage + rc.r.URL.Path, true
	case "resourcePath":
		if rc.route != nil {
			return rc.route.Path, true
		}
		return rc.r.URL.Path, true
	case "protocol":
		return rc.r.Proto, true
	case "domainName":
		return rc.r.Host, true
	case "identity.sourceIp":
		return rc.sourceIP, true
	case "identity.userAgent":
		return rc.r.UserAgent(), true
	case "requestTime":
		return rc.start.UTC().Format("02/Jan/2006:15:04:05 -0700"), true
	case "requestTimeEpoch":
		return strconv.FormatInt(rc.start.UnixMilli(), 10), true
	}
	return "", false
}

// newRequestCtx starts the gateway's view of r.
func (g *Gateway) newRequestCtx(r *http.Request) *requestCtx {
	rc := &requestCtx{
		requestID:      newUUID(),
		start:          g.cfg.Now(),
		r:              r,
		stageVariables: g.cfg.StageVariables,
		stage:          g.cfg.API.StageName,
		apiID:          g.cfg.APIID,
		accountID:      g.cfg.AccountID,
		query:          r.URL.Query(),
	}
	rc.sourceIP = peerIP(r.RemoteAddr)
	rc.headers = passHeaders(r, rc.sourceIP)
	return rc
}

// ServeHTTP handles one client request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := g.newRequestCtx(r)
	status, note := g.serve(w, rc)
	attrs := [6]slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status),
		slog.String("requestId", rc.requestID), slog.Int64("ms", time.Since(rc.start).Milliseconds()), slog.String("note", note)}
	n := len(attrs)
	if note == "" {
		n--
	}
	g.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs[:n]...)
}

func (g *Gateway) serve(w http.ResponseWriter, rc *requestCtx) (int, string) {
	r := rc.r
	if r.ContentLength > g.cfg.MaxBodyBytes {
		return g.writeGatewayResponse(w, rc, gatewayError{typ: RequestTooLarge}), "body over the API Gateway limit"
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, g.cfg.MaxBodyBytes+1))
	if err != nil {
		return 0, "reading the request body: " + err.Error()
	}
	if int64(len(body)) > g.cfg.MaxBodyBytes {
		return g.writeGatewayResponse(w, rc, gatewayError{typ: RequestTooLarge}), "body over the API Gateway limit"
	}

	rt, params, known := match(g.routes, r.Method, r.URL.EscapedPath())
	if rt == nil {
		note := "no such resource"
		if known {
			note = "method not defined for this resource"
		}
		return g.writeGatewayResponse(w, rc, gatewayError{typ: MissingAuthenticationToken}), note
	}
	rc.route, rc.pathParams = rt, params

	var authStart time.Time
	var authLatency time.Duration
	if rt.Authorizer != "" {
		authStart = time.Now()
		out, ge, note := g.authorize(r.Context(), rc)
		authLatency = time.Since(authStart)
		if ge != nil {
			return g.writeGatewayResponse(w, rc, *ge), note
		}
		rc.authorizer = out.Context
		rc.principalID = &out.PrincipalID
	}

	payload := g.appendProxyEvent(make([]byte, 0, 2048+len(body)*4/3), rc, body, authLatency)
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.IntegrationTimeout)
	defer cancel()
	res, err := g.cfg.Invoker.Invoke(ctx, rt.FunctionLogicalID, payload)
	switch {
	case errors.Is(err, lambdaemu.ErrPayloadTooLarge):
		return g.writeGatewayResponse(w, rc, gatewayError{typ: RequestTooLarge}), "event over Lambda's 6 MB limit"
	case err != nil && r.Context().Err() != nil:
		return 0, "client went away"
	case errors.Is(err, context.DeadlineExceeded):
		return g.writeGatewayResponse(w, rc, gatewayError{typ: IntegrationTimeout}), "integration timed out"
	case err != nil:
		return g.writeGatewayResponse(w, rc, gatewayError{typ: lambdaError}), "invoking " + rt.FunctionLogicalID + ": " + err.Error()
	case res.Error != nil:
		return g.writeGatewayResponse(w, rc, gatewayError{typ: lambdaError}), "function error: " + res.Error.Error()
	}
	status, err := writeProxyResponse(w, res.Payload, rc.requestID)
	if err != nil {
		return g.writeGatewayResponse(w, rc, gatewayError{typ: lambdaError}), "malformed Lambda proxy response: " + err.Error()
	}
	return status, ""
}

// authorize runs the route's authorizer. It returns the authorizer output,
// or the gateway response to send instead.
func (g *Gateway) authorize(ctx context.Context, rc *requestCtx) (AuthorizerOutput, *gatewayError, string) {
	a := g.cfg.API.Authorizers[rc.route.Authorizer]
	methodArn := g.methodArn(rc)

	identity, complete := g.identity(a, rc)
	if !complete {
		return AuthorizerOutput{}, &gatewayError{typ: Unauthorized}, "identity source missing"
	}
	cacheKey := ""
	if a.ReauthorizeEvery > 0 && a.HasIdentitySources() {
		cacheKey = a.Name + "\x00" + strings.Join(identity, "\x00")
		g.cacheMu.Lock()
		c, ok := g.cache[cacheKey]
		g.cacheMu.Unlock()
		if ok && g.cfg.Now().Before(c.expires) {
			return g.decide(rc, c.out, methodArn)
		}
	}

	var payload []byte
	if a.PayloadType == "TOKEN" {
		token := ""
		if len(identity) > 0 {
			token = identity[0]
		}
		var err error
		payload, err = json.Marshal(events.APIGatewayCustomAuthorizerRequest{Type: "TOKEN", AuthorizationToken: token, MethodArn: methodArn})
		if err != nil {
			return AuthorizerOutput{}, &gatewayError{typ: AuthorizerConfigurationError}, "encoding the authorizer event: " + err.Error()
		}
	} else {
		payload = g.appendAuthorizerEvent(make([]byte, 0, 2048), rc, methodArn)
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.IntegrationTimeout)
	defer cancel()
	res, err := g.cfg.Invoker.Invoke(ctx, a.FunctionLogicalID, payload)
	if err != nil {
		return AuthorizerOutput{}, &gatewayError{typ: AuthorizerConfigurationError}, "invoking authorizer " + a.Name + ": " + err.Error()
	}
	if res.Error != nil {
		if res.Error.Message == "Unauthorized" {
			return AuthorizerOutput{}, &gatewayError{typ: Unauthorized}, "authorizer answered Unauthorized"
		}
		return AuthorizerOutput{}, &gatewayError{typ: AuthorizerConfigurationError}, "authorizer error: " + res.Error.Error()
	}
	out, err := ParseAuthorizerOutput(res.Payload)
	if err != nil {
		return AuthorizerOutput{}, &gatewayError{typ: AuthorizerConfigurationError}, err.Error()
	}
	if cacheKey != "" {
		now := g.cfg.Now()
		g.cacheMu.Lock()
		if len(g.cache) >= maxCachedDecisions {
			// Sweep lazily: drop what expired; if that is not enough, start over.
			for k, c := range g.cache {
				if !now.Before(c.expires) {
					delete(g.cache, k)
				}
			}
			if len(g.cache) >= maxCachedDecisions {
				clear(g.cache)
			}
		}
		g.cache[cacheKey] = cachedAuth{out: out, expires: now.Add(time.Duration(a.ReauthorizeEvery) * time.Second)}
		g.cacheMu.Unlock()
	}
	return g.decide(rc, out, methodArn)
}

func (g *Gateway) decide(rc *requestCtx, out AuthorizerOutput, methodArn string) (AuthorizerOutput, *gatewayError, string) {
	switch out.Policy.Evaluate(methodArn) {
	case Allow:
		return out, nil, ""
	case ExplicitDeny:
		rc.authorizer, rc.principalID = out.Context, &out.PrincipalID
		return out, &gatewayError{typ: AccessDenied, explicitDeny: true}, "authorizer denied"
	default:
		rc.authorizer, rc.principalID = out.Context, &out.PrincipalID
		return out, &gatewayError{typ: AccessDenied}, "authorizer policy does not allow " + methodArn
	}
}

// identity collects the authorizer's identity source values; complete is
// false when one is missing or empty.
func (g *Gateway) identity(a sam.Authorizer, rc *requestCtx) (values []string, complete bool) {
	for _, h := range a.IdentityHeaders {
		v := rc.headers.Get(h)
		if v == "" {
			return nil, false
		}
		values = append(values, v)
	}
	for _, q := range a.IdentityQueryStrings {
		vs := rc.query[q]
		if len(vs) == 0 || vs[len(vs)-1] == "" {
			return nil, false
		}
		values = append(values, vs[len(vs)-1])
	}
	for _, s := range a.IdentityStageVariables {
		v := rc.stageVariables[s]
		if v == "" {
			return nil, false
		}
		values = append(values, v)
	}
	for _, c := range a.IdentityContext {
		v, _ := rc.contextVar(strings.TrimPrefix(c, "context."))
		if v == "" {
			return nil, false
		}
		values = append(values, v)
	}
	return values, true
}

// methodArn is arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{METHOD}/{path without its leading slash}.
func (g *Gateway) methodArn(rc *requestCtx) string {
	return "arn:aws:execute-api:" + g.cfg.Region + ":" + g.cfg.AccountID + ":" + g.cfg.APIID + "/" +
		g.cfg.API.StageName + "/" + rc.r.Method + "/" + strings.TrimPrefix(rc.r.URL.Path, "/")
}

func (g *Gateway) binary(contentType string) bool {
	if contentType == "" || len(g.cfg.BinaryMediaTypes) == 0 {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	for _, p := range g.cfg.BinaryMediaTypes {
		if wildcard(strings.ToLower(p), mt) {
			return true
		}
	}
	return false
}

// proxyResponse is the Lambda proxy integration's response format.
type proxyResponse struct {
	StatusCode        json.RawMessage            `json:"statusCode"`
	Headers           map[string]json.RawMessage `json:"headers"`
	MultiValueHeaders map[string][]string        `json:"multiValueHeaders"`
	Body              *string                    `json:"body"`
	IsBase64Encoded   bool                       `json:"isBase64Encoded"`
}

// hop-by-hop and framing headers a function cannot set through API Gateway.
var dropHeaders = map[string]bool{"Content-Length": true, "Connection": true, "Transfer-Encoding": true, "Keep-Alive": true, "Upgrade": true}

// writeProxyResponse turns a function's proxy response into the HTTP
// response. Anything but {statusCode, headers, multiValueHeaders, body,
// isBase64Encoded} with the right types is malformed (nothing is written
// then).
func writeProxyResponse(w http.ResponseWriter, payload []byte, requestID string) (int, error) {
	pr, err := parseProxyResponse(payload)
	if err != nil {
		return 0, err
	}
	h := http.Header{}
	for k, v := range pr.headers {
		h.Set(k, v)
	}
	// Values in multiValueHeaders replace a single-value header of the same
	// name (API Gateway merges the two, multiValueHeaders winning).
	for k, vs := range pr.multiValueHeaders {
		h.Del(k)
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	out := w.Header()
	for k, vs := range h {
		if dropHeaders[http.CanonicalHeaderKey(k)] {
			continue
		}
		out[http.CanonicalHeaderKey(k)] = vs
	}
	if out.Get("Content-Type") == "" {
		out.Set("Content-Type", "application/json")
	}
	out.Set("X-Amzn-Requestid", requestID)
	out.Set("Content-Length", strconv.Itoa(len(pr.body)))
	w.WriteHeader(pr.status)
	_, _ = w.Write(pr.body)
	return pr.status, nil
}

// parseProxyResponse decodes and checks a Lambda proxy response.
func parseProxyResponse(payload []byte) (parsedProxy, error) {
	if pr, ok := fastProxyResponse(payload); ok {
		return pr, nil
	}
	return parseProxyResponseJSON(payload)
}

// parseProxyResponseJSON is parseProxyResponse with encoding/json: the
// reference for every input, and the path taken for inputs outside the fast
// parser's subset.
func parseProxyResponseJSON(payload []byte) (parsedProxy, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var raw proxyResponse
	if err := dec.Decode(&raw); err != nil {
		return parsedProxy{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return parsedProxy{}, errors.New("data after the response object")
	}
	if bytes.Equal(bytes.TrimSpace(payload), []byte("null")) {
		return parsedProxy{}, errors.New("null response")
	}
	if len(raw.StatusCode) == 0 || string(raw.StatusCode) == "null" {
		return parsedProxy{}, errors.New("statusCode is missing")
	}
	status, err := strconv.Atoi(string(raw.StatusCode)) // a JSON integer, not a string
	if err != nil || status < 100 || status > 599 {
		return parsedProxy{}, fmt.Errorf("statusCode %s is not an HTTP status", raw.StatusCode)
	}
	pr := parsedProxy{status: status, multiValueHeaders: raw.MultiValueHeaders}
	if raw.Body != nil {
		if pr.body, err = proxyBody(*raw.Body, raw.IsBase64Encoded); err != nil {
			return parsedProxy{}, err
		}
	}
	if raw.Headers != nil {
		pr.headers = make(map[string]string, len(raw.Headers))
	}
	for k, v := range raw.Headers {
		s, err := contextValue(v)
		if err != nil {
			return parsedProxy{}, fmt.Errorf("header %s: %v", k, err)
		}
		pr.headers[k] = s
	}
	return pr, nil
}

// proxyBody is the response body a proxy response's body field stands for.
func proxyBody(body string, isBase64Encoded bool) ([]byte, error) {
	if !isBase64Encoded {
		return []byte(body), nil
	}
	b, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("body is not valid base64: %v", err)
	}
	return b, nil
}

// passHeaders is the request's headers as API Gateway passes them on: with
// Host, and with the peer's address appended to X-Forwarded-For.
func passHeaders(r *http.Request, sourceIP string) http.Header {
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if r.Host != "" {
		h.Set("Host", r.Host)
	}
	if prev := h.Values("X-Forwarded-For"); len(prev) > 0 {
		h.Set("X-Forwarded-For", strings.Join(prev, ", ")+", "+sourceIP)
	} else {
		h.Set("X-Forwarded-For", sourceIP)
	}
	if _, port, err := net.SplitHostPort(hostWithPort(r)); err == nil {
		h.Set("X-Forwarded-Port", port)
	}
	h.Set("X-Forwarded-Proto", "http")
	return h
}

func hostWithPort(r *http.Request) string {
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return addr.String()
	}
	return r.Host
}

// peerIP is the address part of a RemoteAddr ("1.2.3.4:5678" → "1.2.3.4").
func peerIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}

// resourceID is a stable 6-character id for a resource path, shaped like
// API Gateway's.
func resourceID(path string) string {
	sum := sha1.Sum([]byte(path))
	return hex.EncodeToString(sum[:3])
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
