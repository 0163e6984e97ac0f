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
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

// REST is the migration resource. It refuses, with 409 Conflict, a
// migration of a VM that cannot move for a reason the caller can act on
// at once: the VM has snapshots, or another migration is moving it. The
// migration controller checks both again when it starts the migration
// (a snapshot taken meanwhile, two migrations created together).
type REST struct {
	*registry.REST
	vms       registry.Getter
	snapshots rest.Lister
}

var _ rest.Creater = &REST{}

// Create refuses a migration of a busy VM, then stores it.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	if m, ok := obj.(*vessel.VirtualMachineMigration); ok {
		if err := r.refuseBusy(ctx, m); err != nil {
			return nil, err
		}
	}
	return r.REST.Create(ctx, obj, createValidation, options)
}

func (r *REST) refuseBusy(ctx context.Context, m *vessel.VirtualMachineMigration) error {
	obj, err := r.vms.Get(ctx, m.Spec.VirtualMachineName, &metav1.GetOptions{})
	if err != nil {
		return nil // validation says what is wrong with the name
	}
	vm := obj.(*vessel.VirtualMachine)
	name := m.Name
	if name == "" {
		name = m.GenerateName
	}
	conflict := func(format string, args ...any) error {
		return apierrors.NewConflict(vessel.Resource("virtualmachinemigrations"), name, fmt.Errorf(format, args...))
	}
	byVM := &metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.virtualMachineName", vm.Name)}

	list, err := r.REST.List(ctx, byVM)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("list the migrations of VM %s: %w", vm.Name, err))
	}
	for _, o := range list.(*vessel.VirtualMachineMigrationList).Items {
		if o.DeletionTimestamp == nil && ownedBy(&o, vm.UID) && !over(&o) {
			return conflict("migration %s is moving VM %s already (%s): wait for it to end, or delete it to cancel it", o.Name, vm.Name, phaseOf(&o))
		}
	}

	list, err = r.snapshots.List(ctx, byVM)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("list the snapshots of VM %s: %w", vm.Name, err))
	}
	var snaps []string
	for _, s := range list.(*vessel.VirtualMachineSnapshotList).Items {
		if ownedBy(&s, vm.UID) {
			snaps = append(snaps, s.Name)
		}
	}
	if len(snaps) > 0 {
		return conflict("VM %s has snapshots (%s), and libvirt does not migrate a domain with snapshots: their memory and disk states live in its qcow2 files, which the copy to the target does not carry. Delete them first (kubectl delete vmsnap -n %s %s), or keep the VM where it is",
			vm.Name, strings.Join(snaps, ", "), vm.Namespace, strings.Join(snaps, " "))
	}
	return nil
}

// ownedBy says obj belongs to the VM with uid (a VM of the same name
// deleted and created again is another VM).
func ownedBy(obj metav1.Object, uid types.UID) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == uid {
			return true
		}
	}
	return false
}

// over says m has nothing more to do with its VM.
func over(m *vessel.VirtualMachineMigration) bool {
	return m.Status.Phase == vessel.MigrationFailed || (m.Status.Phase == vessel.MigrationSucceeded && m.Status.HandedOver)
}

func phaseOf(m *vessel.VirtualMachineMigration) string {
	if m.Status.Phase == "" {
		return string(vessel.MigrationPending)
	}
	return string(m.Status.Phase)
}
