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

// Package metrics is the node agent's Prometheus metrics: per-VM usage
// read from libvirt in one bulk call per scrape (VMCollector), and the
// agent's own health (reconcile latency and errors, work queues, libvirt
// connection, console sessions, image cache). Server serves them over HTTPS
// behind Kubernetes delegated authentication and authorization, as the
// kubelet and kube-rbac-proxy do: a bearer token is checked with a
// TokenReview, a client certificate against the cluster's client CA, and
// the caller needs `get` on the non-resource URL /metrics
// (SubjectAccessReview).
//
// Per-VM series carry the labels namespace, name and uid of the
// VirtualMachine and hypervisor (the Hypervisor object's name). Only VMs
// bound to this agent's Hypervisor are reported, so other control planes'
// domains on a shared libvirtd never show. The counters are libvirt's own,
// cumulative since the guest's QEMU process started: an agent restart
// leaves them untouched (monotonic), a guest restart resets them to zero,
// which Prometheus' rate() handles as a counter reset. A deleted VM's
// series are gone from the next scrape on.
//
// ResourceHandler serves the small subset the vessel-apiserver's usage
// API needs (CPU seconds and memory of each VM, with the time they were
// read) on the agent's stream server, to the apiserver only.
package metrics
