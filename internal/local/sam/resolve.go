package sam

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Local values of the pseudo parameters.
const (
	LocalRegion    = "us-east-1"
	LocalAccountID = "123456789012"
	LocalStackName = "local"
)

// noValue is what AWS::NoValue resolves to: the enclosing property is dropped.
type noValue struct{}

// resolver evaluates intrinsic functions for one set of parameter values.
// It is used by one goroutine at a time.
type resolver struct {
	t        *Template
	values   map[string]any  // parameter and pseudo-parameter values: string or []any
	conds    map[string]bool // evaluated conditions
	visiting map[string]bool // conditions being evaluated (cycle detection)
	implicit map[string]string
}

var numberRE = regexp.MustCompile(`^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$`)

func (t *Template) newResolver(overrides map[string]string) (*resolver, error) {
	r := &resolver{
		t:        t,
		values:   map[string]any{},
		conds:    map[string]bool{},
		visiting: map[string]bool{},
		implicit: t.implicitResources(),
	}
	region, account, stack := LocalRegion, LocalAccountID, LocalStackName
	for k, v := range overrides {
		if !strings.HasPrefix(k, "AWS::") {
			if _, ok := t.Parameters[k]; !ok {
				return nil, fmt.Errorf("sam: %w: override for unknown parameter %q", ErrInvalidParameter, k)
			}
			continue
		}
		switch k {
		case "AWS::Region":
			region = v
		case "AWS::AccountId":
			account = v
		case "AWS::StackName":
			stack = v
		case "AWS::Partition", "AWS::URLSuffix", "AWS::StackId":
		default:
			return nil, fmt.Errorf("sam: %w: override for unknown pseudo parameter %q", ErrInvalidParameter, k)
		}
	}
	r.values["AWS::Region"] = region
	r.values["AWS::AccountId"] = account
	r.values["AWS::StackName"] = stack
	r.values["AWS::Partition"] = "aws"
	r.values["AWS::URLSuffix"] = "amazonaws.com"
	r.values["AWS::StackId"] = "arn:aws:cloudformation:" + region + ":" + account + ":stack/" + stack + "/00000000-0000-0000-0000-000000000000"
	r.values["AWS::NotificationARNs"] = []any{}
	for _, k := range []string{"AWS::Partition", "AWS::URLSuffix", "AWS::StackId"} {
		if v, ok := overrides[k]; ok {
			r.values[k] = v
		}
	}

	for _, name := range sortedKeys(t.Parameters) {
		p := t.Parameters[name]
		v, ok := overrides[name]
		if !ok {
			if !p.HasDefault {
				return nil, fmt.Errorf("sam: %w: parameter %q has no default and no override", ErrMissingParameter, name)
			}
			v = p.Default
		}
		if len(p.AllowedValues) > 0 && !contains(p.AllowedValues, v) {
			// The value itself is shown only when the parameter is not secret.
			if p.NoEcho {
				return nil, fmt.Errorf("sam: %w: parameter %q is not one of its AllowedValues", ErrInvalidParameter, name)
			}
			return nil, fmt.Errorf("sam: %w: parameter %q is %q, not one of %s", ErrInvalidParameter, name, v, strings.Join(p.AllowedValues, ", "))
		}
		switch {
		case p.Type == "Number":
			if !numberRE.MatchString(v) {
				return nil, fmt.Errorf("sam: %w: parameter %q of Type Number is not a number", ErrInvalidParameter, name)
			}
			r.values[name] = v
		case p.Type == "CommaDelimitedList" || strings.HasPrefix(p.Type, "List<"):
			list := []any{}
			if v != "" {
				for _, part := range strings.Split(v, ",") {
					list = append(list, strings.TrimSpace(part))
				}
			}
			r.values[name] = list
		default:
			r.values[name] = v
		}
	}
	return r, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// implicitResources lists the resources SAM generates that templates may
// refer to: logical ID → type.
func (t *Template) implicitResources() map[string]string {
	m := map[string]string{}
	for id, r := range t.Resources {
		if r.Type != TypeFunction {
			continue
		}
		if _, hasRole := r.Properties["Role"]; !hasRole {
			m[id+"Role"] = "AWS::IAM::Role"
		}
		events, _ := r.Properties["Events"].(map[string]any)
		for _, e := range events {
			em, _ := e.(map[string]any)
			if typ, _ := em["Type"].(string); typ != "Api" {
				continue
			}
			props, _ := em["Properties"].(map[string]any)
			if _, ok := props["RestApiId"]; !ok {
				m["ServerlessRestApi"] = TypeAPI
			}
		}
	}
	for id := range t.Resources {
		delete(m, id)
	}
	return m
}

// resourceType returns the type of a declared or SAM-generated resource.
func (r *resolver) resourceType(id string) (string, bool) {
	if res, ok := r.t.Resources[id]; ok {
		return res.Type, true
	}
	typ, ok := r.implicit[id]
	return typ, ok
}

func (r *resolver) resourceEnabled(id string) (bool, error) {
	res, ok := r.t.Resources[id]
	if !ok || res.Condition == "" {
		return ok, nil
	}
	on, err := r.condition(res.Condition)
	if err != nil {
		return false, fmt.Errorf("sam: Resources.%s: %w", id, err)
	}
	return on, nil
}

// intrinsic reports whether v is a one-key map naming an intrinsic function.
func intrinsic(v any) (name string, arg any, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap || len(m) != 1 {
		return "", nil, false
	}
	for k, a := range m {
		if k == "Ref" || strings.HasPrefix(k, "Fn::") {
			return k, a, true
		}
	}
	return "", nil, false
}

// errAt formats an error for the value at path.
func errAt(path string, sentinel error, format string, a ...any) error {
	return fmt.Errorf("sam: %s: %w: "+format, append([]any{path, sentinel}, a...)...)
}

// resolve evaluates every intrinsic function in v. path names v for errors.
func (r *resolver) resolve(v any, path string) (any, error) {
	if name, arg, ok := intrinsic(v); ok {
		return r.call(name, arg, path)
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range sortedKeys(x) {
			e, err := r.resolve(x[k], path+"."+k)
			if err != nil {
				return nil, err
			}
			if _, drop := e.(noValue); !drop {
				out[k] = e
			}
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(x))
		for i, e := range x {
			e, err := r.resolve(e, path+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return nil, err
			}
			if _, drop := e.(noValue); !drop {
				out = append(out, e)
			}
		}
		return out, nil
	}
	return v, nil
}

// resolveString resolves v and requires a scalar result.
func (r *resolver) resolveString(v any, path string) (string, error) {
	x, err := r.resolve(v, path)
	if err != nil {
		return "", err
	}
	s, ok := scalarString(x)
	if !ok {
		return "", errAt(path, ErrUnresolved, "expected a string, got %s", describe(x))
	}
	return s, nil
}

// resolveList resolves v and requires a list result.
func (r *resolver) resolveList(v any, path string) ([]any, error) {
	x, err := r.resolve(v, path)
	if err != nil {
		return nil, err
	}
	l, ok := x.([]any)
	if !ok {
		return nil, errAt(path, ErrUnresolved, "expected a list, got %s", describe(x))
	}
	return l, nil
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case noValue:
		return "AWS::NoValue"
	}
	return "a scalar"
}

// args requires arg to be a list of n to max elements.
func args(arg any, name, path string, n, max int) ([]any, error) {
	l, ok := arg.([]any)
	if !ok || len(l) < n || len(l) > max {
		want := strconv.Itoa(n)
		if max > n {
			want += " to " + strconv.Itoa(max)
		}
		return nil, errAt(path, ErrUnresolved, "%s takes a list of %s arguments", name, want)
	}
	return l, nil
}

func (r *resolver) call(name string, arg any, path string) (any, error) {
	p := path + "." + name
	switch name {
	case "Ref":
		s, ok := arg.(string)
		if !ok {
			return nil, errAt(p, ErrUnresolved, "Ref takes a name")
		}
		return r.ref(s, p)
	case "Fn::GetAtt":
		var id, attr string
		switch a := arg.(type) {
		case string:
			var ok bool
			if id, attr, ok = strings.Cut(a, "."); !ok {
				return nil, errAt(p, ErrUnresolved, "Fn::GetAtt %q is not LogicalId.Attribute", a)
			}
		default:
			l, err := args(arg, name, p, 2, 2)
			if err != nil {
				return nil, err
			}
			var ok bool
			if id, ok = l[0].(string); !ok {
				return nil, errAt(p, ErrUnresolved, "Fn::GetAtt's logical ID must be a literal string")
			}
			if attr, err = r.resolveString(l[1], p+"[1]"); err != nil {
				return nil, err
			}
		}
		return r.getAtt(id, attr, p)
	case "Fn::Sub":
		switch a := arg.(type) {
		case string:
			return r.sub(a, nil, p)
		default:
			l, err := args(arg, name, p, 2, 2)
			if err != nil {
				return nil, err
			}
			s, ok := l[0].(string)
			if !ok {
				return nil, errAt(p, ErrUnresolved, "Fn::Sub's template must be a literal string")
			}
			vm, ok := l[1].(map[string]any)
			if !ok {
				return nil, errAt(p, ErrUnresolved, "Fn::Sub's second argument must be a mapping of variables")
			}
			vars := make(map[string]string, len(vm))
			for _, k := range sortedKeys(vm) {
				v, err := r.resolveString(vm[k], p+"[1]."+k)
				if err != nil {
					return nil, err
				}
				vars[k] = v
			}
			return r.sub(s, vars, p)
		}
	case "Fn::If":
		l, err := args(arg, name, p, 3, 3)
		if err != nil {
			return nil, err
		}
		cond, ok := l[0].(string)
		if !ok {
			return nil, errAt(p, ErrUnresolved, "Fn::If's first argument must be a condition name")
		}
		on, err := r.condition(cond)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if on {
			return r.resolve(l[1], p+"[1]")
		}
		return r.resolve(l[2], p+"[2]")
	case "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or":
		return r.evalCond(map[string]any{name: arg}, path)
	case "Fn::Join":
		l, err := args(arg, name, p, 2, 2)
		if err != nil {
			return nil, err
		}
		delim, err := r.resolveString(l[0], p+"[0]")
		if err != nil {
			return nil, err
		}
		items, err := r.resolveList(l[1], p+"[1]")
		if err != nil {
			return nil, err
		}
		parts := make([]string, len(items))
		for i, it := range items {
			s, ok := scalarString(it)
			if !ok {
				return nil, errAt(p, ErrUnresolved, "Fn::Join item %d is %s, not a string", i, describe(it))
			}
			parts[i] = s
		}
		return strings.Join(parts, delim), nil
	case "Fn::Select":
		l, err := args(arg, name, p, 2, 2)
		if err != nil {
			return nil, err
		}
		is, err := r.resolveString(l[0], p+"[0]")
		if err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(is)
		if err != nil {
			return nil, errAt(p, ErrUnresolved, "Fn::Select index %q is not an integer", is)
		}
		items, err := r.resolveList(l[1], p+"[1]")
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= len(items) {
			return nil, errAt(p, ErrUnresolved, "Fn::Select index %d out of range for %d items", i, len(items))
		}
		return items[i], nil
	case "Fn::Split":
		l, err := args(arg, name, p, 2, 2)
		if err != nil {
			return nil, err
		}
		delim, err := r.resolveString(l[0], p+"[0]")
		if err != nil {
			return nil, err
		}
		if delim == "" {
			return nil, errAt(p, ErrUnresolved, "Fn::Split delimiter is empty")
		}
		s, err := r.resolveString(l[1], p+"[1]")
		if err != nil {
			return nil, err
		}
		out := []any{}
		for _, part := range strings.Split(s, delim) {
			out = append(out, part)
		}
		return out, nil
	case "Fn::FindInMap":
		l, err := args(arg, name, p, 3, 4)
		if err != nil {
			return nil, err
		}
		var keys [3]string
		for i := range keys {
			if keys[i], err = r.resolveString(l[i], p+"["+strconv.Itoa(i)+"]"); err != nil {
				return nil, err
			}
		}
		if v, ok := lookupMap(r.t.Mappings, keys[:]); ok {
			return r.resolve(v, p)
		}
		if len(l) == 4 { // AWS::LanguageExtensions: {DefaultValue: x}
			if dm, ok := l[3].(map[string]any); ok {
				if dv, ok := dm["DefaultValue"]; ok {
					return r.resolve(dv, p+"[3].DefaultValue")
				}
			}
		}
		return nil, errAt(p, ErrUnresolved, "no mapping %s.%s.%s", keys[0], keys[1], keys[2])
	case "Fn::Base64":
		s, err := r.resolveString(arg, p)
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	case "Fn::GetAZs":
		region, err := r.resolveString(arg, p)
		if err != nil {
			return nil, err
		}
		if region == "" {
			region, _ = r.values["AWS::Region"].(string)
		}
		return []any{region + "a", region + "b", region + "c"}, nil
	case "Fn::Length":
		items, err := r.resolveList(arg, p)
		if err != nil {
			return nil, err
		}
		return Number(strconv.Itoa(len(items))), nil
	case "Fn::ToJsonString":
		v, err := r.resolve(arg, p)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(plain(v))
		if err != nil {
			return nil, errAt(p, ErrUnresolved, "%v", err)
		}
		return string(b), nil
	}
	return nil, errAt(p, ErrUnsupported, "%s cannot be evaluated locally", name)
}

func lookupMap(m map[string]any, keys []string) (any, bool) {
	var cur any = m
	for _, k := range keys {
		cm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = cm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// ref resolves Ref name.
func (r *resolver) ref(name, path string) (any, error) {
	if name == "AWS::NoValue" {
		return noValue{}, nil
	}
	if v, ok := r.values[name]; ok {
		return v, nil
	}
	if _, ok := r.resourceType(name); ok {
		return name, nil
	}
	// SAM's generated references: MyApi.Stage, MyFunction.Alias, MyFunction.Version.
	if id, attr, ok := strings.Cut(name, "."); ok {
		if typ, ok := r.resourceType(id); ok {
			switch {
			case typ == TypeAPI && attr == "Stage":
				stage, err := r.apiStage(id)
				if err != nil {
					return nil, err
				}
				return stage, nil
			case typ == TypeFunction && (attr == "Alias" || attr == "Version"):
				return "arn:aws:lambda:" + r.str("AWS::Region") + ":" + r.str("AWS::AccountId") + ":function:" + id + ":live", nil
			}
		}
	}
	if strings.HasPrefix(name, "AWS::") {
		return nil, errAt(path, ErrUnresolved, "unknown pseudo parameter %q", name)
	}
	return nil, errAt(path, ErrUnresolved, "Ref to %q, which is neither a parameter nor a resource", name)
}

func (r *resolver) apiStage(id string) (string, error) {
	res := r.t.Resources[id]
	stage, ok := res.Properties["StageName"]
	if !ok {
		if g, ok := r.t.Globals["Api"]["StageName"]; ok {
			stage = g
		}
	}
	if stage == nil {
		return "Prod", nil
	}
	return r.resolveString(stage, "Resources."+id+".Properties.StageName")
}

func (r *resolver) str(name string) string {
	s, _ := r.values[name].(string)
	return s
}

// getAtt returns the placeholder for Fn::GetAtt id.attr.
func (r *resolver) getAtt(id, attr, path string) (any, error) {
	typ, ok := r.resourceType(id)
	if !ok {
		return nil, errAt(path, ErrUnresolved, "Fn::GetAtt of %q, which is not a resource", id)
	}
	region, account := r.str("AWS::Region"), r.str("AWS::AccountId")
	if attr == "Arn" {
		switch typ {
		case TypeFunction, "AWS::Lambda::Function":
			return "arn:aws:lambda:" + region + ":" + account + ":function:" + id, nil
		case "AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable":
			return "arn:aws:dynamodb:" + region + ":" + account + ":table/" + id, nil
		case "AWS::IAM::Role":
			return "arn:aws:iam::" + account + ":role/" + id, nil
		}
		service := "unknown"
		if parts := strings.Split(typ, "::"); len(parts) == 3 {
			service = strings.ToLower(parts[1])
		}
		return "arn:aws:" + service + ":" + region + ":" + account + ":" + id, nil
	}
	if attr == "StreamArn" && typ == "AWS::DynamoDB::Table" {
		return "arn:aws:dynamodb:" + region + ":" + account + ":table/" + id + "/stream/1970-01-01T00:00:00.000", nil
	}
	return id + "." + attr, nil
}

// sub evaluates Fn::Sub's template s with the given variables.
func (r *resolver) sub(s string, vars map[string]string, path string) (any, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		rest := s[i+2:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return nil, errAt(path, ErrUnresolved, "Fn::Sub has an unterminated ${")
		}
		name := strings.TrimSpace(rest[:j])
		s = rest[j+1:]
		if strings.HasPrefix(name, "!") { // ${!Literal} writes ${Literal}
			b.WriteString("${" + name[1:] + "}")
			continue
		}
		if v, ok := vars[name]; ok {
			b.WriteString(v)
			continue
		}
		var v any
		var err error
		if id, attr, ok := strings.Cut(name, "."); ok {
			if _, isRes := r.resourceType(id); isRes {
				v, err = r.getAtt(id, attr, path)
			} else {
				v, err = r.ref(name, path)
			}
		} else {
			v, err = r.ref(name, path)
		}
		if err != nil {
			return nil, err
		}
		vs, ok := scalarString(v)
		if !ok {
			return nil, errAt(path, ErrUnresolved, "Fn::Sub variable %q is %s, not a string", name, describe(v))
		}
		b.WriteString(vs)
	}
}

// condition evaluates the named condition.
func (r *resolver) condition(name string) (bool, error) {
	if v, ok := r.conds[name]; ok {
		return v, nil
	}
	def, ok := r.t.Conditions[name]
	if !ok {
		return false, fmt.Errorf("sam: %w: unknown condition %q", ErrUnresolved, name)
	}
	if r.visiting[name] {
		return false, fmt.Errorf("sam: %w: condition %q refers to itself", ErrUnresolved, name)
	}
	r.visiting[name] = true
	defer delete(r.visiting, name)
	v, err := r.evalCond(def, "Conditions."+name)
	if err != nil {
		return false, err
	}
	r.conds[name] = v
	return v, nil
}

// evalCond evaluates a condition function (Fn::Equals, Fn::Not, Fn::And,
// Fn::Or) or a {Condition: name} reference.
func (r *resolver) evalCond(v any, path string) (bool, error) {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		if c, ok := m["Condition"]; ok {
			name, ok := c.(string)
			if !ok {
				return false, errAt(path, ErrUnresolved, "Condition takes a name")
			}
			return r.condition(name)
		}
	}
	if b, ok := v.(bool); ok {
		return b, nil
	}
	name, arg, ok := intrinsic(v)
	if !ok {
		return false, errAt(path, ErrUnresolved, "not a condition function")
	}
	p := path + "." + name
	switch name {
	case "Fn::Equals":
		l, err := args(arg, name, p, 2, 2)
		if err != nil {
			return false, err
		}
		a, err := r.resolve(l[0], p+"[0]")
		if err != nil {
			return false, err
		}
		b, err := r.resolve(l[1], p+"[1]")
		if err != nil {
			return false, err
		}
		ja, _ := json.Marshal(plain(a))
		jb, _ := json.Marshal(plain(b))
		return string(ja) == string(jb), nil
	case "Fn::Not":
		l, err := args(arg, name, p, 1, 1)
		if err != nil {
			return false, err
		}
		c, err := r.evalCond(l[0], p+"[0]")
		return !c, err
	case "Fn::And", "Fn::Or":
		l, err := args(arg, name, p, 2, 10)
		if err != nil {
			return false, err
		}
		and := name == "Fn::And"
		for i, e := range l {
			c, err := r.evalCond(e, p+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return false, err
			}
			if c != and {
				return c, nil
			}
		}
		return and, nil
	case "Fn::If":
		v, err := r.call(name, arg, path)
		if err != nil {
			return false, err
		}
		return r.evalCond(v, p)
	}
	return false, errAt(p, ErrUnresolved, "%s is not a condition function", name)
}
