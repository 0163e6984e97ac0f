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

package nodestatus

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestAllocatable(t *testing.T) {
	capacity := v1alpha1.HypervisorResources{CPUs: 4, Memory: resource.MustParse("8Gi"), VMs: 10}
	tests := []struct {
		name         string
		reservedCPUs int32
		reservedMem  string
		ratio        int32
		cpus         int32
		memory       string
	}{
		{"no reserve, no overcommit", 0, "0", 1, 4, "8Gi"},
		{"ratio zero means one", 0, "0", 0, 4, "8Gi"},
		{"reserve then overcommit", 1, "1Gi", 8, 24, "7Gi"},
		{"reserve above capacity", 6, "9Gi", 8, 0, "0"},
	}
	for _, tt := range tests {
		got := allocatableOf(capacity, tt.reservedCPUs, resource.MustParse(tt.reservedMem), tt.ratio)
		if got.CPUs != tt.cpus || got.Memory.Cmp(resource.MustParse(tt.memory)) != 0 || got.VMs != 10 {
			t.Errorf("%s: allocatable = %+v, want %d CPUs, %s, 10 VMs", tt.name, got, tt.cpus, tt.memory)
		}
	}
}

func TestAllocatedCountsOneCPUForVMsWithoutCPUs(t *testing.T) {
	vms := []*v1alpha1.VirtualMachine{
		{Spec: v1alpha1.VirtualMachineSpec{CPUs: 2, Memory: resource.MustParse("1Gi")}},
		{Spec: v1alpha1.VirtualMachineSpec{Memory: resource.MustParse("512Mi")}},
	}
	got := allocatedBy(vms)
	if got.VMs != 2 || got.CPUs != 3 || got.Memory.Cmp(resource.MustParse("1536Mi")) != 0 {
		t.Errorf("allocated = %+v", got)
	}
}

func TestHostCapacityFillsOnlyZeroFields(t *testing.T) {
	got := hostCapacity(v1alpha1.HypervisorResources{CPUs: 3}, 5)
	if got.CPUs != 3 || got.VMs != 5 || got.Memory.IsZero() {
		t.Errorf("capacity = %+v", got)
	}
}
