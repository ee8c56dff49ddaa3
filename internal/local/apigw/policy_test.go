package apigw

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPolicyEvaluate(t *testing.T) {
	const arn = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/POST/predict/batch"
	stmt := func(effect string, action, resource []string) statement {
		return statement{effect: effect, actions: action, resources: resource}
	}
	invoke := []string{"execute-api:Invoke"}
	tests := []struct {
		name string
		stmt []statement
		want decision
	}{
		{name: "exact allow", stmt: []statement{stmt("Allow", invoke, []string{arn})}, want: allow},
		{name: "star covers slashes", stmt: []statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/*"})}, want: allow},
		{name: "all stages and methods", stmt: []statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:*:*:abcdef1234/*/*/predict/*"})}, want: allow},
		{name: "question mark is one character", stmt: []statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v?/POST/predict/batch"})}, want: allow},
		{name: "another method", stmt: []statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/GET/predict/batch"})}, want: implicitDeny},
		{name: "prefix is not a match", stmt: []statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/POST/predict"})}, want: implicitDeny},
		{name: "resource is case-sensitive", stmt: []statement{stmt("Allow", invoke, []string{"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/post/predict/batch"})}, want: implicitDeny},
		{name: "action wildcard, any case", stmt: []statement{stmt("Allow", []string{"EXECUTE-API:*"}, []string{"*"})}, want: allow},
		{name: "other action does not allow", stmt: []statement{stmt("Allow", []string{"execute-api:ManageConnections"}, []string{"*"})}, want: implicitDeny},
		{name: "deny wins over allow", stmt: []statement{stmt("Allow", invoke, []string{"*"}), stmt("Deny", invoke, []string{arn})}, want: explicitDeny},
		{name: "deny elsewhere does not matter", stmt: []statement{stmt("Allow", invoke, []string{"*"}), stmt("Deny", invoke, []string{"arn:other"})}, want: allow},
		{name: "one of several resources", stmt: []statement{stmt("Allow", invoke, []string{"arn:x", arn})}, want: allow},
		{name: "no statements", want: implicitDeny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (policy{statements: tc.stmt}).evaluate(arn); got != tc.want {
				t.Errorf("Evaluate = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseAuthorizerOutput(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    authorizerOutput
		wantErr bool
	}{
		{
			name: "list forms, context stringified",
			payload: `{"principalId":"p","policyDocument":{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["execute-api:Invoke"],"Resource":["a","b"]}]},` +
				`"context":{"s":"x","n":12,"f":1.25,"b":false,"z":null},"usageIdentifierKey":"k"}`,
			want: authorizerOutput{
				principalID: "p",
				policy:      policy{statements: []statement{{effect: "Allow", actions: []string{"execute-api:Invoke"}, resources: []string{"a", "b"}}}},
				context:     map[string]string{"s": "x", "n": "12", "f": "1.25", "b": "false", "z": ""},
			},
		},
		{
			name:    "string forms and a single statement object",
			payload: `{"principalId":"p","policyDocument":{"Statement":{"Effect":"Deny","Action":"execute-api:Invoke","Resource":"*"}}}`,
			want: authorizerOutput{
				principalID: "p",
				policy:      policy{statements: []statement{{effect: "Deny", actions: []string{"execute-api:Invoke"}, resources: []string{"*"}}}},
				context:     map[string]string{},
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
			got, err := parseAuthorizerOutput([]byte(tc.payload))
			if tc.wantErr {
				if !errors.Is(err, errMalformedAuthorizerOutput) {
					t.Errorf("error = %v, want ErrMalformedAuthorizerOutput", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(authorizerOutput{}, policy{}, statement{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
