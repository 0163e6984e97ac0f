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
	"bufio"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// hostCapacity is the configured capacity with its zero fields filled: CPUs
// and memory from /proc, the VM count from maxVMs.
func hostCapacity(configured v1alpha1.HypervisorResources, maxVMs int32) v1alpha1.HypervisorResources {
	c := *configured.DeepCopy()
	if c.CPUs == 0 {
		c.CPUs = hostCPUs()
	}
	if c.Memory.IsZero() {
		c.Memory = *resource.NewQuantity(hostMemory(), resource.BinarySI)
	}
	if c.VMs == 0 {
		c.VMs = maxVMs
	}
	return c
}

// allocatableOf is what VMs may use of capacity: vCPUs overcommit the CPUs
// left after the reserve by ratio (guests rarely keep every vCPU busy);
// memory and the VM count are never overcommitted.
func allocatableOf(capacity v1alpha1.HypervisorResources, reservedCPUs int32, reservedMemory resource.Quantity, ratio int32) v1alpha1.HypervisorResources {
	out := v1alpha1.HypervisorResources{
		CPUs:   max(capacity.CPUs-reservedCPUs, 0) * max(ratio, 1),
		Memory: capacity.Memory.DeepCopy(),
		VMs:    capacity.VMs,
	}
	out.Memory.Sub(reservedMemory)
	if out.Memory.Sign() < 0 {
		out.Memory = resource.MustParse("0")
	}
	return out
}

// allocatedBy sums what vms ask for.
func allocatedBy(vms []*v1alpha1.VirtualMachine) v1alpha1.HypervisorResources {
	var out v1alpha1.HypervisorResources
	out.Memory = resource.MustParse("0")
	for _, vm := range vms {
		out.VMs++
		out.CPUs += max(vm.Spec.CPUs, 1)
		out.Memory.Add(vm.Spec.Memory)
	}
	return out
}

func hostCPUs() int32 {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 1
	}
	defer f.Close()
	var n int32
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "processor") {
			n++
		}
	}
	return max(n, 1)
}

func hostMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kib * 1024
			}
		}
	}
	return 0
}
