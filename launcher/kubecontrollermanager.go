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
	"fmt"

	"github.com/vessel-vm/vessel/launcher/pki"
)

const kubeControllerManagerName = "kube-controller-manager"

// The control plane runs the upstream kube-controller-manager because Vessel
// relies on three of its controllers like any Kubernetes API does: the
// garbage collector (snapshots owned by a VM go with it), the namespace
// controller (deleting a namespace deletes its VMs), and ClusterRole
// aggregation (vessel.dev:edit flows into the built-in edit role).
//
// It runs as the admin: per-controller service account credentials need a
// token signer and service accounts, which a single-machine control plane
// gains nothing from.
func (c *Cluster) kubeControllerManagerArgs(serving pki.CertKey) []string {
	return []string{
		"--tls-cert-file=" + serving.CertFile,
		"--tls-private-key-file=" + serving.KeyFile,
		"--kubeconfig=" + c.Kubeconfig(AdminKubeconfig),
		"--authentication-kubeconfig=" + c.Kubeconfig(AdminKubeconfig),
		"--authorization-kubeconfig=" + c.Kubeconfig(AdminKubeconfig),
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", c.Ports.ControllerMgr),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + c.PKI.ServiceAccountKeyFile,
		"--root-ca-file=" + c.PKI.ClusterCA.CertFile,
		"--cluster-signing-cert-file=" + c.PKI.ClusterCA.CertFile,
		"--cluster-signing-key-file=" + c.PKI.ClusterCA.KeyFile,
		// No cloud, no nodes, no pods: only the controllers that act on API
		// objects in general.
		"--controllers=garbage-collector-controller,namespace-controller,clusterrole-aggregation-controller,serviceaccount-controller,serviceaccount-token-controller",
		"--profiling=false",
	}
}

func (c *Cluster) kubeControllerManagerComponent() (*component, error) {
	serving, err := c.PKI.EnsureServingCert(kubeControllerManagerName, []string{"127.0.0.1", "localhost"})
	if err != nil {
		return nil, err
	}
	client, err := c.verifyingHTTPClient(c.PKI.ClusterCA.CertFile)
	if err != nil {
		return nil, err
	}
	return &component{
		name:   kubeControllerManagerName,
		binary: c.opts.KubeControllerManagerBinary,
		args:   c.kubeControllerManagerArgs(serving),
		after:  []string{kubeAPIServerName},
		ready: func(ctx context.Context, p *process) error {
			// /healthz is always allowed, without authentication.
			return waitReady(ctx, p, client, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Ports.ControllerMgr), c.opts.ReadyTimeout)
		},
	}, nil
}
