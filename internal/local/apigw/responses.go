package apigw

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/bucketgate/bucketgate/internal/local/sam"
)

// Gateway response types API Gateway (REST) defines.
const (
	AccessDenied                 = "ACCESS_DENIED"
	APIConfigurationError        = "API_CONFIGURATION_ERROR"
	AuthorizerConfigurationError = "AUTHORIZER_CONFIGURATION_ERROR"
	AuthorizerFailure            = "AUTHORIZER_FAILURE"
	BadRequestParameters         = "BAD_REQUEST_PARAMETERS"
	BadRequestBody               = "BAD_REQUEST_BODY"
	Default4XX                   = "DEFAULT_4XX"
	Default5XX                   = "DEFAULT_5XX"
	ExpiredToken                 = "EXPIRED_TOKEN"
	IntegrationFailure           = "INTEGRATION_FAILURE"
	IntegrationTimeout           = "INTEGRATION_TIMEOUT"
	InvalidAPIKey                = "INVALID_API_KEY"
	InvalidSignature             = "INVALID_SIGNATURE"
	MissingAuthenticationToken   = "MISSING_AUTHENTICATION_TOKEN"
	QuotaExceeded                = "QUOTA_EXCEEDED"
	RequestTooLarge              = "REQUEST_TOO_LARGE"
	ResourceNotFound             = "RESOURCE_NOT_FOUND"
	Throttled                    = "THROTTLED"
	Unauthorized                 = "UNAUTHORIZED"
	UnsupportedMediaType         = "UNSUPPORTED_MEDIA_TYPE"
	WAFFiltered                  = "WAF_FILTERED"
)

// responseDefault is a gateway response type's built-in behaviour.
type responseDefault struct {
	status    int
	message   *string // nil renders as JSON null
	errorType string  // x-amzn-ErrorType
}

func msg(s string) *string { return &s }

// defaults per type, from "Gateway response types for API Gateway"
// (docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html)
// and the messages API Gateway sends.
var defaults = map[string]responseDefault{
	AccessDenied:                 {403, msg("User is not authorized to access this resource"), "AccessDeniedException"},
	APIConfigurationError:        {500, msg("Internal server error"), "InternalServerErrorException"},
	AuthorizerConfigurationError: {500, nil, "AuthorizerConfigurationException"},
	AuthorizerFailure:            {500, nil, "AuthorizerFailureException"},
	BadRequestParameters:         {400, msg("Invalid request parameters"), "BadRequestException"},
	BadRequestBody:               {400, msg("Invalid request body"), "BadRequestException"},
	ExpiredToken:                 {403, msg("The security token included in the request is expired"), "ExpiredTokenException"},
	IntegrationFailure:           {504, msg("Internal server error"), "InternalServerErrorException"},
	IntegrationTimeout:           {504, msg("Endpoint request timed out"), "InternalServerErrorException"},
	InvalidAPIKey:                {403, msg("Forbidden"), "ForbiddenException"},
	InvalidSignature:             {403, msg("The request signature we calculated does not match the signature you provided"), "InvalidSignatureException"},
	MissingAuthenticationToken:   {403, msg("Missing Authentication Token"), "MissingAuthenticationTokenException"},
	QuotaExceeded:                {429, msg("Limit Exceeded"), "LimitExceededException"},
	RequestTooLarge:              {413, msg("Request Too Long"), "RequestTooLongException"},
	ResourceNotFound:             {404, msg("Not Found"), "NotFoundException"},
	Throttled:                    {429, msg("Too Many Requests"), "TooManyRequestsException"},
	Unauthorized:                 {401, msg("Unauthorized"), "UnauthorizedException"},
	UnsupportedMediaType:         {415, msg("Unsupported Media Type"), "UnsupportedMediaTypeException"},
	WAFFiltered:                  {403, msg("Forbidden"), "ForbiddenException"},
	Default4XX:                   {400, nil, ""},
	Default5XX:                   {500, nil, ""},
}

// lambdaError is not a customizable type of its own: a failed or malformed
// Lambda proxy integration answers 502 "Internal server error". We let
// DEFAULT_5XX customize its headers and body (keeping 502), which is the
// closest documented behaviour.
const lambdaError = "LAMBDA_ERROR"

// defaultTemplate is API Gateway's body template for a type nobody
// customized.
const defaultTemplate = `{"message":$context.error.messageString}`

// validateGatewayResponses rejects unknown types and header mappings API
// Gateway would refuse at deployment.
func validateGatewayResponses(g map[string]sam.GatewayResponse) error {
	for typ, r := range g {
		if _, ok := defaults[typ]; !ok {
			return fmt.Errorf("gateway response %s: unknown response type", typ)
		}
		if r.StatusCode != 0 && (r.StatusCode < 100 || r.StatusCode > 599) {
			return fmt.Errorf("gateway response %s: status code %d out of range", typ, r.StatusCode)
		}
		for name, expr := range r.Headers {
			if err := validMapping(expr); err != nil {
				return fmt.Errorf("gateway response %s: header %s: %w", typ, name, err)
			}
		}
	}
	return nil
}

var mappingPrefixes = []string{
	"context.", "stageVariables.",
	"method.request.header.", "method.request.querystring.", "method.request.path.",
	"method.request.multivalueheader.", "method.request.multivaluequerystring.",
}

func validMapping(expr string) error {
	if len(expr) >= 2 && expr[0] == '\'' && expr[len(expr)-1] == '\'' {
		return nil
	}
	for _, p := range mappingPrefixes {
		if strings.HasPrefix(expr, p) && len(expr) > len(p) {
			return nil
		}
	}
	return fmt.Errorf("mapping %q is neither a quoted static value nor a context., stageVariables. or method.request. source", expr)
}

// gatewayError is one gateway response to render.
type gatewayError struct {
	typ          string
	message      *string // overrides the type's default message when set
	explicitDeny bool    // ACCESS_DENIED caused by a Deny statement
}

// writeGatewayResponse renders a gateway response: the template's
// customization of the type (else of DEFAULT_4XX/DEFAULT_5XX), else API
// Gateway's default.
func (g *Gateway) writeGatewayResponse(w http.ResponseWriter, rc *requestCtx, ge gatewayError) int {
	def := defaults[ge.typ]
	if ge.typ == lambdaError {
		def = responseDefault{502, msg("Internal server error"), "InternalServerErrorException"}
	}
	message := def.message
	if ge.message != nil {
		message = ge.message
	}
	if ge.explicitDeny {
		message = msg("User is not authorized to access this resource with an explicit deny")
	}
	fallback := Default4XX
	if def.status >= 500 {
		fallback = Default5XX
	}
	status := def.status
	custom, ok := g.responses[ge.typ]
	if !ok {
		custom, ok = g.responses[fallback]
	}
	if ok && custom.statusCode != 0 && ge.typ != lambdaError {
		status = custom.statusCode
	}

	lookup := rc.lookup(ge.typ, message)
	h := w.Header()
	body := ""
	contentType := "application/json"
	if ok {
		for _, m := range custom.headers {
			if v, known := sam.MappingValue(m.expr, lookup); known && v != "" {
				h[m.key] = []string{v}
			}
		}
		if custom.hasTemplate {
			contentType = custom.contentType
			body = sam.RenderTemplate(custom.template, lookup)
		} else {
			body = sam.RenderTemplate(defaultTemplate, lookup)
		}
	} else if ge.explicitDeny && ge.typ == AccessDenied {
		// API Gateway's own explicit-deny body capitalizes the key.
		b, _ := json.Marshal(map[string]string{"Message": *message})
		body = string(b)
	} else {
		body = sam.RenderTemplate(defaultTemplate, lookup)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", contentType)
	}
	if def.errorType != "" {
		h.Set("X-Amzn-ErrorType", def.errorType)
	}
	h.Set("X-Amzn-Requestid", rc.requestID)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
	return status
}

// compiledResponse is a template's gateway response, prepared once.
type compiledResponse struct {
	statusCode  int
	headers     []headerMapping // sorted by header name
	hasTemplate bool
	contentType string // of the chosen body template
	template    string
}

// headerMapping is one response header: its canonical name and mapping
// expression.
type headerMapping struct {
	key, expr string
}

func compileResponses(g map[string]sam.GatewayResponse) map[string]compiledResponse {
	out := make(map[string]compiledResponse, len(g))
	for typ, r := range g {
		c := compiledResponse{statusCode: r.StatusCode}
		for _, name := range sortedKeys(r.Headers) {
			c.headers = append(c.headers, headerMapping{key: http.CanonicalHeaderKey(name), expr: r.Headers[name]})
		}
		c.contentType, c.template, c.hasTemplate = pickTemplate(r.Templates)
		out[typ] = c
	}
	return out
}

// pickTemplate chooses the body template: application/json when defined,
// else the first content type in order.
func pickTemplate(t map[string]string) (contentType, tmpl string, ok bool) {
	if s, found := t["application/json"]; found {
		return "application/json", s, true
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return "", "", false
	}
	return keys[0], t[keys[0]], true
}

// lookup resolves mapping sources and template variables for a gateway
// response.
func (rc *requestCtx) lookup(typ string, message *string) sam.Lookup {
	return func(name string) (string, bool) {
		switch {
		case name == "context.error.message":
			if message == nil {
				return "", true
			}
			return *message, true
		case name == "context.error.messageString":
			if message == nil {
				return "null", true
			}
			b, _ := json.Marshal(*message)
			return string(b), true
		case name == "context.error.responseType":
			if typ == lambdaError {
				return Default5XX, true
			}
			return typ, true
		case name == "context.error.validationErrorString":
			return "", true
		case strings.HasPrefix(name, "context.authorizer."):
			k := strings.TrimPrefix(name, "context.authorizer.")
			if k == "principalId" && rc.principalID != nil {
				return *rc.principalID, true
			}
			v, ok := rc.authorizer[k]
			return v, ok
		case strings.HasPrefix(name, "context."):
			v, ok := rc.contextVar(strings.TrimPrefix(name, "context."))
			return v, ok
		case strings.HasPrefix(name, "stageVariables."):
			v, ok := rc.stageVariables[strings.TrimPrefix(name, "stageVariables.")]
			return v, ok
		case strings.HasPrefix(name, "method.request.header."):
			vs := rc.header(strings.TrimPrefix(name, "method.request.header."))
			if len(vs) == 0 {
				return "", false
			}
			return vs[len(vs)-1], true
		case strings.HasPrefix(name, "method.request.multivalueheader."):
			vs := rc.header(strings.TrimPrefix(name, "method.request.multivalueheader."))
			return strings.Join(vs, ","), len(vs) > 0
		case strings.HasPrefix(name, "method.request.querystring."):
			vs := rc.query[strings.TrimPrefix(name, "method.request.querystring.")]
			if len(vs) == 0 {
				return "", false
			}
			return vs[len(vs)-1], true
		case strings.HasPrefix(name, "method.request.multivaluequerystring."):
			vs := rc.query[strings.TrimPrefix(name, "method.request.multivaluequerystring.")]
			return strings.Join(vs, ","), len(vs) > 0
		case strings.HasPrefix(name, "method.request.path."):
			v, ok := rc.pathParams[strings.TrimPrefix(name, "method.request.path.")]
			return v, ok
		}
		return "", false
	}
}
