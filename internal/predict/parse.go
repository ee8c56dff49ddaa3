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

// parseInputs parses a request body of the form {"inputs": [[x0, x1, x2, x3], ...]}.
// It returns the values of the first maxRows rows, flattened (NumFeatures per
// row), and the total number of rows. Rows beyond maxRows are validated and
// counted but not kept; more than maxRows rows is an error.
//
// It is encoding/json in three steps. The whole body is checked first, so a
// body that is not JSON is reported as a syntax error with its line and
// column, whatever shape problem comes before it. The object's members are
// then read one by one with Decoder.Token, and the value of "inputs" is
// decoded into generic values with UseNumber. Decoding into a struct would
// be shorter, but it matches field names case-insensitively, keeps the last
// of duplicate fields and lets json.Number take a quoted number ("0.4"):
// each would accept a request that is probably a client's mistake. Last, a
// validation loop checks every row in order and names the row and column at
// fault.
//
// route ("POST /predict") and hint (may be empty) complete the too-many-rows
// message.
func parseInputs(body string, maxRows int, route, hint string) ([]float64, int, *requestError) {
	if strings.TrimLeft(body, " \t\r\n") == "" {
		return nil, 0, badRequest(reasonEmptyBody, `request body is empty: send {"inputs": [[%d numbers], ...]}`, NumFeatures)
	}
	if se := syntaxError(body); se != nil {
		return nil, 0, se
	}
	// From here on body is exactly one JSON value: Token and Decode cannot
	// fail, but their errors are still checked rather than assumed away.
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, 0, badRequest(reasonInvalidJSON, "invalid JSON")
	}
	if tok != json.Delim('{') {
		return nil, 0, badRequest(reasonWrongShape, `request body must be a JSON object like {"inputs": [[%d numbers], ...]}, got %s`, NumFeatures, kind(tok))
	}
	var (
		vals []float64
		rows int
		seen bool
	)
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		if err != nil || !ok {
			return nil, 0, badRequest(reasonInvalidJSON, "invalid JSON")
		}
		if name != "inputs" {
			return nil, 0, badRequest(reasonUnknownField, `unknown field %s: the only field is "inputs"`, quoteField(name))
		}
		if seen {
			return nil, 0, badRequest(reasonWrongShape, `duplicate field "inputs"`)
		}
		seen = true
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, 0, badRequest(reasonInvalidJSON, "invalid JSON")
		}
		var rerr *requestError
		if vals, rows, rerr = validateInputs(v, maxRows); rerr != nil {
			return nil, 0, rerr
		}
	}
	switch {
	case !seen:
		return nil, 0, badRequest(reasonWrongShape, `missing field "inputs": send {"inputs": [[%d numbers], ...]}`, NumFeatures)
	case rows == 0:
		return nil, 0, badRequest(reasonEmptyInputs, `"inputs" is empty: send at least one row of %d numbers`, NumFeatures)
	case rows > maxRows:
		return nil, rows, badRequest(reasonTooManyRows, "too many rows: got %d, at most %d per request on %s%s", rows, maxRows, route, hint)
	}
	return vals, rows, nil
}

// validateInputs checks the decoded value of "inputs" row by row and returns
// the first maxRows rows' numbers, flattened, and the number of rows.
func validateInputs(v any, maxRows int) ([]float64, int, *requestError) {
	rows, ok := v.([]any)
	if !ok {
		return nil, 0, badRequest(reasonWrongShape, `"inputs" must be an array of rows, each an array of %d numbers, got %s`, NumFeatures, kind(v))
	}
	vals := make([]float64, 0, min(len(rows), maxRows)*NumFeatures)
	for r, rv := range rows {
		row, ok := rv.([]any)
		if !ok {
			return nil, 0, badRequest(reasonWrongShape, "row %d (inputs[%d]) must be an array of %d numbers, got %s", r, r, NumFeatures, kind(rv))
		}
		for c, x := range row {
			n, ok := x.(json.Number)
			if !ok {
				return nil, 0, badRequest(reasonNotANumber, "row %d, column %d (inputs[%d][%d]): want a number, got %s", r, c, r, c, kind(x))
			}
			f, err := strconv.ParseFloat(string(n), 64)
			if err != nil { // ErrRange: encoding/json checked the grammar
				return nil, 0, badRequest(reasonNotFinite, "row %d, column %d (inputs[%d][%d]): number %s is out of range (numbers must be finite float64 values)",
					r, c, r, c, shorten(string(n)))
			}
			if r < maxRows && c < NumFeatures {
				vals = append(vals, f)
			}
		}
		if len(row) != NumFeatures {
			return nil, 0, badRequest(reasonFeatureCount, "row %d (inputs[%d]) has %d numbers, want %d (input_features)", r, r, len(row), NumFeatures)
		}
	}
	return vals, len(rows), nil
}

// kind names the JSON value v was decoded from (with UseNumber), or the
// value a Decoder.Token starts.
func kind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	}
	return "an unknown value"
}

// syntaxError reports where body stops being JSON, or nil when it is valid.
// Trailing data after the value is a syntax error too.
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

// quoteField quotes an unknown field's name for an error message, cut short
// when long.
func quoteField(name string) string {
	const maxLen = 64
	if len(name) > maxLen {
		return strconv.Quote(name[:maxLen]) + "..."
	}
	return strconv.Quote(name)
}

// shorten cuts a number's text for an error message.
func shorten(s string) string {
	const maxLen = 32
	if len(s) > maxLen {
		return s[:maxLen] + "..."
	}
	return s
}
