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

package vessel

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group served by Vessel.
const GroupName = "vessel.dev"

// SchemeGroupVersion is the internal version of the group.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: runtime.APIVersionInternal}

// Kind returns a group-qualified kind.
func Kind(kind string) schema.GroupKind {
	return SchemeGroupVersion.WithKind(kind).GroupKind()
}

// Resource returns a group-qualified resource.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

var (
	// SchemeBuilder registers the internal types.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the internal types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion,
		&VirtualMachine{},
		&VirtualMachineList{},
		&VirtualMachineBinding{},
		&VirtualMachineActionOptions{},
		&VirtualMachineConsoleOptions{},
		&VirtualMachinePortForwardOptions{},
		&VirtualMachineSnapshot{},
		&VirtualMachineSnapshotList{},
		&VirtualMachineRestore{},
		&VirtualMachineRestoreList{},
		&Hypervisor{},
		&HypervisorList{},
		&VirtualMachineClone{},
		&VirtualMachineCloneList{},
		&VirtualMachineMigration{},
		&VirtualMachineMigrationList{},
		&VirtualMachinePool{},
		&VirtualMachinePoolList{},
	)
	return nil
}
