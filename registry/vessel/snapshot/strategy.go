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

package snapshot

import (
	"context"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
	"github.com/vessel-vm/vessel/registry/vessel/virtualmachine"
)

// kind tells the shared strategies how VirtualMachineSnapshots differ; vms
// looks up the VM a new snapshot names.
func kind(vms registry.Getter) registry.Kind[*vessel.VirtualMachineSnapshot] {
	return registry.Kind[*vessel.VirtualMachineSnapshot]{
		Namespaced:         true,
		ResetFieldsVersion: v1alpha1.SchemeGroupVersion.String(),
		PrepareForCreate: func(s *vessel.VirtualMachineSnapshot) {
			s.Status = vessel.VirtualMachineSnapshotStatus{Phase: vessel.SnapshotPending}
		},
		KeepStatus:           func(s, old *vessel.VirtualMachineSnapshot) { s.Status = old.Status },
		KeepSpec:             func(s, old *vessel.VirtualMachineSnapshot) { s.Spec = old.Spec },
		Spec:                 func(s *vessel.VirtualMachineSnapshot) any { return s.Spec },
		Validate:             validation.ValidateVirtualMachineSnapshot,
		ValidateUpdate:       validation.ValidateVirtualMachineSnapshotUpdate,
		ValidateStatusUpdate: validation.ValidateVirtualMachineSnapshotStatusUpdate,
		Fields: func(s *vessel.VirtualMachineSnapshot) fields.Set {
			return fields.Set{"spec.virtualMachineName": s.Spec.VirtualMachineName, "status.phase": string(s.Status.Phase)}
		},
		// A snapshot belongs to its VM: it must exist, and the garbage
		// collector deletes the snapshot with it.
		Resolve: func(ctx context.Context, s *vessel.VirtualMachineSnapshot) field.ErrorList {
			path := field.NewPath("spec", "virtualMachineName")
			vm, err := virtualmachine.GetVirtualMachine(ctx, vms, s.Spec.VirtualMachineName, path)
			if err != nil {
				return field.ErrorList{err}
			}
			virtualmachine.SetOwner(s, vm)
			return nil
		},
	}
}
