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

package cluster

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

// Names that other components must agree on.
const (
	// FrontProxyClientName is the CN kube-apiserver's aggregator presents
	// to aggregated servers; they accept X-Remote-* headers only from it.
	FrontProxyClientName = "front-proxy-client"
	// VesselAPIServerUser is the identity of the vessel-apiserver toward
	// kube-apiserver (delegated authentication and authorization). It is the
	// name of the ServiceAccount the apiserver runs as in a real cluster, so
	// the RBAC in manifests/ binds the local process unchanged.
	VesselAPIServerUser = "system:serviceaccount:vessel-system:vessel-apiserver"
	// VesselAPIServerServiceHost is the name the aggregator dials for the
	// vessel APIService: <service>.<namespace>.svc.
	VesselAPIServerServiceHost = "vessel-apiserver.vessel-system.svc"
	// AgentClientName is the CN the vessel-apiserver presents to agents'
	// stream servers when it proxies a console.
	AgentClientName = "vessel-apiserver"
	adminUser       = "kubernetes-admin"
	mastersGroup    = "system:masters"
	serviceCIDRHost = "10.96.0.1" // first address of --service-cluster-ip-range
)

// CertKey names a certificate and its private key, both PEM files.
type CertKey struct {
	CertFile string
	KeyFile  string
}

// PKI is every certificate and key the local control plane uses, as files
// under Dir. All keys are ECDSA P-256: fast to generate and accepted by
// every component, including as the service-account signing key (ES256).
type PKI struct {
	Dir string

	// ClusterCA signs kube-apiserver's and vessel-apiserver's serving
	// certificates and every client certificate kube-apiserver accepts
	// (--client-ca-file). It is also the APIService caBundle.
	ClusterCA CertKey
	// FrontProxyCA signs only the aggregator's client certificate, so that
	// no ordinary user certificate can assert X-Remote-User headers.
	FrontProxyCA CertKey
	// AgentCA is the trust root of the console path between the
	// vessel-apiserver and agents; it is separate from ClusterCA so that an
	// agent trusts nothing else the cluster CA signed.
	AgentCA CertKey

	KubeAPIServer    CertKey // serving
	FrontProxyClient CertKey // CN front-proxy-client
	Admin            CertKey // O=system:masters
	// Users holds one client certificate per tenant user, keyed by name.
	Users map[string]CertKey

	ServiceAccountKeyFile       string // private, PKCS#8
	ServiceAccountPublicKeyFile string // public, PKIX

	VesselAPIServer       CertKey // serving, SAN VesselAPIServerServiceHost
	VesselAPIServerClient CertKey // client toward kube-apiserver
	AgentServer           CertKey // agent stream server, signed by AgentCA
	AgentClient           CertKey // vessel-apiserver toward agents, signed by AgentCA

	gen *pkiGenerator
	cas map[string]*authority
}

// PKIOptions says what varies between installations.
type PKIOptions struct {
	// Users get one client certificate each (CN = name, no groups).
	Users []string
	// AgentHosts are extra names or IP addresses for the agent's serving
	// certificate, besides localhost, 127.0.0.1 and the machine's hostname.
	AgentHosts []string
}

// EnsurePKI makes sure dir holds valid PKI for opts, and returns it.
// Existing files are kept when they still parse, chain to their CA, match
// what opts asks for and are not close to expiry; anything else is
// regenerated, and a regenerated CA regenerates everything it signed.
func EnsurePKI(dir string, opts PKIOptions) (*PKI, error) {
	return (&pkiGenerator{dir: dir, now: time.Now}).ensure(opts)
}

// pkiGenerator carries the clock so that tests can move it.
type pkiGenerator struct {
	dir string
	now func() time.Time
}

func (g *pkiGenerator) ensure(opts PKIOptions) (*PKI, error) {
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create PKI directory: %w", err)
	}
	p := &PKI{Dir: g.dir, Users: map[string]CertKey{}, gen: g, cas: map[string]*authority{}}

	for _, ca := range []struct {
		file, cn string
		into     *CertKey
	}{
		{"ca", "vessel-cluster-ca", &p.ClusterCA},
		{"front-proxy-ca", "vessel-front-proxy-ca", &p.FrontProxyCA},
		{"agent-ca", "vessel-agent-ca", &p.AgentCA},
	} {
		a, err := g.ensureCA(ca.file, ca.cn)
		if err != nil {
			return nil, err
		}
		p.cas[ca.file] = a
		*ca.into = a.CertKey
	}

	hostname, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("read hostname for the agent certificate: %w", err)
	}
	serving := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	leaves := []struct {
		ca   string
		spec leafSpec
		into *CertKey
	}{
		{"ca", leafSpec{
			name: "kube-apiserver", commonName: "kube-apiserver", usages: serving,
			hosts: []string{
				"127.0.0.1", "localhost", serviceCIDRHost,
				"kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster.local",
			},
		}, &p.KubeAPIServer},
		{"front-proxy-ca", leafSpec{
			name: "front-proxy-client", commonName: FrontProxyClientName, usages: client,
		}, &p.FrontProxyClient},
		{"ca", leafSpec{
			name: "admin", commonName: adminUser, organizations: []string{mastersGroup}, usages: client,
		}, &p.Admin},
		{"ca", leafSpec{
			name: "vessel-apiserver", commonName: "vessel-apiserver", usages: serving,
			hosts: []string{VesselAPIServerServiceHost, "127.0.0.1", "localhost"},
		}, &p.VesselAPIServer},
		{"ca", leafSpec{
			name: "vessel-apiserver-client", commonName: VesselAPIServerUser, usages: client,
			organizations: []string{"system:serviceaccounts", "system:serviceaccounts:vessel-system"},
		}, &p.VesselAPIServerClient},
		{"agent-ca", leafSpec{
			name: "agent-server", commonName: "vessel-agent", usages: serving,
			hosts: dedupe(append([]string{"127.0.0.1", "localhost", hostname}, opts.AgentHosts...)),
		}, &p.AgentServer},
		{"agent-ca", leafSpec{
			name: "agent-client", commonName: AgentClientName, usages: client,
		}, &p.AgentClient},
	}
	for _, l := range leaves {
		ck, err := g.ensureLeaf(p.cas[l.ca], l.spec)
		if err != nil {
			return nil, err
		}
		*l.into = ck
	}
	for _, user := range opts.Users {
		ck, err := p.EnsureClientCert(user, user, nil)
		if err != nil {
			return nil, err
		}
		p.Users[user] = ck
	}

	p.ServiceAccountKeyFile, p.ServiceAccountPublicKeyFile, err = g.ensureServiceAccountKey()
	if err != nil {
		return nil, err
	}
	return p, nil
}

// EnsureClientCert makes sure dir holds a client certificate for user (with
// the given groups), signed by the cluster CA, in <name>.crt and <name>.key.
// Later components (agents as system:vessel-agent:<hypervisor>, for
// instance) get their identities this way.
func (p *PKI) EnsureClientCert(name, user string, groups []string) (CertKey, error) {
	return p.gen.ensureLeaf(p.cas["ca"], leafSpec{
		name: name, commonName: user, organizations: groups,
		usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

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

func (g *pkiGenerator) paths(name string) CertKey {
	return CertKey{
		CertFile: filepath.Join(g.dir, name+".crt"),
		KeyFile:  filepath.Join(g.dir, name+".key"),
	}
}

func (g *pkiGenerator) ensureCA(name, commonName string) (*authority, error) {
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

func (g *pkiGenerator) ensureLeaf(ca *authority, spec leafSpec) (CertKey, error) {
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
func (g *pkiGenerator) leafMatches(cert *x509.Certificate, ca *authority, spec leafSpec) bool {
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

func (g *pkiGenerator) ensureServiceAccountKey() (private, public string, err error) {
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
		if err := writeFileAtomic(public, pub, 0o644); err != nil {
			return "", "", fmt.Errorf("write service-account public key: %w", err)
		}
	}
	return private, public, nil
}

// writePair signs tmpl with signer (as parent) and writes the key, then
// the certificate, so that a crash in between leaves a pair that fails
// validation rather than one that looks valid.
func (g *pkiGenerator) writePair(ck CertKey, tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) (*x509.Certificate, error) {
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
	if err := writeFileAtomic(ck.CertFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write certificate: %w", err)
	}
	return cert, nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode private key: %w", err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write private key: %w", err)
	}
	return nil
}

// loadPair reads a certificate and its key and checks that they belong
// together.
func loadPair(ck CertKey) (*x509.Certificate, crypto.Signer, error) {
	cert, err := loadCert(ck.CertFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := loadKey(ck.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, nil, fmt.Errorf("%s does not match %s", ck.KeyFile, ck.CertFile)
	}
	return cert, key, nil
}

func loadCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return cert, nil
}

func loadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM PKCS#8 private key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T cannot sign", path, key)
	}
	return signer, nil
}

// writeFileAtomic replaces path in one rename, so that a reader (or a
// process starting concurrently) never sees half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
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

// EnsureServingCert makes sure dir holds a serving certificate for hosts,
// signed by the cluster CA, in <name>.crt and <name>.key.
func (p *PKI) EnsureServingCert(name string, hosts []string) (CertKey, error) {
	return p.gen.ensureLeaf(p.cas["ca"], leafSpec{
		name: name, commonName: name, hosts: hosts,
		usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}
