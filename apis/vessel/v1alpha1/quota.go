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

package v1alpha1

// ResourceQuota resource names the vessel-apiserver charges VMs to, besides
// the object counts count/virtualmachines.vessel.dev,
// count/virtualmachinesnapshots.vessel.dev and
// count/virtualmachinerestores.vessel.dev.
//
// They are not requests.cpu, requests.memory and requests.storage on
// purpose: in a cluster, kube-controller-manager's quota controller owns
// those names and recomputes them from pods and persistent volume claims
// alone, so VM usage charged there would be erased at its next sync and
// tenants could then exceed their quota. No Kubernetes controller computes
// names under vessel.dev/, so what Vessel charges stays charged.
const (
	// ResourceRequestsCPU is the sum of spec.cpus (one vCPU is one CPU).
	ResourceRequestsCPU = "vessel.dev/requests.cpu"
	// ResourceRequestsMemory is the sum of spec.memory.
	ResourceRequestsMemory = "vessel.dev/requests.memory"
	// ResourceRequestsStorage is the sum of the sizes of blank disks, the
	// only disks whose size the spec states.
	ResourceRequestsStorage = "vessel.dev/requests.storage"
)
