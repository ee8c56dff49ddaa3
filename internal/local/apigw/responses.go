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

// The gateway response types the gateway produces itself.
const (
	accessDenied                 = "ACCESS_DENIED"
	authorizerConfigurationError = "AUTHORIZER_CONFIGURATION_ERROR"
	default4XX                   = "DEFAULT_4XX"
	default5XX                   = "DEFAULT_5XX"
	integrationTimeout           = "INTEGRATION_TIMEOUT"
	missingAuthenticationToken   = "MISSING_AUTHENTICATION_TOKEN"
	requestTooLarge              = "REQUEST_TOO_LARGE"
	unauthorized                 = "UNAUTHORIZED"
)

// responseDefault is a gateway response type's built-in behaviour.
type responseDefault struct {
	status    int
	message   *string // nil renders as JSON null
	errorType string  // x-amzn-ErrorType
}

func msg(s string) *string { return &s }

// defaults holds every type API Gateway (REST) defines (a template may
// customize any of them), from "Gateway response types for API Gateway"
// (docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html)
// and the messages API Gateway sends.
var defaults = map[string]responseDefault{
	accessDenied:                 {403, msg("User is not authorized to access this resource"), "AccessDeniedException"},
	"API_CONFIGURATION_ERROR":    {500, msg("Internal server error"), "InternalServerErrorException"},
	authorizerConfigurationError: {500, nil, "AuthorizerConfigurationException"},
	"AUTHORIZER_FAILURE":         {500, nil, "AuthorizerFailureException"},
	"BAD_REQUEST_PARAMETERS":     {400, msg("Invalid request parameters"), "BadRequestException"},
	"BAD_REQUEST_BODY":           {400, msg("Invalid request body"), "BadRequestException"},
	"EXPIRED_TOKEN":              {403, msg("The security token included in the request is expired"), "ExpiredTokenException"},
	"INTEGRATION_FAILURE":        {504, msg("Internal server error"), "InternalServerErrorException"},
	integrationTimeout:           {504, msg("Endpoint request timed out"), "InternalServerErrorException"},
	"INVALID_API_KEY":            {403, msg("Forbidden"), "ForbiddenException"},
	"INVALID_SIGNATURE":          {403, msg("The request signature we calculated does not match the signature you provided"), "InvalidSignatureException"},
	missingAuthenticationToken:   {403, msg("Missing Authentication Token"), "MissingAuthenticationTokenException"},
	"QUOTA_EXCEEDED":             {429, msg("Limit Exceeded"), "LimitExceededException"},
	requestTooLarge:              {413, msg("Request Too Long"), "RequestTooLongException"},
	"RESOURCE_NOT_FOUND":         {404, msg("Not Found"), "NotFoundException"},
	"THROTTLED":                  {429, msg("Too Many Requests"), "TooManyRequestsException"},
	unauthorized:                 {401, msg("Unauthorized"), "UnauthorizedException"},
	"UNSUPPORTED_MEDIA_TYPE":     {415, msg("Unsupported Media Type"), "UnsupportedMediaTypeException"},
	"WAF_FILTERED":               {403, msg("Forbidden"), "ForbiddenException"},
	default4XX:                   {400, nil, ""},
	default5XX:                   {500, nil, ""},
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
	explicitDeny bool // ACCESS_DENIED caused by a Deny statement
}

// writeGatewayResponse renders a gateway response: the template's
// customization of the type, else of DEFAULT_4XX/DEFAULT_5XX (headers,
// body template, and status code if set), else API Gateway's default body
// {"message":$context.error.messageString}. AUTHORIZER_FAILURE is never
// produced: API Gateway reports every Lambda authorizer failure other than
// "Unauthorized" as AUTHORIZER_CONFIGURATION_ERROR.
func (g *Gateway) writeGatewayResponse(w http.ResponseWriter, rc *requestCtx, ge gatewayError) int {
	def := defaults[ge.typ]
	if ge.typ == lambdaError {
		def = responseDefault{502, msg("Internal server error"), "InternalServerErrorException"}
	}
	message := def.message
	if ge.explicitDeny {
		message = msg("User is not authorized to access this resource with an explicit deny")
	}
	fallback := default4XX
	if def.status >= 500 {
		fallback = default5XX
	}
	status := def.status
	custom, ok := g.cfg.API.GatewayResponses[ge.typ]
	if !ok {
		custom, ok = g.cfg.API.GatewayResponses[fallback]
	}
	if ok && custom.StatusCode != 0 && ge.typ != lambdaError {
		status = custom.StatusCode
	}

	lookup := rc.lookup(ge.typ, message)
	h := w.Header()
	body := sam.RenderTemplate(defaultTemplate, lookup)
	contentType := "application/json"
	switch {
	case ok:
		for name, v := range custom.RenderHeaders(lookup) {
			if v != "" {
				h.Set(name, v)
			}
		}
		if ct, tmpl, found := pickTemplate(custom.Templates); found {
			contentType = ct
			body = sam.RenderTemplate(tmpl, lookup)
		}
	case ge.explicitDeny:
		// API Gateway's own explicit-deny body capitalizes the key.
		b, _ := json.Marshal(map[string]string{"Message": *message})
		body = string(b)
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
				return default5XX, true
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
