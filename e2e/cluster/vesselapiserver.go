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
	"context"
	"fmt"
)

const vesselAPIServerName = "vessel-apiserver"

// VesselAPIServerURL is where the vessel-apiserver is to serve.
func (c *Cluster) VesselAPIServerURL() string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.Ports.VesselAPIServer)
}

// startVesselAPIServer is the hook where the vessel-apiserver joins the
// control plane. Start calls it once kube-apiserver is ready; it does
// nothing yet.
//
// What it will do, in order:
//
//  1. Apply the RBAC the server's identity (VesselAPIServerUser, kubeconfig
//     c.Kubeconfig(VesselAPIServerKubeconfig)) needs: system:auth-delegator,
//     the extension-apiserver-authentication-reader Role in kube-system, and
//     read access to the admission and flow-control objects (without
//     mutatingadmissionpolicies/-bindings its /readyz never passes on 1.37).
//  2. Start it with startProcess(c.layout, vesselAPIServerName, binary, args)
//     so that Stop and Down handle it like the others. Every argument must
//     name a path under the state directory: that is how Down recognises
//     its processes. Arguments:
//     --bind-address=127.0.0.1 --secure-port=c.Ports.VesselAPIServer
//     --tls-cert-file / --tls-private-key-file = c.PKI.VesselAPIServer
//     --kubeconfig, --authentication-kubeconfig, --authorization-kubeconfig
//     = c.Kubeconfig(VesselAPIServerKubeconfig); the requestheader CA and
//     allowed names come from the extension-apiserver-authentication
//     ConfigMap that kube-apiserver publishes; its own embedded etcd under
//     the state directory (--etcd-data-dir), or --etcd-servers.
//  3. Wait for its /readyz with waitReady, verifying c.PKI.ClusterCA.
//  4. Register it: a selector-less ClusterIP Service vessel-apiserver in
//     vessel-system, an EndpointSlice with addressType FQDN and address
//     "127.0.0.1" on c.Ports.VesselAPIServer, and the APIService
//     v1alpha1.vessel.dev with caBundle = c.PKI.ClusterCA (the serving
//     certificate has the SAN VesselAPIServerServiceHost). Then wait until
//     the APIService reports Available.
func (c *Cluster) startVesselAPIServer(ctx context.Context) error {
	return nil
}
