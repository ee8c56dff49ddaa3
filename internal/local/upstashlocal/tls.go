package upstashlocal

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// SelfSignedCert returns a new ECDSA P-256 certificate and key for hosts
// (IP addresses or DNS names, e.g. "127.0.0.1", "localhost"), valid from an
// hour before now until validFor after now, to serve HTTPS locally. It
// signs itself and is marked as a CA, as net/http/httptest's certificate
// is, so a client trusts it directly: add certPEM to its roots
// (x509.CertPool.AppendCertsFromPEM or Config.RootCAs in Go, the
// SSL_CERT_FILE environment variable for a Go program on Linux,
// NODE_EXTRA_CA_CERTS for Node, curl --cacert). The private key stays in
// memory.
func SelfSignedCert(hosts []string, now time.Time, validFor time.Duration) (cert tls.Certificate, certPEM []byte, err error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, nil, errors.New("upstashlocal: self-signed certificate: no hosts given")
	}
	if validFor <= 0 {
		return tls.Certificate{}, nil, fmt.Errorf("upstashlocal: self-signed certificate: validity %v is not positive", validFor)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("upstashlocal: self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("upstashlocal: self-signed certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"upstash-local"}, CommonName: "upstash-local"},
		NotBefore:             now.Add(-time.Hour), // tolerate a client clock slightly behind
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("upstashlocal: self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("upstashlocal: self-signed certificate: %w", err)
	}
	cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
