package authctx

import (
	"net/url"
	"path"
	"strings"
)

// RoutePath is the path a request addresses within the API, the one the
// authorizer prices and gates and the function routes on, so that the two
// can never disagree. Both compute it from their own event, which API
// Gateway fills alike:
//
//   - resource is the matched resource template ("/predict/batch",
//     "/{proxy+}") and params its path parameters, which API Gateway
//     passes decoded. The template with its parameters put back is the
//     path below the API's root: without the stage, and without a custom
//     domain's base path, which the event's path field carries.
//   - Without a resource, or with a parameter missing from params (a
//     hand-written event), rawPath is used, percent-decoded (left as is
//     when it does not decode).
//
// The result is cleaned as path.Clean does: one leading slash, no
// trailing slash, no empty, "." or ".." segments, so "//predict",
// "/predict/" and "/x/../predict" all address "/predict". Letter case is
// kept: API Gateway's resources are case-sensitive.
func RoutePath(resource string, params map[string]string, rawPath string) string {
	if resource == "" {
		return cleanRaw(rawPath)
	}
	segs := strings.Split(resource, "/")
	for i, s := range segs {
		if len(s) < 3 || s[0] != '{' || s[len(s)-1] != '}' {
			continue
		}
		v, ok := params[strings.TrimSuffix(s[1:len(s)-1], "+")]
		if !ok {
			return cleanRaw(rawPath)
		}
		segs[i] = v
	}
	return path.Clean("/" + strings.Join(segs, "/"))
}

func cleanRaw(raw string) string {
	p, err := url.PathUnescape(raw)
	if err != nil {
		p = raw
	}
	return path.Clean("/" + p)
}
