package apigw

import (
	"slices"
	"strconv"
	"unicode/utf8"
)

// This file holds the gateway's hot-path JSON: events are appended to a
// byte slice by hand (byte for byte what encoding/json makes of the
// aws-lambda-go event types, which the tests check), and the two documents
// the gateway reads back on every request (an authorizer's output and a
// Lambda proxy response) are parsed by a small scanner that accepts only
// their usual shape. Anything else (unknown or duplicate keys, \u escapes,
// invalid UTF-8, unexpected types) makes the scanner give up, and the
// careful encoding/json path decides, with its exact error messages. The
// scanner is an accelerator, never a second opinion: tests (and fuzz
// targets) check that whenever it accepts a document, it agrees with the
// encoding/json path.

// --- encoding ---------------------------------------------------------

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string exactly as encoding/json
// encodes a Go string (HTML-safe: <, > and & escaped; U+2028 and U+2029
// escaped; each byte of invalid UTF-8 replaced by \ufffd).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendKey appends "name": (name needs no escaping).
func appendKey(dst []byte, name string) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

// sortedKeys returns m's keys in encoding/json's order (byte-wise).
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendStringMap appends m as encoding/json encodes a map[string]string:
// null when nil, keys sorted.
func appendStringMap(dst []byte, m map[string]string) []byte {
	if m == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, m[k])
	}
	return append(dst, '}')
}

// appendMultiMaps appends the single-value and the multi-value form of a
// header or query map — the last value per name, and all values — as
// encoding/json encodes the maps headerMaps and queryMaps build: both null
// when m is empty, names without values left out.
func appendMultiMaps(dst []byte, singleKey, multiKey string, m map[string][]string) []byte {
	if len(m) == 0 {
		dst = appendKey(dst, singleKey)
		dst = append(dst, "null,"...)
		dst = appendKey(dst, multiKey)
		return append(dst, "null"...)
	}
	keys := make([]string, 0, len(m))
	for k, vs := range m {
		if len(vs) > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	dst = appendKey(dst, singleKey)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		vs := m[k]
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, vs[len(vs)-1])
	}
	dst = append(dst, '}', ',')
	dst = appendKey(dst, multiKey)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':', '[')
		for j, v := range m[k] {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, v)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// --- scanning ---------------------------------------------------------

// jsonScanner reads the JSON subset the fast paths accept. Every method
// reports false for anything outside it; callers then give up.
type jsonScanner struct {
	b []byte
	i int
}

// peek skips whitespace and returns the next byte, 0 at the end.
func (s *jsonScanner) peek() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// eat consumes c when it is the next byte.
func (s *jsonScanner) eat(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// atEnd reports whether only whitespace is left.
func (s *jsonScanner) atEnd() bool {
	s.peek()
	return s.i == len(s.b)
}

// literal consumes the literal lit (true, false, null).
func (s *jsonScanner) literal(lit string) bool {
	if s.peek() != lit[0] || len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// str reads a string. Escapes other than \uXXXX are decoded; \u escapes,
// control characters and invalid UTF-8 are refused.
func (s *jsonScanner) str() (string, bool) {
	if s.peek() != '"' {
		return "", false
	}
	start := s.i + 1
	escaped := false
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			raw := s.b[start:i]
			s.i = i + 1
			if !utf8.Valid(raw) {
				return "", false
			}
			if !escaped {
				return string(raw), true
			}
			return unescape(raw)
		case c == '\\':
			escaped = true
			i++ // the escaped byte; unescape checks it
		case c < 0x20:
			return "", false
		}
	}
	return "", false
}

// unescape decodes a string body holding simple escapes.
func unescape(raw []byte) (string, bool) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case '"', '\\', '/':
			out = append(out, raw[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default: // \u and invalid escapes
			return "", false
		}
	}
	return string(out), true
}

// number reads a number and returns its text.
func (s *jsonScanner) number() ([]byte, bool) {
	s.peek()
	b, start, i := s.b, s.i, s.i
	digits := func() bool {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		digits()
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return nil, false
		}
	}
	s.i = i
	return b[start:i], true
}

// object reads an object, calling member for each key with the scanner
// positioned at the value; member must consume the value. Duplicate keys
// are the caller's to refuse.
func (s *jsonScanner) object(member func(key string) bool) bool {
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.eat(':') || !member(key) {
			return false
		}
		if s.eat(',') {
			continue
		}
		return s.eat('}')
	}
}

// array reads an array, calling elem with the scanner at each element.
func (s *jsonScanner) array(elem func() bool) bool {
	if !s.eat('[') {
		return false
	}
	if s.eat(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.eat(',') {
			continue
		}
		return s.eat(']')
	}
}

// scalarText reads a string, number, boolean or null and returns it as API
// Gateway passes authorizer context values and proxy response headers on:
// a string's value, a number's or boolean's JSON text, "" for null
// (contextValue is the reference).
func (s *jsonScanner) scalarText() (string, bool) {
	switch s.peek() {
	case '"':
		return s.str()
	case 't':
		return "true", s.literal("true")
	case 'f':
		return "false", s.literal("false")
	case 'n':
		return "", s.literal("null")
	}
	n, ok := s.number()
	return string(n), ok
}

// stringOrList reads a string or a non-empty list of strings (the
// package-level stringOrList is the reference).
func (s *jsonScanner) stringOrList() ([]string, bool) {
	if s.peek() == '"' {
		v, ok := s.str()
		return []string{v}, ok
	}
	var out []string
	ok := s.array(func() bool {
		v, ok := s.str()
		out = append(out, v)
		return ok
	})
	return out, ok && len(out) > 0
}

// fastAuthorizerOutput parses the usual shape of an authorizer's output;
// ok is false when payload is anything else (ParseAuthorizerOutput then
// decides with encoding/json).
func fastAuthorizerOutput(payload []byte) (out AuthorizerOutput, ok bool) {
	s := jsonScanner{b: payload}
	var seen [4]bool
	once := func(i int) bool {
		if seen[i] {
			return false
		}
		seen[i] = true
		return true
	}
	ok = s.object(func(key string) bool {
		var ok bool
		switch key {
		case "principalId":
			if !once(0) {
				return false
			}
			out.PrincipalID, ok = s.str()
		case "policyDocument":
			if !once(1) {
				return false
			}
			out.Policy, ok = s.policy()
		case "context":
			if !once(2) {
				return false
			}
			out.Context, ok = s.contextMap()
		case "usageIdentifierKey":
			if !once(3) {
				return false
			}
			out.UsageIdentifierKey, ok = s.str()
		}
		return ok
	})
	if !ok || !s.atEnd() || !seen[0] || !seen[1] {
		return AuthorizerOutput{}, false
	}
	if out.Context == nil {
		out.Context = map[string]string{}
	}
	return out, true
}

func (s *jsonScanner) contextMap() (map[string]string, bool) {
	if s.literal("null") {
		return map[string]string{}, true
	}
	m := map[string]string{}
	ok := s.object(func(key string) bool {
		v, ok := s.scalarText()
		m[key] = v
		return ok
	})
	return m, ok
}

func (s *jsonScanner) policy() (Policy, bool) {
	var p Policy
	var seenVersion, seenStatement bool
	ok := s.object(func(key string) bool {
		var ok bool
		switch key {
		case "Version":
			if seenVersion {
				return false
			}
			seenVersion = true
			p.Version, ok = s.str()
		case "Statement":
			if seenStatement {
				return false
			}
			seenStatement = true
			if s.peek() == '{' {
				var st Statement
				st, ok = s.statement()
				p.Statement = []Statement{st}
				break
			}
			ok = s.array(func() bool {
				st, ok := s.statement()
				p.Statement = append(p.Statement, st)
				return ok
			})
		}
		return ok
	})
	return p, ok && seenStatement
}

func (s *jsonScanner) statement() (Statement, bool) {
	var st Statement
	var seen [3]bool
	ok := s.object(func(key string) bool {
		var ok bool
		i := -1
		switch key {
		case "Effect":
			i = 0
			st.Effect, ok = s.str()
		case "Action":
			i = 1
			st.Action, ok = s.stringOrList()
		case "Resource":
			i = 2
			st.Resource, ok = s.stringOrList()
		}
		if i < 0 || seen[i] {
			return false
		}
		seen[i] = true
		return ok
	})
	return st, ok && seen[0] && seen[1] && seen[2] && (st.Effect == "Allow" || st.Effect == "Deny")
}

// parsedProxy is a Lambda proxy response, decoded.
type parsedProxy struct {
	status            int
	headers           map[string]string // values as contextValue renders them
	multiValueHeaders map[string][]string
	body              []byte // base64-decoded when isBase64Encoded; nil when absent or null
}

// fastProxyResponse parses the usual shape of a Lambda proxy response; ok is
// false when payload is anything else (parseProxyResponse then decides with
// encoding/json).
func fastProxyResponse(payload []byte) (pr parsedProxy, ok bool) {
	s := jsonScanner{b: payload}
	var seen [5]bool
	var body *string
	var isBase64Encoded bool
	ok = s.object(func(key string) bool {
		var ok bool
		i := -1
		switch key {
		case "statusCode":
			i = 0
			var n []byte
			if n, ok = s.number(); ok {
				pr.status, ok = httpStatus(n)
			}
		case "headers":
			i = 1
			if s.literal("null") {
				pr.headers, ok = nil, true
				break
			}
			pr.headers = map[string]string{}
			ok = s.object(func(k string) bool {
				v, ok := s.scalarText()
				pr.headers[k] = v
				return ok
			})
		case "multiValueHeaders":
			i = 2
			if s.literal("null") {
				pr.multiValueHeaders, ok = nil, true
				break
			}
			pr.multiValueHeaders = map[string][]string{}
			ok = s.object(func(k string) bool {
				vs := []string{}
				ok := s.array(func() bool {
					v, ok := s.str()
					vs = append(vs, v)
					return ok
				})
				pr.multiValueHeaders[k] = vs
				return ok
			})
		case "body":
			i = 3
			if s.literal("null") {
				body, ok = nil, true
				break
			}
			var b string
			b, ok = s.str()
			body = &b
		case "isBase64Encoded":
			i = 4
			switch s.peek() {
			case 't':
				isBase64Encoded, ok = true, s.literal("true")
			case 'f':
				isBase64Encoded, ok = false, s.literal("false")
			}
		}
		if i < 0 || seen[i] {
			return false
		}
		seen[i] = true
		return ok
	})
	if !ok || !s.atEnd() || !seen[0] {
		return parsedProxy{}, false
	}
	if body != nil {
		var err error
		if pr.body, err = proxyBody(*body, isBase64Encoded); err != nil {
			return parsedProxy{}, false
		}
	}
	return pr, true
}

// httpStatus accepts a JSON integer that is an HTTP status code.
func httpStatus(n []byte) (int, bool) {
	for _, c := range n {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.Atoi(string(n))
	if err != nil || v < 100 || v > 599 {
		return 0, false
	}
	return v, true
}
