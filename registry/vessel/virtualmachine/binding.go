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
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
)

// BindingREST binds a VM to a Hypervisor, once, like pods/binding. A bound
// VM moves to another Hypervisor only with a binding that names (in the
// annotation vessel.dev/migration) a VirtualMachineMigration of it that
// succeeded from its current Hypervisor to the binding's target: the
// handover at the end of a live migration.
type BindingREST struct {
	store *genericregistry.Store
	// Migrations reads VirtualMachineMigrations; nil: bound VMs never move.
	Migrations registry.Getter
}

var (
	_ rest.NamedCreater                   = &BindingREST{}
	_ rest.SubresourceObjectMetaPreserver = &BindingREST{}
)

func (r *BindingREST) New() runtime.Object   { return &vessel.VirtualMachineBinding{} }
func (r *BindingREST) Destroy()              {}
func (r *BindingREST) NamespaceScoped() bool { return true }

// PreserveRequestObjectMetaSystemFieldsOnSubresourceCreate keeps the
// binding's UID and resourceVersion: they are the preconditions.
func (r *BindingREST) PreserveRequestObjectMetaSystemFieldsOnSubresourceCreate() bool { return true }

// Create sets spec.nodeName and the cleanup finalizer in one write, so a VM
// never runs on a node without the finalizer that makes deletion wait for it.
func (r *BindingREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	binding, ok := obj.(*vessel.VirtualMachineBinding)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a VirtualMachineBinding: %T", obj))
	}
	if binding.Name != name {
		return nil, apierrors.NewBadRequest("name in URL does not match name in VirtualMachineBinding")
	}
	if errs := validation.ValidateVirtualMachineBinding(binding); len(errs) > 0 {
		return nil, apierrors.NewInvalid(vessel.Kind("VirtualMachineBinding"), name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, binding.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	var preconditions *storage.Preconditions
	if binding.UID != "" || binding.ResourceVersion != "" {
		preconditions = &storage.Preconditions{}
		if binding.UID != "" {
			uid := types.UID(binding.UID)
			preconditions.UID = &uid
		}
		if binding.ResourceVersion != "" {
			preconditions.ResourceVersion = &binding.ResourceVersion
		}
	}
	return updateVM(ctx, r.store, name, "binding", preconditions, options, func(vm *vessel.VirtualMachine) error {
		if vm.DeletionTimestamp != nil {
			return notNow("VM is being deleted")
		}
		if vm.Spec.NodeName != "" && vm.Spec.NodeName != binding.Target {
			if err := r.migrated(ctx, vm, binding); err != nil {
				return err
			}
		} else if vm.Spec.NodeName != "" {
			return notNow("VM is already bound to %q", vm.Spec.NodeName)
		}
		vm.Spec.NodeName = binding.Target
		if !hasFinalizer(vm, vessel.FinalizerNodeCleanup) {
			vm.Finalizers = append(vm.Finalizers, vessel.FinalizerNodeCleanup)
		}
		if vm.Status.Phase == "" || vm.Status.Phase == vessel.VirtualMachinePending {
			vm.Status.Phase = vessel.VirtualMachineScheduled
		}
		meta.SetStatusCondition(&vm.Status.Conditions, metav1.Condition{
			Type:               vessel.VirtualMachineConditionScheduled,
			Status:             metav1.ConditionTrue,
			Reason:             "Bound",
			Message:            fmt.Sprintf("bound to hypervisor %s", binding.Target),
			ObservedGeneration: vm.Generation + 1,
		})
		return nil
	})
}

// migrated allows moving the bound vm to binding.Target when the migration
// the binding names has moved its guest there.
func (r *BindingREST) migrated(ctx context.Context, vm *vessel.VirtualMachine, binding *vessel.VirtualMachineBinding) error {
	name := binding.Annotations[vessel.AnnotationMigration]
	if name == "" || r.Migrations == nil {
		return notNow("VM is already bound to %q; only a VirtualMachineMigration moves it", vm.Spec.NodeName)
	}
	obj, err := r.Migrations.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return notNow("VM is already bound to %q and migration %q cannot be read: %v", vm.Spec.NodeName, name, err)
	}
	m := obj.(*vessel.VirtualMachineMigration)
	switch {
	case m.Status.VirtualMachineUID != string(vm.UID):
		return notNow("migration %q is not of this VM", name)
	case m.Status.Phase != vessel.MigrationSucceeded:
		return notNow("migration %q has not succeeded (phase %s)", name, m.Status.Phase)
	case m.Status.HandedOver:
		return notNow("migration %q has handed the VM over already", name)
	case m.Status.Source != vm.Spec.NodeName || m.Status.Target != binding.Target:
		return notNow("migration %q moved the VM from %q to %q, not from %q to %q", name, m.Status.Source, m.Status.Target, vm.Spec.NodeName, binding.Target)
	}
	return nil
}

func hasFinalizer(vm *vessel.VirtualMachine, f string) bool {
	for _, existing := range vm.Finalizers {
		if existing == f {
			return true
		}
	}
	return false
}
