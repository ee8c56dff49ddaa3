package apigw

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/bucketgate/bucketgate/internal/local/sam"
)

// segment kinds, in API Gateway's order of preference when several resources
// match a path: a literal beats a {param}, which beats a greedy {param+}.
const (
	segLiteral = iota
	segParam
	segGreedy
)

type segment struct {
	kind int
	text string // the literal, or the parameter name
}

type route struct {
	sam.Route
	segs []segment
}

var methods = map[string]bool{
	"GET": true, "POST": true, "PUT": true, "DELETE": true, "PATCH": true, "HEAD": true, "OPTIONS": true, "ANY": true,
}

// compileRoute checks a route's method and path and splits the path into
// segments. Paths follow API Gateway's resource syntax: /a/{id}/{proxy+}.
func compileRoute(r sam.Route) (route, error) {
	if !methods[r.Method] {
		return route{}, fmt.Errorf("route %s %s: unsupported method %q", r.Method, r.Path, r.Method)
	}
	if !strings.HasPrefix(r.Path, "/") {
		return route{}, fmt.Errorf("route %s %s: path must start with /", r.Method, r.Path)
	}
	out := route{Route: r}
	if r.Path == "/" {
		return out, nil
	}
	parts := strings.Split(strings.TrimPrefix(r.Path, "/"), "/")
	seen := map[string]bool{}
	for i, p := range parts {
		switch {
		case p == "":
			return route{}, fmt.Errorf("route %s %s: empty path segment", r.Method, r.Path)
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "+}"):
			name := p[1 : len(p)-2]
			if i != len(parts)-1 {
				return route{}, fmt.Errorf("route %s %s: greedy parameter {%s+} must be the last segment", r.Method, r.Path, name)
			}
			if !validParamName(name) || seen[name] {
				return route{}, fmt.Errorf("route %s %s: bad or repeated parameter name %q", r.Method, r.Path, name)
			}
			seen[name] = true
			out.segs = append(out.segs, segment{kind: segGreedy, text: name})
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			name := p[1 : len(p)-1]
			if !validParamName(name) || seen[name] {
				return route{}, fmt.Errorf("route %s %s: bad or repeated parameter name %q", r.Method, r.Path, name)
			}
			seen[name] = true
			out.segs = append(out.segs, segment{kind: segParam, text: name})
		case strings.ContainsAny(p, "{}"):
			return route{}, fmt.Errorf("route %s %s: segment %q mixes text and a parameter", r.Method, r.Path, p)
		default:
			out.segs = append(out.segs, segment{kind: segLiteral, text: p})
		}
	}
	return out, nil
}

func validParamName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// match finds the route for method and the request's escaped path. found
// reports whether any resource matched the path at all (API Gateway answers
// a path it knows with an undefined method the same way as an unknown path,
// but logging the difference helps).
func match(routes []route, method, escapedPath string) (best *route, params map[string]string, found bool) {
	var reqSegs []string
	if escapedPath != "/" && escapedPath != "" {
		reqSegs = strings.Split(strings.TrimPrefix(escapedPath, "/"), "/")
	}
	var bestScore []int
	for i := range routes {
		rt := &routes[i]
		p, ok := rt.matchPath(reqSegs)
		if !ok {
			continue
		}
		found = true
		if rt.Method != method && rt.Method != "ANY" {
			continue
		}
		score := rt.score()
		if best == nil || better(score, bestScore) || (equal(score, bestScore) && best.Method == "ANY" && rt.Method != "ANY") {
			best, params, bestScore = rt, p, score
		}
	}
	return best, params, found
}

func (rt *route) matchPath(req []string) (map[string]string, bool) {
	var params map[string]string
	set := func(k, v string) {
		if params == nil {
			params = map[string]string{}
		}
		params[k] = v
	}
	for i, s := range rt.segs {
		if s.kind == segGreedy {
			if i >= len(req) {
				return nil, false // {proxy+} needs at least one segment
			}
			rest := make([]string, 0, len(req)-i)
			for _, r := range req[i:] {
				u, err := url.PathUnescape(r)
				if err != nil {
					return nil, false
				}
				rest = append(rest, u)
			}
			set(s.text, strings.Join(rest, "/"))
			return params, true
		}
		if i >= len(req) {
			return nil, false
		}
		v, err := url.PathUnescape(req[i])
		if err != nil {
			return nil, false
		}
		switch s.kind {
		case segLiteral:
			if v != s.text {
				return nil, false
			}
		case segParam:
			if v == "" {
				return nil, false
			}
			set(s.text, v)
		}
	}
	if len(req) != len(rt.segs) {
		return nil, false
	}
	return params, true
}

func (rt *route) score() []int {
	s := make([]int, len(rt.segs))
	for i, seg := range rt.segs {
		s[i] = seg.kind
	}
	return s
}

// better reports whether score a identifies a more specific resource than b:
// at the first difference, the smaller kind (literal < param < greedy) wins;
// a longer match wins over its prefix.
func better(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) > len(b)
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
