package upstashlocal_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/local/upstashlocal"
)

func TestSelfSignedCert(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cert, certPEM, err := upstashlocal.SelfSignedCert([]string{"127.0.0.1", "::1", "localhost"}, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("certPEM is not one CERTIFICATE block:\n%s", certPEM)
	}
	parsed, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, ip := range parsed.IPAddresses {
		ips = append(ips, ip.String())
	}
	type summary struct {
		IPs, DNS            []string
		NotBefore, NotAfter time.Time
		Curve               string
		SameAsLeaf          bool
	}
	got := summary{IPs: ips, DNS: parsed.DNSNames, NotBefore: parsed.NotBefore.UTC(), NotAfter: parsed.NotAfter.UTC(),
		SameAsLeaf: cert.Leaf != nil && cert.Leaf.Equal(parsed)}
	if pub, ok := parsed.PublicKey.(*ecdsa.PublicKey); ok && pub.Curve == elliptic.P256() {
		got.Curve = "P-256"
	}
	want := summary{IPs: []string{"127.0.0.1", "::1"}, DNS: []string{"localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), Curve: "P-256", SameAsLeaf: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("certificate (-want +got):\n%s", diff)
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatal("AppendCertsFromPEM refused the certificate")
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := parsed.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := parsed.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots, CurrentTime: now}); err == nil {
		t.Error("verify for example.com succeeded, want a name mismatch")
	}
}

func TestSelfSignedCertBadInput(t *testing.T) {
	tests := []struct {
		name     string
		hosts    []string
		validFor time.Duration
		wantErr  string
	}{
		{"no hosts", nil, time.Hour, "no hosts given"},
		{"zero validity", []string{"localhost"}, 0, "validity 0s is not positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := upstashlocal.SelfSignedCert(tt.hosts, time.Now(), tt.validFor)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestServeTLS serves the Upstash API over HTTPS with a self-signed
// certificate: a client trusting the PEM gets through, one that does not is
// refused in the handshake.
func TestServeTLS(t *testing.T) {
	cert, certPEM, err := upstashlocal.SelfSignedCert([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := upstashlocal.New(upstashlocal.Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	hs.StartTLS()
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Close()
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	tests := []struct {
		name    string
		roots   *x509.CertPool
		want    string
		wantErr string
	}{
		{name: "trusted", roots: roots, want: `200 {"result":"PONG"}`},
		{name: "system roots", roots: nil, wantErr: "certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tt.roots}}
			t.Cleanup(tr.CloseIdleConnections)
			req, _ := http.NewRequest(http.MethodPost, hs.URL, strings.NewReader(`["PING"]`))
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if got := resp.Status[:3] + " " + string(body); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
