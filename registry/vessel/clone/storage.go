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

// Package clone stores VirtualMachineClones.
package clone

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

// Storage is the VirtualMachineClone resource and its status subresource.
type Storage struct {
	Clone  *REST
	Status *registry.StatusREST
}

// NewStorage builds the VirtualMachineClone store. vms and snapshots look up
// the source a new clone names; authz, when set, checks that whoever asks
// for a clone may create VMs in its namespace and read its source.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, vms, snapshots registry.Getter, authz authorizer.Authorizer) (*Storage, error) {
	stores, err := registry.Resource[*vessel.VirtualMachineClone]{
		Kind:       kind(vms, snapshots),
		New:        func() runtime.Object { return &vessel.VirtualMachineClone{} },
		NewList:    func() runtime.Object { return &vessel.VirtualMachineCloneList{} },
		Plural:     "virtualmachineclones",
		Singular:   "virtualmachineclone",
		ShortNames: []string{"vmclone", "vmclones"},
		Table:      tableConvertor,
	}.Build(scheme, optsGetter)
	if err != nil {
		return nil, err
	}
	return &Storage{Clone: &REST{REST: stores.Main, authz: authz}, Status: stores.Status}, nil
}

// REST is the clone resource. A clone creates a VirtualMachine and copies
// its source on the requester's behalf (the controllers doing it act with
// their own rights), so creating one also needs the rights the result
// amounts to: `create` on VirtualMachines in the namespace and `get` on
// the source.
type REST struct {
	*registry.REST
	authz authorizer.Authorizer
}

var _ rest.Creater = &REST{}

// Create checks the requester's rights, then stores the clone.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	if c, ok := obj.(*vessel.VirtualMachineClone); ok && r.authz != nil {
		if err := r.authorize(ctx, c); err != nil {
			return nil, err
		}
	}
	return r.REST.Create(ctx, obj, createValidation, options)
}

func (r *REST) authorize(ctx context.Context, c *vessel.VirtualMachineClone) error {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return apierrors.NewForbidden(vessel.Resource("virtualmachineclones"), c.Name, fmt.Errorf("no user in the request"))
	}
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	sourceResource, sourceName := "virtualmachines", c.Spec.Source.VirtualMachineName
	if c.Spec.Source.SnapshotName != "" {
		sourceResource, sourceName = "virtualmachinesnapshots", c.Spec.Source.SnapshotName
	}
	for _, need := range []authorizer.AttributesRecord{
		{Verb: "create", Resource: "virtualmachines"},
		{Verb: "get", Resource: sourceResource, Name: sourceName},
	} {
		need.User, need.Namespace, need.APIGroup, need.APIVersion, need.ResourceRequest = u, ns, vessel.GroupName, "*", true
		decision, reason, err := r.authz.Authorize(ctx, need)
		if err != nil && decision != authorizer.DecisionAllow {
			return apierrors.NewInternalError(fmt.Errorf("authorize %s %s for the clone: %w", need.Verb, need.Resource, err))
		}
		if decision != authorizer.DecisionAllow {
			what := need.Resource
			if need.Name != "" {
				what += " " + need.Name
			}
			msg := fmt.Sprintf("cloning needs %s on %s in namespace %s, which user %q lacks", need.Verb, what, ns, u.GetName())
			if reason != "" {
				msg += ": " + reason
			}
			return apierrors.NewForbidden(vessel.Resource("virtualmachineclones"), c.Name, fmt.Errorf("%s", msg))
		}
	}
	return nil
}
