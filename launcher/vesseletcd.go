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
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
)

// vesselEtcdName is the base name of the vessel etcd cluster's members
// (Options.EtcdMembers): vessel-etcd@1 ... vessel-etcd@M.
const vesselEtcdName = "vessel-etcd"

// VesselEtcdComponent names the i-th (from 1) member of the vessel etcd
// cluster.
func VesselEtcdComponent(i int) string { return fmt.Sprintf("%s@%d", vesselEtcdName, i) }

// The vessel etcd cluster is the vessel-apiservers' storage when they are
// replicated: real etcd processes (the same binary as kube-apiserver's
// etcd), unlike kube-apiserver's etcd on TLS for clients and peers alike,
// with client certificates required on both, from an etcd CA of their own,
// as a production etcd is deployed. Members are named vessel-etcd-<i>,
// keep their data in <state>/vessel-etcd-<i> across restarts, and rejoin
// the cluster from it.

// vesselEtcdClientURLs are the members' client URLs, in member order.
func (c *Cluster) vesselEtcdClientURLs() []string {
	var urls []string
	for _, p := range c.Ports.VesselEtcd {
		urls = append(urls, fmt.Sprintf("https://127.0.0.1:%d", p.Client))
	}
	return urls
}

func (c *Cluster) vesselEtcdArgs(i int) []string {
	var cluster []string
	for j, p := range c.Ports.VesselEtcd {
		cluster = append(cluster, fmt.Sprintf("%s-%d=https://127.0.0.1:%d", vesselEtcdName, j+1, p.Peer))
	}
	member := c.PKI.EtcdMembers[i-1]
	client := c.vesselEtcdClientURLs()[i-1]
	peer := fmt.Sprintf("https://127.0.0.1:%d", c.Ports.VesselEtcd[i-1].Peer)
	return []string{
		fmt.Sprintf("--name=%s-%d", vesselEtcdName, i),
		"--data-dir=" + filepath.Join(c.layout.root, fmt.Sprintf("%s-%d", vesselEtcdName, i)),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=" + strings.Join(cluster, ","),
		"--initial-cluster-state=new",
		"--initial-cluster-token=" + vesselEtcdName,
		"--cert-file=" + member.CertFile,
		"--key-file=" + member.KeyFile,
		"--trusted-ca-file=" + c.PKI.EtcdCA.CertFile,
		"--client-cert-auth",
		"--peer-cert-file=" + member.CertFile,
		"--peer-key-file=" + member.KeyFile,
		"--peer-trusted-ca-file=" + c.PKI.EtcdCA.CertFile,
		"--peer-client-cert-auth",
		// As the embedded etcd: history bounded like under kube-apiserver.
		"--auto-compaction-mode=periodic",
		"--auto-compaction-retention=5m",
		"--log-level=warn",
	}
}

// vesselEtcdComponents are the members of the vessel etcd cluster, none
// without Options.EtcdMembers. A member is ready when its /health says it
// has a leader, which takes a quorum: Start launches them together
// (startGroup) before waiting.
func (c *Cluster) vesselEtcdComponents() ([]*component, error) {
	if c.opts.EtcdMembers == 0 {
		return nil, nil
	}
	client, err := c.verifyingHTTPClient(c.PKI.EtcdCA.CertFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(c.PKI.EtcdClient.CertFile, c.PKI.EtcdClient.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load the vessel etcd client certificate: %w", err)
	}
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	var comps []*component
	for i := 1; i <= c.opts.EtcdMembers; i++ {
		health := c.vesselEtcdClientURLs()[i-1] + "/health"
		comps = append(comps, &component{
			name:       VesselEtcdComponent(i),
			binary:     c.opts.EtcdBinary,
			args:       c.vesselEtcdArgs(i),
			startGroup: vesselEtcdName,
			ready: func(ctx context.Context, p *process) error {
				return waitReady(ctx, p, client, health, c.opts.ReadyTimeout)
			},
		})
	}
	return comps, nil
}
