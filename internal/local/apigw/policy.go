package apigw

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// errMalformedAuthorizerOutput: the authorizer returned something API
// Gateway cannot use as a policy (it answers 500,
// AUTHORIZER_CONFIGURATION_ERROR).
var errMalformedAuthorizerOutput = errors.New("malformed authorizer output")

// decision is the outcome of evaluating an authorizer's policy against a
// method ARN.
type decision int

const (
	implicitDeny decision = iota // no Allow statement covers the method
	allow                        // an Allow statement covers the method and no Deny does
	explicitDeny                 // a Deny statement covers the method
)

// authorizerOutput is a Lambda authorizer's parsed result.
type authorizerOutput struct {
	principalID string
	policy      policy
	// context as API Gateway passes it on: every value a string (numbers
	// and booleans as their JSON text).
	context map[string]string
}

// policy is an IAM policy document as authorizers return it.
type policy struct {
	statements []statement
}

// statement is one policy statement. Action and Resource accept IAM's
// string or list forms.
type statement struct {
	effect    string
	actions   []string
	resources []string
}

// parseAuthorizerOutput decodes an authorizer's response payload and checks
// it the way API Gateway does: an object with a principalId string and a
// policyDocument whose statements have Effect Allow or Deny, Action and
// Resource; context values must be strings, numbers or booleans (objects and
// arrays are rejected). Errors wrap errMalformedAuthorizerOutput.
func parseAuthorizerOutput(payload []byte) (authorizerOutput, error) {
	var raw struct {
		PrincipalID    *json.RawMessage           `json:"principalId"`
		PolicyDocument *json.RawMessage           `json:"policyDocument"`
		Context        map[string]json.RawMessage `json:"context"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return authorizerOutput{}, fmt.Errorf("%w: not a JSON object: %w", errMalformedAuthorizerOutput, err)
	}
	var out authorizerOutput
	if raw.PrincipalID == nil {
		return out, fmt.Errorf("%w: principalId is missing", errMalformedAuthorizerOutput)
	}
	if err := json.Unmarshal(*raw.PrincipalID, &out.principalID); err != nil {
		return out, fmt.Errorf("%w: principalId is not a string", errMalformedAuthorizerOutput)
	}
	if raw.PolicyDocument == nil || string(*raw.PolicyDocument) == "null" {
		return out, fmt.Errorf("%w: policyDocument is missing", errMalformedAuthorizerOutput)
	}
	pol, err := parsePolicy(*raw.PolicyDocument)
	if err != nil {
		return out, err
	}
	out.policy = pol
	out.context = make(map[string]string, len(raw.Context))
	for k, v := range raw.Context {
		s, err := contextValue(v)
		if err != nil {
			return out, fmt.Errorf("%w: context value %q: %w", errMalformedAuthorizerOutput, k, err)
		}
		out.context[k] = s
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

func parsePolicy(data json.RawMessage) (policy, error) {
	var raw struct {
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return policy{}, fmt.Errorf("%w: policyDocument is not an object", errMalformedAuthorizerOutput)
	}
	var stmts []json.RawMessage
	switch s := bytes.TrimSpace(raw.Statement); {
	case len(s) == 0 || string(s) == "null":
		return policy{}, fmt.Errorf("%w: policyDocument.Statement is missing", errMalformedAuthorizerOutput)
	case s[0] == '{':
		stmts = []json.RawMessage{s}
	default:
		if err := json.Unmarshal(s, &stmts); err != nil {
			return policy{}, fmt.Errorf("%w: policyDocument.Statement is neither an object nor a list", errMalformedAuthorizerOutput)
		}
	}
	var p policy
	for i, s := range stmts {
		var rs struct {
			Effect   string          `json:"Effect"`
			Action   json.RawMessage `json:"Action"`
			Resource json.RawMessage `json:"Resource"`
		}
		if err := json.Unmarshal(s, &rs); err != nil {
			return policy{}, fmt.Errorf("%w: statement %d is not an object", errMalformedAuthorizerOutput, i)
		}
		if rs.Effect != "Allow" && rs.Effect != "Deny" {
			return policy{}, fmt.Errorf("%w: statement %d: Effect %q is neither Allow nor Deny", errMalformedAuthorizerOutput, i, rs.Effect)
		}
		actions, err := stringOrList(rs.Action)
		if err != nil {
			return policy{}, fmt.Errorf("%w: statement %d: Action: %v", errMalformedAuthorizerOutput, i, err)
		}
		resources, err := stringOrList(rs.Resource)
		if err != nil {
			return policy{}, fmt.Errorf("%w: statement %d: Resource: %v", errMalformedAuthorizerOutput, i, err)
		}
		p.statements = append(p.statements, statement{effect: rs.Effect, actions: actions, resources: resources})
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

// evaluate decides whether the policy lets the caller invoke methodArn
// (execute-api:Invoke): a Deny statement covering it wins, else an Allow
// statement covering it allows, else it is denied implicitly. Resource
// patterns use IAM wildcards: * matches any run of characters (including
// '/' and ':'), ? any single character; actions compare case-insensitively.
func (p policy) evaluate(methodArn string) decision {
	allowed := false
	for _, s := range p.statements {
		if !anyMatch(s.actions, "execute-api:Invoke", true) || !anyMatch(s.resources, methodArn, false) {
			continue
		}
		if s.effect == "Deny" {
			return explicitDeny
		}
		allowed = true
	}
	if allowed {
		return allow
	}
	return implicitDeny
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
