package sam

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// mustParse parses a template or fails the test.
func mustParse(t *testing.T, src string) *Template {
	t.Helper()
	tpl, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tpl
}

// resolveTemplate is the skeleton the resolution tests fill in: parameters,
// conditions, mappings and a few resources to refer to.
const resolveTemplate = `
Parameters:
  Stage: {Type: String, Default: prod}
  Count: {Type: Number, Default: 3}
  Empty: {Type: String, Default: ""}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [!Condition IsProd, !Equals [!Ref Count, 3]]
  Either: !Or [!Condition NotProd, !Equals [!Ref Empty, ""]]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: {Handler: bootstrap}
  Table:
    Type: AWS::DynamoDB::Table
  Queue:
    Type: AWS::SQS::Queue
`

func TestResolve(t *testing.T) {
	tpl := mustParse(t, resolveTemplate)
	tests := []struct {
		name   string
		expr   string // YAML for one value
		params map[string]string
		want   any
	}{
		{"ref parameter", `!Ref Stage`, nil, "prod"},
		{"ref parameter overridden", `!Ref Stage`, map[string]string{"Stage": "dev"}, "dev"},
		{"ref number parameter", `!Ref Count`, nil, "3"},
		{"long form ref", `{Ref: Stage}`, nil, "prod"},
		{"ref resource", `!Ref Table`, nil, "Table"},
		{"ref region", `!Ref AWS::Region`, nil, "us-east-1"},
		{"ref account", `!Ref AWS::AccountId`, nil, "123456789012"},
		{"ref stack name", `!Ref AWS::StackName`, nil, "local"},
		{"ref partition", `!Ref AWS::Partition`, nil, "aws"},
		{"getatt dotted function arn", `!GetAtt Fn.Arn`, nil, "arn:aws:lambda:us-east-1:123456789012:function:Fn"},
		{"getatt list table arn", `!GetAtt [Table, Arn]`, nil, "arn:aws:dynamodb:us-east-1:123456789012:Table"},
		{"ref url suffix", `!Ref AWS::URLSuffix`, nil, "amazonaws.com"},
		{"long form getatt", `{"Fn::GetAtt": [Fn, Arn]}`, nil, "arn:aws:lambda:us-east-1:123456789012:function:Fn"},
		{"getatt generic arn", `!GetAtt Queue.Arn`, nil, "arn:aws:sqs:us-east-1:123456789012:Queue"},
		{"getatt other attribute", `!GetAtt Queue.QueueName`, nil, "Queue.QueueName"},
		{"getatt dotted attribute", `!GetAtt Table.Endpoint.Address`, nil, "Table.Endpoint.Address"},
		{"sub scalar", `!Sub "https://${Table}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/"`, nil, "https://Table.execute-api.us-east-1.amazonaws.com/prod/"},
		{"sub getatt", `!Sub "${Fn.Arn}/invocations"`, nil, "arn:aws:lambda:us-east-1:123456789012:function:Fn/invocations"},
		{"sub literal", `!Sub "${!Literal} and ${Stage}"`, nil, "${Literal} and prod"},
		{"sub with variables", `!Sub ["${A}-${Stage}", {A: !Ref Count}]`, nil, "3-prod"},
		{"sub variable shadows parameter", `!Sub ["${Stage}", {Stage: x}]`, nil, "x"},
		{"sub dynamic reference", `!Sub "{{resolve:secretsmanager:${Stage}}}"`, nil, "{{resolve:secretsmanager:prod}}"},
		{"long form sub", `{"Fn::Sub": "${Stage}"}`, nil, "prod"},
		{"if true", `!If [IsProd, big, small]`, nil, "big"},
		{"if false", `!If [IsProd, big, small]`, map[string]string{"Stage": "dev"}, "small"},
		{"if novalue drops the key", `{A: !If [NotProd, x, !Ref AWS::NoValue], B: y}`, nil, map[string]any{"B": "y"}},
		{"novalue drops list item", `[a, !Ref AWS::NoValue, b]`, nil, []any{"a", "b"}},
		{"and", `!If [Both, yes, no]`, nil, "yes"},
		{"or", `!If [Either, yes, no]`, map[string]string{"Stage": "dev", "Empty": "x"}, "yes"},
		{"or false", `!If [Either, yes, no]`, map[string]string{"Empty": "x"}, "no"},
		{"equals as value", `!Equals [!Ref Stage, prod]`, nil, true},
		{"join", `!Join [",", [a, !Ref Stage, 3]]`, nil, "a,prod,3"},
		{"nested map", `{Outer: {Inner: [!Ref Stage, {K: !Sub "${Count}"}]}}`, nil, map[string]any{"Outer": map[string]any{"Inner": []any{"prod", map[string]any{"K": "3"}}}}},
		{"number kept as written", `1.10`, nil, "1.10"},
		{"bool", `true`, nil, true},
		{"null", `~`, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := parseValue(t, tc.expr)
			got, err := tpl.Resolve(v, tc.params)
			if err != nil {
				t.Fatalf("Resolve(%s): %v", tc.expr, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Resolve(%s) mismatch (-want +got):\n%s", tc.expr, diff)
			}
		})
	}
}

// parseValue parses one YAML value the way template values are parsed.
func parseValue(t *testing.T, expr string) any {
	t.Helper()
	tpl := mustParse(t, "Resources: {}\nOutputs:\n  X:\n    Value: "+expr+"\n")
	return tpl.Outputs["X"].Value
}

func TestResolveErrors(t *testing.T) {
	tpl := mustParse(t, resolveTemplate+`
  Loop:
    Type: AWS::SQS::Queue
`+`Outputs: {}
`)
	cyclic := mustParse(t, `
Conditions:
  A: !Condition B
  B: !Not [!Condition A]
Resources: {}
`)
	tests := []struct {
		name     string
		tpl      *Template
		expr     string
		params   map[string]string
		sentinel error
		contains string
	}{
		{"ref unknown", tpl, `!Ref Nope`, nil, ErrUnresolved, `"Nope"`},
		{"ref unknown pseudo", tpl, `!Ref AWS::Nope`, nil, ErrUnresolved, `"AWS::Nope"`},
		{"ref not a string", tpl, `!Ref [a]`, nil, ErrUnresolved, "Ref takes a name"},
		{"getatt unknown resource", tpl, `!GetAtt Nope.Arn`, nil, ErrUnresolved, `"Nope"`},
		{"sub unknown variable", tpl, `!Sub "${Nope}"`, nil, ErrUnresolved, `"Nope"`},
		{"sub unterminated", tpl, `!Sub "${Stage"`, nil, ErrUnresolved, "unterminated"},
		{"sub variable not a string", tpl, `!Sub ["${A}", {A: [x]}]`, nil, ErrUnresolved, "expected a string"},
		{"getatt attribute not literal", tpl, `!GetAtt [Fn, !Ref Stage]`, nil, ErrUnresolved, "literal"},
		{"sub bad variables", tpl, `!Sub ["${A}", [x]]`, nil, ErrUnresolved, "mapping of variables"},
		{"if unknown condition", tpl, `!If [Nope, a, b]`, nil, ErrUnresolved, `"Nope"`},
		{"if wrong arity", tpl, `!If [IsProd, a]`, nil, ErrUnresolved, "3 arguments"},
		{"condition cycle", cyclic, `!If [A, a, b]`, nil, ErrUnresolved, "refers to itself"},
		{"join not a list", tpl, `!Join [",", !Ref Stage]`, nil, ErrUnresolved, "expected a list"},
		{"select", tpl, `!Select [0, [a]]`, nil, ErrUnsupported, "Fn::Select is not supported by cmd/local"},
		{"find in map, long form", tpl, `{"Fn::FindInMap": [A, b, c]}`, nil, ErrUnsupported, "Fn::FindInMap is not supported by cmd/local"},
		{"import value", tpl, `!ImportValue Other`, nil, ErrUnsupported, "Fn::ImportValue"},
		{"unknown short tag", tpl, `!Frobnicate x`, nil, ErrUnsupported, "Fn::Frobnicate"},
		{"override unknown parameter", tpl, `x`, map[string]string{"Stag": "x"}, ErrInvalidParameter, `"Stag"`},
		{"override unknown pseudo", tpl, `x`, map[string]string{"AWS::Nope": "x"}, ErrInvalidParameter, `"AWS::Nope"`},
		{"override not a number", tpl, `x`, map[string]string{"Count": "three"}, ErrInvalidParameter, `"Count"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := parseValue(t, tc.expr)
			_, err := tc.tpl.Resolve(v, tc.params)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("Resolve(%s) error = %v, want %v", tc.expr, err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

func TestParameters(t *testing.T) {
	tpl := mustParse(t, `
Parameters:
  Required: {Type: String}
  Mode:
    Type: String
    Default: fallback
    AllowedValues: [fallback, open, closed]
    Description: failure mode
  Secret: {Type: String, Default: "", NoEcho: true, AllowedValues: ["", s3cr3t-ok]}
  Port: {Type: Number, Default: 6379}
Resources: {}
`)
	t.Run("parsed", func(t *testing.T) {
		want := map[string]Parameter{
			"Required": {Type: "String"},
			"Mode":     {Type: "String", Default: "fallback", HasDefault: true, AllowedValues: []string{"fallback", "open", "closed"}},
			"Secret":   {Type: "String", Default: "", HasDefault: true, NoEcho: true, AllowedValues: []string{"", "s3cr3t-ok"}},
			"Port":     {Type: "Number", Default: "6379", HasDefault: true},
		}
		if diff := cmp.Diff(want, tpl.Parameters); diff != "" {
			t.Errorf("Parameters mismatch (-want +got):\n%s", diff)
		}
	})

	tests := []struct {
		name     string
		params   map[string]string
		sentinel error  // nil: success
		contains string // in the error
		absent   string // not in the error
	}{
		{"all set", map[string]string{"Required": "x"}, nil, "", ""},
		{"missing required", nil, ErrMissingParameter, `"Required"`, ""},
		{"not allowed", map[string]string{"Required": "x", "Mode": "sometimes"}, ErrInvalidParameter, `"sometimes"`, ""},
		{"no echo value hidden", map[string]string{"Required": "x", "Secret": "hunter2"}, ErrInvalidParameter, `"Secret"`, "hunter2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tpl.Functions(tc.params)
			if tc.sentinel == nil {
				if err != nil {
					t.Fatalf("Functions: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("error = %v, want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
			if tc.absent != "" && strings.Contains(err.Error(), tc.absent) {
				t.Errorf("error %q reveals %q", err, tc.absent)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		sentinel error
		contains string
	}{
		{"not yaml", "Resources: [", ErrInvalid, "yaml"},
		{"empty", "", ErrInvalid, "empty document"},
		{"not a mapping", "- a\n- b\n", ErrInvalid, "top level"},
		{"duplicate key", "Resources:\n  A: {Type: X}\n  A: {Type: Y}\n", ErrInvalid, `duplicate key "A"`},
		{"getatt without dot", "Resources:\n  A:\n    Type: X\n    Properties: {P: !GetAtt Arn}\n", ErrInvalid, "LogicalId.Attribute"},
		{"resource without type", "Resources:\n  A: {Properties: {}}\n", ErrInvalid, "Resources.A has no Type"},
		{"parameter without type", "Parameters:\n  P: {Default: x}\nResources: {}\n", ErrInvalid, "Parameters.P"},
		{"list parameter", "Parameters:\n  P: {Type: CommaDelimitedList}\nResources: {}\n", ErrUnsupported, "Parameters.P: Type CommaDelimitedList is not supported by cmd/local"},
		{"resources not a mapping", "Resources: [a]\n", ErrInvalid, "Resources is not a mapping"},
		{"unknown resource condition", "Resources:\n  A: {Type: X, Condition: Nope}\n", ErrInvalid, `unknown condition "Nope"`},
		{"alias bomb", aliasBomb(8), ErrInvalid, "expands to more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("Parse error = %v, want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "template.yaml")
	if err := os.WriteFile(path, []byte("Transform: AWS::Serverless-2016-10-31\nDescription: d\nResources: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tpl, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff([]string{"AWS::Serverless-2016-10-31"}, tpl.Transform); diff != "" {
		t.Errorf("Transform mismatch (-want +got):\n%s", diff)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want os.ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("Resources: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load(bad) error = %v, want one naming %s", err, bad)
	}
}

const functionsTemplate = `
Parameters:
  Level: {Type: String, Default: info}
  WithExtra: {Type: String, Default: "no"}
Conditions:
  Extra: !Equals [!Ref WithExtra, "yes"]
Globals:
  Function:
    Runtime: provided.al2023
    Handler: bootstrap
    Timeout: 5
    Architectures: [arm64]
    Layers: [global-layer]
    Environment:
      Variables:
        LOG_LEVEL: !Ref Level
        SHARED: global
        NUMBER: 1.10
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties: {StageName: v1}
  Table:
    Type: AWS::DynamoDB::Table
  First:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: makefile}
    Properties:
      CodeUri: .
      MemorySize: 256
      Timeout: 0.5
      Layers: [own-layer]
      Environment:
        Variables:
          SHARED: own
          TABLE: !Ref Table
          EMPTY: ""
          FLAG: true
      Events:
        Get:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /items, Method: get}
        Open:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /open, Method: post, Auth: {Authorizer: NONE}}
        Queue:
          Type: SQS
          Properties: {Queue: arn}
  Second:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: go1.x
      CodeUri: second
      Architectures: !If [Extra, [x86_64], [arm64, x86_64]]
  Optional:
    Type: AWS::Serverless::Function
    Condition: Extra
    Properties: {CodeUri: opt}
  Plain:
    Type: AWS::Lambda::Function
`

func TestFunctions(t *testing.T) {
	tpl := mustParse(t, functionsTemplate)
	first := Function{
		LogicalID: "First", Handler: "bootstrap", Runtime: "provided.al2023", CodeURI: ".", BuildMethod: "makefile",
		Architectures: []string{"arm64"}, Timeout: 500 * time.Millisecond, MemorySize: 256,
		Environment: map[string]string{"LOG_LEVEL": "info", "SHARED": "own", "NUMBER": "1.10", "TABLE": "Table", "EMPTY": "", "FLAG": "true"},
		Events: map[string]APIEvent{
			"Get":  {Path: "/items", Method: "GET", RestAPI: "Api"},
			"Open": {Path: "/open", Method: "POST", RestAPI: "Api", Authorizer: "NONE"},
		},
	}
	second := Function{
		LogicalID: "Second", Handler: "bootstrap", Runtime: "go1.x", CodeURI: "second",
		// Globals lists come first; an intrinsic on the function's side replaces the global value whole.
		Architectures: []string{"arm64", "x86_64"}, Timeout: 5 * time.Second, MemorySize: DefaultMemorySize,
		Environment: map[string]string{"LOG_LEVEL": "debug", "SHARED": "global", "NUMBER": "1.10"},
		Events:      map[string]APIEvent{},
	}
	tests := []struct {
		name   string
		params map[string]string
		want   map[string]Function
	}{
		{"defaults", map[string]string{"Level": "debug"}, map[string]Function{"First": withLevel(first, "debug"), "Second": second}},
		{"condition enables a function", map[string]string{"Level": "debug", "WithExtra": "yes"}, map[string]Function{
			"First": withLevel(first, "debug"),
			"Second": func() Function {
				s := second
				s.Architectures = []string{"x86_64"}
				return s
			}(),
			"Optional": {
				LogicalID: "Optional", Handler: "bootstrap", Runtime: "provided.al2023", CodeURI: "opt",
				Architectures: []string{"arm64"}, Timeout: 5 * time.Second, MemorySize: DefaultMemorySize,
				Environment: map[string]string{"LOG_LEVEL": "debug", "SHARED": "global", "NUMBER": "1.10"},
				Events:      map[string]APIEvent{},
			},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tpl.Functions(tc.params)
			if err != nil {
				t.Fatalf("Functions: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Functions mismatch (-want +got):\n%s", diff)
			}
		})
	}

}

func withLevel(f Function, level string) Function {
	env := map[string]string{}
	for k, v := range f.Environment {
		env[k] = v
	}
	env["LOG_LEVEL"] = level
	f.Environment = env
	return f
}

func TestFunctionErrors(t *testing.T) {
	tests := []struct {
		name     string
		props    string
		contains string
	}{
		{"env not a string", `{Environment: {Variables: {A: [x]}}}`, "Environment.Variables.A"},
		{"env not a mapping", `{Environment: [x]}`, "Environment is not a mapping"},
		{"bad timeout", `{Timeout: soon}`, "Timeout"},
		{"negative memory", `{MemorySize: -1}`, "MemorySize"},
		{"architectures not a list", `{Architectures: arm64}`, "Architectures is not a list"},
		{"api event without path", `{Events: {E: {Type: Api, Properties: {Method: get}}}}`, "Path and Method"},
		{"api event relative path", `{Events: {E: {Type: Api, Properties: {Path: x, Method: get}}}}`, "does not start with /"},
		{"api event bad rest api", `{Events: {E: {Type: Api, Properties: {Path: /x, Method: get, RestApiId: [x]}}}}`, "RestApiId"},
		{"api event on the implicit api", `{Events: {E: {Type: Api, Properties: {Path: /x, Method: get}}}}`, "without RestApiId (SAM's implicit API) is not supported by cmd/local"},
		{"code in s3", `{CodeUri: {Bucket: b, Key: k}}`, "CodeUri is a mapping, not a string"},
		{"unresolvable ref", `{Handler: !Ref Nope}`, `"Nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tpl := mustParse(t, "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties: "+tc.props+"\n")
			_, err := tpl.Functions(nil)
			if err == nil {
				t.Fatal("Functions succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

const apiTemplate = `
Parameters:
  Stage: {Type: String, Default: v1}
Globals:
  Api:
    GatewayResponses:
      DEFAULT_4XX:
        ResponseTemplates: {application/json: '{"message":$context.error.messageString}'}
Resources:
  Auth:
    Type: AWS::Serverless::Function
    Properties: {Handler: bootstrap}
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: !Ref Stage
      Auth:
        DefaultAuthorizer: Req
        Authorizers:
          Req:
            FunctionPayloadType: REQUEST
            FunctionArn: !GetAtt Auth.Arn
            Identity: {ReauthorizeEvery: 0}
          Tok:
            FunctionArn: !Sub "arn:aws:lambda:${AWS::Region}:${AWS::AccountId}:function:elsewhere"
          WithSources:
            FunctionPayloadType: request
            FunctionArn: !GetAtt [Auth, Arn]
            Identity:
              Headers: [X-Api-Key]
              QueryStrings: [key]
              StageVariables: [sv]
              Context: [sourceIp]
          Cognito:
            UserPoolArn: arn:pool
      GatewayResponses:
        ACCESS_DENIED:
          StatusCode: 429
          ResponseParameters:
            Headers:
              Retry-After: context.authorizer.retryAfter
              Content-Type: "'application/json'"
          ResponseTemplates:
            application/json: '{"retryAfter":$context.authorizer.retryAfter}'
        UNAUTHORIZED:
          StatusCode: "401"
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        B: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /b, Method: post}}
        A: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /a, Method: get, Auth: {Authorizer: NONE}}}
        C: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /b, Method: get, Auth: {Authorizer: Tok}}}
`

func TestAPI(t *testing.T) {
	tpl := mustParse(t, apiTemplate)
	want := API{
		LogicalID:         "Api",
		StageName:         "v2",
		DefaultAuthorizer: "Req",
		Authorizers: map[string]Authorizer{
			"Req": {Name: "Req", FunctionLogicalID: "Auth", FunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:Auth", PayloadType: "REQUEST"},
			"Tok": {Name: "Tok", FunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:elsewhere", PayloadType: "TOKEN", ReauthorizeEvery: 300, IdentityHeaders: []string{"Authorization"}},
			"WithSources": {
				Name: "WithSources", FunctionLogicalID: "Auth", FunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:Auth", PayloadType: "REQUEST", ReauthorizeEvery: 300,
				IdentityHeaders: []string{"X-Api-Key"}, IdentityQueryStrings: []string{"key"}, IdentityStageVariables: []string{"sv"}, IdentityContext: []string{"sourceIp"},
			},
		},
		GatewayResponses: map[string]GatewayResponse{
			"ACCESS_DENIED": {
				StatusCode: 429,
				Headers:    map[string]string{"Retry-After": "context.authorizer.retryAfter", "Content-Type": "'application/json'"},
				Templates:  map[string]string{"application/json": `{"retryAfter":$context.authorizer.retryAfter}`},
			},
			"UNAUTHORIZED": {StatusCode: 401, Headers: map[string]string{}, Templates: map[string]string{}},
			"DEFAULT_4XX":  {Headers: map[string]string{}, Templates: map[string]string{"application/json": `{"message":$context.error.messageString}`}},
		},
		Routes: []Route{
			{Method: "GET", Path: "/a", FunctionLogicalID: "Fn"},
			{Method: "GET", Path: "/b", FunctionLogicalID: "Fn", Authorizer: "Tok"},
			{Method: "POST", Path: "/b", FunctionLogicalID: "Fn", Authorizer: "Req"},
		},
	}
	got, err := tpl.API("Api", map[string]string{"Stage": "v2"})
	if err != nil {
		t.Fatalf("API: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("API mismatch (-want +got):\n%s", diff)
	}
	if got.Authorizers["Req"].HasIdentitySources() || !got.Authorizers["WithSources"].HasIdentitySources() {
		t.Errorf("HasIdentitySources: Req %v, WithSources %v; want false, true",
			got.Authorizers["Req"].HasIdentitySources(), got.Authorizers["WithSources"].HasIdentitySources())
	}

	for _, id := range []string{"Nope", "Fn"} {
		t.Run("not found "+id, func(t *testing.T) {
			if _, err := tpl.API(id, nil); !errors.Is(err, ErrNotFound) {
				t.Errorf("API(%q) error = %v, want ErrNotFound", id, err)
			}
		})
	}
}

func TestAPIErrors(t *testing.T) {
	tests := []struct {
		name     string
		api      string // Properties of Api
		events   string // Events of Fn
		contains string
	}{
		{"unknown default authorizer", `{Auth: {DefaultAuthorizer: Nope, Authorizers: {}}}`, `{}`, `DefaultAuthorizer "Nope"`},
		{"unknown route authorizer", `{}`, `{E: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /x, Method: get, Auth: {Authorizer: Nope}}}}`, `authorizer "Nope"`},
		{"duplicate route", `{}`, `{E: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /x, Method: get}}, F: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /x, Method: GET}}}`, "GET /x"},
		{"bad payload type", `{Auth: {Authorizers: {A: {FunctionArn: x, FunctionPayloadType: COOKIE}}}}`, `{}`, "COOKIE"},
		{"bad reauthorize", `{Auth: {Authorizers: {A: {FunctionArn: x, FunctionPayloadType: REQUEST, Identity: {ReauthorizeEvery: 4000}}}}}`, `{}`, "ReauthorizeEvery"},
		{"identity headers not a list", `{Auth: {Authorizers: {A: {FunctionArn: x, FunctionPayloadType: REQUEST, Identity: {Headers: X-Api-Key}}}}}`, `{}`, "Identity.Headers is not a list"},
		{"bad status code", `{GatewayResponses: {ACCESS_DENIED: {StatusCode: lots}}}`, `{}`, "StatusCode"},
		{"header not a string", `{GatewayResponses: {ACCESS_DENIED: {ResponseParameters: {Headers: {A: [x]}}}}}`, `{}`, "Headers.A"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "Resources:\n  Api:\n    Type: AWS::Serverless::Api\n    Properties: " + tc.api +
				"\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events: " + tc.events + "\n"
			tpl := mustParse(t, src)
			_, err := tpl.API("Api", nil)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("API error = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

func TestOutputValues(t *testing.T) {
	tpl := mustParse(t, `
Parameters:
  Stage: {Type: String, Default: v1}
Conditions:
  Never: !Equals [a, b]
Resources:
  Api: {Type: AWS::Serverless::Api}
  Fn: {Type: AWS::Serverless::Function}
Outputs:
  Url: {Value: !Sub "https://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}/"}
  Arn: {Value: !GetAtt Fn.Arn, Description: the function}
  Hidden: {Value: x, Condition: Never}
`)
	got, err := tpl.OutputValues(nil)
	if err != nil {
		t.Fatalf("OutputValues: %v", err)
	}
	want := map[string]string{
		"Url": "https://Api.execute-api.us-east-1.amazonaws.com/v1/",
		"Arn": "arn:aws:lambda:us-east-1:123456789012:function:Fn",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OutputValues mismatch (-want +got):\n%s", diff)
	}
}

func TestMergeGlobals(t *testing.T) {
	ref := map[string]any{"Ref": "X"}
	tests := []struct {
		name          string
		global, local map[string]any
		want          map[string]any
	}{
		{"scalar: local wins", map[string]any{"A": "g"}, map[string]any{"A": "l"}, map[string]any{"A": "l"}},
		{"only global", map[string]any{"A": "g"}, map[string]any{}, map[string]any{"A": "g"}},
		{"maps merge", map[string]any{"M": map[string]any{"x": "g", "y": "g"}}, map[string]any{"M": map[string]any{"y": "l", "z": "l"}},
			map[string]any{"M": map[string]any{"x": "g", "y": "l", "z": "l"}}},
		{"lists concatenate, global first", map[string]any{"L": []any{"g"}}, map[string]any{"L": []any{"l"}}, map[string]any{"L": []any{"g", "l"}}},
		{"intrinsic local replaces map", map[string]any{"M": map[string]any{"x": "g"}}, map[string]any{"M": ref}, map[string]any{"M": ref}},
		{"intrinsic global replaced by map", map[string]any{"M": ref}, map[string]any{"M": map[string]any{"x": "l"}}, map[string]any{"M": map[string]any{"x": "l"}}},
		{"different kinds: local wins", map[string]any{"A": []any{"g"}}, map[string]any{"A": "l"}, map[string]any{"A": "l"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeGlobals(tc.global, tc.local)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mergeGlobals mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRender(t *testing.T) {
	vars := map[string]string{
		"context.authorizer.retryAfter": "7",
		"context.authorizer.tier":       "anonymous",
		"context.error.messageString":   `"Missing Authentication Token"`,
	}
	lookup := func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
	templates := []struct {
		name, tmpl, want string
	}{
		{"json numbers and strings", `{"retryAfter":$context.authorizer.retryAfter,"tier":"$context.authorizer.tier"}`, `{"retryAfter":7,"tier":"anonymous"}`},
		{"braced", `${context.authorizer.retryAfter}s`, `7s`},
		{"quoted message", `{"message":$context.error.messageString}`, `{"message":"Missing Authentication Token"}`},
		{"unknown variable is empty", `[$context.authorizer.nope]`, `[]`},
		{"trailing dot", `wait $context.authorizer.retryAfter.`, `wait 7.`},
		{"lone dollar", `costs $ 5 or $`, `costs $ 5 or $`},
		{"static", `{"message":"Unauthorized"}`, `{"message":"Unauthorized"}`},
	}
	for _, tc := range templates {
		t.Run("template "+tc.name, func(t *testing.T) {
			if got := RenderTemplate(tc.tmpl, lookup); got != tc.want {
				t.Errorf("RenderTemplate(%q) = %q, want %q", tc.tmpl, got, tc.want)
			}
		})
	}

	g := GatewayResponse{Headers: map[string]string{
		"Retry-After":  "context.authorizer.retryAfter",
		"Content-Type": "'application/json'",
		"X-Missing":    "context.authorizer.nope",
		"X-Empty":      "''",
	}}
	want := map[string]string{"Retry-After": "7", "Content-Type": "application/json", "X-Empty": ""}
	if diff := cmp.Diff(want, g.RenderHeaders(lookup)); diff != "" {
		t.Errorf("RenderHeaders mismatch (-want +got):\n%s", diff)
	}
	if v, ok := mappingValue("context.authorizer.tier", nil); ok || v != "" {
		t.Errorf("mappingValue with nil lookup = %q, %v; want \"\", false", v, ok)
	}
}

func TestConcurrentUse(t *testing.T) {
	tpl := mustParse(t, apiTemplate)
	want, err := tpl.API("Api", nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := 0; i < cap(errs); i++ {
		go func() {
			got, err := tpl.API("Api", nil)
			if err == nil && !cmp.Equal(want, got) {
				err = errors.New("API result differs between goroutines")
			}
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// aliasBomb is a template of levels anchors, each referring to the one
// before ten times: a few hundred bytes that expand to 10^levels values.
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("a0: &a0 x\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("Resources: {}\n")
	return b.String()
}

// monitoringTemplate is shaped like the monitoring resources of
// template.yaml: a dashboard whose body is built with Fn::Sub, an alarm
// whose actions exist only when a topic is given (Fn::If, AWS::NoValue),
// and stage throttling from Number parameters.
const monitoringTemplate = `
Parameters:
  AlarmTopicArn: {Type: String, Default: ""}
  ThrottlingRateLimit: {Type: Number, Default: 100}
Conditions:
  HasAlarmTopic: !Not [!Equals [!Ref AlarmTopicArn, ""]]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: {Handler: bootstrap}
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: v1
      MethodSettings:
        - {ResourcePath: "/*", HttpMethod: "*", ThrottlingRateLimit: !Ref ThrottlingRateLimit}
  Dashboard:
    Type: AWS::CloudWatch::Dashboard
    Properties:
      DashboardName: !Sub "${AWS::StackName}-rate-limits"
      DashboardBody: !Sub |
        {"widgets": [{"type": "metric", "properties": {"region": "${AWS::Region}", "title": "${Fn} in ${AWS::Partition}",
          "metrics": [["Bucketgate", "Denied", "Route", "POST /predict"]]}}]}
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: !Join ["-", [!Ref "AWS::StackName", fallback]]
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
      Dimensions: [{Name: FunctionName, Value: !Ref Fn}]
`

func TestMonitoringResources(t *testing.T) {
	tpl := mustParse(t, monitoringTemplate)
	t.Run("dashboard body is JSON with local values", func(t *testing.T) {
		got, err := tpl.Resolve(tpl.Resources["Dashboard"].Properties, nil)
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		p := got.(map[string]any)
		if p["DashboardName"] != "local-rate-limits" {
			t.Errorf("DashboardName = %v", p["DashboardName"])
		}
		var body struct {
			Widgets []struct {
				Properties struct {
					Region, Title string
				}
			}
		}
		if err := json.Unmarshal([]byte(p["DashboardBody"].(string)), &body); err != nil {
			t.Fatalf("DashboardBody is not JSON: %v", err)
		}
		if len(body.Widgets) != 1 || body.Widgets[0].Properties.Region != "us-east-1" || body.Widgets[0].Properties.Title != "Fn in aws" {
			t.Errorf("DashboardBody = %+v", body)
		}
	})
	tests := []struct {
		name   string
		params map[string]string
		want   map[string]any
	}{
		{name: "no topic: no alarm actions", want: map[string]any{
			"AlarmName":  "local-fallback",
			"Dimensions": []any{map[string]any{"Name": "FunctionName", "Value": "Fn"}},
		}},
		{name: "topic", params: map[string]string{"AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:alarms"}, want: map[string]any{
			"AlarmName":    "local-fallback",
			"AlarmActions": []any{"arn:aws:sns:us-east-1:123456789012:alarms"},
			"Dimensions":   []any{map[string]any{"Name": "FunctionName", "Value": "Fn"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tpl.Resolve(tpl.Resources["Alarm"].Properties, tc.params)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("alarm (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("the API still resolves", func(t *testing.T) {
		if _, err := tpl.API("Api", map[string]string{"ThrottlingRateLimit": "50"}); err != nil {
			t.Errorf("API: %v", err)
		}
		if _, err := tpl.API("Api", map[string]string{"ThrottlingRateLimit": "many"}); !errors.Is(err, ErrInvalidParameter) {
			t.Errorf("API with a non-number: %v, want ErrInvalidParameter", err)
		}
	})
}
