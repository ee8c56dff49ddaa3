package apigw

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrMalformedAuthorizerOutput: the authorizer returned something API Gateway
// cannot use as a policy (it answers 500, AUTHORIZER_CONFIGURATION_ERROR).
var ErrMalformedAuthorizerOutput = errors.New("malformed authorizer output")

// Decision is the outcome of evaluating an authorizer's policy against a
// method ARN.
type Decision int

const (
	// ImplicitDeny: no Allow statement covers the method.
	ImplicitDeny Decision = iota
	// Allow: an Allow statement covers the method and no Deny does.
	Allow
	// ExplicitDeny: a Deny statement covers the method.
	ExplicitDeny
)

// String returns "allow", "implicit-deny" or "explicit-deny".
func (d Decision) String() string {
	switch d {
	case Allow:
		return "allow"
	case ExplicitDeny:
		return "explicit-deny"
	}
	return "implicit-deny"
}

// AuthorizerOutput is a Lambda authorizer's parsed result.
type AuthorizerOutput struct {
	PrincipalID string
	Policy      Policy
	// Context as API Gateway passes it on: every value a string (numbers
	// and booleans as their JSON text).
	Context            map[string]string
	UsageIdentifierKey string
}

// Policy is an IAM policy document as authorizers return it.
type Policy struct {
	Version   string
	Statement []Statement
}

// Statement is one policy statement. Action and Resource accept IAM's string
// or list forms.
type Statement struct {
	Effect   string
	Action   []string
	Resource []string
}

// ParseAuthorizerOutput decodes an authorizer's response payload and checks
// it the way API Gateway does: an object with a principalId string and a
// policyDocument whose statements have Effect Allow or Deny, Action and
// Resource; context values must be strings, numbers or booleans (objects and
// arrays are rejected). Errors wrap ErrMalformedAuthorizerOutput.
func ParseAuthorizerOutput(payload []byte) (AuthorizerOutput, error) {
	if out, ok := fastAuthorizerOutput(payload); ok {
		return out, nil
	}
	return parseAuthorizerOutput(payload)
}

// parseAuthorizerOutput is ParseAuthorizerOutput with encoding/json: the
// reference for every input, and the path taken for inputs outside the fast
// parser's subset.
func parseAuthorizerOutput(payload []byte) (AuthorizerOutput, error) {
	var raw struct {
		PrincipalID        *json.RawMessage           `json:"principalId"`
		PolicyDocument     *json.RawMessage           `json:"policyDocument"`
		Context            map[string]json.RawMessage `json:"context"`
		UsageIdentifierKey string                     `json:"usageIdentifierKey"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return AuthorizerOutput{}, fmt.Errorf("%w: not a JSON object: %v", ErrMalformedAuthorizerOutput, err)
	}
	if bytes.Equal(bytes.TrimSpace(payload), []byte("null")) {
		return AuthorizerOutput{}, fmt.Errorf("%w: null", ErrMalformedAuthorizerOutput)
	}
	var out AuthorizerOutput
	if raw.PrincipalID == nil {
		return out, fmt.Errorf("%w: principalId is missing", ErrMalformedAuthorizerOutput)
	}
	if err := json.Unmarshal(*raw.PrincipalID, &out.PrincipalID); err != nil {
		return out, fmt.Errorf("%w: principalId is not a string", ErrMalformedAuthorizerOutput)
	}
	if raw.PolicyDocument == nil || string(*raw.PolicyDocument) == "null" {
		return out, fmt.Errorf("%w: policyDocument is missing", ErrMalformedAuthorizerOutput)
	}
	pol, err := parsePolicy(*raw.PolicyDocument)
	if err != nil {
		return out, err
	}
	out.Policy = pol
	out.UsageIdentifierKey = raw.UsageIdentifierKey
	out.Context = make(map[string]string, len(raw.Context))
	for k, v := range raw.Context {
		s, err := contextValue(v)
		if err != nil {
			return out, fmt.Errorf("%w: context value %q: %v", ErrMalformedAuthorizerOutput, k, err)
		}
		out.Context[k] = s
	}
	return out, nil
}

func contextValue(v json.RawMessage) (string, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "", errors.New("empty")
	}
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", err
		}
		return s, nil
	case '{', '[':
		return "", errors.New("objects and arrays are not allowed, only strings, numbers and booleans")
	case 'n':
		return "", nil // null: passed on as empty
	}
	// A number or boolean: API Gateway passes its text on as a string.
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		return "", err
	}
	return string(v), nil
}

func parsePolicy(data json.RawMessage) (Policy, error) {
	var raw struct {
		Version   string          `json:"Version"`
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Policy{}, fmt.Errorf("%w: policyDocument is not an object", ErrMalformedAuthorizerOutput)
	}
	var stmts []json.RawMessage
	switch s := bytes.TrimSpace(raw.Statement); {
	case len(s) == 0 || string(s) == "null":
		return Policy{}, fmt.Errorf("%w: policyDocument.Statement is missing", ErrMalformedAuthorizerOutput)
	case s[0] == '{':
		stmts = []json.RawMessage{s}
	default:
		if err := json.Unmarshal(s, &stmts); err != nil {
			return Policy{}, fmt.Errorf("%w: policyDocument.Statement is neither an object nor a list", ErrMalformedAuthorizerOutput)
		}
	}
	p := Policy{Version: raw.Version}
	for i, s := range stmts {
		var rs struct {
			Effect   string          `json:"Effect"`
			Action   json.RawMessage `json:"Action"`
			Resource json.RawMessage `json:"Resource"`
		}
		if err := json.Unmarshal(s, &rs); err != nil {
			return Policy{}, fmt.Errorf("%w: statement %d is not an object", ErrMalformedAuthorizerOutput, i)
		}
		if rs.Effect != "Allow" && rs.Effect != "Deny" {
			return Policy{}, fmt.Errorf("%w: statement %d: Effect %q is neither Allow nor Deny", ErrMalformedAuthorizerOutput, i, rs.Effect)
		}
		actions, err := stringOrList(rs.Action)
		if err != nil {
			return Policy{}, fmt.Errorf("%w: statement %d: Action: %v", ErrMalformedAuthorizerOutput, i, err)
		}
		resources, err := stringOrList(rs.Resource)
		if err != nil {
			return Policy{}, fmt.Errorf("%w: statement %d: Resource: %v", ErrMalformedAuthorizerOutput, i, err)
		}
		p.Statement = append(p.Statement, Statement{Effect: rs.Effect, Action: actions, Resource: resources})
	}
	return p, nil
}

func stringOrList(v json.RawMessage) ([]string, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return nil, errors.New("missing")
	}
	if v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	var l []string
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, errors.New("neither a string nor a list of strings")
	}
	if len(l) == 0 {
		return nil, errors.New("empty list")
	}
	return l, nil
}

// Evaluate decides whether the policy lets the caller invoke methodArn
// (execute-api:Invoke): a Deny statement covering it wins, else an Allow
// statement covering it allows, else it is denied implicitly. Resource
// patterns use IAM wildcards: * matches any run of characters (including
// '/' and ':'), ? any single character; actions compare case-insensitively.
func (p Policy) Evaluate(methodArn string) Decision {
	allowed := false
	for _, s := range p.Statement {
		if !anyMatch(s.Action, "execute-api:Invoke", true) || !anyMatch(s.Resource, methodArn, false) {
			continue
		}
		if s.Effect == "Deny" {
			return ExplicitDeny
		}
		allowed = true
	}
	if allowed {
		return Allow
	}
	return ImplicitDeny
}

func anyMatch(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			if wildcard(strings.ToLower(p), strings.ToLower(s)) {
				return true
			}
		} else if wildcard(p, s) {
			return true
		}
	}
	return false
}

// wildcard matches s against pattern with * and ? (no escapes), in linear
// time with single-star backtracking.
func wildcard(pattern, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && (pattern[pi] == '?' || pattern[pi] == s[si]):
			pi++
			si++
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}
