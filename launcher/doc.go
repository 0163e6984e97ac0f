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

// Package launcher runs Vessel's one-machine control plane, the product
// behind `make up` (cmd/vessel-up) that the e2e framework starts too. Its
// components run, each as a detached process in its own session, from the
// binaries in _output/bin:
//
//   - etcd, for kube-apiserver;
//   - kube-apiserver, with aggregation and the front-proxy set up;
//   - kube-controller-manager (garbage collection, namespace deletion,
//     ClusterRole aggregation, service-account tokens);
//   - the vessel-apiserver with its embedded etcd, routed through the
//     v1alpha1.vessel.dev APIService after the launcher has applied
//     manifests/local (RBAC, user roles, APIService, the demo tenants) and
//     published its loopback EndpointSlice; or, with Options.EtcdMembers
//     and Options.APIServers, a vessel etcd cluster of real etcd processes
//     (vessel-etcd@<i>, TLS between everyone) and that many
//     vessel-apiservers on it (vessel-apiserver, vessel-apiserver@<i>),
//     each with an EndpointSlice of its own that says ready while it runs;
//   - unless Options.NoAgent, the hypervisors Options.Hypervisors, each a
//     virtlogd and a libvirtd in a mount and network namespace of its own
//     (package libvirtd; libvirtd runs under cmd/vessel-reaper, which
//     reaps its QEMUs as they exit) and a vessel-agent on that libvirtd, registered
//     as the Hypervisor of that name; a fabric (a bridge in a namespace of
//     its own) connects the hypervisors' namespaces, with addresses the
//     launcher assigns (Hypervisor).
//
// Two ways to run them share one start path (component, supervisor):
//
//   - Supervise is the supervisor process `vessel-up` leaves in the
//     background: it starts the components in dependency order, adopts
//     those that already run (after it was itself restarted), restarts any
//     that exits with a backoff (1 s doubling to 30 s), and records their
//     state for `vessel-up --status`. Up is the foreground half: it starts
//     a supervisor if none runs and waits until everything is ready. Down
//     stops the supervisor first, then the components.
//   - Start, for tests, starts each component once from the calling
//     process and restarts nothing by itself: tests that crash a component
//     on purpose restart it with Restart (RestartAgent,
//     RestartVesselAPIServer), and Stop ends them.
//
// Everything it needs and makes is kept in one state directory (`make up`
// uses .vessel/ at the repository root):
//
//	.vessel/
//	  pki/              CAs, serving and client certificates, service-account keys (package pki)
//	  etcd/             kube-apiserver's etcd data; kept across restarts, Down and Start
//	  vessel-etcd/      the vessel-apiserver's embedded etcd data
//	  vessel-etcd-<i>/  with EtcdMembers, member i's data
//	  hypervisors/<name>/  a hypervisor: its libvirt host's directories
//	                    (package libvirtd) and agent/, the agent's state
//	                    (VM disks, console logs)
//	  hypervisors.json  each hypervisor's network namespace, fabric address
//	                    and host UUID, assigned once
//	  run/              one PID file per running process (supervisor.pid too),
//	                    status.json (the supervisor's record of each component),
//	                    supervisor.lock (held by the one supervisor)
//	  logs/             one log file per process, appended to at every start;
//	                    supervisor.log says what was started, adopted, and restarted why
//	  ports.json        loopback ports chosen on first start (new ones in
//	                    20000-29999, outside the ephemeral range), reused afterwards
//	  supervisor.json   the options the supervisor runs the components with
//	  admin.kubeconfig  system:masters
//	  alice.kubeconfig  tenant users (manifests/local/tenants.yaml grants their roles)
//	  bob.kubeconfig
//	  vessel-apiserver.kubeconfig  the vessel-apiserver's identity toward kube-apiserver
//	  vessel-agent@<name>.kubeconfig  an agent's identity, system:vessel-agent:<name>
//
// `make up` must return while the control plane keeps running, hence
// detached processes and PID files, and Down stops them from another
// process (guests keep running, and so does the virtlogd of a hypervisor
// with guests); tests call Start and Stop around a temporary state
// directory, and Destroy to remove the hypervisors' namespaces and guests.
package launcher
