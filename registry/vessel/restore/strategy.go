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

package restore

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
	"github.com/vessel-vm/vessel/registry/vessel/virtualmachine"
)

// kind tells the shared strategies how VirtualMachineRestores differ; vms
// and snapshots look up what a new restore names.
func kind(vms, snapshots registry.Getter) registry.Kind[*vessel.VirtualMachineRestore] {
	return registry.Kind[*vessel.VirtualMachineRestore]{
		Namespaced:         true,
		ResetFieldsVersion: v1alpha1.SchemeGroupVersion.String(),
		PrepareForCreate: func(r *vessel.VirtualMachineRestore) {
			r.Status = vessel.VirtualMachineRestoreStatus{Phase: vessel.SnapshotPending}
		},
		KeepStatus:           func(r, old *vessel.VirtualMachineRestore) { r.Status = old.Status },
		KeepSpec:             func(r, old *vessel.VirtualMachineRestore) { r.Spec = old.Spec },
		Spec:                 func(r *vessel.VirtualMachineRestore) any { return r.Spec },
		Validate:             validation.ValidateVirtualMachineRestore,
		ValidateUpdate:       validation.ValidateVirtualMachineRestoreUpdate,
		ValidateStatusUpdate: validation.ValidateVirtualMachineRestoreStatusUpdate,
		Fields: func(r *vessel.VirtualMachineRestore) fields.Set {
			return fields.Set{"spec.virtualMachineName": r.Spec.VirtualMachineName, "spec.snapshotName": r.Spec.SnapshotName}
		},
		// A restore is refused up front unless its snapshot exists, is of the
		// named VM and is ready: nothing is stopped for a restore that cannot
		// happen.
		Resolve: func(ctx context.Context, r *vessel.VirtualMachineRestore) field.ErrorList {
			vm, err := virtualmachine.GetVirtualMachine(ctx, vms, r.Spec.VirtualMachineName, field.NewPath("spec", "virtualMachineName"))
			if err != nil {
				return field.ErrorList{err}
			}
			path := field.NewPath("spec", "snapshotName")
			obj, getErr := snapshots.Get(ctx, r.Spec.SnapshotName, &metav1.GetOptions{})
			if apierrors.IsNotFound(getErr) {
				return field.ErrorList{field.Invalid(path, r.Spec.SnapshotName, "no such VirtualMachineSnapshot in this namespace")}
			}
			if getErr != nil {
				return field.ErrorList{field.InternalError(path, getErr)}
			}
			snap := obj.(*vessel.VirtualMachineSnapshot)
			switch {
			case snap.Spec.VirtualMachineName != r.Spec.VirtualMachineName:
				return field.ErrorList{field.Invalid(path, r.Spec.SnapshotName,
					fmt.Sprintf("the snapshot is of VM %q, not %q", snap.Spec.VirtualMachineName, r.Spec.VirtualMachineName))}
			case snap.Status.VirtualMachineUID != "" && snap.Status.VirtualMachineUID != string(vm.UID):
				return field.ErrorList{field.Invalid(path, r.Spec.SnapshotName,
					"the snapshot is of an earlier VM of the same name, which was deleted")}
			case !snap.Status.ReadyToUse:
				return field.ErrorList{field.Invalid(path, r.Spec.SnapshotName,
					fmt.Sprintf("the snapshot is not ready to use (phase %s)", snap.Status.Phase))}
			}
			virtualmachine.SetOwner(r, vm)
			return nil
		},
	}
}
