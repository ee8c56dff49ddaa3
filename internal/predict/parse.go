package predict

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Reasons: the fixed vocabulary logged for every non-200 answer. Logs carry
// the reason, never the client message (which may quote parts of the body).
const (
	reasonEmptyBody       = "empty_body"
	reasonInvalidJSON     = "invalid_json"
	reasonWrongShape      = "wrong_shape"
	reasonUnknownField    = "unknown_field"
	reasonNotANumber      = "not_a_number"
	reasonNotFinite       = "not_finite"
	reasonFeatureCount    = "wrong_feature_count"
	reasonEmptyInputs     = "empty_inputs"
	reasonTooManyRows     = "too_many_rows"
	reasonBodyTooLarge    = "body_too_large"
	reasonInvalidBase64   = "invalid_base64"
	reasonForbidden       = "forbidden"
	reasonNoAuthorizerCtx = "no_authorizer_context"
	reasonNotFound        = "not_found"
	reasonMethod          = "method_not_allowed"
)

// requestError is a 4xx answer.
type requestError struct {
	status int    // HTTP status
	reason string // one of the reason constants, for logs
	msg    string // for the client only: may quote the body, so never logged
}

func badRequest(reason, format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// errSyntax marks a syntax error found by the scanner; parseInputs replaces
// it with encoding/json's description and position.
var errSyntax = &requestError{status: http.StatusBadRequest, reason: reasonInvalidJSON, msg: "invalid JSON"}

// parseInputs parses a request body of the form {"inputs": [[x0, x1, x2, x3], ...]}.
// It returns the values of the first maxRows rows, flattened (NumFeatures per
// row), and the total number of rows. Rows beyond maxRows are validated and
// counted but not kept; more than maxRows rows is an error.
//
// The scanner is specialized to this one shape, so that errors can name the
// row and column at fault and a 100-row body costs one allocation. When it
// finds any problem, the whole body is also checked by encoding/json, so a
// body that is not JSON at all is reported as a syntax error with its line
// and column rather than as whatever shape problem came first.
//
// route ("POST /predict") and hint (may be empty) complete the too-many-rows
// message.
func parseInputs(body string, maxRows int, route, hint string) ([]float64, int, *requestError) {
	if strings.TrimLeft(body, " \t\r\n") == "" {
		return nil, 0, badRequest(reasonEmptyBody, `request body is empty: send {"inputs": [[%d numbers], ...]}`, NumFeatures)
	}
	p := scanner{s: body}
	vals, rows, rerr := p.request(maxRows)
	if rerr != nil && rerr.reason == reasonTooManyRows {
		rerr.msg = fmt.Sprintf("too many rows: got %d, at most %d per request on %s%s", rows, maxRows, route, hint)
		return nil, rows, rerr
	}
	if rerr != nil {
		if se := syntaxError(body); se != nil {
			return nil, 0, se
		}
		if rerr == errSyntax { // the scanner is stricter than encoding/json: should not happen
			return nil, 0, badRequest(reasonInvalidJSON, "invalid JSON near byte offset %d", p.i)
		}
		return nil, 0, rerr
	}
	return vals, rows, nil
}

// syntaxError reports where body stops being JSON, or nil when it is valid.
func syntaxError(body string) *requestError {
	var v struct{}
	err := json.Unmarshal([]byte(body), &v)
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return nil
	}
	// Offset counts the bytes read up to and including the offending one; at
	// the end of the input it is len(body).
	pos := int(se.Offset) - 1
	if int(se.Offset) >= len(body) && strings.HasPrefix(se.Error(), "unexpected end") {
		pos = len(body)
	}
	pos = max(0, min(pos, len(body)))
	line := 1 + strings.Count(body[:pos], "\n")
	col := pos - strings.LastIndexByte(body[:pos], '\n')
	return badRequest(reasonInvalidJSON, "invalid JSON at line %d, column %d: %s", line, col, se.Error())
}

type scanner struct {
	s string
	i int
}

func (p *scanner) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

// peek returns the next byte, or 0 at the end of the input.
func (p *scanner) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// kind names the JSON value starting with c, or "" when no value can.
func kind(c byte) string {
	switch c {
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "a number"
	}
	return ""
}

// shape returns an error with the reason for a value starting with c, or
// errSyntax when no JSON value starts with c.
func shape(reason string, c byte, format string, args ...any) *requestError {
	k := kind(c)
	if k == "" {
		return errSyntax
	}
	return badRequest(reason, format+", got "+k, args...)
}

func (p *scanner) request(maxRows int) ([]float64, int, *requestError) {
	p.ws()
	if p.peek() != '{' {
		return nil, 0, shape(reasonWrongShape, p.peek(), `request body must be a JSON object like {"inputs": [[%d numbers], ...]}`, NumFeatures)
	}
	p.i++
	var (
		vals []float64
		rows int
		seen bool
	)
	p.ws()
	if p.peek() == '}' {
		p.i++
	} else {
		for {
			p.ws()
			name, ok := p.key()
			if !ok {
				return nil, 0, errSyntax
			}
			p.ws()
			if p.peek() != ':' {
				return nil, 0, errSyntax
			}
			p.i++
			p.ws()
			if name != "inputs" {
				return nil, 0, badRequest(reasonUnknownField, `unknown field %s: the only field is "inputs"`, quoteField(name))
			}
			if seen {
				return nil, 0, badRequest(reasonWrongShape, `duplicate field "inputs"`)
			}
			seen = true
			var rerr *requestError
			if vals, rows, rerr = p.inputs(maxRows); rerr != nil {
				return nil, 0, rerr
			}
			p.ws()
			if p.peek() == ',' {
				p.i++
				continue
			}
			if p.peek() != '}' {
				return nil, 0, errSyntax
			}
			p.i++
			break
		}
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, 0, errSyntax // trailing data after the object
	}
	switch {
	case !seen:
		return nil, 0, badRequest(reasonWrongShape, `missing field "inputs": send {"inputs": [[%d numbers], ...]}`, NumFeatures)
	case rows == 0:
		return nil, 0, badRequest(reasonEmptyInputs, `"inputs" is empty: send at least one row of %d numbers`, NumFeatures)
	case rows > maxRows:
		return nil, rows, &requestError{status: http.StatusBadRequest, reason: reasonTooManyRows}
	}
	return vals, rows, nil
}

// quoteField quotes an unknown field's name for an error message, cut short
// when long.
func quoteField(name string) string {
	const maxLen = 64
	if len(name) > maxLen {
		return strconv.Quote(name[:maxLen]) + "..."
	}
	return strconv.Quote(name)
}

// key scans an object key (a JSON string) and returns its decoded value.
func (p *scanner) key() (string, bool) {
	if p.peek() != '"' {
		return "", false
	}
	escaped := false
	for j := p.i + 1; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return "", false
		case c == '"':
			raw := p.s[p.i : j+1]
			p.i = j + 1
			if !escaped {
				return raw[1 : len(raw)-1], true
			}
			var s string
			if err := json.Unmarshal([]byte(raw), &s); err != nil {
				return "", false
			}
			return s, true
		}
	}
	return "", false
}

// inputs scans the value of "inputs": an array of rows.
func (p *scanner) inputs(maxRows int) ([]float64, int, *requestError) {
	if p.peek() != '[' {
		return nil, 0, shape(reasonWrongShape, p.peek(), `"inputs" must be an array of rows, each an array of %d numbers`, NumFeatures)
	}
	p.i++
	// One allocation: every row is at least one '['.
	hint := min(max(strings.Count(p.s[p.i:], "["), 1), maxRows)
	vals := make([]float64, 0, hint*NumFeatures)
	p.ws()
	if p.peek() == ']' {
		p.i++
		return vals, 0, nil
	}
	for row := 0; ; row++ {
		p.ws()
		if p.peek() != '[' {
			return nil, 0, shape(reasonWrongShape, p.peek(), "row %d (inputs[%d]) must be an array of %d numbers", row, row, NumFeatures)
		}
		p.i++
		col := 0
		p.ws()
		if p.peek() == ']' {
			p.i++
		} else {
			for {
				p.ws()
				start := p.i
				if !p.number() {
					c := p.peek()
					if c == '-' || (c >= '0' && c <= '9') {
						return nil, 0, errSyntax // a malformed number
					}
					return nil, 0, shape(reasonNotANumber, c, "row %d, column %d (inputs[%d][%d]): want a number", row, col, row, col)
				}
				f, err := strconv.ParseFloat(p.s[start:p.i], 64)
				if err != nil { // ErrRange: the grammar was checked
					return nil, 0, badRequest(reasonNotFinite, "row %d, column %d (inputs[%d][%d]): number %s is out of range (numbers must be finite float64 values)",
						row, col, row, col, shorten(p.s[start:p.i]))
				}
				if row < maxRows && col < NumFeatures {
					vals = append(vals, f)
				}
				col++
				p.ws()
				if p.peek() == ',' {
					p.i++
					continue
				}
				if p.peek() != ']' {
					return nil, 0, errSyntax
				}
				p.i++
				break
			}
		}
		if col != NumFeatures {
			return nil, 0, badRequest(reasonFeatureCount, "row %d (inputs[%d]) has %d numbers, want %d (input_features)", row, row, col, NumFeatures)
		}
		p.ws()
		if p.peek() == ',' {
			p.i++
			continue
		}
		if p.peek() != ']' {
			return nil, 0, errSyntax
		}
		p.i++
		return vals, row + 1, nil
	}
}

func shorten(s string) string {
	const maxLen = 32
	if len(s) > maxLen {
		return s[:maxLen] + "..."
	}
	return s
}

// number advances over a JSON number (RFC 8259 grammar) and reports whether
// there was one; on false the position is unchanged.
func (p *scanner) number() bool {
	s, j := p.s, p.i
	if j < len(s) && s[j] == '-' {
		j++
	}
	switch {
	case j < len(s) && s[j] == '0':
		j++
	case j < len(s) && s[j] >= '1' && s[j] <= '9':
		j = digits(s, j)
	default:
		return false
	}
	if j < len(s) && s[j] == '.' {
		k := digits(s, j+1)
		if k == j+1 {
			return false
		}
		j = k
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		j++
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := digits(s, j)
		if k == j {
			return false
		}
		j = k
	}
	p.i = j
	return true
}

func digits(s string, j int) int {
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	return j
}
