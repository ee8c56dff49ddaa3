package sam

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SAM's defaults for function properties left unset.
const (
	DefaultTimeout    = 3 * time.Second
	DefaultMemorySize = 128
)

// Function is an AWS::Serverless::Function with Globals merged and every
// value resolved.
type Function struct {
	LogicalID   string
	Handler     string
	Runtime     string
	CodeURI     string // CodeUri: a path, relative to the template
	BuildMethod string // Metadata.BuildMethod, e.g. "makefile"; "" when absent
	// Architectures, e.g. ["arm64"]; SAM's default ["x86_64"] when unset.
	Architectures []string
	// Timeout; DefaultTimeout when unset.
	Timeout time.Duration
	// MemorySize in MB; DefaultMemorySize when unset.
	MemorySize int
	// Environment is Globals.Function.Environment.Variables merged with the
	// function's own (the function wins), every value resolved to a string.
	// Never nil.
	Environment map[string]string
	// Events holds the function's Type: Api events by event name. Never nil.
	Events map[string]APIEvent
}

// APIEvent is a function event of Type Api.
type APIEvent struct {
	Path   string
	Method string // upper case, or "ANY"
	// RestAPI is the logical ID RestApiId refers to.
	RestAPI string
	// Authorizer is Auth.Authorizer as written: "NONE", an authorizer name,
	// or "" for the API's default authorizer.
	Authorizer string
}

// Functions returns every AWS::Serverless::Function whose Condition (if any)
// holds, by logical ID, resolved against params (parameter overrides; nil
// means defaults).
func (t *Template) Functions(params map[string]string) (map[string]Function, error) {
	r, err := t.newResolver(params)
	if err != nil {
		return nil, err
	}
	out := map[string]Function{}
	for _, id := range sortedKeys(t.Resources) {
		res := t.Resources[id]
		if res.Type != TypeFunction {
			continue
		}
		on, err := r.resourceEnabled(id)
		if err != nil {
			return nil, err
		}
		if !on {
			continue
		}
		f, err := r.function(id, res)
		if err != nil {
			return nil, err
		}
		out[id] = f
	}
	return out, nil
}

func (r *resolver) function(id string, res Resource) (Function, error) {
	base := "Resources." + id + ".Properties"
	props := mergeGlobals(r.t.globals["Function"], res.Properties)
	rp, err := r.resolve(props, base)
	if err != nil {
		return Function{}, err
	}
	p := rp.(map[string]any) // resolve keeps a map a map
	f := Function{
		LogicalID:     id,
		Architectures: []string{"x86_64"},
		Timeout:       DefaultTimeout,
		MemorySize:    DefaultMemorySize,
		Environment:   map[string]string{},
		Events:        map[string]APIEvent{},
	}
	str := func(key string) (string, error) {
		v, ok := p[key]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := scalarString(v)
		if !ok {
			return "", fmt.Errorf("sam: %w: %s.%s is %s, not a string", ErrInvalid, base, key, describe(v))
		}
		return s, nil
	}
	if f.Handler, err = str("Handler"); err != nil {
		return Function{}, err
	}
	if f.Runtime, err = str("Runtime"); err != nil {
		return Function{}, err
	}
	if f.CodeURI, err = str("CodeUri"); err != nil {
		return Function{}, err
	}
	if res.Metadata != nil {
		md, err := r.resolve(res.Metadata, "Resources."+id+".Metadata")
		if err != nil {
			return Function{}, err
		}
		f.BuildMethod, _ = scalarString(md.(map[string]any)["BuildMethod"])
	}
	if a, ok := p["Architectures"]; ok {
		list, ok := a.([]any)
		if !ok {
			return Function{}, fmt.Errorf("sam: %w: %s.Architectures is not a list", ErrInvalid, base)
		}
		f.Architectures = nil
		for _, e := range list {
			s, ok := scalarString(e)
			if !ok {
				return Function{}, fmt.Errorf("sam: %w: %s.Architectures holds %s", ErrInvalid, base, describe(e))
			}
			f.Architectures = append(f.Architectures, s)
		}
	}
	if s, err := str("Timeout"); err != nil {
		return Function{}, err
	} else if s != "" {
		n, err := strconv.ParseFloat(s, 64)
		if err != nil || n <= 0 {
			return Function{}, fmt.Errorf("sam: %w: %s.Timeout %q is not a positive number of seconds", ErrInvalid, base, s)
		}
		f.Timeout = time.Duration(n * float64(time.Second))
	}
	if s, err := str("MemorySize"); err != nil {
		return Function{}, err
	} else if s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return Function{}, fmt.Errorf("sam: %w: %s.MemorySize %q is not a positive whole number of MB", ErrInvalid, base, s)
		}
		f.MemorySize = n
	}
	if env, ok := p["Environment"]; ok && env != nil {
		em, ok := env.(map[string]any)
		if !ok {
			return Function{}, fmt.Errorf("sam: %w: %s.Environment is not a mapping", ErrInvalid, base)
		}
		if vars, ok := em["Variables"]; ok && vars != nil {
			vm, ok := vars.(map[string]any)
			if !ok {
				return Function{}, fmt.Errorf("sam: %w: %s.Environment.Variables is not a mapping", ErrInvalid, base)
			}
			for k, v := range vm {
				if v == nil {
					f.Environment[k] = ""
					continue
				}
				s, ok := scalarString(v)
				if !ok {
					return Function{}, fmt.Errorf("sam: %w: %s.Environment.Variables.%s is %s, not a string", ErrInvalid, base, k, describe(v))
				}
				f.Environment[k] = s
			}
		}
	}
	if ev, ok := p["Events"]; ok && ev != nil {
		em, ok := ev.(map[string]any)
		if !ok {
			return Function{}, fmt.Errorf("sam: %w: %s.Events is not a mapping", ErrInvalid, base)
		}
		for name, e := range em {
			ep := base + ".Events." + name
			event, ok := e.(map[string]any)
			if !ok {
				return Function{}, fmt.Errorf("sam: %w: %s is not a mapping", ErrInvalid, ep)
			}
			if typ, _ := event["Type"].(string); typ != "Api" {
				continue
			}
			a, err := apiEvent(event, ep, res.Properties, name)
			if err != nil {
				return Function{}, err
			}
			f.Events[name] = a
		}
	}
	return f, nil
}

// apiEvent reads a resolved Type: Api event. raw is the function's
// unresolved Properties, used to find the RestApiId's logical ID.
func apiEvent(event map[string]any, path string, raw map[string]any, name string) (APIEvent, error) {
	props, ok := event["Properties"].(map[string]any)
	if !ok {
		return APIEvent{}, fmt.Errorf("sam: %w: %s has no Properties", ErrInvalid, path)
	}
	var a APIEvent
	a.Path, _ = scalarString(props["Path"])
	a.Method, _ = scalarString(props["Method"])
	if a.Path == "" || a.Method == "" {
		return APIEvent{}, fmt.Errorf("sam: %w: %s needs Path and Method", ErrInvalid, path)
	}
	if !strings.HasPrefix(a.Path, "/") {
		return APIEvent{}, fmt.Errorf("sam: %w: %s.Properties.Path %q does not start with /", ErrInvalid, path, a.Path)
	}
	a.Method = strings.ToUpper(a.Method)
	if _, ok := props["RestApiId"]; !ok {
		return APIEvent{}, fmt.Errorf("sam: %s: an Api event without RestApiId (SAM's implicit API) is %w", path, ErrUnsupported)
	}
	// The logical ID: taken from the unresolved Ref (the resolved value of
	// a Ref to a resource is its logical ID anyway).
	rawEvents, _ := raw["Events"].(map[string]any)
	rawEvent, _ := rawEvents[name].(map[string]any)
	rawProps, _ := rawEvent["Properties"].(map[string]any)
	id, ok := logicalIDOf(rawProps["RestApiId"])
	if !ok {
		return APIEvent{}, fmt.Errorf("sam: %w: %s.Properties.RestApiId must be a Ref to an API", ErrInvalid, path)
	}
	a.RestAPI = id
	if auth, ok := props["Auth"].(map[string]any); ok {
		a.Authorizer, _ = scalarString(auth["Authorizer"])
	}
	return a, nil
}

// logicalIDOf returns the logical ID a value refers to: {Ref: id},
// {Fn::GetAtt: [id, attr]}, or a plain string.
func logicalIDOf(v any) (string, bool) {
	if s, ok := v.(string); ok && s != "" {
		return s, true
	}
	name, arg, ok := intrinsic(v)
	if !ok {
		return "", false
	}
	switch name {
	case "Ref":
		s, ok := arg.(string)
		return s, ok && s != ""
	case "Fn::GetAtt":
		switch a := arg.(type) {
		case []any:
			if len(a) == 2 {
				s, ok := a[0].(string)
				return s, ok && s != ""
			}
		case string:
			id, _, ok := strings.Cut(a, ".")
			return id, ok && id != ""
		}
	}
	return "", false
}

// mergeGlobals merges a Globals section into a resource's properties the way
// SAM does: the resource wins for scalars, maps merge key by key, lists are
// concatenated with the Globals' entries first, and an intrinsic function on
// either side is replaced whole by the resource's value.
func mergeGlobals(global, local map[string]any) map[string]any {
	out := make(map[string]any, len(global)+len(local))
	for k, v := range global {
		out[k] = v
	}
	for k, v := range local {
		if g, ok := out[k]; ok {
			out[k] = mergeValue(g, v)
		} else {
			out[k] = v
		}
	}
	return out
}

func mergeValue(global, local any) any {
	if _, _, ok := intrinsic(global); ok {
		return local
	}
	if _, _, ok := intrinsic(local); ok {
		return local
	}
	switch l := local.(type) {
	case map[string]any:
		if g, ok := global.(map[string]any); ok {
			return mergeGlobals(g, l)
		}
	case []any:
		if g, ok := global.([]any); ok {
			return append(append(make([]any, 0, len(g)+len(l)), g...), l...)
		}
	}
	return local
}
