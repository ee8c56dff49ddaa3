package sam_test

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/bucketgate/bucketgate/internal/local/sam"
)

// Fuzz targets for what cmd/local does with gateway responses: rendering
// their body templates and header mappings (from the authorizer's context,
// which carries values the client influences, such as the tier), and
// reading them out of a template.

// varRef matches a gateway-response variable as documented on
// RenderTemplate: ${name} with a non-empty name of letters, digits, '_' and
// '.', or $name with the longest such run that does not end with '.'. It is
// an independent statement of the rule, used as the oracle.
var varRef = regexp.MustCompile(`\$(?:\{([A-Za-z0-9_.]+)\}|([A-Za-z0-9_.]*[A-Za-z0-9_]))`)

func referenceRender(tmpl string, lookup sam.Lookup) string {
	return varRef.ReplaceAllStringFunc(tmpl, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		if v, ok := lookup(name); ok {
			return v
		}
		return ""
	})
}

func isVarBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// FuzzRenderTemplate checks RenderTemplate against the reference rule, and
// that its output is bounded: at most the template plus one value per '$',
// with values never expanded again.
func FuzzRenderTemplate(f *testing.F) {
	for _, s := range []string{
		`{"message":"Too Many Requests","retryAfter":$context.authorizer.retryAfter,"tier":"$context.authorizer.tier"}`,
		`{"message":$context.error.messageString}`, `${context.authorizer.retryAfter}s`, `wait $a.b.`, `$`, `$$`, `${`,
		`${}`, `${a`, `${a b}`, `${a}}`, `$.`, `$..a`, `$a..b..`, `\$a`, `$a$b${c}$`, "$\xff", `$${a}`, `$context.authorizer.x.y.z`,
	} {
		f.Add(s, "v")
		f.Add(s, "$context.authorizer.tier")
	}
	f.Fuzz(func(t *testing.T, tmpl, value string) {
		var names []string
		lookup := func(name string) (string, bool) {
			names = append(names, name)
			if len(name)%3 == 0 {
				return "", false // some variables are unknown
			}
			return value, true
		}
		got := sam.RenderTemplate(tmpl, lookup)
		for _, n := range names {
			if !isVarBytes(n) {
				t.Fatalf("lookup asked for %q", n)
			}
		}
		want := referenceRender(tmpl, lookup)
		if got != want {
			t.Fatalf("RenderTemplate(%q) = %q, reference %q", tmpl, got, want)
		}
		if limit := len(tmpl) + strings.Count(tmpl, "$")*len(value); len(got) > limit {
			t.Fatalf("output of %d bytes from %d template bytes and %d-byte values", len(got), len(tmpl), len(value))
		}
		if !strings.Contains(tmpl, "$") && got != tmpl {
			t.Fatalf("a template without '$' changed: %q -> %q", tmpl, got)
		}
		if none := sam.RenderTemplate(tmpl, nil); len(none) > len(tmpl) ||
			none != sam.RenderTemplate(tmpl, func(string) (string, bool) { return "", false }) {
			t.Fatalf("with no lookup: %q from %q", none, tmpl)
		}
	})
}

// FuzzMappingValue checks header mapping expressions: a value in single
// quotes is itself, anything else is looked up exactly as written, and a
// header whose source is unknown is left out.
func FuzzMappingValue(f *testing.F) {
	for _, s := range []string{"'application/json'", "''", "'", "context.authorizer.retryAfter", "'a'b'", "method.request.header.X-Api-Key", ""} {
		f.Add(s, "7")
	}
	f.Fuzz(func(t *testing.T, expr, value string) {
		var asked []string
		g := sam.GatewayResponse{Headers: map[string]string{"X": expr}}
		got, ok := g.RenderHeaders(func(name string) (string, bool) {
			asked = append(asked, name)
			return value, name != ""
		})["X"]
		quoted := len(expr) >= 2 && expr[0] == '\'' && expr[len(expr)-1] == '\''
		switch {
		case quoted && (got != expr[1:len(expr)-1] || !ok || len(asked) != 0):
			t.Fatalf("header %q = %q, %v (looked up %q)", expr, got, ok, asked)
		case !quoted && (len(asked) != 1 || asked[0] != expr || ok != (expr != "") || ok && got != value):
			t.Fatalf("header %q = %q, %v (looked up %q)", expr, got, ok, asked)
		}
		if _, ok := g.RenderHeaders(nil)["X"]; !quoted && ok {
			t.Fatalf("header %q is set without a lookup", expr)
		}
	})
}

// FuzzGatewayResponses parses arbitrary templates the way cmd/local does —
// Parse, then every API's routes, authorizers and gateway responses — and
// renders each gateway response. Seeds: the project's template.yaml and
// small variations. Properties: no panic; a refused template gets an
// error wrapping one of the package's sentinels; rendering is bounded.
func FuzzGatewayResponses(f *testing.F) {
	for _, path := range []string{"../../../template.yaml", "../startapi/testdata/template.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"Resources:\n  Api:\n    Type: AWS::Serverless::Api\n    Properties:\n      StageName: v1\n      GatewayResponses:\n        ACCESS_DENIED:\n          StatusCode: 429\n          ResponseTemplates:\n            application/json: '{\"r\":$context.authorizer.retryAfter}'\n",
		"Resources:\n  Api:\n    Type: AWS::Serverless::Api\n    Properties:\n      StageName: !Ref Missing\n",
		"Resources:\n  Api:\n    Type: AWS::Serverless::Api\n    Properties:\n      GatewayResponses: [1, 2]\n",
		"Resources: !GetAtt x",
		"a: &a [1, *a]",
		"{}",
		"",
	} {
		f.Add([]byte(s))
	}
	sentinels := []error{sam.ErrInvalid, sam.ErrMissingParameter, sam.ErrInvalidParameter, sam.ErrUnresolved, sam.ErrUnsupported, sam.ErrNotFound}
	clear := func(t *testing.T, what string, err error) {
		t.Helper()
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("%s: error %v wraps no sentinel", what, err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		tmpl, err := sam.Parse(data)
		if err != nil {
			clear(t, "Parse", err)
			return
		}
		lookup := func(name string) (string, bool) { return "[" + name + "]", strings.HasPrefix(name, "context.") }
		for id, res := range tmpl.Resources {
			if res.Type != sam.TypeAPI {
				continue
			}
			api, err := tmpl.API(id, nil)
			if err != nil {
				clear(t, "API", err)
				continue
			}
			for typ, g := range api.GatewayResponses {
				if g.Headers == nil || g.Templates == nil {
					t.Fatalf("gateway response %s has nil maps", typ)
				}
				_ = g.RenderHeaders(lookup)
				for _, body := range g.Templates {
					out := sam.RenderTemplate(body, lookup)
					if len(out) > len(body)+strings.Count(body, "$")*(len(body)+2) {
						t.Fatalf("rendering %q gave %d bytes", body, len(out))
					}
				}
			}
		}
	})
}
