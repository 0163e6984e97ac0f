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
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
)

// kind tells the shared strategies how VirtualMachines differ.
func kind(opts validation.Options) registry.Kind[*vessel.VirtualMachine] {
	return registry.Kind[*vessel.VirtualMachine]{
		Namespaced:         true,
		ResetFieldsVersion: v1alpha1.SchemeGroupVersion.String(),
		PrepareForCreate: func(vm *vessel.VirtualMachine) {
			vm.Status = vessel.VirtualMachineStatus{Phase: vessel.VirtualMachinePending}
			// Power actions and binding happen through their subresources.
			vm.Spec.PowerAction = nil
		},
		// Power actions are desired state written only by the action
		// subresources; an update through the main resource (kubectl
		// replace of a manifest without it) keeps the last one.
		ServerOwnedSpec: [][]string{{"spec", "powerAction"}},
		KeepStatus: func(vm, old *vessel.VirtualMachine) {
			vm.Status = old.Status
			vm.Spec.PowerAction = old.Spec.PowerAction
		},
		KeepSpec: func(vm, old *vessel.VirtualMachine) { vm.Spec = old.Spec },
		Spec:     func(vm *vessel.VirtualMachine) any { return vm.Spec },
		Validate: func(vm *vessel.VirtualMachine) field.ErrorList {
			return validation.ValidateVirtualMachine(vm, opts)
		},
		ValidateUpdate: func(vm, old *vessel.VirtualMachine) field.ErrorList {
			return validation.ValidateVirtualMachineUpdate(vm, old, opts)
		},
		ValidateStatusUpdate: validation.ValidateVirtualMachineStatusUpdate,
		Fields: func(vm *vessel.VirtualMachine) fields.Set {
			return fields.Set{"spec.nodeName": vm.Spec.NodeName, "status.phase": string(vm.Status.Phase)}
		},
	}
}
