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

// Package snapshot stores VirtualMachineSnapshots.
package snapshot

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

// NewStorage builds the VirtualMachineSnapshot store and its status subresource.
// vms looks up the VM a new snapshot names.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, vms registry.Getter) (*registry.Stores, error) {
	return registry.Resource[*vessel.VirtualMachineSnapshot]{
		Kind:       kind(vms),
		New:        func() runtime.Object { return &vessel.VirtualMachineSnapshot{} },
		NewList:    func() runtime.Object { return &vessel.VirtualMachineSnapshotList{} },
		Plural:     "virtualmachinesnapshots",
		Singular:   "virtualmachinesnapshot",
		ShortNames: []string{"vmsnap", "vmsnaps"},
		Table:      tableConvertor,
	}.Build(scheme, optsGetter)
}
