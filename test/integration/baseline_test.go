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

package integration

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage/names"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apiserver"
)

// plainStorage serves virtualmachines from a genericregistry.Store of the
// same type with none of Vessel's registry code: the strategy below does
// nothing, so there is no validation, no status or generation handling,
// no field selectors beyond metadata, no watch trigger and the default
// table. It is the benchmarks' baseline: what the generic apiserver, the
// codecs and etcd cost on their own.
func plainStorage(optsGetter generic.RESTOptionsGetter) (map[string]rest.Storage, error) {
	strategy := plainStrategy{ObjectTyper: apiserver.Scheme, NameGenerator: names.SimpleNameGenerator}
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &vessel.VirtualMachine{} },
		NewListFunc:               func() runtime.Object { return &vessel.VirtualMachineList{} },
		DefaultQualifiedResource:  vessel.Resource("virtualmachines"),
		SingularQualifiedResource: vessel.Resource("virtualmachine"),
		CreateStrategy:            strategy,
		UpdateStrategy:            strategy,
		DeleteStrategy:            strategy,
		TableConvertor:            rest.NewDefaultTableConvertor(vessel.Resource("virtualmachines")),
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter}); err != nil {
		return nil, err
	}
	return map[string]rest.Storage{"virtualmachines": store}, nil
}

// plainStrategy accepts every object as it is.
type plainStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

var (
	_ rest.RESTCreateStrategy = plainStrategy{}
	_ rest.RESTUpdateStrategy = plainStrategy{}
	_ rest.RESTDeleteStrategy = plainStrategy{}
)

func (plainStrategy) NamespaceScoped() bool                                            { return true }
func (plainStrategy) PrepareForCreate(context.Context, runtime.Object)                 {}
func (plainStrategy) PrepareForUpdate(context.Context, runtime.Object, runtime.Object) {}
func (plainStrategy) Validate(context.Context, runtime.Object) field.ErrorList         { return nil }
func (plainStrategy) ValidateUpdate(context.Context, runtime.Object, runtime.Object) field.ErrorList {
	return nil
}
func (plainStrategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }
func (plainStrategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}
func (plainStrategy) Canonicalize(runtime.Object)                   {}
func (plainStrategy) AllowCreateOnUpdate(context.Context) bool      { return false }
func (plainStrategy) AllowUnconditionalUpdate(context.Context) bool { return true }
