/*
Copyright The Vessel Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package agentcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA writes a CA certificate and key and returns their paths.
func testCA(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vessel-agent-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// The issued certificate is what the vessel-apiserver accepts for hv1 and
// only for hv1, for serving only, and never outlives the signer's bound.
func TestSignIssuesAServingCertificateForTheHypervisor(t *testing.T) {
	caFile, keyFile := testCA(t)
	signer, err := NewSigner(caFile, keyFile, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	roots.AppendCertsFromPEM(caPEM)
	req := request(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:vessel-agent:hv1"}, DNSNames: []string{"hv1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}})

	for _, tc := range []struct {
		name    string
		seconds *int32
		want    time.Duration
	}{
		{"no lifetime asked", nil, 24 * time.Hour},
		{"a shorter lifetime", ptr(int32(3600)), time.Hour},
		{"a longer lifetime is cut", ptr(int32(400 * 24 * 3600)), 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := csrFor(agentOfHV1, req, servingUsages)
			csr.Spec.ExpirationSeconds = tc.seconds
			out, err := signer.Sign(csr)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(out)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "hv1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("not a serving certificate for hv1: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "hv2"}); err == nil {
				t.Error("the certificate is valid for hv2 too")
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
				t.Error("the certificate is good for client auth")
			}
			if cert.IsCA || cert.Subject.CommonName != "system:vessel-agent:hv1" {
				t.Errorf("IsCA %v, CN %q", cert.IsCA, cert.Subject.CommonName)
			}
			if got := cert.NotAfter.Sub(cert.NotBefore) - backdate; got < tc.want-time.Minute || got > tc.want+time.Minute {
				t.Errorf("lifetime %v, want %v", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
