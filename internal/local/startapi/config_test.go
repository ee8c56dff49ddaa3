package startapi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/local/startapi"
)

func TestParseEnvVars(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    startapi.EnvVars
		wantErr string
	}{
		{
			name: "sections and scalar values",
			in:   `{"Parameters": {"A": "x", "N": 12, "F": 1.5, "B": true, "Z": null}, "Fn": {"A": "y"}}`,
			want: startapi.EnvVars{"Parameters": {"A": "x", "N": "12", "F": "1.5", "B": "true", "Z": ""}, "Fn": {"A": "y"}},
		},
		{name: "empty object", in: `{}`, want: startapi.EnvVars{}},
		{name: "not JSON", in: `{"Parameters": `, wantErr: "not a JSON object"},
		{name: "array", in: `[]`, wantErr: "not a JSON object"},
		{name: "null", in: `null`, wantErr: "not a JSON object"},
		{name: "section not an object", in: `{"Parameters": "x"}`, wantErr: `"Parameters" must map variable names to values`},
		{name: "object value", in: `{"Fn": {"A": {"b": 1}}}`, wantErr: "Fn.A: must be a string, number or boolean"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := startapi.ParseEnvVars([]byte(tc.in))
			if tc.wantErr != "" {
				if !errors.Is(err, startapi.ErrBadEnvVars) || !contains(err, tc.wantErr) {
					t.Errorf("error = %v, want ErrBadEnvVars containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseParameterOverrides(t *testing.T) {
	declared := []string{"TierLimits", "LogLevel", "StageName"}
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{name: "space separated", in: "LogLevel=debug StageName=v2", want: map[string]string{"LogLevel": "debug", "StageName": "v2"}},
		{name: "comma before a declared name separates", in: "LogLevel=debug,StageName=v2", want: map[string]string{"LogLevel": "debug", "StageName": "v2"}},
		{
			name: "commas inside a value stay",
			in:   "TierLimits=anonymous=1/second:burst=5,premium=9/second,LogLevel=warn",
			want: map[string]string{"TierLimits": "anonymous=1/second:burst=5,premium=9/second", "LogLevel": "warn"},
		},
		{name: "double quotes", in: `LogLevel="a b" StageName=x`, want: map[string]string{"LogLevel": "a b", "StageName": "x"}},
		{name: "single quotes", in: `TierLimits='x=1/second,LogLevel=y'`, want: map[string]string{"TierLimits": "x=1/second,LogLevel=y"}},
		{name: "SAM long form", in: "ParameterKey=LogLevel,ParameterValue=debug ParameterKey=StageName,ParameterValue=v3", want: map[string]string{"LogLevel": "debug", "StageName": "v3"}},
		{name: "empty value", in: "LogLevel=", want: map[string]string{"LogLevel": ""}},
		{name: "empty input", in: "  ", want: map[string]string{}},
		{name: "no equals", in: "LogLevel", wantErr: "want Key=Value"},
		{name: "no key", in: "=x", wantErr: "want Key=Value"},
		{name: "unterminated quote", in: `LogLevel="x`, wantErr: "unterminated"},
		{name: "bad long form", in: "ParameterKey=LogLevel", wantErr: "ParameterValue"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := startapi.ParseParameterOverrides(tc.in, declared)
			if tc.wantErr != "" {
				if !contains(err, tc.wantErr) {
					t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func contains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}
