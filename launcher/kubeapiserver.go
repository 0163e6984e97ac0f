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

package launcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"github.com/vessel-vm/vessel/launcher/pki"
)

const (
	kubeAPIServerName = "kube-apiserver"
	serviceCIDR       = "10.96.0.0/16"
	// serviceAccountIssuer is what in-cluster clients would expect; nothing
	// here resolves it, it only has to be a stable URL.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// KubeAPIServerURL is the secure endpoint kube-apiserver serves on.
func (c *Cluster) KubeAPIServerURL() string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.Ports.KubeAPIServer)
}

// kubeAPIServerArgs are the flags measured to work on these machines (see
// /work/shared/ENVIRONMENT.md): a secure-only server with RBAC, client
// certificates, front-proxy authentication for aggregated servers, and
// aggregator routing to endpoints rather than service IPs, since nothing
// implements service IPs on this machine.
func (c *Cluster) kubeAPIServerArgs() []string {
	certs := c.PKI
	args := []string{
		"--etcd-servers=" + c.etcdURL(),
		"--bind-address=127.0.0.1",
		// Everything stays on loopback. The endpoint reconciler refuses a
		// loopback address for the kubernetes Service, and nothing here
		// reaches kube-apiserver through that Service, so it is switched
		// off rather than letting it advertise some other interface's
		// address where nothing listens.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		fmt.Sprintf("--secure-port=%d", c.Ports.KubeAPIServer),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--tls-cert-file=" + certs.KubeAPIServer.CertFile,
		"--tls-private-key-file=" + certs.KubeAPIServer.KeyFile,
		"--client-ca-file=" + certs.ClusterCA.CertFile,
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + certs.ServiceAccountPublicKeyFile,
		"--service-account-signing-key-file=" + certs.ServiceAccountKeyFile,
		"--authorization-mode=Node,RBAC",
		"--requestheader-client-ca-file=" + certs.FrontProxyCA.CertFile,
		"--requestheader-allowed-names=" + pki.FrontProxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + certs.FrontProxyClient.CertFile,
		"--proxy-client-key-file=" + certs.FrontProxyClient.KeyFile,
		"--enable-aggregator-routing=true",
		// The default, /var/run/kubernetes, is outside the state directory
		// and shared between control planes.
		"--cert-dir=" + c.layout.runDir(),
		"--profiling=false",
		// As kubeadm does: manifests/cluster runs the agent privileged.
		"--allow-privileged=true",
	}
	return append(args, c.opts.KubeAPIServerArgs...)
}

func (c *Cluster) kubeAPIServerComponent() (*component, error) {
	client, err := c.adminHTTPClient()
	if err != nil {
		return nil, err
	}
	return &component{
		name:   kubeAPIServerName,
		binary: c.opts.KubeAPIServerBinary,
		args:   c.kubeAPIServerArgs(),
		after:  []string{etcdName},
		ready: func(ctx context.Context, p *process) error {
			return waitReady(ctx, p, client, c.KubeAPIServerURL()+"/readyz", c.opts.ReadyTimeout)
		},
	}, nil
}

// adminHTTPClient talks to kube-apiserver as the admin, verifying its
// serving certificate: readiness is probed over exactly the path clients use.
func (c *Cluster) adminHTTPClient() (*http.Client, error) {
	caPEM, err := os.ReadFile(c.PKI.ClusterCA.CertFile)
	if err != nil {
		return nil, fmt.Errorf("read cluster CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", c.PKI.ClusterCA.CertFile)
	}
	cert, err := tls.LoadX509KeyPair(c.PKI.Admin.CertFile, c.PKI.Admin.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load admin client certificate: %w", err)
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}},
	}}, nil
}
