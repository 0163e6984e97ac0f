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
	"net/http"
)

const etcdName = "etcd"

// kube-apiserver's etcd runs as a child process (the upstream etcd binary
// built by hack/build-etcd.sh) rather than embedded in the launcher:
// `make up` returns while the control plane keeps running, so nothing may
// live inside the launcher process, and a separate binary is stopped,
// restarted and inspected like every other component. It is the real etcd
// server (go.etcd.io/etcd/server/v3's own main), not a test double.
//
// It listens on loopback only and without TLS, as in upstream's integration
// tests: on this single machine the state directory's permissions already
// protect the data, and a real cluster deploys etcd from manifests/ instead.
// It is separate from the vessel-apiserver's own etcd (see ARCHITECTURE.md).

func (c *Cluster) etcdURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.Ports.EtcdClient)
}

func (c *Cluster) etcdArgs() []string {
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.Ports.EtcdPeer)
	return []string{
		"--name=vessel",
		"--data-dir=" + c.layout.etcdDataDir(),
		"--listen-client-urls=" + c.etcdURL(),
		"--advertise-client-urls=" + c.etcdURL(),
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=vessel=" + peer,
		"--log-level=warn",
	}
}

// etcdComponent is kube-apiserver's etcd. Its data directory outlives
// every restart: a SIGKILL loses nothing etcd acknowledged (it syncs its
// log before answering).
func (c *Cluster) etcdComponent() *component {
	return &component{
		name:   etcdName,
		binary: c.opts.EtcdBinary,
		args:   c.etcdArgs(),
		ready: func(ctx context.Context, p *process) error {
			return waitReady(ctx, p, http.DefaultClient, c.etcdURL()+"/health", c.opts.ReadyTimeout)
		},
	}
}
