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

// Package pki keeps the certificates and keys of the launcher's local
// control plane as PEM files in one directory: three CAs (cluster,
// front-proxy, agent), the serving and client certificates of
// kube-apiserver, the vessel-apiserver and each hypervisor's node agent, the admin and
// tenant users' client certificates, and the service-account key pair.
// Ensure is idempotent: it keeps what is still valid and reissues what is
// missing, changed or close to expiry.
package pki

import (
	"crypto/x509"
	"fmt"
	"os"
	"time"
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
	// AgentUserPrefix precedes a hypervisor's name in its agent's
	// identity and serving certificate's CN.
	AgentUserPrefix = "system:vessel-agent:"
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
	AgentClient           CertKey // vessel-apiserver toward agents, signed by AgentCA
	// AgentServers holds each hypervisor's agent stream server
	// certificate, keyed by hypervisor name and signed by AgentCA: its DNS
	// name is the hypervisor's, which is what the vessel-apiserver checks,
	// so one agent's key cannot impersonate another agent.
	AgentServers map[string]CertKey

	// EtcdCA, EtcdMembers and EtcdClient exist only with
	// Options.EtcdMembers: the vessel etcd cluster's own trust root (no
	// other certificate opens its data), each member's certificate (serving
	// clients and peers, and client to its peers) and the
	// vessel-apiservers' client certificate.
	EtcdCA      CertKey
	EtcdMembers []CertKey
	EtcdClient  CertKey

	gen *generator
	cas map[string]*authority
}

// Options says what varies between installations.
type Options struct {
	// Users get one client certificate each (CN = name, no groups).
	Users []string
	// Hypervisors get one agent serving certificate each.
	Hypervisors []string
	// AgentHosts are extra names or IP addresses for every agent's serving
	// certificate, besides the hypervisor's name and 127.0.0.1.
	AgentHosts []string
	// EtcdMembers is how many members the vessel etcd cluster has; 0 (the
	// embedded etcd) issues no etcd certificates.
	EtcdMembers int
}

// Ensure makes sure dir holds valid PKI for opts, and returns it.
// Existing files are kept when they still parse, chain to their CA, match
// what opts asks for and are not close to expiry; anything else is
// regenerated, and a regenerated CA regenerates everything it signed.
func Ensure(dir string, opts Options) (*PKI, error) {
	return (&generator{dir: dir, now: time.Now}).ensure(opts)
}

// generator carries the clock so that tests can move it.
type generator struct {
	dir string
	now func() time.Time
}

func (g *generator) ensure(opts Options) (*PKI, error) {
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create PKI directory: %w", err)
	}
	p := &PKI{Dir: g.dir, Users: map[string]CertKey{}, AgentServers: map[string]CertKey{}, gen: g, cas: map[string]*authority{}}

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
	for _, hv := range opts.Hypervisors {
		ck, err := p.EnsureAgentServingCert(hv, opts.AgentHosts)
		if err != nil {
			return nil, err
		}
		p.AgentServers[hv] = ck
	}

	if err := p.ensureEtcd(opts.EtcdMembers); err != nil {
		return nil, err
	}
	var err error
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

// EnsureServingCert makes sure dir holds a serving certificate for hosts,
// signed by the cluster CA, in <name>.crt and <name>.key.
func (p *PKI) EnsureServingCert(name string, hosts []string) (CertKey, error) {
	return p.gen.ensureLeaf(p.cas["ca"], leafSpec{
		name: name, commonName: name, hosts: hosts,
		usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// EnsureAgentServingCert makes sure dir holds the stream server
// certificate of hypervisor's agent, signed by the agent CA, in
// agent-server-<hypervisor>.crt and .key: CN system:vessel-agent:<name>
// (as the agents' CSRs in a cluster ask), DNS name the hypervisor's, and
// 127.0.0.1 and extraHosts besides.
func (p *PKI) EnsureAgentServingCert(hypervisor string, extraHosts []string) (CertKey, error) {
	return p.gen.ensureLeaf(p.cas["agent-ca"], leafSpec{
		name: "agent-server-" + hypervisor, commonName: AgentUserPrefix + hypervisor,
		hosts:  dedupe(append([]string{hypervisor, "127.0.0.1"}, extraHosts...)),
		usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// ensureEtcd issues the vessel etcd cluster's CA, one certificate per
// member and the apiservers' client certificate. Members are on loopback:
// their certificates name 127.0.0.1 and localhost, and are for serving and
// client use both, since a member dials its peers with it.
func (p *PKI) ensureEtcd(members int) error {
	if members == 0 {
		return nil
	}
	ca, err := p.gen.ensureCA("etcd-ca", "vessel-etcd-ca")
	if err != nil {
		return err
	}
	p.cas["etcd-ca"] = ca
	p.EtcdCA = ca.CertKey
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for i := range members {
		name := fmt.Sprintf("vessel-etcd-%d", i+1)
		ck, err := p.gen.ensureLeaf(ca, leafSpec{name: name, commonName: name, usages: both, hosts: []string{"127.0.0.1", "localhost"}})
		if err != nil {
			return err
		}
		p.EtcdMembers = append(p.EtcdMembers, ck)
	}
	p.EtcdClient, err = p.gen.ensureLeaf(ca, leafSpec{
		name: "vessel-etcd-client", commonName: "vessel-apiserver", usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}
