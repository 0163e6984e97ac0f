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

// Package scheduler binds pending VirtualMachines to Hypervisors: a Ready,
// schedulable hypervisor whose labels match the VM's nodeSelector and with
// room for its CPUs, memory and one more VM. A VM that fits nowhere gets a
// Scheduled=False condition saying why, the way kube-scheduler explains an
// unschedulable pod.
package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// usage is what the VMs bound to one hypervisor ask for.
type usage struct {
	cpus   int64
	memory resource.Quantity
	vms    int64
}

func (u *usage) add(vm *v1alpha1.VirtualMachine) {
	u.cpus += int64(vm.Spec.CPUs)
	u.memory.Add(vm.Spec.Memory)
	u.vms++
}

// pick returns the hypervisor to bind vm to, or "" and the reason none fits.
// Among those that fit it prefers the one with the most free memory, which
// spreads VMs across hosts.
func pick(vm *v1alpha1.VirtualMachine, hypervisors []*v1alpha1.Hypervisor, used map[string]*usage) (string, string) {
	reasons := map[string]int{}
	type candidate struct {
		name string
		free int64
	}
	var fits []candidate
	selector := labels.SelectorFromSet(vm.Spec.NodeSelector)
	for _, hv := range hypervisors {
		u := used[hv.Name]
		if u == nil {
			u = &usage{}
		}
		alloc := hv.Status.Allocatable
		freeMemory := alloc.Memory.Value() - u.memory.Value()
		switch {
		case !ready(hv):
			reasons["not ready"]++
		case hv.Spec.Unschedulable:
			reasons["unschedulable"]++
		case !selector.Matches(labels.Set(hv.Labels)):
			reasons["didn't match the VM's nodeSelector"]++
		case int64(alloc.VMs) <= u.vms:
			reasons["too many VMs"]++
		case int64(alloc.CPUs)-u.cpus < int64(vm.Spec.CPUs):
			reasons["insufficient cpus"]++
		case freeMemory < vm.Spec.Memory.Value():
			reasons["insufficient memory"]++
		default:
			fits = append(fits, candidate{hv.Name, freeMemory})
		}
	}
	if len(fits) > 0 {
		sort.Slice(fits, func(i, j int) bool {
			if fits[i].free != fits[j].free {
				return fits[i].free > fits[j].free
			}
			return fits[i].name < fits[j].name
		})
		return fits[0].name, ""
	}
	return "", explain(len(hypervisors), reasons)
}

// explain says why nothing fits: "0/3 hypervisors are available: 1 not
// ready, 2 insufficient memory."
func explain(total int, reasons map[string]int) string {
	if total == 0 {
		return "0/0 hypervisors are available: no Hypervisor is registered."
	}
	parts := make([]string, 0, len(reasons))
	for reason, n := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, reason))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d hypervisors are available: %s.", total, strings.Join(parts, ", "))
}

func ready(hv *v1alpha1.Hypervisor) bool {
	return meta.IsStatusConditionTrue(hv.Status.Conditions, v1alpha1.HypervisorConditionReady)
}

// unschedulableCondition is the condition a VM that fits nowhere carries.
func unschedulableCondition(vm *v1alpha1.VirtualMachine, message string) metav1.Condition {
	return metav1.Condition{
		Type:               v1alpha1.VirtualMachineConditionScheduled,
		Status:             metav1.ConditionFalse,
		Reason:             "Unschedulable",
		Message:            message,
		ObservedGeneration: vm.Generation,
	}
}
