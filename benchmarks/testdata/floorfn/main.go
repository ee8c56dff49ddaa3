// Command floorfn is the prime figure's runtime floor: a Go Lambda function
// that decides nothing. It decodes the authorizer's event and answers a
// fixed Allow through the authorizer's Runtime API loop (internal/
// runtimeapi), warmed at init as the authorizer warms it, so that what its
// first invocation costs more than a steady one is the loop's and Go's
// first run, which the authorizer pays too.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/events"

	"github.com/bucketgate/bucketgate/internal/runtimeapi"
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
	h := runtimeapi.JSON(allow)
	_, _ = h(context.Background(), []byte(`{"type":"REQUEST","methodArn":"arn:aws:execute-api:us-east-1:123456789012:init/v1/POST/predict","resource":"/predict","path":"/predict","httpMethod":"POST","headers":{"Accept":"*/*"},"multiValueHeaders":{"Accept":["*/*"]},"requestContext":{"requestId":"init","identity":{"sourceIp":"192.0.2.1"}}}`))
	err := runtimeapi.Start(h)
	fmt.Fprintln(os.Stderr, "floorfn:", err)
	os.Exit(1)
}
