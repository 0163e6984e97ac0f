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
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
	"github.com/vessel-vm/vessel/launcher/pki"
)

const (
	clusterName = "vessel"
	// AdminKubeconfig is the name Kubeconfig takes for the admin.
	AdminKubeconfig = "admin"
	// VesselAPIServerKubeconfig is the name Kubeconfig takes for the
	// vessel-apiserver's own identity.
	VesselAPIServerKubeconfig = "vessel-apiserver"
)

// Kubeconfig returns the path of the kubeconfig written for name: admin,
// vessel-apiserver, or one of the tenant users.
func (c *Cluster) Kubeconfig(name string) string {
	return c.layout.kubeconfig(name)
}

func (c *Cluster) writeKubeconfigs() error {
	identities := map[string]pki.CertKey{
		AdminKubeconfig:           c.PKI.Admin,
		VesselAPIServerKubeconfig: c.PKI.VesselAPIServerClient,
	}
	for user, ck := range c.PKI.Users {
		identities[user] = ck
	}
	for name, ck := range identities {
		if err := c.WriteKubeconfig(c.Kubeconfig(name), name, ck); err != nil {
			return err
		}
	}
	return nil
}

// WriteKubeconfig writes a kubeconfig at path that reaches kube-apiserver
// with the client certificate ck. The certificates are embedded, so that
// the file still works when copied elsewhere.
func (c *Cluster) WriteKubeconfig(path, name string, ck pki.CertKey) error {
	ca, err := os.ReadFile(c.PKI.ClusterCA.CertFile)
	if err != nil {
		return fmt.Errorf("read cluster CA for kubeconfig %s: %w", name, err)
	}
	cert, err := os.ReadFile(ck.CertFile)
	if err != nil {
		return fmt.Errorf("read client certificate for kubeconfig %s: %w", name, err)
	}
	key, err := os.ReadFile(ck.KeyFile)
	if err != nil {
		return fmt.Errorf("read client key for kubeconfig %s: %w", name, err)
	}

	contextName := name + "@" + clusterName
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{
		Server:                   c.KubeAPIServerURL(),
		CertificateAuthorityData: ca,
	}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cert,
		ClientKeyData:         key,
	}
	cfg.Contexts[contextName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: name}
	cfg.CurrentContext = contextName

	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encode kubeconfig %s: %w", name, err)
	}
	// It holds a private key.
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", name, err)
	}
	return nil
}
