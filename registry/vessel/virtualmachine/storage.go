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

// Package virtualmachine stores VirtualMachines and serves their
// subresources: status, binding, the power actions and console.
package virtualmachine

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/storage"
	storeerr "k8s.io/apiserver/pkg/storage/errors"
	"k8s.io/apiserver/pkg/util/dryrun"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
)

// Storage is every REST endpoint of VirtualMachines, sharing one store.
type Storage struct {
	VirtualMachine *REST
	Status         *StatusREST
	Binding        *BindingREST
	Actions        map[Action]*ActionREST
	Console        *ConsoleREST
	PortForward    *PortForwardREST
	Log            *LogREST
	UserData       *UserDataREST
}

// NewStorage builds the VirtualMachine store and its subresources; agents
// lets console and log reach the node agent running a VM, guards confine
// what agents and console users may do.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, opts validation.Options, agents Agents, guards Guards) (*Storage, error) {
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
		VirtualMachine: &REST{REST: stores.Main, agentOf: guards.AgentOf},
		Status:         &StatusREST{StatusREST: stores.Status, agentOf: guards.AgentOf},
		Binding:        &BindingREST{store: stores.Store},
		Actions:        map[Action]*ActionREST{},
		Console:        &ConsoleREST{store: stores.Store, agents: agents, guards: guards},
		Log:            &LogREST{store: stores.Store, agents: agents},
		PortForward:    &PortForwardREST{store: stores.Store, agents: agents, guards: guards},
		UserData:       &UserDataREST{store: stores.Store, guards: guards},
	}
	for _, a := range Actions {
		s.Actions[a] = &ActionREST{store: stores.Store, action: a}
	}
	return s, nil
}

func nodeNameTrigger(obj runtime.Object) string {
	return obj.(*vessel.VirtualMachine).Spec.NodeName
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
