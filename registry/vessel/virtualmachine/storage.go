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
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	storeerr "k8s.io/apiserver/pkg/storage/errors"
	"k8s.io/apiserver/pkg/util/dryrun"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
)

// Storage is every REST endpoint of VirtualMachines, sharing one store.
type Storage struct {
	VirtualMachine *registry.REST
	Status         *registry.StatusREST
	Binding        *BindingREST
	Actions        map[Action]*ActionREST
	Console        *ConsoleREST
	Log            *LogREST
}

// NewStorage builds the VirtualMachine store and its subresources; agents
// lets console and log reach the node agent running a VM.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, opts validation.Options, agents Agents) (*Storage, error) {
	stores, err := registry.Resource[*vessel.VirtualMachine]{
		Kind:       kind(opts),
		New:        func() runtime.Object { return &vessel.VirtualMachine{} },
		NewList:    func() runtime.Object { return &vessel.VirtualMachineList{} },
		Plural:     "virtualmachines",
		Singular:   "virtualmachine",
		ShortNames: []string{"vm", "vms"},
		Table:      tableConvertor,
		// Agents watch with spec.nodeName=<self>; the trigger lets the watch
		// cache send each event only to the agent it concerns.
		Triggers: map[string]storage.IndexerFunc{"spec.nodeName": nodeNameTrigger},
	}.Build(scheme, optsGetter)
	if err != nil {
		return nil, err
	}
	s := &Storage{
		VirtualMachine: stores.Main,
		Status:         stores.Status,
		Binding:        &BindingREST{store: stores.Store},
		Actions:        map[Action]*ActionREST{},
		Console:        &ConsoleREST{store: stores.Store, agents: agents},
		Log:            &LogREST{store: stores.Store, agents: agents},
	}
	for _, a := range Actions {
		s.Actions[a] = &ActionREST{store: stores.Store, action: a}
	}
	return s, nil
}

func nodeNameTrigger(obj runtime.Object) string {
	return obj.(*vessel.VirtualMachine).Spec.NodeName
}

// BindingREST binds a VM to a Hypervisor, once, like pods/binding.
type BindingREST struct {
	store *genericregistry.Store
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
		if vm.Spec.NodeName != "" {
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

// ActionREST is one power action subresource (start, stop, restart, pause,
// unpause). It changes desired state with optimistic concurrency and answers
// 409 when the action makes no sense in the VM's current state.
type ActionREST struct {
	store  *genericregistry.Store
	action Action
}

var _ rest.NamedCreater = &ActionREST{}

func (r *ActionREST) New() runtime.Object   { return &vessel.VirtualMachineActionOptions{} }
func (r *ActionREST) Destroy()              {}
func (r *ActionREST) NamespaceScoped() bool { return true }

func (r *ActionREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	opts, ok := obj.(*vessel.VirtualMachineActionOptions)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a VirtualMachineActionOptions: %T", obj))
	}
	if errs := validation.ValidateVirtualMachineActionOptions(opts); len(errs) > 0 {
		return nil, apierrors.NewInvalid(vessel.Kind("VirtualMachineActionOptions"), name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, opts.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	now := metav1.Now()
	return updateVM(ctx, r.store, name, string(r.action), nil, options, func(vm *vessel.VirtualMachine) error {
		return r.action.apply(vm, opts, now)
	})
}

// updateVM applies change to the stored VM in a GuaranteedUpdate (retrying
// on write conflicts) and bumps generation, since every change is to spec.
func updateVM(ctx context.Context, store *genericregistry.Store, name, subresource string, preconditions *storage.Preconditions, options *metav1.CreateOptions, change func(*vessel.VirtualMachine) error) (runtime.Object, error) {
	key, err := store.KeyFunc(ctx, name)
	if err != nil {
		return nil, err
	}
	// The storage decodes what it wrote into out, with the new
	// resourceVersion; the object the update function returns has none.
	out := &vessel.VirtualMachine{}
	err = store.Storage.GuaranteedUpdate(ctx, key, out, false, preconditions,
		storage.SimpleUpdate(func(obj runtime.Object) (runtime.Object, error) {
			vm := obj.(*vessel.VirtualMachine)
			if err := change(vm); err != nil {
				return nil, err
			}
			vm.Generation++
			return vm, nil
		}), dryrun.IsDryRun(options.DryRun), nil)
	if err != nil {
		resource := vessel.Resource("virtualmachines/" + subresource)
		if isNotNow(err) {
			return nil, apierrors.NewConflict(resource, name, err)
		}
		err = storeerr.InterpretGetError(err, vessel.Resource("virtualmachines"), name)
		return nil, storeerr.InterpretUpdateError(err, resource, name)
	}
	return out, nil
}

func hasFinalizer(vm *vessel.VirtualMachine, f string) bool {
	for _, existing := range vm.Finalizers {
		if existing == f {
			return true
		}
	}
	return false
}
