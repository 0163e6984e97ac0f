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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

// AgentOf says whether a user is a node agent and of which hypervisor; an
// agent with no hypervisor ("") may read no VM.
type AgentOf func(user.Info) (hypervisor string, isAgent bool)

// hiddenFromAgent is true when the request comes from an agent and vm is
// not bound to its hypervisor. The agent authorizer confines lists and
// watches by their field selector; a get names one VM, whose binding only
// storage knows without lag.
func hiddenFromAgent(ctx context.Context, agentOf AgentOf, vm *vessel.VirtualMachine) bool {
	if agentOf == nil {
		return false
	}
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return false
	}
	hypervisor, isAgent := agentOf(u)
	return isAgent && (hypervisor == "" || vm.Spec.NodeName != hypervisor)
}

// getForAgents reads a VM with get, answering NotFound to an agent for a VM
// bound elsewhere: to it, that VM does not exist (its orphan collection
// then treats a domain of that name as an orphan, which it is).
func getForAgents(ctx context.Context, get func(context.Context, string, *metav1.GetOptions) (runtime.Object, error), agentOf AgentOf, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := get(ctx, name, options)
	if err != nil {
		return nil, err
	}
	if vm, ok := obj.(*vessel.VirtualMachine); ok && hiddenFromAgent(ctx, agentOf, vm) {
		return nil, apierrors.NewNotFound(vessel.Resource("virtualmachines"), name)
	}
	return obj, nil
}

// REST is the VirtualMachine main resource: the shared REST, with gets
// confined for agents.
type REST struct {
	*registry.REST
	agentOf AgentOf
}

var _ rest.Getter = &REST{}

func (r *REST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return getForAgents(ctx, r.REST.Get, r.agentOf, name, options)
}

// StatusREST is the VirtualMachine status subresource, with gets confined
// for agents like the main resource's.
type StatusREST struct {
	*registry.StatusREST
	agentOf AgentOf
}

var _ rest.Getter = &StatusREST{}

func (r *StatusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return getForAgents(ctx, r.StatusREST.Get, r.agentOf, name, options)
}
