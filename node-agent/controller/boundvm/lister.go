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

package boundvm

import (
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

// Lister reads VMs bound to one hypervisor from the agent's VM cache
// (filtered on spec.nodeName by the server).
type Lister struct {
	VMs  listers.VirtualMachineLister
	Node string
}

// Get is the VM namespace/name if it is bound to the node, else nil.
func (l Lister) Get(namespace, name string) *v1alpha1.VirtualMachine {
	vm, err := l.VMs.VirtualMachines(namespace).Get(name)
	if err != nil || vm.Spec.NodeName != l.Node {
		return nil
	}
	return vm
}

// Key is the workqueue key of a VM, namespace/name.
func Key(vm *v1alpha1.VirtualMachine) string { return vm.Namespace + "/" + vm.Name }
