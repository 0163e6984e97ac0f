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

package scheduler

import (
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// PickMigrationTarget returns the hypervisor a running vm should move to,
// or "" and the reason none fits: the same rules as for binding (Ready, not
// unschedulable, nodeSelector, room for the VM given what the VMs in bound
// ask for), never the hypervisor vm runs on. Among those that fit it
// prefers the one with the most free memory. With want set only that
// hypervisor is considered.
func PickMigrationTarget(vm *v1alpha1.VirtualMachine, hypervisors []*v1alpha1.Hypervisor, bound []*v1alpha1.VirtualMachine, want string) (string, string) {
	used := map[string]*usage{}
	for _, b := range bound {
		if b.Spec.NodeName == "" || b.UID == vm.UID {
			continue
		}
		u := used[b.Spec.NodeName]
		if u == nil {
			u = &usage{}
			used[b.Spec.NodeName] = u
		}
		u.add(b)
	}
	var candidates []*v1alpha1.Hypervisor
	for _, hv := range hypervisors {
		if hv.Name == vm.Spec.NodeName || (want != "" && hv.Name != want) {
			continue
		}
		if hv.Status.MigrationEndpoint == "" {
			continue
		}
		candidates = append(candidates, hv)
	}
	if want != "" && len(candidates) == 0 {
		if want == vm.Spec.NodeName {
			return "", "the VM already runs on hypervisor " + want
		}
		return "", "hypervisor " + want + " does not exist or accepts no migrations"
	}
	if len(candidates) == 0 {
		return "", "no other hypervisor accepts migrations"
	}
	return pick(vm, candidates, used)
}
