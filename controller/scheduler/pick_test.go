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

package scheduler

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func hv(name string, ready bool, cpus int32, memory string, vms int32, labels map[string]string) *v1alpha1.Hypervisor {
	status := metav1.ConditionFalse
	if ready {
		status = metav1.ConditionTrue
	}
	return &v1alpha1.Hypervisor{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: v1alpha1.HypervisorStatus{
			Allocatable: v1alpha1.HypervisorResources{CPUs: cpus, Memory: resource.MustParse(memory), VMs: vms},
			Conditions:  []metav1.Condition{{Type: v1alpha1.HypervisorConditionReady, Status: status}},
		},
	}
}

func vm(cpus int32, memory string, selector map[string]string) *v1alpha1.VirtualMachine {
	return &v1alpha1.VirtualMachine{Spec: v1alpha1.VirtualMachineSpec{
		CPUs: cpus, Memory: resource.MustParse(memory), NodeSelector: selector,
	}}
}

func used(cpus int64, memory string, vms int64) *usage {
	return &usage{cpus: cpus, memory: resource.MustParse(memory), vms: vms}
}

func TestPick(t *testing.T) {
	cordoned := hv("cordoned", true, 8, "8Gi", 10, nil)
	cordoned.Spec.Unschedulable = true
	tests := []struct {
		name        string
		vm          *v1alpha1.VirtualMachine
		hypervisors []*v1alpha1.Hypervisor
		used        map[string]*usage
		want        string
		wantReason  string
	}{
		{
			name:        "only ready hypervisor wins",
			vm:          vm(1, "128Mi", nil),
			hypervisors: []*v1alpha1.Hypervisor{hv("down", false, 8, "8Gi", 10, nil), hv("up", true, 2, "1Gi", 10, nil)},
			want:        "up",
		},
		{
			name:        "most free memory wins",
			vm:          vm(1, "128Mi", nil),
			hypervisors: []*v1alpha1.Hypervisor{hv("a", true, 8, "4Gi", 10, nil), hv("b", true, 8, "4Gi", 10, nil)},
			used:        map[string]*usage{"a": used(1, "2Gi", 1)},
			want:        "b",
		},
		{
			name:        "nodeSelector filters",
			vm:          vm(1, "128Mi", map[string]string{"zone": "b"}),
			hypervisors: []*v1alpha1.Hypervisor{hv("a", true, 8, "4Gi", 10, map[string]string{"zone": "a"}), hv("b", true, 1, "1Gi", 10, map[string]string{"zone": "b"})},
			want:        "b",
		},
		{
			name:        "counts what is already bound",
			vm:          vm(2, "128Mi", nil),
			hypervisors: []*v1alpha1.Hypervisor{hv("a", true, 4, "4Gi", 10, nil)},
			used:        map[string]*usage{"a": used(3, "256Mi", 3)},
			wantReason:  "0/1 hypervisors are available: 1 insufficient cpus.",
		},
		{
			name:        "VM count limit",
			vm:          vm(1, "128Mi", nil),
			hypervisors: []*v1alpha1.Hypervisor{hv("a", true, 4, "4Gi", 2, nil)},
			used:        map[string]*usage{"a": used(2, "256Mi", 2)},
			wantReason:  "too many VMs",
		},
		{
			name:        "every reason is told",
			vm:          vm(1, "8Gi", map[string]string{"gpu": "yes"}),
			hypervisors: []*v1alpha1.Hypervisor{hv("down", false, 8, "16Gi", 10, nil), cordoned, hv("small", true, 8, "4Gi", 10, map[string]string{"gpu": "yes"}), hv("plain", true, 8, "16Gi", 10, nil)},
			wantReason:  "0/4 hypervisors are available: 1 didn't match the VM's nodeSelector, 1 insufficient memory, 1 not ready, 1 unschedulable.",
		},
		{
			name:       "no hypervisors",
			vm:         vm(1, "128Mi", nil),
			wantReason: "no Hypervisor is registered",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := pick(tt.vm, tt.hypervisors, tt.used)
			if got != tt.want {
				t.Errorf("pick = %q (%s), want %q", got, reason, tt.want)
			}
			if tt.wantReason != "" && !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason = %q, want it to contain %q", reason, tt.wantReason)
			}
		})
	}
}
