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

// Package quota makes ResourceQuota work for Vessel: evaluators that tell
// k8s.io/apiserver's quota admission (in the vessel-apiserver) what a VM,
// snapshot or restore uses, and a controller that keeps the usage recorded
// in each quota's status true as objects go away or change.
//
// Resource names: count/virtualmachines.vessel.dev,
// count/virtualmachinesnapshots.vessel.dev,
// count/virtualmachinerestores.vessel.dev, and vessel.dev/requests.cpu,
// vessel.dev/requests.memory, vessel.dev/requests.storage summed from VM
// specs (see v1alpha1.ResourceRequestsCPU for why not requests.cpu).
package quota

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	quota "k8s.io/apiserver/pkg/quota/v1"
	"k8s.io/apiserver/pkg/quota/v1/generic"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

var (
	virtualMachines = schema.GroupResource{Group: v1alpha1.GroupName, Resource: "virtualmachines"}
	snapshots       = schema.GroupResource{Group: v1alpha1.GroupName, Resource: "virtualmachinesnapshots"}
	restores        = schema.GroupResource{Group: v1alpha1.GroupName, Resource: "virtualmachinerestores"}
)

// Resource names a VM is charged to.
var (
	VirtualMachineCount = generic.ObjectCountQuotaResourceNameFor(virtualMachines)
	SnapshotCount       = generic.ObjectCountQuotaResourceNameFor(snapshots)
	RestoreCount        = generic.ObjectCountQuotaResourceNameFor(restores)
	RequestsCPU         = corev1.ResourceName(v1alpha1.ResourceRequestsCPU)
	RequestsMemory      = corev1.ResourceName(v1alpha1.ResourceRequestsMemory)
	RequestsStorage     = corev1.ResourceName(v1alpha1.ResourceRequestsStorage)
)

var vmResources = []corev1.ResourceName{VirtualMachineCount, RequestsCPU, RequestsMemory, RequestsStorage}

// Listers are where the controller counts objects; admission, which only
// charges what it admits, needs none.
type Listers struct {
	VirtualMachines listers.VirtualMachineLister
	Snapshots       listers.VirtualMachineSnapshotLister
	Restores        listers.VirtualMachineRestoreLister
}

// NewConfiguration returns the quota configuration of Vessel's resources.
func NewConfiguration(l Listers) quota.Configuration {
	return generic.NewConfiguration(Evaluators(l), nil)
}

// Evaluators are one per Vessel kind a namespace holds.
func Evaluators(l Listers) []quota.Evaluator {
	var listSnapshots, listRestores generic.ListFuncByNamespace
	if l.Snapshots != nil {
		listSnapshots = func(namespace string) ([]runtime.Object, error) {
			items, err := l.Snapshots.VirtualMachineSnapshots(namespace).List(labels.Everything())
			return objects(items), err
		}
	}
	if l.Restores != nil {
		listRestores = func(namespace string) ([]runtime.Object, error) {
			items, err := l.Restores.VirtualMachineRestores(namespace).List(labels.Everything())
			return objects(items), err
		}
	}
	return []quota.Evaluator{
		&vmEvaluator{lister: l.VirtualMachines},
		generic.NewObjectCountEvaluator(snapshots, listSnapshots, ""),
		generic.NewObjectCountEvaluator(restores, listRestores, ""),
	}
}

func objects[T runtime.Object](items []T) []runtime.Object {
	out := make([]runtime.Object, len(items))
	for i, item := range items {
		out[i] = item
	}
	return out
}

// vmEvaluator counts VMs and sums what their specs ask for.
type vmEvaluator struct {
	lister listers.VirtualMachineLister
}

var _ quota.Evaluator = &vmEvaluator{}

func (e *vmEvaluator) GroupResource() schema.GroupResource { return virtualMachines }

func (e *vmEvaluator) Constraints([]corev1.ResourceName, runtime.Object) error { return nil }

// Handles creates, and updates too: a bigger VM is charged the difference.
func (e *vmEvaluator) Handles(a admission.Attributes) bool {
	op := a.GetOperation()
	return a.GetSubresource() == "" && (op == admission.Create || op == admission.Update)
}

// Matches quotas without scopes: quota scopes (Terminating, BestEffort,
// PriorityClass, ...) are about pods.
func (e *vmEvaluator) Matches(q *corev1.ResourceQuota, item runtime.Object) (bool, error) {
	return generic.Matches(q, item, e.MatchingResources, generic.MatchesNoScopeFunc)
}

func (e *vmEvaluator) MatchingResources(input []corev1.ResourceName) []corev1.ResourceName {
	return quota.Intersection(input, vmResources)
}

func (e *vmEvaluator) MatchingScopes(runtime.Object, []corev1.ScopedResourceSelectorRequirement) ([]corev1.ScopedResourceSelectorRequirement, error) {
	return nil, nil
}

func (e *vmEvaluator) UncoveredQuotaScopes([]corev1.ScopedResourceSelectorRequirement, []corev1.ScopedResourceSelectorRequirement) ([]corev1.ScopedResourceSelectorRequirement, error) {
	return nil, nil
}

// Usage is one VM, its vCPUs, its memory and the sizes of its blank disks
// (the only disks whose size the spec states; an image's size is known only
// once it is downloaded, and a host path is the operator's file). A VM is
// charged whatever its run strategy, as long as it exists: a stopped VM
// keeps its disks and can be started at any moment.
func (e *vmEvaluator) Usage(item runtime.Object) (corev1.ResourceList, error) {
	var cpus int32
	var memory resource.Quantity
	var blanks []resource.Quantity
	switch vm := item.(type) {
	case *v1alpha1.VirtualMachine:
		cpus, memory = vm.Spec.CPUs, vm.Spec.Memory
		for _, d := range vm.Spec.Disks {
			if d.Blank != nil {
				blanks = append(blanks, d.Blank.Size)
			}
		}
	case *vessel.VirtualMachine:
		cpus, memory = vm.Spec.CPUs, vm.Spec.Memory
		for _, d := range vm.Spec.Disks {
			if d.Blank != nil {
				blanks = append(blanks, d.Blank.Size)
			}
		}
	default:
		return nil, fmt.Errorf("quota: not a VirtualMachine: %T", item)
	}
	storage := resource.NewQuantity(0, resource.BinarySI)
	for _, size := range blanks {
		storage.Add(size)
	}
	return corev1.ResourceList{
		VirtualMachineCount: *resource.NewQuantity(1, resource.DecimalSI),
		RequestsCPU:         *resource.NewQuantity(int64(cpus), resource.DecimalSI),
		RequestsMemory:      *resource.NewQuantity(memory.Value(), resource.BinarySI),
		RequestsStorage:     *storage,
	}, nil
}

func (e *vmEvaluator) UsageStats(options quota.UsageStatsOptions) (quota.UsageStats, error) {
	if e.lister == nil {
		return quota.UsageStats{}, fmt.Errorf("quota: no VirtualMachine lister to compute usage with")
	}
	list := func(namespace string) ([]runtime.Object, error) {
		items, err := e.lister.VirtualMachines(namespace).List(labels.Everything())
		return objects(items), err
	}
	return generic.CalculateUsageStats(options, list, generic.MatchesNoScopeFunc, e.Usage)
}

// Owned are the resource names Vessel computes: the controller writes these,
// and leaves every other name of a quota to whoever computes it.
func Owned(names []corev1.ResourceName, evaluators []quota.Evaluator) []corev1.ResourceName {
	var out []corev1.ResourceName
	for _, e := range evaluators {
		out = append(out, e.MatchingResources(names)...)
	}
	return quota.Intersection(names, out)
}
