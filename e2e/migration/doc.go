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

// Package migration is the end-to-end test of live migration between two
// hypervisors, each a vessel-agent with its own libvirtd in its own
// network and mount namespaces, through a real kube-apiserver, kubectl and
// the kubectl-vm plugin: the guest keeps running (and counting) while its
// memory and node-local disks move over the agents' mutual-TLS proxy on
// the hypervisors' fabric.
package migration
