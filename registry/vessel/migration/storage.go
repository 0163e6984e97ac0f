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

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

// NewStorage returns the migration resource and its status subresource.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, vms registry.Getter) (*registry.Stores, error) {
	return registry.Resource[*vessel.VirtualMachineMigration]{
		Kind:       kind(vms),
		New:        func() runtime.Object { return &vessel.VirtualMachineMigration{} },
		NewList:    func() runtime.Object { return &vessel.VirtualMachineMigrationList{} },
		Plural:     "virtualmachinemigrations",
		Singular:   "virtualmachinemigration",
		ShortNames: []string{"vmim", "vmims"},
		Table:      tableConvertor,
	}.Build(scheme, optsGetter)
}
