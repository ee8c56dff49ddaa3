package startapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// EnvVars is an --env-vars file in SAM's format: the key "Parameters" holds
// variables for every function, any other key (a function's logical ID)
// holds variables for that function only; a function's own entry wins.
type EnvVars map[string]map[string]string

// ErrBadEnvVars: the --env-vars file is not in SAM's format.
var ErrBadEnvVars = errors.New("bad env-vars file")

// LoadEnvVars reads and parses an --env-vars file.
func LoadEnvVars(path string) (EnvVars, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("env-vars: %w", err)
	}
	ev, err := parseEnvVars(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ev, nil
}

// parseEnvVars parses SAM's env-vars JSON: an object whose values are
// objects of variable name → value. Values may be strings, numbers or
// booleans (numbers keep their JSON text); null means "". Errors wrap
// ErrBadEnvVars and name the offending key.
func parseEnvVars(data []byte) (EnvVars, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrBadEnvVars, err)
	}
	if top == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadEnvVars)
	}
	out := EnvVars{}
	for section, raw := range top {
		var vars map[string]json.RawMessage
		if err := json.Unmarshal(raw, &vars); err != nil || vars == nil {
			return nil, fmt.Errorf("%w: %q must map variable names to values", ErrBadEnvVars, section)
		}
		m := make(map[string]string, len(vars))
		for name, v := range vars {
			s, err := scalar(v)
			if err != nil {
				return nil, fmt.Errorf("%w: %s.%s: %v", ErrBadEnvVars, section, name, err)
			}
			m[name] = s
		}
		out[section] = m
	}
	return out, nil
}

func scalar(v json.RawMessage) (string, error) {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0:
		return "", errors.New("empty value")
	case v[0] == '"':
		var s string
		err := json.Unmarshal(v, &s)
		return s, err
	case v[0] == '{' || v[0] == '[':
		return "", errors.New("must be a string, number or boolean")
	case string(v) == "null":
		return "", nil
	}
	return string(v), nil
}

// ParseParameterOverrides parses --parameter-overrides the way SAM CLI
// accepts them, so commands copied from SAM's docs work:
//
//	Key=Value Key2="value with spaces"
//	ParameterKey=Key,ParameterValue=Value
//
// Pairs are separated by whitespace. Values may be quoted ('...' or "...").
// A comma also separates pairs when what follows is a declared parameter
// name and "=" (LogLevel=debug,StageName=v2), and is part of the value
// otherwise, so list-like values need no quoting:
// TierLimits=anonymous=1/second,premium=9/second is one pair. declared are
// the template's parameter names.
func ParseParameterOverrides(s string, declared []string) (map[string]string, error) {
	known := map[string]bool{}
	for _, d := range declared {
		known[d] = true
	}
	out := map[string]string{}
	toks, err := splitQuoted(s)
	if err != nil {
		return nil, err
	}
	for _, tok := range toks {
		if strings.HasPrefix(tok, "ParameterKey=") {
			k, v, ok := strings.Cut(strings.TrimPrefix(tok, "ParameterKey="), ",ParameterValue=")
			if !ok || k == "" {
				return nil, fmt.Errorf("parameter override %q: want ParameterKey=K,ParameterValue=V", tok)
			}
			out[k] = unquote(v)
			continue
		}
		for _, pair := range splitPairs(tok, known) {
			k, v, ok := strings.Cut(pair, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("parameter override %q: want Key=Value", pair)
			}
			out[k] = unquote(v)
		}
	}
	return out, nil
}

// splitQuoted splits s on whitespace outside single or double quotes,
// keeping the quotes in the tokens.
func splitQuoted(s string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	var quote rune
	inTok := false
	for _, c := range s {
		switch {
		case quote != 0:
			cur.WriteRune(c)
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
			cur.WriteRune(c)
			inTok = true
		case c == ' ' || c == '\t' || c == '\n':
			if inTok {
				toks = append(toks, cur.String())
				cur.Reset()
				inTok = false
			}
		default:
			cur.WriteRune(c)
			inTok = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("parameter overrides: unterminated %c quote", quote)
	}
	if inTok {
		toks = append(toks, cur.String())
	}
	return toks, nil
}

// splitPairs splits a token at commas followed by a known parameter name and
// "=", outside quotes.
func splitPairs(tok string, known map[string]bool) []string {
	var parts []string
	start := 0
	var quote byte
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == ',':
			rest := tok[i+1:]
			if name, _, ok := strings.Cut(rest, "="); ok && known[name] {
				parts = append(parts, tok[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, tok[start:])
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// applyEnvVars computes each function's environment: the template's
// variables, overridden by ev's "Parameters" and then by the function's own
// section, for variables the template declares only (SAM ignores the rest;
// we return a warning for each). declared maps function logical IDs to
// their template environment.
func applyEnvVars(declared map[string]map[string]string, ev EnvVars) (map[string]map[string]string, []string) {
	out := make(map[string]map[string]string, len(declared))
	for id, env := range declared {
		m := make(map[string]string, len(env))
		for k, v := range env {
			m[k] = v
		}
		out[id] = m
	}
	var warnings []string
	globalUsed := map[string]bool{}
	for id, env := range out {
		for k, v := range ev["Parameters"] {
			if _, ok := env[k]; ok {
				env[k] = v
				globalUsed[k] = true
			}
		}
		for k, v := range ev[id] {
			if _, ok := env[k]; ok {
				env[k] = v
			} else {
				warnings = append(warnings, fmt.Sprintf("env-vars: %s.%s is ignored: the template does not declare %s for %s", id, k, k, id))
			}
		}
	}
	for k := range ev["Parameters"] {
		if !globalUsed[k] {
			warnings = append(warnings, fmt.Sprintf("env-vars: Parameters.%s is ignored: no function in the template declares it", k))
		}
	}
	for section := range ev {
		if _, ok := declared[section]; !ok && section != "Parameters" {
			warnings = append(warnings, fmt.Sprintf("env-vars: section %q names no function of the template; it is ignored", section))
		}
	}
	sort.Strings(warnings)
	return out, warnings
}
