package apigw

import (
	"encoding/base64"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// The events the gateway sends, filled in the way API Gateway fills them.

// authorizerEvent is the REQUEST authorizer event for rc.
func (g *Gateway) authorizerEvent(rc *requestCtx, methodArn string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	headers, multiHeaders := multiMaps(rc.headers)
	query, multiQuery := multiMaps(rc.query)
	return events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type:                            "REQUEST",
		MethodArn:                       methodArn,
		Resource:                        rc.route.Path,
		Path:                            rc.r.URL.Path,
		HTTPMethod:                      rc.r.Method,
		Headers:                         headers,
		MultiValueHeaders:               multiHeaders,
		QueryStringParameters:           query,
		MultiValueQueryStringParameters: multiQuery,
		PathParameters:                  rc.pathParams,
		StageVariables:                  rc.stageVariables,
		RequestContext: events.APIGatewayCustomAuthorizerRequestTypeRequestContext{
			Path:         "/" + rc.stage + rc.r.URL.Path,
			AccountID:    rc.accountID,
			ResourceID:   resourceID(rc.route.Path),
			Stage:        rc.stage,
			RequestID:    rc.requestID,
			Identity:     events.APIGatewayCustomAuthorizerRequestTypeRequestIdentity{SourceIP: rc.sourceIP},
			ResourcePath: rc.route.Path,
			HTTPMethod:   rc.r.Method,
			APIID:        rc.apiID,
		},
	}
}

// proxyEvent is the Lambda proxy integration event for rc with the request
// body; authLatency is the authorizer's integration latency.
func (g *Gateway) proxyEvent(rc *requestCtx, body []byte, authLatency time.Duration) events.APIGatewayProxyRequest {
	headers, multiHeaders := multiMaps(rc.headers)
	query, multiQuery := multiMaps(rc.query)
	domainPrefix, _, _ := strings.Cut(rc.r.Host, ".")
	ev := events.APIGatewayProxyRequest{
		Resource:                        rc.route.Path,
		Path:                            rc.r.URL.Path,
		HTTPMethod:                      rc.r.Method,
		Headers:                         headers,
		MultiValueHeaders:               multiHeaders,
		QueryStringParameters:           query,
		MultiValueQueryStringParameters: multiQuery,
		PathParameters:                  rc.pathParams,
		StageVariables:                  rc.stageVariables,
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID:         rc.accountID,
			ResourceID:        resourceID(rc.route.Path),
			Stage:             rc.stage,
			DomainName:        rc.r.Host,
			DomainPrefix:      domainPrefix,
			RequestID:         rc.requestID,
			ExtendedRequestID: rc.requestID,
			Protocol:          rc.r.Proto,
			Identity: events.APIGatewayRequestIdentity{
				SourceIP:  rc.sourceIP,
				UserAgent: rc.r.UserAgent(),
			},
			ResourcePath:     rc.route.Path,
			Path:             "/" + rc.stage + rc.r.URL.Path,
			HTTPMethod:       rc.r.Method,
			RequestTime:      rc.start.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			RequestTimeEpoch: rc.start.UnixMilli(),
			APIID:            rc.apiID,
		},
	}
	if rc.principalID != nil {
		a := make(map[string]any, len(rc.authorizer)+2)
		for k, v := range rc.authorizer {
			a[k] = v
		}
		a["principalId"] = *rc.principalID
		a["integrationLatency"] = authLatency.Milliseconds()
		ev.RequestContext.Authorizer = a
	}
	switch {
	case len(body) == 0:
	case g.binary(rc.r.Header.Get("Content-Type")) || !utf8.Valid(body):
		ev.Body = base64.StdEncoding.EncodeToString(body)
		ev.IsBase64Encoded = true
	default:
		ev.Body = string(body)
	}
	return ev
}

// multiMaps renders headers or query parameters in both event forms: the
// last value per name, and all values. Both are nil when m is empty (the
// events then carry null, as API Gateway's do).
func multiMaps(m map[string][]string) (map[string]string, map[string][]string) {
	if len(m) == 0 {
		return nil, nil
	}
	single := make(map[string]string, len(m))
	multi := make(map[string][]string, len(m))
	for k, vs := range m {
		if len(vs) == 0 {
			continue
		}
		single[k] = vs[len(vs)-1]
		multi[k] = vs
	}
	return single, multi
}
