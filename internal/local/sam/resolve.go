package sam

import (
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
)

// pseudo are the pseudo parameters' local values (AWS::NoValue is handled
// by ref).
var pseudo = map[string]string{
	"AWS::Region":    LocalRegion,
	"AWS::AccountId": LocalAccountID,
	"AWS::StackName": "local",
	"AWS::Partition": "aws",
	"AWS::URLSuffix": "amazonaws.com",
}

// noValue is what AWS::NoValue resolves to: the enclosing property is dropped.
type noValue struct{}

// resolver evaluates intrinsic functions for one set of parameter values.
// It is used by one goroutine at a time.
type resolver struct {
	t        *Template
	params   map[string]string // parameter values
	conds    map[string]bool   // evaluated conditions
	visiting map[string]bool   // conditions being evaluated (cycle detection)
}

var numberRE = regexp.MustCompile(`^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$`)

// newResolver checks the overrides against the template's parameters and
// fills in the defaults.
func (t *Template) newResolver(overrides map[string]string) (*resolver, error) {
	r := &resolver{t: t, params: map[string]string{}, conds: map[string]bool{}, visiting: map[string]bool{}}
	for k := range overrides {
		if _, ok := t.Parameters[k]; !ok {
			return nil, fmt.Errorf("sam: %w: override for unknown parameter %q", ErrInvalidParameter, k)
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
		if p.Type == "Number" && !numberRE.MatchString(v) {
			return nil, fmt.Errorf("sam: %w: parameter %q of Type Number is not a number", ErrInvalidParameter, name)
		}
		r.params[name] = v
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
			var ok1, ok2 bool
			id, ok1 = l[0].(string)
			attr, ok2 = l[1].(string)
			if !ok1 || !ok2 {
				return nil, errAt(p, ErrUnresolved, "Fn::GetAtt takes a literal logical ID and attribute")
			}
		}
		return r.getAtt(id, attr, p)
	case "Fn::Sub":
		if s, ok := arg.(string); ok {
			return r.sub(s, nil, p)
		}
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
		x, err := r.resolve(l[1], p+"[1]")
		if err != nil {
			return nil, err
		}
		items, ok := x.([]any)
		if !ok {
			return nil, errAt(p, ErrUnresolved, "Fn::Join expected a list, got %s", describe(x))
		}
		parts := make([]string, len(items))
		for i, it := range items {
			if parts[i], ok = scalarString(it); !ok {
				return nil, errAt(p, ErrUnresolved, "Fn::Join item %d is %s, not a string", i, describe(it))
			}
		}
		return strings.Join(parts, delim), nil
	}
	return nil, errAt(p, ErrUnsupported, "%s is not supported by cmd/local", name)
}

// ref resolves Ref name: a parameter, a pseudo parameter or a resource
// (its logical ID).
func (r *resolver) ref(name, path string) (any, error) {
	if name == "AWS::NoValue" {
		return noValue{}, nil
	}
	if v, ok := r.params[name]; ok {
		return v, nil
	}
	if v, ok := pseudo[name]; ok {
		return v, nil
	}
	if _, ok := r.t.Resources[name]; ok {
		return name, nil
	}
	if strings.HasPrefix(name, "AWS::") {
		return nil, errAt(path, ErrUnresolved, "unknown pseudo parameter %q", name)
	}
	return nil, errAt(path, ErrUnresolved, "Ref to %q, which is neither a parameter nor a resource", name)
}

// getAtt returns the placeholder for Fn::GetAtt id.attr.
func (r *resolver) getAtt(id, attr, path string) (any, error) {
	res, ok := r.t.Resources[id]
	if !ok {
		return nil, errAt(path, ErrUnresolved, "Fn::GetAtt of %q, which is not a resource", id)
	}
	if attr != "Arn" {
		return id + "." + attr, nil
	}
	service := "unknown"
	if parts := strings.Split(res.Type, "::"); len(parts) == 3 {
		service = strings.ToLower(parts[1])
	}
	if service == "lambda" || res.Type == TypeFunction {
		return "arn:aws:lambda:" + LocalRegion + ":" + LocalAccountID + ":function:" + id, nil
	}
	return "arn:aws:" + service + ":" + LocalRegion + ":" + LocalAccountID + ":" + id, nil
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
			v, err = r.getAtt(id, attr, path)
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
	def, ok := r.t.conditions[name]
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
	}
	return false, errAt(p, ErrUnresolved, "%s is not a condition function", name)
}
