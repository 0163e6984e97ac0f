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

package migration

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

func kind(vms registry.Getter) registry.Kind[*vessel.VirtualMachineMigration] {
	return registry.Kind[*vessel.VirtualMachineMigration]{
		Namespaced:         true,
		ResetFieldsVersion: v1alpha1.SchemeGroupVersion.String(),
		PrepareForCreate: func(m *vessel.VirtualMachineMigration) {
			m.Status = vessel.VirtualMachineMigrationStatus{Phase: vessel.MigrationPending}
		},
		KeepStatus:           func(m, old *vessel.VirtualMachineMigration) { m.Status = old.Status },
		KeepSpec:             func(m, old *vessel.VirtualMachineMigration) { m.Spec = old.Spec },
		Spec:                 func(m *vessel.VirtualMachineMigration) any { return m.Spec },
		Validate:             validation.ValidateVirtualMachineMigration,
		ValidateUpdate:       validation.ValidateVirtualMachineMigrationUpdate,
		ValidateStatusUpdate: validation.ValidateVirtualMachineMigrationStatusUpdate,
		Fields: func(m *vessel.VirtualMachineMigration) fields.Set {
			return fields.Set{
				"spec.virtualMachineName": m.Spec.VirtualMachineName,
				"status.phase":            string(m.Status.Phase),
				"status.source":           m.Status.Source,
				"status.target":           m.Status.Target,
			}
		},
		// A migration names a VM of its namespace and is owned by it, so it
		// goes when the VM does; whether the VM can move is the migration
		// controller's to say, in status.
		Resolve: func(ctx context.Context, m *vessel.VirtualMachineMigration) field.ErrorList {
			vm, err := virtualmachine.GetVirtualMachine(ctx, vms, m.Spec.VirtualMachineName, field.NewPath("spec", "virtualMachineName"))
			if err != nil {
				return field.ErrorList{err}
			}
			virtualmachine.SetOwner(m, vm)
			return nil
		},
	}
}
