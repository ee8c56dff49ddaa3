// Command floorfn is the prime figure's runtime floor: a Go Lambda function
// that decides nothing. It decodes the authorizer's event and answers a
// fixed Allow, with encoding/json's codecs for both built at init as the
// authorizer builds them, so that what its first invocation costs more
// than a steady one is the Lambda runtime loop's (aws-lambda-go) and Go's
// first run, which every Go function pays.
package main

import (
	"context"
	"encoding/json"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func allow(_ context.Context, e events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	return events.APIGatewayCustomAuthorizerResponse{
		PrincipalID: "ip:" + e.RequestContext.Identity.SourceIP,
		PolicyDocument: events.APIGatewayCustomAuthorizerPolicy{
			Version:   "2012-10-17",
			Statement: []events.IAMPolicyStatement{{Action: []string{"execute-api:Invoke"}, Effect: "Allow", Resource: []string{e.MethodArn}}},
		},
		Context: map[string]any{"tier": "anonymous", "limit": "10", "remaining": "9"},
	}, nil
}

func main() {
	var e events.APIGatewayCustomAuthorizerRequestTypeRequest
	if json.Unmarshal([]byte(`{"type":"REQUEST","methodArn":"arn:aws:execute-api:us-east-1:123456789012:init/v1/POST/predict","resource":"/predict","path":"/predict","httpMethod":"POST","headers":{"Accept":"*/*"},"multiValueHeaders":{"Accept":["*/*"]},"requestContext":{"requestId":"init","identity":{"sourceIp":"192.0.2.1"}}}`), &e) == nil {
		if res, err := allow(context.Background(), e); err == nil {
			_, _ = json.Marshal(res)
		}
	}
	lambda.Start(allow)
}
