package upstash

import (
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testToken = "AX_secretTOKEN_0123456789abcdefXYZ="

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr error
		wantMsg string // substring of the error
	}{
		{name: "both set", env: map[string]string{EnvURL: "https://eu1-x.upstash.io", EnvToken: testToken},
			want: Config{URL: "https://eu1-x.upstash.io", Token: testToken}},
		{name: "white space trimmed", env: map[string]string{EnvURL: " https://eu1-x.upstash.io/\n", EnvToken: testToken + "\n"},
			want: Config{URL: "https://eu1-x.upstash.io/", Token: testToken}},
		{name: "local http", env: map[string]string{EnvURL: "http://127.0.0.1:8079", EnvToken: "t"},
			want: Config{URL: "http://127.0.0.1:8079", Token: "t"}},
		{name: "neither set", env: nil, wantErr: ErrNotConfigured},
		{name: "both empty", env: map[string]string{EnvURL: " ", EnvToken: ""}, wantErr: ErrNotConfigured},
		{name: "only URL", env: map[string]string{EnvURL: "https://x.upstash.io"}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_URL is set but UPSTASH_REDIS_REST_TOKEN is not"},
		{name: "only token", env: map[string]string{EnvToken: testToken}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_TOKEN is set but UPSTASH_REDIS_REST_URL is not"},
		{name: "no scheme", env: map[string]string{EnvURL: "eu1-x.upstash.io", EnvToken: testToken}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_URL must start with https://"},
		{name: "redis scheme", env: map[string]string{EnvURL: "rediss://default:pw@x.upstash.io:6379", EnvToken: testToken}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_URL must start with https://"},
		{name: "unparsable", env: map[string]string{EnvURL: "https://x y.io/%zz", EnvToken: testToken}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_URL is not a valid URL"},
		{name: "no host", env: map[string]string{EnvURL: "https:///path", EnvToken: testToken}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_URL has no host"},
		{name: "token in query", env: map[string]string{EnvURL: "https://x.upstash.io/?_token=" + testToken, EnvToken: testToken}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_URL must not contain a query"},
		{name: "user info", env: map[string]string{EnvURL: "https://u:" + testToken + "@x.upstash.io", EnvToken: testToken}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_URL must not contain user info"},
		{name: "fragment", env: map[string]string{EnvURL: "https://x.upstash.io/#f", EnvToken: testToken}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_URL must not contain a fragment"},
		{name: "token with space", env: map[string]string{EnvURL: "https://x.upstash.io", EnvToken: "AX secret"}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_TOKEN contains a character that cannot be sent in an HTTP header"},
		{name: "token with non-ASCII", env: map[string]string{EnvURL: "https://x.upstash.io", EnvToken: "AXsecrét"}, wantErr: ErrInvalidConfig,
			wantMsg: "UPSTASH_REDIS_REST_TOKEN contains a character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigFromEnv(envOf(tt.env))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error = %q, want it to contain %q", err, tt.wantMsg)
				}
				for _, secret := range []string{testToken, "secret", "secrét"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q contains the token", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantMsg string
	}{
		{"empty URL", Config{Token: testToken}, "upstash: invalid configuration: URL is empty"},
		{"bad URL", Config{URL: "ftp://" + testToken + "@h", Token: testToken}, "upstash: invalid configuration: URL must start with https://"},
		{"URL with token in query", Config{URL: "https://h/?_token=" + testToken, Token: testToken}, "upstash: invalid configuration: URL must not contain a query"},
		{"unparsable URL with token", Config{URL: "https://h/" + testToken + "%", Token: testToken}, "upstash: invalid configuration: URL is not a valid URL"},
		{"empty token", Config{URL: "https://h"}, "upstash: invalid configuration: token is empty"},
		{"token with newline", Config{URL: "https://h", Token: testToken + "\r\nX-Evil: 1"}, "upstash: invalid configuration: token contains a character"},
		{"negative MaxReplyBytes", Config{URL: "https://h", Token: testToken, MaxReplyBytes: -1}, "upstash: invalid configuration: MaxReplyBytes is negative"},
		{"RootCAs with HTTPClient", Config{URL: "https://h", Token: testToken, RootCAs: x509.NewCertPool(), HTTPClient: &http.Client{}},
			"upstash: invalid configuration: RootCAs and HTTPClient are both set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if err == nil {
				t.Fatalf("New returned %v, want an error", c)
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Errorf("error = %q, want ErrInvalidConfig with prefix %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestNewEndpoint(t *testing.T) {
	tests := []struct{ url, want string }{
		{"https://eu1-x.upstash.io", "https://eu1-x.upstash.io/"},
		{"https://eu1-x.upstash.io/", "https://eu1-x.upstash.io/"},
		{"http://127.0.0.1:8079/prefix//", "http://127.0.0.1:8079/prefix/"},
		{"http://h/a%2Fb/", "http://h/a%2Fb/"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := New(Config{URL: tt.url, Token: testToken})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.url.String(); got != tt.want {
				t.Errorf("endpoint = %s, want %s", got, tt.want)
			}
		})
	}
}
