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

// Package servingcert gets the agent's stream server certificate through
// the Kubernetes CSR API and keeps it fresh, as the kubelet does with
// --rotate-server-certificates: the agent asks signer
// vessel.dev/agent-serving for CN system:vessel-agent:<hypervisor> and DNS
// name <hypervisor>, the vessel-apiserver approves and signs it only for
// the agent's own hypervisor, and client-go's certificate manager renews it
// before it expires. The key never leaves the node.
package servingcert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/certificate"
)

const (
	// SignerName is the signer the vessel-apiserver serves
	// (controller/agentcert).
	SignerName = "vessel.dev/agent-serving"
	// userPrefix precedes the hypervisor name in the certificate's CN,
	// the agent's identity.
	userPrefix = "system:vessel-agent:"
	// pairName names the files in the directory:
	// vessel-agent-serving-current.pem holds the certificate and its key.
	pairName = "vessel-agent-serving"
)

// CurrentFile is the file in dir that holds the current certificate and
// key (one PEM file, a symlink the manager swaps on rotation).
func CurrentFile(dir string) string {
	return filepath.Join(dir, pairName+"-current.pem")
}

// Manager keeps a serving certificate for one hypervisor in a directory.
type Manager struct {
	manager certificate.Manager
	dir     string
}

// New prepares the manager of hypervisor's serving certificate, kept in
// dir, with ips (the addresses the stream server is reached at) besides the
// hypervisor's name. client creates and watches the CSRs as the agent.
func New(client kubernetes.Interface, dir, hypervisor string, ips []net.IP) (*Manager, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create serving certificate directory: %w", err)
	}
	store, err := certificate.NewFileStore(pairName, dir, dir, "", "")
	if err != nil {
		return nil, fmt.Errorf("open serving certificate store %s: %w", dir, err)
	}
	m, err := certificate.NewManager(&certificate.Config{
		ClientsetFn: func(*tls.Certificate) (kubernetes.Interface, error) { return client, nil },
		GetTemplate: func() *x509.CertificateRequest {
			return &x509.CertificateRequest{
				Subject:     pkix.Name{CommonName: userPrefix + hypervisor},
				DNSNames:    []string{hypervisor},
				IPAddresses: ips,
			}
		},
		SignerName: SignerName,
		// ECDSA keys: no key encipherment.
		Usages:           []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		CertificateStore: store,
		Name:             "stream-serving",
	})
	if err != nil {
		return nil, fmt.Errorf("serving certificate manager: %w", err)
	}
	return &Manager{manager: m, dir: dir}, nil
}

// Start requests a certificate when none is valid and rotates it from then
// on, in the background.
func (m *Manager) Start() { m.manager.Start() }

// Stop ends rotation.
func (m *Manager) Stop() { m.manager.Stop() }

// WaitForCertificate waits until there is a certificate to serve with.
func (m *Manager) WaitForCertificate(ctx context.Context) error {
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(context.Context) (bool, error) {
		return m.manager.Current() != nil, nil
	})
	if err != nil {
		return fmt.Errorf("no serving certificate from signer %s in %s yet (is the CSR approved? kubectl get csr): %w", SignerName, m.dir, err)
	}
	return nil
}

// File is the PEM file with the current certificate and key.
func (m *Manager) File() string { return CurrentFile(m.dir) }
