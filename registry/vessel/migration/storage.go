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

// Package migration stores VirtualMachineMigrations.
package migration

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

// NewStorage returns the migration resource and its status subresource.
// vms looks up the VM a new migration names, snapshots lists its
// snapshots.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, vms registry.Getter, snapshots rest.Lister) (*Storage, error) {
	stores, err := registry.Resource[*vessel.VirtualMachineMigration]{
		Kind:       kind(vms),
		New:        func() runtime.Object { return &vessel.VirtualMachineMigration{} },
		NewList:    func() runtime.Object { return &vessel.VirtualMachineMigrationList{} },
		Plural:     "virtualmachinemigrations",
		Singular:   "virtualmachinemigration",
		ShortNames: []string{"vmim", "vmims"},
		Table:      tableConvertor,
	}.Build(scheme, optsGetter)
	if err != nil {
		return nil, err
	}
	return &Storage{Main: &REST{REST: stores.Main, vms: vms, snapshots: snapshots}, Status: stores.Status}, nil
}

// Storage is the VirtualMachineMigration resource and its status
// subresource.
type Storage struct {
	Main   *REST
	Status *registry.StatusREST
}
