package apigw_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/local/apigw"
)

func TestPolicyEvaluate(t *testing.T) {
	const arn = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/POST/predict/batch"
	stmt := func(effect string, action, resource []string) apigw.Statement {
		return apigw.Statement{Effect: effect, Action: action, Resource: resource}
	}
	invoke := []string{"execute-api:Invoke"}
	tests := []struct {
		name string
		stmt []apigw.Statement
		want apigw.Decision
	}{
		{name: "exact allow", stmt: []apigw.Statement{stmt("Allow", invoke, []string{arn})}, want: apigw.Allow},
		{name: "star covers slashes", stmt: []apigw.Statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/*"})}, want: apigw.Allow},
		{name: "all stages and methods", stmt: []apigw.Statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:*:*:abcdef1234/*/*/predict/*"})}, want: apigw.Allow},
		{name: "question mark is one character", stmt: []apigw.Statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v?/POST/predict/batch"})}, want: apigw.Allow},
		{name: "another method", stmt: []apigw.Statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/GET/predict/batch"})}, want: apigw.ImplicitDeny},
		{name: "prefix is not a match", stmt: []apigw.Statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/POST/predict"})}, want: apigw.ImplicitDeny},
		{name: "resource is case-sensitive", stmt: []apigw.Statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/post/predict/batch"})}, want: apigw.ImplicitDeny},
		{name: "action wildcard, any case", stmt: []apigw.Statement{stmt("Allow", []string{"EXECUTE-API:*"}, []string{"*"})}, want: apigw.Allow},
		{name: "other action does not allow", stmt: []apigw.Statement{stmt("Allow", []string{"execute-api:ManageConnections"}, []string{"*"})}, want: apigw.ImplicitDeny},
		{name: "deny wins over allow", stmt: []apigw.Statement{stmt("Allow", invoke, []string{"*"}), stmt("Deny", invoke, []string{arn})}, want: apigw.ExplicitDeny},
		{name: "deny elsewhere does not matter", stmt: []apigw.Statement{stmt("Allow", invoke, []string{"*"}), stmt("Deny", invoke, []string{"arn:other"})}, want: apigw.Allow},
		{name: "one of several resources", stmt: []apigw.Statement{stmt("Allow", invoke, []string{"arn:x", arn})}, want: apigw.Allow},
		{name: "no statements", want: apigw.ImplicitDeny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (apigw.Policy{Statement: tc.stmt}).Evaluate(arn); got != tc.want {
				t.Errorf("Evaluate = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseAuthorizerOutput(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    apigw.AuthorizerOutput
		wantErr bool
	}{
		{
			name: "list forms, context stringified",
			payload: `{"principalId":"p","policyDocument":{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["execute-api:Invoke"],"Resource":["a","b"]}]},` +
				`"context":{"s":"x","n":12,"f":1.25,"b":false,"z":null},"usageIdentifierKey":"k"}`,
			want: apigw.AuthorizerOutput{
				PrincipalID:        "p",
				Policy:             apigw.Policy{Version: "2012-10-17", Statement: []apigw.Statement{{Effect: "Allow", Action: []string{"execute-api:Invoke"}, Resource: []string{"a", "b"}}}},
				Context:            map[string]string{"s": "x", "n": "12", "f": "1.25", "b": "false", "z": ""},
				UsageIdentifierKey: "k",
			},
		},
		{
			name:    "string forms and a single statement object",
			payload: `{"principalId":"p","policyDocument":{"Statement":{"Effect":"Deny","Action":"execute-api:Invoke","Resource":"*"}}}`,
			want: apigw.AuthorizerOutput{
				PrincipalID: "p",
				Policy:      apigw.Policy{Statement: []apigw.Statement{{Effect: "Deny", Action: []string{"execute-api:Invoke"}, Resource: []string{"*"}}}},
				Context:     map[string]string{},
			},
		},
		{name: "not JSON", payload: `nope`, wantErr: true},
		{name: "array", payload: `[]`, wantErr: true},
		{name: "null", payload: `null`, wantErr: true},
		{name: "no principalId", payload: `{"policyDocument":{"Statement":[]}}`, wantErr: true},
		{name: "principalId not a string", payload: `{"principalId":1,"policyDocument":{"Statement":[]}}`, wantErr: true},
		{name: "no policyDocument", payload: `{"principalId":"p"}`, wantErr: true},
		{name: "no Statement", payload: `{"principalId":"p","policyDocument":{"Version":"2012-10-17"}}`, wantErr: true},
		{name: "bad Effect", payload: `{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}}`, wantErr: true},
		{name: "no Resource", payload: `{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Allow","Action":"*"}]}}`, wantErr: true},
		{name: "array in context", payload: `{"principalId":"p","policyDocument":{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]},"context":{"a":[1]}}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := apigw.ParseAuthorizerOutput([]byte(tc.payload))
			if tc.wantErr {
				if !errors.Is(err, apigw.ErrMalformedAuthorizerOutput) {
					t.Errorf("error = %v, want ErrMalformedAuthorizerOutput", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
