package apigw

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The events the gateway sends, appended as JSON by hand: the bytes are
// exactly what encoding/json makes of
// events.APIGatewayCustomAuthorizerRequestTypeRequest and
// events.APIGatewayProxyRequest filled in the way API Gateway fills them
// (events_test.go holds those struct forms and checks the equality), at a
// fraction of the reflection-driven cost.

// appendAuthorizerEvent appends the REQUEST authorizer event for rc.
func (g *Gateway) appendAuthorizerEvent(dst []byte, rc *requestCtx, methodArn string) []byte {
	dst = append(dst, `{"type":"REQUEST","methodArn":`...)
	dst = appendJSONString(dst, methodArn)
	dst = append(dst, ',')
	dst = appendRequestFields(dst, rc)
	dst = append(dst, `,"requestContext":{"path":`...)
	dst = appendStagePath(dst, rc)
	dst = append(dst, `,"accountId":`...)
	dst = appendJSONString(dst, rc.accountID)
	dst = append(dst, `,"resourceId":`...)
	dst = appendJSONString(dst, rc.route.resourceID)
	dst = append(dst, `,"stage":`...)
	dst = appendJSONString(dst, rc.stage)
	dst = append(dst, `,"requestId":`...)
	dst = appendJSONString(dst, rc.requestID)
	dst = append(dst, `,"identity":{"apiKey":"","sourceIp":`...)
	dst = appendJSONString(dst, rc.sourceIP)
	dst = append(dst, `,"clientCert":{"clientCertPem":"","issuerDN":"","serialNumber":"","subjectDN":"","validity":{"notAfter":"","notBefore":""}}},"resourcePath":`...)
	dst = appendJSONString(dst, rc.route.Path)
	dst = append(dst, `,"httpMethod":`...)
	dst = appendJSONString(dst, rc.r.Method)
	dst = append(dst, `,"apiId":`...)
	dst = appendJSONString(dst, rc.apiID)
	return append(dst, '}', '}')
}

// appendProxyEvent appends the Lambda proxy integration event for rc with
// the request body; authLatency is the authorizer's integration latency.
func (g *Gateway) appendProxyEvent(dst []byte, rc *requestCtx, body []byte, authLatency time.Duration) []byte {
	dst = append(dst, '{')
	dst = appendRequestFields(dst, rc)
	dst = append(dst, `,"requestContext":{"accountId":`...)
	dst = appendJSONString(dst, rc.accountID)
	dst = append(dst, `,"resourceId":`...)
	dst = appendJSONString(dst, rc.route.resourceID)
	dst = append(dst, `,"stage":`...)
	dst = appendJSONString(dst, rc.stage)
	dst = append(dst, `,"domainName":`...)
	dst = appendJSONString(dst, rc.r.Host)
	dst = append(dst, `,"domainPrefix":`...)
	prefix, _, _ := strings.Cut(rc.r.Host, ".")
	dst = appendJSONString(dst, prefix)
	dst = append(dst, `,"requestId":`...)
	dst = appendJSONString(dst, rc.requestID)
	dst = append(dst, `,"extendedRequestId":`...)
	dst = appendJSONString(dst, rc.requestID)
	dst = append(dst, `,"protocol":`...)
	dst = appendJSONString(dst, rc.r.Proto)
	dst = append(dst, `,"identity":{"sourceIp":`...)
	dst = appendJSONString(dst, rc.sourceIP)
	dst = append(dst, `,"userAgent":`...)
	dst = appendJSONString(dst, rc.r.UserAgent())
	dst = append(dst, `},"resourcePath":`...)
	dst = appendJSONString(dst, rc.route.Path)
	dst = append(dst, `,"path":`...)
	dst = appendStagePath(dst, rc)
	dst = append(dst, `,"authorizer":`...)
	dst = appendAuthorizerContext(dst, rc, authLatency)
	dst = append(dst, `,"httpMethod":`...)
	dst = appendJSONString(dst, rc.r.Method)
	dst = append(dst, `,"requestTime":"`...)
	dst = rc.start.UTC().AppendFormat(dst, "02/Jan/2006:15:04:05 -0700") // digits, letters, '/', ':', ' ', '+', '-': nothing to escape
	dst = append(dst, `","requestTimeEpoch":`...)
	dst = strconv.AppendInt(dst, rc.start.UnixMilli(), 10)
	dst = append(dst, `,"apiId":`...)
	dst = appendJSONString(dst, rc.apiID)
	dst = append(dst, `},"body":`...)
	switch {
	case len(body) == 0:
		dst = append(dst, `""`...)
	case g.binary(rc.r.Header.Get("Content-Type")) || !utf8.Valid(body):
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, body) // the base64 alphabet needs no escaping
		return append(dst, `","isBase64Encoded":true}`...)
	default:
		dst = appendJSONString(dst, string(body))
	}
	return append(dst, '}')
}

// appendStagePath appends "/{stage}{path}", requestContext.path.
func appendStagePath(dst []byte, rc *requestCtx) []byte {
	return appendJSONString(dst, "/"+rc.stage+rc.r.URL.Path)
}

// appendAuthorizerContext appends requestContext.authorizer of a proxy
// event: null without an authorizer, else the authorizer's context plus
// principalId and integrationLatency (milliseconds), keys sorted.
func appendAuthorizerContext(dst []byte, rc *requestCtx, authLatency time.Duration) []byte {
	if rc.principalID == nil {
		return append(dst, "null"...)
	}
	keys := make([]string, 0, len(rc.authorizer)+2)
	for k := range rc.authorizer {
		if k != "principalId" && k != "integrationLatency" {
			keys = append(keys, k)
		}
	}
	keys = append(keys, "principalId", "integrationLatency")
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		switch k {
		case "principalId":
			dst = appendJSONString(dst, *rc.principalID)
		case "integrationLatency":
			dst = strconv.AppendInt(dst, authLatency.Milliseconds(), 10)
		default:
			dst = appendJSONString(dst, rc.authorizer[k])
		}
	}
	return append(dst, '}')
}

// appendRequestFields appends the request fields both events share, in
// their order: "resource" through "stageVariables", without braces.
func appendRequestFields(dst []byte, rc *requestCtx) []byte {
	dst = append(dst, `"resource":`...)
	dst = appendJSONString(dst, rc.route.Path)
	dst = append(dst, `,"path":`...)
	dst = appendJSONString(dst, rc.r.URL.Path)
	dst = append(dst, `,"httpMethod":`...)
	dst = appendJSONString(dst, rc.r.Method)
	dst = append(dst, ',')
	dst = appendMultiMaps(dst, "headers", "multiValueHeaders", rc.headers)
	dst = append(dst, ',')
	dst = appendMultiMaps(dst, "queryStringParameters", "multiValueQueryStringParameters", rc.query)
	dst = append(dst, `,"pathParameters":`...)
	dst = appendStringMap(dst, rc.pathParams)
	dst = append(dst, `,"stageVariables":`...)
	dst = appendStringMap(dst, rc.stageVariables)
	return dst
}
