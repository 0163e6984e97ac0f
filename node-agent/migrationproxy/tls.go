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

package migrationproxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// agentPrefix starts the common name of every agent's serving certificate.
const agentPrefix = "system:vessel-agent:"

// Credentials are an agent's TLS identity toward other agents: its serving
// certificate (rotated underneath) and the CA that issues every agent's.
type Credentials struct {
	// Certificate returns the current serving certificate.
	Certificate func() (*tls.Certificate, error)
	// CAs issue the agents' serving certificates.
	CAs *x509.CertPool
}

// LoadCAs reads the PEM CA bundle at path.
func LoadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in agent CA file %s", path)
	}
	return pool, nil
}

// serverTLS admits only peers with an agent serving certificate of the CA;
// which hypervisor may do what is checked per connection (peerHypervisor).
func (c Credentials) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.Certificate() },
		ClientAuth:     tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := c.verifyPeer(raw)
			return err
		},
	}
}

// clientTLS verifies the target's serving certificate for its hypervisor
// name and presents this agent's.
func (c Credentials) clientTLS(target string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: target,
		RootCAs:    c.CAs,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.Certificate()
		},
	}
}

// verifyPeer checks raw is an agent serving certificate chain from the CA
// and returns the hypervisor it was issued to.
func (c Credentials) verifyPeer(raw [][]byte) (string, error) {
	if len(raw) == 0 {
		return "", errors.New("no client certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		cert, err := x509.ParseCertificate(r)
		if err != nil {
			return "", fmt.Errorf("parse peer certificate: %w", err)
		}
		certs[i] = cert
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, cert := range certs[1:] {
		inter.AddCert(cert)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.CAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return "", fmt.Errorf("peer certificate: %w", err)
	}
	name, ok := strings.CutPrefix(leaf.Subject.CommonName, agentPrefix)
	if !ok || name == "" {
		return "", fmt.Errorf("peer certificate %q is not an agent's", leaf.Subject.CommonName)
	}
	if err := leaf.VerifyHostname(name); err != nil {
		return "", fmt.Errorf("peer certificate of %s: %w", name, err)
	}
	return name, nil
}

// peerHypervisor is the hypervisor whose agent is at the other end of the
// verified connection.
func (c Credentials) peerHypervisor(conn *tls.Conn) (string, error) {
	st := conn.ConnectionState()
	raw := make([][]byte, len(st.PeerCertificates))
	for i, cert := range st.PeerCertificates {
		raw[i] = cert.Raw
	}
	return c.verifyPeer(raw)
}
