package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    options
		wantErr string
	}{
		{name: "defaults with token", args: []string{"--token", "t"},
			want: options{listen: "127.0.0.1:8079", token: "t", maxBody: upstashlocal.DefaultMaxBodyBytes, logLevel: slog.LevelInfo}},
		{name: "all flags", args: []string{"--listen", "0.0.0.0:9000", "--token=t", "--redis-addr", "127.0.0.1:6379", "--max-body-bytes", "1048576", "--log-level", "debug"},
			want: options{listen: "0.0.0.0:9000", token: "t", redisAddr: "127.0.0.1:6379", maxBody: 1 << 20, logLevel: slog.LevelDebug}},
		{name: "token from the environment", env: map[string]string{"UPSTASH_REDIS_REST_TOKEN": "envtok"},
			want: options{listen: "127.0.0.1:8079", token: "envtok", maxBody: upstashlocal.DefaultMaxBodyBytes, logLevel: slog.LevelInfo}},
		{name: "flag beats the environment", args: []string{"--token", "flagtok"}, env: map[string]string{"UPSTASH_REDIS_REST_TOKEN": "envtok"},
			want: options{listen: "127.0.0.1:8079", token: "flagtok", maxBody: upstashlocal.DefaultMaxBodyBytes, logLevel: slog.LevelInfo}},
		{name: "no token", args: nil, wantErr: "--token is required (or set UPSTASH_REDIS_REST_TOKEN)"},
		{name: "token with space", args: []string{"--token", "a b"}, wantErr: "--token must not contain white space"},
		{name: "listen without port", args: []string{"--token", "t", "--listen", "localhost"}, wantErr: `--listen "localhost" is not host:port`},
		{name: "redis addr without port", args: []string{"--token", "t", "--redis-addr", "redis"}, wantErr: `--redis-addr "redis" is not host:port`},
		{name: "zero body limit", args: []string{"--token", "t", "--max-body-bytes", "0"}, wantErr: "--max-body-bytes 0 must be positive"},
		{name: "bad body limit", args: []string{"--token", "t", "--max-body-bytes", "lots"}, wantErr: `invalid value "lots" for flag -max-body-bytes: parse error`},
		{name: "bad log level", args: []string{"--token", "t", "--log-level", "loud"}, wantErr: `--log-level "loud" is not one of debug, info, warn, error`},
		{name: "unknown flag", args: []string{"--token", "t", "--port", "1"}, wantErr: "flag provided but not defined: -port"},
		{name: "positional argument", args: []string{"--token", "t", "serve"}, wantErr: `unexpected argument "serve": all options are flags`},
		{name: "self-signed", args: []string{"--token", "t", "--tls-self-signed", "ca.pem"},
			want: options{listen: "127.0.0.1:8079", token: "t", maxBody: upstashlocal.DefaultMaxBodyBytes, logLevel: slog.LevelInfo, selfSigned: "ca.pem"}},
		{name: "own certificate", args: []string{"--token", "t", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
			want: options{listen: "127.0.0.1:8079", token: "t", maxBody: upstashlocal.DefaultMaxBodyBytes, logLevel: slog.LevelInfo, certFile: "c.pem", keyFile: "k.pem"}},
		{name: "cert without key", args: []string{"--token", "t", "--tls-cert", "c.pem"}, wantErr: "--tls-cert and --tls-key go together"},
		{name: "key without cert", args: []string{"--token", "t", "--tls-key", "k.pem"}, wantErr: "--tls-cert and --tls-key go together"},
		{name: "self-signed and own certificate", args: []string{"--token", "t", "--tls-self-signed", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
			wantErr: "--tls-self-signed and --tls-cert exclude each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(options{})); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	const secret = "s3cret-token"
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{name: "missing token", args: nil, wantCode: 2, wantStderr: "upstash-local: --token is required"},
		{name: "bad listen", args: []string{"--token", secret, "--listen", "nope"}, wantCode: 2, wantStderr: `upstash-local: --listen "nope" is not host:port`},
		{name: "unknown flag", args: []string{"--token", secret, "--verbose"}, wantCode: 2, wantStderr: "flag provided but not defined: -verbose"},
		{name: "help", args: []string{"-h"}, wantCode: 0, wantStderr: "-redis-addr host:port"},
		{name: "listen failure", args: []string{"--token", secret, "--listen", "127.0.0.1:-1"}, wantCode: 1, wantStderr: "listen failed"},
		{name: "help tells how to trust the certificate", args: []string{"-h"}, wantCode: 0, wantStderr: "SSL_CERT_FILE=FILE"},
		{name: "certificate file unwritable", args: []string{"--token", secret, "--tls-self-signed", "/nonexistent/dir/ca.pem"},
			wantCode: 1, wantStderr: "TLS setup failed"},
		{name: "certificate files missing", args: []string{"--token", secret, "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"},
			wantCode: 1, wantStderr: "--tls-cert/--tls-key: open /nonexistent/c.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, env(nil), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantStderr, stderr.String())
			}
			if strings.Contains(stderr.String()+stdout.String(), secret) {
				t.Errorf("the token appears in the output:\n%s%s", stdout.String(), stderr.String())
			}
		})
	}
}

func TestRunServesAndStops(t *testing.T) {
	const token = "run-test-token-42"
	tests := []struct {
		name   string
		redis  bool
		tls    string // "", "self-signed" or "own"
		scheme string
	}{
		{name: "embedded", scheme: "http"},
		{name: "redis-server", redis: true, scheme: "http"},
		{name: "self-signed TLS", tls: "self-signed", scheme: "https"},
		{name: "own certificate", tls: "own", scheme: "https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--listen", "127.0.0.1:0", "--log-level", "debug"}
			if tt.redis {
				args = append(args, "--redis-addr", redistest.Start(t).Addr)
			}
			caFile := filepath.Join(t.TempDir(), "ca.pem")
			switch tt.tls {
			case "self-signed":
				args = append(args, "--tls-self-signed", caFile)
			case "own":
				args = append(args, "--tls-cert", caFile, "--tls-key", writeOwnCert(t, caFile))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			outR, outW := io.Pipe()
			var stderr syncbuf.Buffer
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, args, env(map[string]string{"UPSTASH_REDIS_REST_TOKEN": token}), outW, &stderr)
				outW.Close()
			}()

			line, err := readLine(outR, 10*time.Second)
			if err != nil {
				t.Fatalf("no listening line: %v; stderr:\n%s", err, stderr.String())
			}
			base, ok := strings.CutPrefix(line, "upstash-local listening on "+tt.scheme+"://127.0.0.1:")
			if !ok {
				t.Fatalf("first stdout line = %q", line)
			}
			base = tt.scheme + "://127.0.0.1:" + base
			go io.Copy(io.Discard, outR)

			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			if tt.tls != "" {
				// The certificate file exists once the line is printed.
				pemBytes, err := os.ReadFile(caFile)
				if err != nil {
					t.Fatal(err)
				}
				roots := x509.NewCertPool()
				if !roots.AppendCertsFromPEM(pemBytes) {
					t.Fatalf("%s holds no certificate", caFile)
				}
				tr.TLSClientConfig = &tls.Config{RootCAs: roots}
				tr.ForceAttemptHTTP2 = true
			}
			req, _ := http.NewRequest(http.MethodPost, base, strings.NewReader(`["PING"]`))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if tt.tls != "" && resp.ProtoMajor != 2 {
				t.Errorf("protocol %s over TLS, want HTTP/2", resp.Proto)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != `{"result":"PONG"}` {
				t.Errorf("PING = %d %s, want 200 {\"result\":\"PONG\"}", resp.StatusCode, body)
			}

			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("exit code after shutdown = %d, want 0", code)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("run did not return after its context was canceled")
			}
			logs := stderr.String()
			for _, want := range []string{"msg=listening", "msg=request", "msg=stopped", "requests=1"} {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			if strings.Contains(logs, token) {
				t.Errorf("the token appears in the logs:\n%s", logs)
			}
		})
	}
}

// writeOwnCert writes a certificate for 127.0.0.1 to certFile and its key
// next to it, returning the key file's path: what --tls-cert and --tls-key
// take.
func writeOwnCert(t *testing.T, certFile string) string {
	t.Helper()
	cert, certPEM, err := upstashlocal.SelfSignedCert([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := certFile + ".key"
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile
}

func readLine(r io.Reader, timeout time.Duration) (string, error) {
	type result struct {
		line string
		err  error
	}
	c := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		c <- result{strings.TrimSpace(line), err}
	}()
	select {
	case res := <-c:
		return res.line, res.err
	case <-time.After(timeout):
		return "", errors.New("timed out")
	}
}
