package sam

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// API is an AWS::Serverless::Api (REST API) with Globals.Api merged and every
// value resolved.
type API struct {
	LogicalID string
	// StageName; SAM's "Prod" when unset (the implicit API always uses it).
	StageName string
	// DefaultAuthorizer is Auth.DefaultAuthorizer: an authorizer name, or ""
	// when routes are open unless they name one.
	DefaultAuthorizer string
	// Authorizers by name (Lambda authorizers only; others are skipped).
	// Never nil.
	Authorizers map[string]Authorizer
	// GatewayResponses by response type: ACCESS_DENIED, UNAUTHORIZED, ...
	// Never nil.
	GatewayResponses map[string]GatewayResponse
	// Routes collected from the functions' Api events pointing at this API,
	// sorted by Path then Method.
	Routes []Route
}

// Authorizer is a Lambda authorizer of an API.
type Authorizer struct {
	Name string
	// FunctionLogicalID is the logical ID FunctionArn refers to (through
	// Fn::GetAtt or Ref); "" when it names a function outside the template.
	FunctionLogicalID string
	// FunctionArn resolved (a placeholder ARN for a function of the template).
	FunctionArn string
	// PayloadType is "TOKEN" (SAM's default) or "REQUEST".
	PayloadType string
	// ReauthorizeEvery is Identity.ReauthorizeEvery in seconds: how long API
	// Gateway caches a decision; 0 = no caching; SAM's default is 300.
	ReauthorizeEvery int
	// Identity sources as written in Identity. For a TOKEN authorizer,
	// IdentityHeaders holds the one token header (SAM's default
	// "Authorization").
	IdentityHeaders        []string
	IdentityQueryStrings   []string
	IdentityStageVariables []string
	IdentityContext        []string
}

// HasIdentitySources reports whether API Gateway checks identity sources
// before calling the authorizer (and answers 401 itself when one is absent).
func (a Authorizer) HasIdentitySources() bool {
	return len(a.IdentityHeaders)+len(a.IdentityQueryStrings)+len(a.IdentityStageVariables)+len(a.IdentityContext) > 0
}

// Route is one method and path of an API served by a function.
type Route struct {
	Method            string // upper case, or "ANY"
	Path              string // as written, e.g. /predict or /items/{id}
	FunctionLogicalID string
	// Authorizer is the name of the authorizer guarding the route (the
	// event's own, else the API's default); "" = no authorizer.
	Authorizer string
}

// GatewayResponse is one entry of an API's GatewayResponses.
type GatewayResponse struct {
	// StatusCode; 0 when unset (API Gateway keeps the type's default).
	StatusCode int
	// Headers maps a header name to its mapping expression as written in
	// ResponseParameters.Headers, e.g. "context.authorizer.retryAfter",
	// "method.request.header.X" or a static "'application/json'". Never nil.
	Headers map[string]string
	// Templates maps a content type to its body template. Never nil.
	Templates map[string]string
}

// API returns the AWS::Serverless::Api with the given logical ID;
// ErrNotFound when there is no such API or its condition is false.
func (t *Template) API(logicalID string, params map[string]string) (API, error) {
	r, err := t.newResolver(params)
	if err != nil {
		return API{}, err
	}
	res, ok := t.Resources[logicalID]
	if !ok || res.Type != TypeAPI {
		return API{}, fmt.Errorf("sam: %w: no %s %q", ErrNotFound, TypeAPI, logicalID)
	}
	on, err := r.resourceEnabled(logicalID)
	if err != nil {
		return API{}, err
	}
	if !on {
		return API{}, fmt.Errorf("sam: %w: %s %q is disabled by condition %q", ErrNotFound, TypeAPI, logicalID, res.Condition)
	}

	base := "Resources." + logicalID + ".Properties"
	raw := mergeGlobals(t.globals["Api"], res.Properties)
	rp, err := r.resolve(raw, base)
	if err != nil {
		return API{}, err
	}
	p := rp.(map[string]any) // resolve keeps a map a map
	api := API{
		LogicalID:        logicalID,
		StageName:        "Prod",
		Authorizers:      map[string]Authorizer{},
		GatewayResponses: map[string]GatewayResponse{},
	}
	if s, ok := scalarString(p["StageName"]); ok && s != "" {
		api.StageName = s
	}

	if auth, ok := p["Auth"].(map[string]any); ok {
		api.DefaultAuthorizer, _ = scalarString(auth["DefaultAuthorizer"])
		if api.DefaultAuthorizer == "NONE" {
			api.DefaultAuthorizer = ""
		}
		rawAuth, _ := raw["Auth"].(map[string]any)
		rawAuthorizers, _ := rawAuth["Authorizers"].(map[string]any)
		authorizers, _ := auth["Authorizers"].(map[string]any)
		for _, name := range sortedKeys(authorizers) {
			am, ok := authorizers[name].(map[string]any)
			if !ok {
				return API{}, fmt.Errorf("sam: %w: %s.Auth.Authorizers.%s is not a mapping", ErrInvalid, base, name)
			}
			if _, ok := am["FunctionArn"]; !ok {
				continue // Cognito or IAM: nothing to run locally
			}
			rawA, _ := rawAuthorizers[name].(map[string]any)
			a, err := authorizer(name, am, rawA, t, base+".Auth.Authorizers."+name)
			if err != nil {
				return API{}, err
			}
			api.Authorizers[name] = a
		}
		if api.DefaultAuthorizer != "" {
			if _, ok := authorizers[api.DefaultAuthorizer]; !ok {
				return API{}, fmt.Errorf("sam: %w: %s.Auth.DefaultAuthorizer %q is not among Auth.Authorizers", ErrInvalid, base, api.DefaultAuthorizer)
			}
		}
	}

	if gr, ok := p["GatewayResponses"].(map[string]any); ok {
		for _, typ := range sortedKeys(gr) {
			g, err := gatewayResponse(gr[typ], base+".GatewayResponses."+typ)
			if err != nil {
				return API{}, err
			}
			api.GatewayResponses[typ] = g
		}
	}

	fns, err := t.Functions(params)
	if err != nil {
		return API{}, err
	}
	seen := map[string]string{}
	for _, fid := range sortedKeys(fns) {
		f := fns[fid]
		for _, ename := range sortedKeys(f.Events) {
			e := f.Events[ename]
			if e.RestAPI != logicalID {
				continue
			}
			route := Route{Method: e.Method, Path: e.Path, FunctionLogicalID: fid}
			switch e.Authorizer {
			case "":
				route.Authorizer = api.DefaultAuthorizer
			case "NONE":
			default:
				route.Authorizer = e.Authorizer
			}
			if route.Authorizer != "" {
				if _, ok := api.Authorizers[route.Authorizer]; !ok {
					return API{}, fmt.Errorf("sam: %w: Resources.%s.Properties.Events.%s: authorizer %q is not a Lambda authorizer of %s", ErrInvalid, fid, ename, route.Authorizer, logicalID)
				}
			}
			key := route.Method + " " + route.Path
			if prev, dup := seen[key]; dup {
				return API{}, fmt.Errorf("sam: %w: %s %s of %s is served by both %s and %s", ErrInvalid, route.Method, route.Path, logicalID, prev, fid)
			}
			seen[key] = fid
			api.Routes = append(api.Routes, route)
		}
	}
	sort.Slice(api.Routes, func(i, j int) bool {
		a, b := api.Routes[i], api.Routes[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Method < b.Method
	})
	return api, nil
}

func authorizer(name string, am, raw map[string]any, t *Template, path string) (Authorizer, error) {
	a := Authorizer{Name: name, PayloadType: "TOKEN", ReauthorizeEvery: 300}
	a.FunctionArn, _ = scalarString(am["FunctionArn"])
	if id, ok := logicalIDOf(raw["FunctionArn"]); ok {
		if _, isRes := t.Resources[id]; isRes {
			a.FunctionLogicalID = id
		}
	}
	if s, ok := scalarString(am["FunctionPayloadType"]); ok && s != "" {
		a.PayloadType = strings.ToUpper(s)
	}
	if a.PayloadType != "TOKEN" && a.PayloadType != "REQUEST" {
		return Authorizer{}, fmt.Errorf("sam: %w: %s.FunctionPayloadType %q is neither TOKEN nor REQUEST", ErrInvalid, path, a.PayloadType)
	}
	id, _ := am["Identity"].(map[string]any)
	if v, ok := id["ReauthorizeEvery"]; ok {
		s, _ := scalarString(v)
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 3600 {
			return Authorizer{}, fmt.Errorf("sam: %w: %s.Identity.ReauthorizeEvery %q is not 0 to 3600 seconds", ErrInvalid, path, s)
		}
		a.ReauthorizeEvery = n
	}
	list := func(key string) ([]string, error) {
		v, ok := id[key]
		if !ok || v == nil {
			return nil, nil
		}
		l, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("sam: %w: %s.Identity.%s is not a list", ErrInvalid, path, key)
		}
		out := make([]string, 0, len(l))
		for _, e := range l {
			s, ok := scalarString(e)
			if !ok {
				return nil, fmt.Errorf("sam: %w: %s.Identity.%s holds %s", ErrInvalid, path, key, describe(e))
			}
			out = append(out, s)
		}
		return out, nil
	}
	var err error
	if a.PayloadType == "TOKEN" {
		h := "Authorization"
		if s, ok := scalarString(id["Header"]); ok && s != "" {
			h = s
		}
		a.IdentityHeaders = []string{h}
		return a, nil
	}
	if a.IdentityHeaders, err = list("Headers"); err != nil {
		return Authorizer{}, err
	}
	if a.IdentityQueryStrings, err = list("QueryStrings"); err != nil {
		return Authorizer{}, err
	}
	if a.IdentityStageVariables, err = list("StageVariables"); err != nil {
		return Authorizer{}, err
	}
	if a.IdentityContext, err = list("Context"); err != nil {
		return Authorizer{}, err
	}
	return a, nil
}

func gatewayResponse(v any, path string) (GatewayResponse, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return GatewayResponse{}, fmt.Errorf("sam: %w: %s is not a mapping", ErrInvalid, path)
	}
	g := GatewayResponse{Headers: map[string]string{}, Templates: map[string]string{}}
	if sc, ok := m["StatusCode"]; ok && sc != nil {
		s, _ := scalarString(sc)
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 599 {
			return GatewayResponse{}, fmt.Errorf("sam: %w: %s.StatusCode %q is not an HTTP status", ErrInvalid, path, s)
		}
		g.StatusCode = n
	}
	if rp, ok := m["ResponseParameters"]; ok && rp != nil {
		rpm, ok := rp.(map[string]any)
		if !ok {
			return GatewayResponse{}, fmt.Errorf("sam: %w: %s.ResponseParameters is not a mapping", ErrInvalid, path)
		}
		if h, ok := rpm["Headers"]; ok && h != nil {
			hm, ok := h.(map[string]any)
			if !ok {
				return GatewayResponse{}, fmt.Errorf("sam: %w: %s.ResponseParameters.Headers is not a mapping", ErrInvalid, path)
			}
			for k, v := range hm {
				s, ok := scalarString(v)
				if !ok {
					return GatewayResponse{}, fmt.Errorf("sam: %w: %s.ResponseParameters.Headers.%s is not a string", ErrInvalid, path, k)
				}
				g.Headers[k] = s
			}
		}
	}
	if rt, ok := m["ResponseTemplates"]; ok && rt != nil {
		rtm, ok := rt.(map[string]any)
		if !ok {
			return GatewayResponse{}, fmt.Errorf("sam: %w: %s.ResponseTemplates is not a mapping", ErrInvalid, path)
		}
		for k, v := range rtm {
			s, ok := scalarString(v)
			if !ok {
				return GatewayResponse{}, fmt.Errorf("sam: %w: %s.ResponseTemplates.%s is not a string", ErrInvalid, path, k)
			}
			g.Templates[k] = s
		}
	}
	return g, nil
}
