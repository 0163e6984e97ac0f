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
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
)

const (
	// DefaultDuration is how long an agent serving certificate lasts
	// unless the CSR asks for less. Agents rotate at 70-90% of it.
	DefaultDuration = 30 * 24 * time.Hour
	// minDuration is the shortest certificate issued, as the CSR API's
	// own lower bound on expirationSeconds.
	minDuration = 10 * time.Minute
	// backdate tolerates clocks a little behind the signer's.
	backdate = 5 * time.Minute
)

// Signer issues agent serving certificates with the agent CA, the one the
// vessel-apiserver trusts for agents.
type Signer struct {
	ca  *x509.Certificate
	key crypto.Signer
	// MaxDuration bounds every certificate's lifetime (and the CA's
	// expiry bounds it too).
	MaxDuration time.Duration
	now         func() time.Time
}

// NewSigner loads the agent CA's certificate and key (PEM files).
func NewSigner(certFile, keyFile string, maxDuration time.Duration) (*Signer, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load agent CA for signing %s certificates: %w", SignerName, err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse agent CA %s: %w", certFile, err)
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("agent CA %s is not a CA that may sign certificates", certFile)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("agent CA key %s cannot sign", keyFile)
	}
	if maxDuration <= 0 {
		maxDuration = DefaultDuration
	}
	return &Signer{ca: ca, key: key, MaxDuration: maxDuration, now: time.Now}, nil
}

// Sign issues the certificate an approved CSR asks for (Decide has checked
// it), and returns it PEM-encoded. Only the subject, names and key are
// taken from the request; usages are server auth with the key usages asked
// for, and the lifetime is the shorter of the request's and MaxDuration.
func (s *Signer) Sign(csr *certificatesv1.CertificateSigningRequest) ([]byte, error) {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil {
		return nil, errors.New("spec.request is not PEM")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse spec.request: %w", err)
	}
	duration := s.MaxDuration
	if e := csr.Spec.ExpirationSeconds; e != nil {
		duration = min(duration, max(time.Duration(*e)*time.Second, minDuration))
	}
	now := s.now()
	notAfter := earlier(now.Add(duration), s.ca.NotAfter)
	keyUsage := x509.KeyUsageDigitalSignature
	for _, u := range csr.Spec.Usages {
		if u == certificatesv1.UsageKeyEncipherment {
			keyUsage |= x509.KeyUsageKeyEncipherment
		}
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pick serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.Subject,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, req.PublicKey, s.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// earlier is the earlier of two times.
func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
