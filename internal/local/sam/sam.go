// Package sam reads the AWS SAM template well enough for cmd/local to run it
// without Docker or AWS: the functions with their resolved environment, and
// the REST API with its routes, Lambda authorizers and gateway responses.
//
// It understands what this project's template.yaml uses, and no more:
// Parameters (String and Number, Default, AllowedValues, NoEcho),
// Conditions, Globals (Function, Api), and the intrinsic functions Ref,
// Fn::Sub (both forms), Fn::GetAtt, Fn::Join, Fn::If and the condition
// functions Fn::Equals, Fn::Not, Fn::And, Fn::Or, in long form or as YAML
// short tags (!Ref, !Sub, ...). Pseudo parameters resolve to fixed local
// values (AWS::Region us-east-1, AWS::AccountId 123456789012, AWS::StackName
// local, AWS::Partition aws, AWS::URLSuffix amazonaws.com); AWS::NoValue
// removes the enclosing property. Fn::GetAtt gives a placeholder: a
// function's ARN for Arn, "<ID>.<Attribute>" otherwise. Any other intrinsic
// function is an error naming it (ErrUnsupported), raised only when a value
// that holds it is resolved.
//
// Resolution happens per call (Functions, API, OutputValues, Resolve)
// against parameter overrides, like `sam local --parameter-overrides`.
// GatewayResponse.RenderHeaders and RenderTemplate evaluate gateway
// responses as API Gateway does. A Template is not modified after Parse and
// is safe for concurrent use.
package sam

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Sentinel errors; returned errors wrap them (test with errors.Is).
var (
	// ErrMissingParameter: a parameter has neither a default nor an override.
	ErrMissingParameter = errors.New("missing parameter value")
	// ErrInvalidParameter: an override names no parameter or breaks its
	// AllowedValues or Type.
	ErrInvalidParameter = errors.New("invalid parameter value")
	// ErrUnresolved: an intrinsic function refers to a name the template does
	// not define, or its arguments have the wrong shape.
	ErrUnresolved = errors.New("cannot resolve")
	// ErrUnsupported: a template feature cmd/local does not implement.
	ErrUnsupported = errors.New("not supported by cmd/local")
	// ErrNotFound: no resource of the asked-for type has the given logical ID.
	ErrNotFound = errors.New("resource not found")
	// ErrInvalid: the template is malformed (bad YAML, wrong property shape).
	ErrInvalid = errors.New("invalid template")
)

// Resource types this package interprets.
const (
	TypeFunction = "AWS::Serverless::Function"
	TypeAPI      = "AWS::Serverless::Api"
)

// Template is a parsed SAM template. Fields hold the template as written:
// map[string]any, []any, string, Number, bool or nil, with intrinsic
// functions unresolved in their long form ({"Ref": "X"}); use Functions,
// API, OutputValues or Resolve for resolved values.
type Template struct {
	// Transform lists the template's transforms (e.g. AWS::Serverless-2016-10-31).
	Transform []string
	// Parameters by name.
	Parameters map[string]Parameter
	// Resources by logical ID.
	Resources map[string]Resource
	// Outputs by logical ID.
	Outputs map[string]Output

	conditions map[string]any            // by name, unevaluated
	globals    map[string]map[string]any // by section ("Function", "Api"): property name → value
}

// Parameter is one entry of the template's Parameters section. Default and
// AllowedValues are kept as strings, as CloudFormation passes them.
type Parameter struct {
	Type          string // String or Number
	Default       string
	HasDefault    bool // Default was present (possibly "")
	NoEcho        bool
	AllowedValues []string
}

// Resource is one entry of the template's Resources section, as written.
type Resource struct {
	Type       string
	Condition  string         // name of the condition gating the resource; "" = always
	Properties map[string]any // nil when absent
	Metadata   map[string]any // nil when absent
}

// Output is one entry of the template's Outputs section, as written.
type Output struct {
	Value     any
	Condition string // name of the condition gating the output; "" = always
}

// Load reads and parses the template at path.
func Load(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sam: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse parses a SAM template from YAML (JSON is YAML too).
func Parse(data []byte) (*Template, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("sam: %w: %w", ErrInvalid, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, fmt.Errorf("sam: %w: empty document", ErrInvalid)
	}
	budget := maxNodes
	v, err := convert(doc.Content[0], 0, &budget)
	if err != nil {
		return nil, fmt.Errorf("sam: %w", err)
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("sam: %w: top level is not a mapping", ErrInvalid)
	}
	return fromMap(root)
}

func fromMap(root map[string]any) (*Template, error) {
	t := &Template{
		Parameters: map[string]Parameter{},
		Resources:  map[string]Resource{},
		Outputs:    map[string]Output{},
		globals:    map[string]map[string]any{},
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("sam: %w: "+format, append([]any{ErrInvalid}, a...)...)
	}
	switch tr := root["Transform"].(type) {
	case nil:
	case string:
		t.Transform = []string{tr}
	case []any:
		for _, x := range tr {
			s, ok := x.(string)
			if !ok {
				return nil, bad("Transform entries must be strings")
			}
			t.Transform = append(t.Transform, s)
		}
	default:
		return nil, bad("Transform must be a string or a list")
	}

	sections := []string{"Parameters", "Conditions", "Globals", "Resources", "Outputs"}
	m := map[string]map[string]any{}
	for _, name := range sections {
		v, ok := root[name]
		if !ok || v == nil {
			m[name] = map[string]any{}
			continue
		}
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, bad("%s is not a mapping", name)
		}
		m[name] = mm
	}
	t.conditions = m["Conditions"]

	for name, v := range m["Parameters"] {
		p, err := parseParameter(v)
		if err != nil {
			return nil, fmt.Errorf("sam: Parameters.%s: %w", name, err)
		}
		t.Parameters[name] = p
	}
	for name, v := range m["Globals"] {
		g, ok := v.(map[string]any)
		if !ok {
			return nil, bad("Globals.%s is not a mapping", name)
		}
		t.globals[name] = g
	}
	for id, v := range m["Resources"] {
		rm, ok := v.(map[string]any)
		if !ok {
			return nil, bad("Resources.%s is not a mapping", id)
		}
		var r Resource
		var ok2 bool
		if r.Type, ok2 = rm["Type"].(string); !ok2 || r.Type == "" {
			return nil, bad("Resources.%s has no Type", id)
		}
		if c, ok := rm["Condition"]; ok {
			if r.Condition, ok = c.(string); !ok {
				return nil, bad("Resources.%s.Condition is not a string", id)
			}
		}
		for _, k := range []string{"Properties", "Metadata"} {
			x, ok := rm[k]
			if !ok || x == nil {
				continue
			}
			xm, ok := x.(map[string]any)
			if !ok {
				return nil, bad("Resources.%s.%s is not a mapping", id, k)
			}
			if k == "Properties" {
				r.Properties = xm
			} else {
				r.Metadata = xm
			}
		}
		t.Resources[id] = r
	}
	for id, v := range m["Outputs"] {
		om, ok := v.(map[string]any)
		if !ok {
			return nil, bad("Outputs.%s is not a mapping", id)
		}
		o := Output{Value: om["Value"]}
		if _, ok := om["Value"]; !ok {
			return nil, bad("Outputs.%s has no Value", id)
		}
		o.Condition, _ = om["Condition"].(string)
		t.Outputs[id] = o
	}
	for id, r := range t.Resources {
		if r.Condition != "" {
			if _, ok := t.conditions[r.Condition]; !ok {
				return nil, bad("Resources.%s: unknown condition %q", id, r.Condition)
			}
		}
	}
	return t, nil
}

func parseParameter(v any) (Parameter, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrInvalid, what) }
	m, ok := v.(map[string]any)
	if !ok {
		return Parameter{}, bad("not a mapping")
	}
	var p Parameter
	if p.Type, ok = m["Type"].(string); !ok || p.Type == "" {
		return Parameter{}, bad("no Type")
	}
	if p.Type != "String" && p.Type != "Number" {
		return Parameter{}, fmt.Errorf("Type %s is %w (String and Number are)", p.Type, ErrUnsupported)
	}
	if d, ok := m["Default"]; ok {
		s, ok := scalarString(d)
		if !ok {
			return Parameter{}, bad("Default is not a scalar")
		}
		p.Default, p.HasDefault = s, true
	}
	switch x := m["NoEcho"].(type) {
	case nil:
	case bool:
		p.NoEcho = x
	case string:
		p.NoEcho = strings.EqualFold(x, "true")
	default:
		return Parameter{}, bad("NoEcho is not a boolean")
	}
	if av, ok := m["AllowedValues"]; ok {
		list, ok := av.([]any)
		if !ok {
			return Parameter{}, bad("AllowedValues is not a list")
		}
		for _, e := range list {
			s, ok := scalarString(e)
			if !ok {
				return Parameter{}, bad("AllowedValues holds a non-scalar")
			}
			p.AllowedValues = append(p.AllowedValues, s)
		}
	}
	return p, nil
}

// Number is a YAML int or float as written in the template, so "1.10"
// stays "1.10" when it ends up in a string (an environment variable, a
// Sub). It appears in a Template's raw values; resolved values (Resolve,
// Functions, API) carry plain strings instead.
type Number string

const maxDepth = 200

// maxNodes bounds the values one template may expand to. YAML aliases can
// make a few hundred bytes expand exponentially ("billion laughs"); real
// templates have a few thousand nodes.
const maxNodes = 1_000_000

// convert turns a YAML node into plain values: map[string]any, []any,
// string, number, bool or nil, with short tags rewritten to long forms.
func convert(n *yaml.Node, depth int, budget *int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: line %d: nesting deeper than %d", ErrInvalid, n.Line, maxDepth)
	}
	if *budget--; *budget < 0 {
		return nil, fmt.Errorf("%w: line %d: the template expands to more than %d values (aliases?)", ErrInvalid, n.Line, maxNodes)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil, fmt.Errorf("%w: line %d: dangling alias", ErrInvalid, n.Line)
		}
		return convert(n.Alias, depth+1, budget)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		// CloudFormation's short tags: !Ref, !Condition, and !X for Fn::X.
		key := "Fn::" + n.Tag[1:]
		if n.Tag == "!Ref" || n.Tag == "!Condition" {
			key = n.Tag[1:]
		}
		var arg any
		if n.Kind == yaml.ScalarNode {
			arg = n.Value
			if key == "Fn::GetAtt" {
				id, attr, ok := strings.Cut(n.Value, ".")
				if !ok || id == "" || attr == "" {
					return nil, fmt.Errorf("%w: line %d: !GetAtt %q is not LogicalId.Attribute", ErrInvalid, n.Line, n.Value)
				}
				arg = []any{id, attr}
			}
		} else {
			c := *n
			c.Tag = ""
			var err error
			if arg, err = convert(&c, depth+1, budget); err != nil {
				return nil, err
			}
		}
		return map[string]any{key: arg}, nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return convert(n.Content[0], depth+1, budget)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			if kn.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%w: line %d: mapping key is not a scalar", ErrInvalid, kn.Line)
			}
			if _, dup := m[kn.Value]; dup {
				return nil, fmt.Errorf("%w: line %d: duplicate key %q", ErrInvalid, kn.Line, kn.Value)
			}
			v, err := convert(vn, depth+1, budget)
			if err != nil {
				return nil, err
			}
			m[kn.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := convert(c, depth+1, budget)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrInvalid, n.Line, err)
			}
			return b, nil
		case "!!int", "!!float":
			return Number(n.Value), nil
		default:
			return n.Value, nil
		}
	}
	return nil, fmt.Errorf("%w: line %d: unexpected YAML node", ErrInvalid, n.Line)
}

// scalarString renders a scalar as CloudFormation would pass it on.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case Number:
		return string(x), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// Resolve evaluates the intrinsic functions in v (a value taken from the
// template) against params and returns plain values: map[string]any, []any,
// string, bool or nil. YAML numbers come back as strings, as written. A
// property set to AWS::NoValue disappears; a top-level AWS::NoValue returns
// nil.
func (t *Template) Resolve(v any, params map[string]string) (any, error) {
	r, err := t.newResolver(params)
	if err != nil {
		return nil, err
	}
	out, err := r.resolve(v, "value")
	if err != nil {
		return nil, err
	}
	if _, ok := out.(noValue); ok {
		return nil, nil
	}
	return plain(out), nil
}

// plain replaces Number with string throughout a resolved value.
func plain(v any) any {
	switch x := v.(type) {
	case Number:
		return string(x)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = plain(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = plain(e)
		}
		return s
	}
	return v
}

// OutputValues resolves the template's outputs whose condition holds, by
// logical ID; a value that is not a scalar is an error.
func (t *Template) OutputValues(params map[string]string) (map[string]string, error) {
	r, err := t.newResolver(params)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, id := range sortedKeys(t.Outputs) {
		o := t.Outputs[id]
		if o.Condition != "" {
			on, err := r.condition(o.Condition)
			if err != nil {
				return nil, fmt.Errorf("sam: Outputs.%s: %w", id, err)
			}
			if !on {
				continue
			}
		}
		v, err := r.resolve(o.Value, "Outputs."+id+".Value")
		if err != nil {
			return nil, err
		}
		s, ok := scalarString(v)
		if !ok {
			return nil, fmt.Errorf("sam: %w: Outputs.%s.Value is not a scalar", ErrUnresolved, id)
		}
		out[id] = s
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
