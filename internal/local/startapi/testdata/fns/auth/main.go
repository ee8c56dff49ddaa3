// Command auth is a test REQUEST authorizer for startapi and cmd/local. The
// X-Test-Auth header decides: "deny" denies (with retryAfter 2 in the
// context), "unauthorized" fails with "Unauthorized", "error" fails with
// another error; anything else allows the method.
package main

import (
	"context"
	"errors"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(_ context.Context, e events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	effect := "Allow"
	switch e.Headers["X-Test-Auth"] {
	case "deny":
		effect = "Deny"
	case "unauthorized":
		return events.APIGatewayCustomAuthorizerResponse{}, errors.New("Unauthorized")
	case "error":
		return events.APIGatewayCustomAuthorizerResponse{}, errors.New("key store down")
	}
	return events.APIGatewayCustomAuthorizerResponse{
		PrincipalID: "tester",
		PolicyDocument: events.APIGatewayCustomAuthorizerPolicy{
			Version:   "2012-10-17",
			Statement: []events.IAMPolicyStatement{{Action: []string{"execute-api:Invoke"}, Effect: effect, Resource: []string{e.MethodArn}}},
		},
		Context: map[string]any{"tier": "test", "retryAfter": "2", "sourceIp": e.RequestContext.Identity.SourceIP},
	}, nil
}

func main() { lambda.Start(handle) }
