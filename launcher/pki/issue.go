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

package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// Certificates are renewed well before they expire, so that a
	// long-lived state directory never hands out a certificate that dies
	// in the middle of a session.
	caRenewBefore   = 365 * 24 * time.Hour
	leafRenewBefore = 30 * 24 * time.Hour
	// Backdating tolerates small clock differences between processes.
	backdate = time.Hour
)

// authority is a loaded CA.
type authority struct {
	CertKey
	cert *x509.Certificate
	key  crypto.Signer
}

type leafSpec struct {
	name          string // file base name
	commonName    string
	organizations []string
	usages        []x509.ExtKeyUsage
	hosts         []string // DNS names and IP addresses
}

func (g *generator) paths(name string) CertKey {
	return CertKey{
		CertFile: filepath.Join(g.dir, name+".crt"),
		KeyFile:  filepath.Join(g.dir, name+".key"),
	}
}

func (g *generator) ensureCA(name, commonName string) (*authority, error) {
	ck := g.paths(name)
	if cert, key, err := loadPair(ck); err == nil &&
		cert.IsCA && cert.Subject.CommonName == commonName &&
		g.now().Add(caRenewBefore).Before(cert.NotAfter) {
		return &authority{CertKey: ck, cert: cert, key: key}, nil
	}

	key, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("generate key for CA %s: %w", name, err)
	}
	now := g.now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, err := g.writePair(ck, tmpl, tmpl, key, key)
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", name, err)
	}
	return &authority{CertKey: ck, cert: cert, key: key}, nil
}

func (g *generator) ensureLeaf(ca *authority, spec leafSpec) (CertKey, error) {
	ck := g.paths(spec.name)
	// A certificate signed by a CA that has since been replaced fails
	// verification here, so renewing a CA renews everything under it.
	if cert, _, err := loadPair(ck); err == nil && g.leafMatches(cert, ca, spec) {
		return ck, nil
	}

	key, err := newKey()
	if err != nil {
		return CertKey{}, fmt.Errorf("generate key for %s: %w", spec.name, err)
	}
	now := g.now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: spec.commonName, Organization: spec.organizations},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(leafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: spec.usages,
	}
	tmpl.DNSNames, tmpl.IPAddresses = splitHosts(spec.hosts)
	if _, err := g.writePair(ck, tmpl, ca.cert, key, ca.key); err != nil {
		return CertKey{}, fmt.Errorf("create certificate %s: %w", spec.name, err)
	}
	return ck, nil
}

// leafMatches reports whether an existing certificate can be kept: it
// chains to ca for its purpose, is not close to expiry, and carries exactly
// the subject and names spec asks for (so that changing, say, the agent's
// hosts reissues its certificate).
func (g *generator) leafMatches(cert *x509.Certificate, ca *authority, spec leafSpec) bool {
	now := g.now()
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: spec.usages}); err != nil {
		return false
	}
	if !now.Add(leafRenewBefore).Before(cert.NotAfter) {
		return false
	}
	dns, ips := splitHosts(spec.hosts)
	return cert.Subject.CommonName == spec.commonName &&
		sameSet(cert.Subject.Organization, spec.organizations) &&
		sameSet(cert.DNSNames, dns) &&
		sameSet(ipStrings(cert.IPAddresses), ipStrings(ips))
}

func (g *generator) ensureServiceAccountKey() (private, public string, err error) {
	private = filepath.Join(g.dir, "sa.key")
	public = filepath.Join(g.dir, "sa.pub")

	var key crypto.Signer
	key, err = loadKey(private)
	if err != nil {
		if key, err = newKey(); err != nil {
			return "", "", fmt.Errorf("generate service-account key: %w", err)
		}
		if err := writeKey(private, key); err != nil {
			return "", "", fmt.Errorf("write service-account key: %w", err)
		}
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", "", fmt.Errorf("encode service-account public key: %w", err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	// The public half is derived, so it is rewritten only when it differs:
	// an unchanged file keeps its modification time.
	if existing, err := os.ReadFile(public); err != nil || !bytes.Equal(existing, pub) {
		if err := atomicfile.Write(public, pub, 0o644); err != nil {
			return "", "", fmt.Errorf("write service-account public key: %w", err)
		}
	}
	return private, public, nil
}

// writePair signs tmpl with signer (as parent) and writes the key, then
// the certificate, so that a crash in between leaves a pair that fails
// validation rather than one that looks valid.
func (g *generator) writePair(ck CertKey, tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pick serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	if err := writeKey(ck.KeyFile, key); err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := atomicfile.Write(ck.CertFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write certificate: %w", err)
	}
	return cert, nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func splitHosts(hosts []string) (dns []string, ips []net.IP) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	return dns, ips
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

func sameSet(a, b []string) bool {
	return slices.Equal(dedupe(a), dedupe(b))
}

// dedupe returns the sorted distinct elements of s.
func dedupe(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
