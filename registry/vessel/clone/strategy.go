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

package clone

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
	"github.com/vessel-vm/vessel/registry/vessel/virtualmachine"
)

// kind tells the shared strategies how VirtualMachineClones differ; vms and
// snapshots look up the source a new clone names.
func kind(vms, snapshots registry.Getter) registry.Kind[*vessel.VirtualMachineClone] {
	return registry.Kind[*vessel.VirtualMachineClone]{
		Namespaced:         true,
		ResetFieldsVersion: v1alpha1.SchemeGroupVersion.String(),
		PrepareForCreate: func(c *vessel.VirtualMachineClone) {
			c.Status = vessel.VirtualMachineCloneStatus{Phase: vessel.ClonePending}
		},
		KeepStatus:           func(c, old *vessel.VirtualMachineClone) { c.Status = old.Status },
		KeepSpec:             func(c, old *vessel.VirtualMachineClone) { c.Spec = old.Spec },
		Spec:                 func(c *vessel.VirtualMachineClone) any { return c.Spec },
		Validate:             validation.ValidateVirtualMachineClone,
		ValidateUpdate:       validation.ValidateVirtualMachineCloneUpdate,
		ValidateStatusUpdate: validation.ValidateVirtualMachineCloneStatusUpdate,
		Fields: func(c *vessel.VirtualMachineClone) fields.Set {
			return fields.Set{
				"spec.source.virtualMachineName": c.Spec.Source.VirtualMachineName,
				"spec.source.snapshotName":       c.Spec.Source.SnapshotName,
				"spec.target.name":               c.Spec.Target.Name,
				"status.phase":                   string(c.Status.Phase),
			}
		},
		// A clone is refused up front when its source cannot be cloned: it
		// must exist in the namespace, and a memory clone needs a snapshot
		// with memory. Whether the source VM runs is the agent's to say.
		Resolve: func(ctx context.Context, c *vessel.VirtualMachineClone) field.ErrorList {
			return resolveSource(ctx, c, vms, snapshots)
		},
	}
}

func resolveSource(ctx context.Context, c *vessel.VirtualMachineClone, vms, snapshots registry.Getter) field.ErrorList {
	src := c.Spec.Source
	memory := c.Spec.Memory != nil && *c.Spec.Memory
	if src.VirtualMachineName != "" {
		if _, err := virtualmachine.GetVirtualMachine(ctx, vms, src.VirtualMachineName, field.NewPath("spec", "source", "virtualMachineName")); err != nil {
			return field.ErrorList{err}
		}
		return nil
	}
	path := field.NewPath("spec", "source", "snapshotName")
	obj, err := snapshots.Get(ctx, src.SnapshotName, &metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return field.ErrorList{field.Invalid(path, src.SnapshotName, "no such VirtualMachineSnapshot in this namespace")}
	}
	if err != nil {
		return field.ErrorList{field.InternalError(path, fmt.Errorf("look up VirtualMachineSnapshot %s: %w", src.SnapshotName, err))}
	}
	snap := obj.(*vessel.VirtualMachineSnapshot)
	switch {
	case snap.DeletionTimestamp != nil:
		return field.ErrorList{field.Invalid(path, src.SnapshotName, "the snapshot is being deleted")}
	case !snap.Status.ReadyToUse:
		return field.ErrorList{field.Invalid(path, src.SnapshotName, fmt.Sprintf("the snapshot is not ready to use (phase %s)", snap.Status.Phase))}
	case memory && !snap.Status.MemoryIncluded:
		return field.ErrorList{field.Invalid(path, src.SnapshotName,
			"the snapshot holds no memory (it was taken of a stopped VM, or with includeMemory: false): clone it with memory: false")}
	}
	return nil
}
