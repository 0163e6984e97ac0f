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
	corev1 "k8s.io/api/core/v1"

	"github.com/vessel-vm/vessel/apis/metrics"
	"github.com/vessel-vm/vessel/registry"
)

// tableConvertor prints what kubectl top prints, plus the window.
var tableConvertor = registry.TableConvertor[*metrics.VirtualMachineMetrics]{
	Columns: []registry.Column{
		{Name: "CPU(cores)", Type: "string", Description: "Host CPU the VM used, in cores, averaged over the window."},
		{Name: "Memory(bytes)", Type: "string", Description: "Host memory resident in the VM's QEMU process."},
		{Name: "Window", Type: "string", Description: "Interval the CPU usage is averaged over."},
	},
	Row: func(m *metrics.VirtualMachineMetrics) []any {
		cpu, mem := m.Usage[corev1.ResourceCPU], m.Usage[corev1.ResourceMemory]
		return []any{
			cpu.String(),
			registry.Bytes(mem),
			m.Window.Duration.String(),
		}
	},
}
