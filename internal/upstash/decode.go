package upstash

import (
	"encoding/base64"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Replies are parsed by hand, straight into Values: one allocation per
// string and one per array, none for integers, nil or the envelope.
//
// Shapes (https://upstash.com/docs/redis/features/restapi):
//
//	POST /            {"result": R} or {"error": "MSG"}
//	POST /pipeline    [{"result": R} | {"error": "MSG"}, ...] one per command
//	POST /multi-exec  the same as /pipeline
//
// where R is null, a number, a string or an array of R. Other members of an
// envelope object are skipped. Booleans and objects inside R are not part of
// Upstash's (RESP2) replies and are reported as malformed.

const maxDepth = 512 // array nesting allowed in a reply

// parser reads one reply. It is a value on the caller's stack.
type parser struct {
	data []byte
	pos  int
	b64  bool     // decode base64 strings (Upstash-Encoding: base64)
	tmp  []byte   // scratch for unescaping strings
	st   []Value  // stack of array elements being parsed
	stp  *[]Value // st's pooled holder, taken at the first array
}

// stackPool holds parser stacks, so that decoding an array costs exactly
// one allocation: its final, exactly sized slice.
var stackPool = sync.Pool{New: func() any { s := make([]Value, 0, 32); return &s }}

// release returns the stack to the pool.
func (p *parser) release() {
	if p.stp == nil {
		return
	}
	clear(p.st) // elements left by an error
	if cap(p.st) <= 4096 {
		*p.stp = p.st[:0]
		stackPool.Put(p.stp)
	}
	p.st, p.stp = nil, nil
}

// malformedError is a parse failure; the client turns it into a KindMalformed *Error.
type malformedError string

func (e malformedError) Error() string { return string(e) }

const (
	errEOF      malformedError = "unexpected end of reply"
	errSyntax   malformedError = "invalid JSON"
	errDepth    malformedError = "arrays nested too deeply"
	errTrailing malformedError = "data after the reply"
)

func (p *parser) fail(what string) error {
	if p.pos >= len(p.data) {
		return errEOF
	}
	return malformedError(what + " at byte " + strconv.Itoa(p.pos))
}

func (p *parser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, or 0 at the end.
func (p *parser) peek() byte {
	p.ws()
	if p.pos >= len(p.data) {
		return 0
	}
	return p.data[p.pos]
}

func (p *parser) expect(c byte) error {
	if p.peek() != c {
		return p.fail("expected '" + string(c) + "'")
	}
	p.pos++
	return nil
}

func (p *parser) end() error {
	if p.peek() != 0 {
		return errTrailing
	}
	return nil
}

// envelope parses {"result": R} or {"error": "MSG"}. hasErr reports an
// "error" member; when both are present the error wins.
func (p *parser) envelope() (v Value, msg string, hasErr bool, err error) {
	if err = p.expect('{'); err != nil {
		return v, "", false, p.fail("expected an object with \"result\" or \"error\"")
	}
	hasResult := false
	if p.peek() == '}' {
		p.pos++
		return v, "", false, malformedError("object has neither \"result\" nor \"error\"")
	}
	for {
		if p.peek() != '"' {
			return v, "", false, p.fail("expected a member name")
		}
		key, err := p.rawString()
		if err != nil {
			return v, "", false, err
		}
		if err = p.expect(':'); err != nil {
			return v, "", false, err
		}
		switch string(key) {
		case "result":
			if v, err = p.value(0, true); err != nil {
				return v, "", false, err
			}
			hasResult = true
		case "error":
			if p.peek() == 'n' { // "error": null, as some servers write it: no error
				if err = p.literal("null"); err != nil {
					return v, "", false, err
				}
				break
			}
			if p.peek() != '"' {
				return v, "", false, p.fail("\"error\" is not a string")
			}
			s, err := p.rawString()
			if err != nil {
				return v, "", false, err
			}
			msg, hasErr = string(s), true
		default:
			if err = p.skip(0); err != nil {
				return v, "", false, err
			}
		}
		switch p.peek() {
		case ',':
			p.pos++
			continue
		case '}':
			p.pos++
		default:
			return v, "", false, p.fail("expected ',' or '}'")
		}
		break
	}
	if !hasResult && !hasErr {
		return v, "", false, malformedError("object has neither \"result\" nor \"error\"")
	}
	if hasErr {
		v = Value{}
	}
	return v, msg, hasErr, nil
}

// value parses one reply value. top marks the value of a "result" member,
// where Upstash leaves the status reply OK unencoded in base64 mode.
func (p *parser) value(depth int, top bool) (Value, error) {
	switch c := p.peek(); {
	case c == '"':
		s, err := p.rawString()
		if err != nil {
			return Value{}, err
		}
		return Value{typ: TypeString, str: p.text(s, top)}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == '[':
		return p.array(depth + 1)
	case c == 'n':
		if err := p.literal("null"); err != nil {
			return Value{}, err
		}
		return Value{}, nil
	case c == 't' || c == 'f':
		return Value{}, p.fail("unexpected boolean")
	case c == '{':
		return Value{}, p.fail("unexpected object")
	case c == 0:
		return Value{}, errEOF
	}
	return Value{}, p.fail("unexpected character")
}

func (p *parser) array(depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, errDepth
	}
	p.pos++ // '['
	if p.peek() == ']' {
		p.pos++
		return Value{typ: TypeArray}, nil
	}
	if p.stp == nil {
		p.stp = stackPool.Get().(*[]Value)
		p.st = (*p.stp)[:0]
	}
	base := len(p.st)
	for {
		e, err := p.value(depth, false)
		if err != nil {
			return Value{}, err
		}
		p.st = append(p.st, e)
		switch p.peek() {
		case ',':
			p.pos++
			continue
		case ']':
			p.pos++
		default:
			return Value{}, p.fail("expected ',' or ']'")
		}
		break
	}
	arr := make([]Value, len(p.st)-base)
	copy(arr, p.st[base:])
	clear(p.st[base:])
	p.st = p.st[:base]
	return Value{typ: TypeArray, arr: arr}, nil
}

func (p *parser) literal(word string) error {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return p.fail("invalid literal")
	}
	p.pos += len(word)
	return nil
}

// number parses a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
// Integers of up to 18 digits are converted here, without strconv.
func (p *parser) number() (Value, error) {
	start := p.pos
	neg := p.data[p.pos] == '-'
	if neg {
		p.pos++
	}
	intStart := p.pos
	var n int64
	for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
		n = n*10 + int64(p.data[p.pos]-'0') // may overflow past 18 digits; then unused
		p.pos++
	}
	nd := p.pos - intStart
	if nd == 0 || (nd > 1 && p.data[intStart] == '0') {
		p.pos = start
		return Value{}, p.fail("invalid number")
	}
	isInt := true
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		isInt = false
		p.pos++
		if !p.digits() {
			p.pos = start
			return Value{}, p.fail("invalid number")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		isInt = false
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if !p.digits() {
			p.pos = start
			return Value{}, p.fail("invalid number")
		}
	}
	if p.pos < len(p.data) {
		if c := p.data[p.pos]; isDigit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' {
			p.pos = start
			return Value{}, p.fail("invalid number")
		}
	}
	if isInt && nd <= 18 {
		if neg {
			n = -n
		}
		return Value{typ: TypeInt, num: n}, nil
	}
	num := p.data[start:p.pos]
	if isInt {
		if n, err := strconv.ParseInt(string(num), 10, 64); err == nil {
			return Value{typ: TypeInt, num: n}, nil
		}
	}
	// Syntax is checked above; ParseFloat can only report a range error,
	// with ±Inf or 0 as the nearest value.
	f, _ := strconv.ParseFloat(string(num), 64)
	return FloatValue(f), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits consumes one or more digits and reports whether there was one.
func (p *parser) digits() bool {
	start := p.pos
	for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
		p.pos++
	}
	return p.pos > start
}

// rawString parses a JSON string and returns its unescaped bytes. The slice
// aliases the reply or p.tmp: valid only until the next call.
func (p *parser) rawString() ([]byte, error) {
	p.pos++ // opening quote
	start := p.pos
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := p.data[start:p.pos]
			p.pos++
			return s, nil
		}
		if c == '\\' {
			return p.escapedString(start)
		}
		if c < 0x20 {
			return nil, p.fail("control character in string")
		}
		p.pos++
	}
	return nil, errEOF
}

func (p *parser) escapedString(start int) ([]byte, error) {
	out := append(p.tmp[:0], p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			p.tmp = out
			return out, nil
		case c < 0x20:
			return nil, p.fail("control character in string")
		case c != '\\':
			out = append(out, c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.data) {
			return nil, errEOF
		}
		p.pos += 2
		switch e := p.data[p.pos-1]; e {
		case '"', '\\', '/':
			out = append(out, e)
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
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, p.fail("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// A pair encodes one rune; a lone surrogate becomes U+FFFD,
				// as encoding/json does.
				r2 := rune(-1)
				if p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
					save := p.pos
					p.pos += 2
					var ok2 bool
					if r2, ok2 = p.hex4(); !ok2 {
						return nil, p.fail("invalid \\u escape")
					}
					if utf16.DecodeRune(r, r2) == utf8.RuneError {
						p.pos = save // not a pair: the second escape stands alone
						r2 = -1
					}
				}
				if r2 >= 0 {
					r = utf16.DecodeRune(r, r2)
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			p.pos--
			return nil, p.fail("invalid escape")
		}
	}
	return nil, errEOF
}

func (p *parser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.pos += 4
	return r, true
}

// text turns string bytes from the reply into a Go string, decoding base64
// in base64 mode. Like @upstash/redis, it leaves a top-level "OK" alone
// (Upstash does not encode that status reply) and keeps a string that is not
// valid base64 as it came.
func (p *parser) text(s []byte, top bool) string {
	if string(s) == "OK" && (top || !p.b64) {
		return "OK" // the commonest reply, without an allocation
	}
	if !p.b64 {
		return string(s)
	}
	dst := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(dst, s)
	if err != nil {
		return string(s)
	}
	if n == 0 {
		return ""
	}
	// dst is never written again: share it instead of copying it.
	return unsafe.String(&dst[0], n)
}

// skip skips one JSON value of any kind (an unknown envelope member).
func (p *parser) skip(depth int) error {
	if depth > maxDepth {
		return errDepth
	}
	switch c := p.peek(); c {
	case '"':
		_, err := p.rawString()
		return err
	case '{', '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		p.pos++
		if p.peek() == closer {
			p.pos++
			return nil
		}
		for {
			if c == '{' {
				if p.peek() != '"' {
					return p.fail("expected a member name")
				}
				if _, err := p.rawString(); err != nil {
					return err
				}
				if err := p.expect(':'); err != nil {
					return err
				}
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			switch p.peek() {
			case ',':
				p.pos++
				continue
			case closer:
				p.pos++
				return nil
			}
			return p.fail("expected ',' or '" + string(closer) + "'")
		}
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	case 0:
		return errEOF
	}
	if c := p.data[p.pos]; c == '-' || (c >= '0' && c <= '9') {
		_, err := p.number()
		return err
	}
	return p.fail("unexpected character")
}

// parseSingle parses the reply of POST /.
func parseSingle(data []byte, b64 bool) (v Value, msg string, hasErr bool, err error) {
	p := parser{data: data, b64: b64}
	defer p.release()
	if v, msg, hasErr, err = p.envelope(); err != nil {
		return Value{}, "", false, err
	}
	if err = p.end(); err != nil {
		return Value{}, "", false, err
	}
	return v, msg, hasErr, nil
}

// parseMulti parses the reply of /pipeline or /multi-exec into out, which
// must have the length of the command list.
func parseMulti(data []byte, b64 bool, out []Result, status int) error {
	p := parser{data: data, b64: b64}
	defer p.release()
	if p.peek() != '[' {
		return p.fail("expected an array of results")
	}
	p.pos++
	n := 0
	if p.peek() == ']' {
		p.pos++
	} else {
		for {
			v, msg, hasErr, err := p.envelope()
			if err != nil {
				return err
			}
			if n < len(out) {
				if hasErr {
					out[n] = Result{Err: &Error{Kind: KindCommand, StatusCode: status, Message: msg}}
				} else {
					out[n] = Result{Value: v}
				}
			}
			n++
			switch p.peek() {
			case ',':
				p.pos++
				continue
			case ']':
				p.pos++
			default:
				return p.fail("expected ',' or ']'")
			}
			break
		}
	}
	if n != len(out) {
		return malformedError(strconv.Itoa(n) + " results for " + strconv.Itoa(len(out)) + " commands")
	}
	return p.end()
}
