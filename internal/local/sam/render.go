package sam

import "strings"

// Lookup returns the value of a mapping source such as
// "context.authorizer.retryAfter", "context.error.messageString",
// "stageVariables.x" or "method.request.header.X-Api-Key", and whether it
// is known.
type Lookup func(name string) (string, bool)

// mappingValue evaluates one gateway-response header mapping expression as
// API Gateway does: a value in single quotes is a static string ("'1'" →
// "1"); anything else names a source that lookup resolves. ok is false when
// lookup does not know the source (API Gateway then omits the header).
func mappingValue(expr string, lookup Lookup) (value string, ok bool) {
	if len(expr) >= 2 && expr[0] == '\'' && expr[len(expr)-1] == '\'' {
		return expr[1 : len(expr)-1], true
	}
	if lookup == nil {
		return "", false
	}
	return lookup(expr)
}

// RenderHeaders evaluates every header mapping of g; headers whose source
// is unknown are left out. The result is never nil.
func (g GatewayResponse) RenderHeaders(lookup Lookup) map[string]string {
	out := make(map[string]string, len(g.Headers))
	for name, expr := range g.Headers {
		if v, ok := mappingValue(expr, lookup); ok {
			out[name] = v
		}
	}
	return out
}

// RenderTemplate performs the simple variable substitution API Gateway
// applies to gateway-response body templates (they are not run through
// VTL): every $name or ${name}, where name is letters, digits, '_' and '.',
// is replaced by lookup(name), or by "" when lookup does not know it. A '$'
// not followed by a name is kept.
func RenderTemplate(tmpl string, lookup Lookup) string {
	var b strings.Builder
	b.Grow(len(tmpl))
	for i := 0; i < len(tmpl); {
		c := tmpl[i]
		if c != '$' {
			b.WriteByte(c)
			i++
			continue
		}
		var name string
		next := i + 1
		if next < len(tmpl) && tmpl[next] == '{' {
			end := strings.IndexByte(tmpl[next:], '}')
			if end > 1 && isVarName(tmpl[next+1:next+end]) {
				name = tmpl[next+1 : next+end]
				next += end + 1
			}
		} else {
			j := next
			for j < len(tmpl) && isVarByte(tmpl[j]) {
				j++
			}
			name = strings.TrimRight(tmpl[next:j], ".") // a sentence-ending dot is not part of the name
			next += len(name)
		}
		if name == "" {
			b.WriteByte(c)
			i++
			continue
		}
		if lookup != nil {
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			}
		}
		i = next
	}
	return b.String()
}

func isVarByte(c byte) bool {
	return c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isVarName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isVarByte(s[i]) {
			return false
		}
	}
	return s != ""
}
