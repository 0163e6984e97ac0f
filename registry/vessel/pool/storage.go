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

// Package pool stores VirtualMachinePools and serves their scale
// subresource.
package pool

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
)

// Storage is every REST endpoint of VirtualMachinePools, sharing one store.
type Storage struct {
	Pool   *registry.REST
	Status *registry.StatusREST
	Scale  *ScaleREST
}

// NewStorage builds the VirtualMachinePool store, its status and its scale
// subresources.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, opts validation.Options) (*Storage, error) {
	stores, err := registry.Resource[*vessel.VirtualMachinePool]{
		Kind:       kind(opts),
		New:        func() runtime.Object { return &vessel.VirtualMachinePool{} },
		NewList:    func() runtime.Object { return &vessel.VirtualMachinePoolList{} },
		Plural:     "virtualmachinepools",
		Singular:   "virtualmachinepool",
		ShortNames: []string{"vmpool", "vmpools"},
		Table:      tableConvertor,
	}.Build(scheme, optsGetter)
	if err != nil {
		return nil, err
	}
	return &Storage{Pool: stores.Main, Status: stores.Status, Scale: &ScaleREST{store: stores.Store}}, nil
}
