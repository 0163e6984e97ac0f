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

package virtualmachine

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

var tableConvertor = registry.TableConvertor[*vessel.VirtualMachine]{
	Columns: []registry.Column{
		{Name: "Status", Type: "string", Description: "The VM's phase."},
		{Name: "Ready", Type: "string", Description: "Whether the guest runs: True, False, or Unknown while its hypervisor is not Ready."},
		{Name: "Node", Type: "string", Description: "The hypervisor the VM is bound to."},
		{Name: "IP", Type: "string", Description: "The primary address of the first interface that has one (on the managed network: the DHCP lease of the agent's own server)."},
		{Name: "CPU", Type: "integer", Priority: 1, Description: "Virtual CPUs."},
		{Name: "Memory", Type: "string", Priority: 1, Description: "Guest memory."},
		{Name: "RunStrategy", Type: "string", Priority: 1, Description: "When the guest should run."},
	},
	Row: func(vm *vessel.VirtualMachine) []any {
		return []any{
			phase(vm),
			ready(vm),
			registry.OrNone(vm.Spec.NodeName),
			registry.OrNone(firstIP(vm)),
			int64(vm.Spec.CPUs),
			registry.Bytes(vm.Spec.Memory),
			string(vm.Spec.RunStrategy),
		}
	},
}

// phase shows deletion the way kubectl shows a terminating pod.
func phase(vm *vessel.VirtualMachine) string {
	if vm.DeletionTimestamp != nil {
		return "Terminating"
	}
	if vm.Status.Phase == "" {
		return "Pending"
	}
	return string(vm.Status.Phase)
}

// ready is the Ready condition's status; a VM no agent has reported on
// yet is not ready.
func ready(vm *vessel.VirtualMachine) string {
	if c := meta.FindStatusCondition(vm.Status.Conditions, vessel.VirtualMachineConditionReady); c != nil {
		return string(c.Status)
	}
	return string(metav1.ConditionFalse)
}

func firstIP(vm *vessel.VirtualMachine) string {
	for _, iface := range vm.Status.Interfaces {
		if iface.IPAddress != "" {
			return iface.IPAddress
		}
	}
	return ""
}
