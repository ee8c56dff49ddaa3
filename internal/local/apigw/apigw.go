// Package apigw emulates an API Gateway REST API (v1) in front of Lambda
// functions, for local development: it routes requests over a SAM API's
// routes, calls the Lambda REQUEST (or TOKEN) authorizer, evaluates the IAM
// policy it returns, renders the API's gateway responses, and proxies allowed
// requests to the route's function as Lambda proxy integration events
// (aws-lambda-go's event types, encoded with encoding/json).
//
// What a client can observe follows API Gateway: route precedence (literal,
// then {param}, then {param+}); 403 "Missing Authentication Token" for an
// unknown route; 413 over Config.MaxBodyBytes or Lambda's 6 MB; identity
// sources checked before the authorizer runs and its decisions cached for
// ReauthorizeEvery seconds; an "Unauthorized" authorizer error is 401, any
// other failure 500 AUTHORIZER_CONFIGURATION_ERROR; a policy that does not
// Allow execute-api:Invoke on the method ARN is 403 ACCESS_DENIED with
// $context.authorizer.* available to the gateway response; a function error,
// crash, timeout or malformed reply is 502, and an integration outliving
// Config.IntegrationTimeout is 504. identity.sourceIp is the TCP peer, never
// X-Forwarded-For.
//
// Deliberate differences: requests are served at the root, without the
// /{stage} prefix (as `sam local start-api` does); header names in events
// are Go's canonical form; bodies are base64-encoded when their content type
// is in Config.BinaryMediaTypes or they are not valid UTF-8.
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

// Invoke runs the named function with payload as its event.
func (fs Functions) Invoke(ctx context.Context, logicalID string, payload []byte) (lambdaemu.Result, error) {
	f, ok := fs[logicalID]
	if !ok {
		return lambdaemu.Result{}, fmt.Errorf("%w %q", ErrUnknownFunction, logicalID)
	}
	return f.Invoke(ctx, payload)
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
	cfg    Config
	routes []route

	cacheMu sync.Mutex
	cache   map[string]cachedAuth
}

// maxCachedDecisions bounds the authorizer cache (identities cached at once).
const maxCachedDecisions = 10000

type cachedAuth struct {
	out     authorizerOutput
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
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "requestId", rc.requestID, "ms", time.Since(rc.start).Milliseconds()}
	if note != "" {
		attrs = append(attrs, "note", note)
	}
	g.cfg.Logger.Info("request", attrs...)
}

func (g *Gateway) serve(w http.ResponseWriter, rc *requestCtx) (int, string) {
	r := rc.r
	if r.ContentLength > g.cfg.MaxBodyBytes {
		return g.writeGatewayResponse(w, rc, gatewayError{typ: requestTooLarge}), "body over the API Gateway limit"
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, g.cfg.MaxBodyBytes+1))
	if err != nil {
		return 0, "reading the request body: " + err.Error()
	}
	if int64(len(body)) > g.cfg.MaxBodyBytes {
		return g.writeGatewayResponse(w, rc, gatewayError{typ: requestTooLarge}), "body over the API Gateway limit"
	}

	rt, params, known := match(g.routes, r.Method, r.URL.EscapedPath())
	if rt == nil {
		note := "no such resource"
		if known {
			note = "method not defined for this resource"
		}
		return g.writeGatewayResponse(w, rc, gatewayError{typ: missingAuthenticationToken}), note
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
		rc.authorizer = out.context
		rc.principalID = &out.principalID
	}

	payload, err := json.Marshal(g.proxyEvent(rc, body, authLatency))
	if err != nil {
		return g.writeGatewayResponse(w, rc, gatewayError{typ: lambdaError}), "encoding the event: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.IntegrationTimeout)
	defer cancel()
	res, err := g.cfg.Invoker.Invoke(ctx, rt.FunctionLogicalID, payload)
	switch {
	case errors.Is(err, lambdaemu.ErrPayloadTooLarge):
		return g.writeGatewayResponse(w, rc, gatewayError{typ: requestTooLarge}), "event over Lambda's 6 MB limit"
	case err != nil && r.Context().Err() != nil:
		return 0, "client went away"
	case errors.Is(err, context.DeadlineExceeded):
		return g.writeGatewayResponse(w, rc, gatewayError{typ: integrationTimeout}), "integration timed out"
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
func (g *Gateway) authorize(ctx context.Context, rc *requestCtx) (authorizerOutput, *gatewayError, string) {
	a := g.cfg.API.Authorizers[rc.route.Authorizer]
	methodArn := g.methodArn(rc)

	identity, complete := g.identity(a, rc)
	if !complete {
		return authorizerOutput{}, &gatewayError{typ: unauthorized}, "identity source missing"
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

	var event any = g.authorizerEvent(rc, methodArn)
	if a.PayloadType == "TOKEN" {
		token := ""
		if len(identity) > 0 {
			token = identity[0]
		}
		event = events.APIGatewayCustomAuthorizerRequest{Type: "TOKEN", AuthorizationToken: token, MethodArn: methodArn}
	}
	payload, err := json.Marshal(event)
	if err != nil {
		return authorizerOutput{}, &gatewayError{typ: authorizerConfigurationError}, "encoding the authorizer event: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.IntegrationTimeout)
	defer cancel()
	res, err := g.cfg.Invoker.Invoke(ctx, a.FunctionLogicalID, payload)
	if err != nil {
		return authorizerOutput{}, &gatewayError{typ: authorizerConfigurationError}, "invoking authorizer " + a.Name + ": " + err.Error()
	}
	if res.Error != nil {
		if res.Error.Message == "Unauthorized" {
			return authorizerOutput{}, &gatewayError{typ: unauthorized}, "authorizer answered Unauthorized"
		}
		return authorizerOutput{}, &gatewayError{typ: authorizerConfigurationError}, "authorizer error: " + res.Error.Error()
	}
	out, err := parseAuthorizerOutput(res.Payload)
	if err != nil {
		return authorizerOutput{}, &gatewayError{typ: authorizerConfigurationError}, err.Error()
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

func (g *Gateway) decide(rc *requestCtx, out authorizerOutput, methodArn string) (authorizerOutput, *gatewayError, string) {
	switch out.policy.evaluate(methodArn) {
	case allow:
		return out, nil, ""
	case explicitDeny:
		rc.authorizer, rc.principalID = out.context, &out.principalID
		return out, &gatewayError{typ: accessDenied, explicitDeny: true}, "authorizer denied"
	default:
		rc.authorizer, rc.principalID = out.context, &out.principalID
		return out, &gatewayError{typ: accessDenied}, "authorizer policy does not allow " + methodArn
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
// StatusCode and header values stay raw: the status must be a JSON integer,
// and header values may be strings, numbers or booleans.
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
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var pr proxyResponse
	if err := dec.Decode(&pr); err != nil {
		return 0, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, errors.New("data after the response object")
	}
	if len(pr.StatusCode) == 0 || string(pr.StatusCode) == "null" {
		return 0, errors.New("statusCode is missing")
	}
	status, err := strconv.Atoi(string(pr.StatusCode)) // a JSON integer, not a string
	if err != nil || status < 100 || status > 599 {
		return 0, fmt.Errorf("statusCode %s is not an HTTP status", pr.StatusCode)
	}
	var body []byte
	if pr.Body != nil {
		body = []byte(*pr.Body)
		if pr.IsBase64Encoded {
			if body, err = base64.StdEncoding.DecodeString(*pr.Body); err != nil {
				return 0, fmt.Errorf("body is not valid base64: %w", err)
			}
		}
	}
	h := http.Header{}
	for k, raw := range pr.Headers {
		v, err := contextValue(raw)
		if err != nil {
			return 0, fmt.Errorf("header %s: %w", k, err)
		}
		h.Set(k, v)
	}
	// Values in multiValueHeaders replace a single-value header of the same
	// name (API Gateway merges the two, multiValueHeaders winning).
	for k, vs := range pr.MultiValueHeaders {
		h.Del(k)
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	out := w.Header()
	for k, vs := range h {
		if !dropHeaders[k] {
			out[k] = vs
		}
	}
	if out.Get("Content-Type") == "" {
		out.Set("Content-Type", "application/json")
	}
	out.Set("X-Amzn-Requestid", requestID)
	out.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status, nil
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
