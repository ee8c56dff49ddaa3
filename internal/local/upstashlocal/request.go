package upstashlocal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// Request parsing. Error messages name the position and kind of the bad
// part, never its content (it may be a key or a secret value).

// parseCommand decodes a body holding one command: a JSON array whose
// elements are strings, numbers or booleans.
func parseCommand(body []byte) ([]string, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("ERR request body must be a JSON array: [command, arg1, ...], got %s", jsonKind(v))
	}
	return commandArgs(arr, "")
}

// parseBatch decodes a /pipeline or /multi-exec body: a non-empty JSON array
// of commands, each a JSON array. Nothing runs when any command is malformed.
func parseBatch(body []byte) ([][]string, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("ERR request body must be a JSON array of commands, each a JSON array, got %s", jsonKind(v))
	}
	if len(arr) == 0 {
		return nil, errors.New("ERR empty pipeline: send at least one command")
	}
	cmds := make([][]string, len(arr))
	for i, c := range arr {
		ca, ok := c.([]any)
		if !ok {
			return nil, fmt.Errorf("ERR command %d of the batch is not a JSON array (got %s)", i+1, jsonKind(c))
		}
		cmd, err := commandArgs(ca, fmt.Sprintf(" in command %d of the batch", i+1))
		if err != nil {
			return nil, err
		}
		cmds[i] = cmd
	}
	return cmds, nil
}

func decodeJSON(body []byte) (any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New("ERR empty request body: send a command as a JSON array")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("ERR request body is not valid JSON: %s", jsonErrorText(err))
	}
	if dec.More() {
		return nil, errors.New("ERR request body is not valid JSON: data after the top-level value")
	}
	return v, nil
}

// jsonErrorText describes a decoding error by kind and offset only.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	return "cannot decode"
}

// commandArgs converts one decoded command to its arguments.
func commandArgs(arr []any, where string) ([]string, error) {
	if len(arr) == 0 {
		return nil, fmt.Errorf("ERR empty command%s", where)
	}
	args := make([]string, len(arr))
	for i, a := range arr {
		switch a := a.(type) {
		case string:
			args[i] = a
		case json.Number:
			args[i] = a.String()
		case bool:
			if a {
				args[i] = "true"
			} else {
				args[i] = "false"
			}
		default:
			what := "argument"
			if i == 0 {
				what = "command name"
			}
			return nil, fmt.Errorf("ERR %s %d%s must be a string or number, got %s", what, i+1, where, jsonKind(a))
		}
	}
	return args, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "an unknown value"
}

// pathCommand builds a command from a path-style request: the escaped path's
// segments, then the body (when not empty), then query parameters other than
// _token as NAME VALUE pairs (a parameter without "=" adds just its name).
func pathCommand(escapedPath, rawQuery string, body []byte) ([]string, error) {
	segs := strings.Split(strings.TrimPrefix(escapedPath, "/"), "/")
	if len(segs) > 1 && segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1] // one trailing slash is not an argument
	}
	args := make([]string, 0, len(segs)+1)
	for i, seg := range segs {
		a, err := url.PathUnescape(seg)
		if err != nil {
			return nil, fmt.Errorf("ERR path segment %d is not valid URL encoding", i+1)
		}
		args = append(args, a)
	}
	if len(body) > 0 {
		args = append(args, string(body))
	}
	if rawQuery != "" {
		for i, kv := range strings.Split(rawQuery, "&") {
			if kv == "" {
				continue
			}
			k, v, hasValue := strings.Cut(kv, "=")
			name, err := url.QueryUnescape(k)
			if err != nil {
				return nil, fmt.Errorf("ERR query parameter %d is not valid URL encoding", i+1)
			}
			if name == "_token" {
				continue
			}
			args = append(args, name)
			if hasValue {
				val, err := url.QueryUnescape(v)
				if err != nil {
					return nil, fmt.Errorf("ERR query parameter %d is not valid URL encoding", i+1)
				}
				args = append(args, val)
			}
		}
	}
	return args, nil
}

// queryToken returns the _token query parameter.
func queryToken(rawQuery string) (string, bool) {
	for kv := range strings.SplitSeq(rawQuery, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "_token" {
			continue
		}
		t, err := url.QueryUnescape(v)
		if err != nil {
			return "", false
		}
		return t, true
	}
	return "", false
}
