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
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/registry"
)

// GetVirtualMachine looks up the VM an object refers to at path, as a field
// error a user can act on when it is missing or being deleted.
func GetVirtualMachine(ctx context.Context, vms registry.Getter, name string, path *field.Path) (*vessel.VirtualMachine, *field.Error) {
	obj, err := vms.Get(ctx, name, &metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, field.Invalid(path, name, "no such VirtualMachine in this namespace")
	}
	if err != nil {
		return nil, field.InternalError(path, fmt.Errorf("look up VirtualMachine %s: %w", name, err))
	}
	vm := obj.(*vessel.VirtualMachine)
	if vm.DeletionTimestamp != nil {
		return nil, field.Invalid(path, name, "the VirtualMachine is being deleted")
	}
	return vm, nil
}

// SetOwner makes vm the owner of obj, so the garbage collector deletes obj
// with the VM.
func SetOwner(obj metav1.Object, vm *vessel.VirtualMachine) {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == vm.UID {
			return
		}
	}
	obj.SetOwnerReferences(append(obj.GetOwnerReferences(), metav1.OwnerReference{
		APIVersion: v1alpha1.SchemeGroupVersion.String(),
		Kind:       "VirtualMachine",
		Name:       vm.Name,
		UID:        vm.UID,
	}))
}
