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

package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +genclient:onlyVerbs=get,list
// +resourceName=virtualmachines
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineMetrics is the current resource usage of one
// VirtualMachine, with the VM's name, namespace and labels. It exists
// while the VM's guest runs and its node agent has been read twice.
type VirtualMachineMetrics struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata: the VM's name, namespace and labels.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Timestamp is when the usage was read by the VM's node agent.
	Timestamp metav1.Time `json:"timestamp"`
	// Window is the interval before Timestamp over which CPU usage was
	// averaged.
	Window metav1.Duration `json:"window"`
	// Usage is the VM's consumption of host resources: cpu in cores (all
	// threads of its QEMU process: vCPUs, emulator and I/O) and memory in
	// bytes (resident in that process).
	Usage corev1.ResourceList `json:"usage"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineMetricsList is a list of VirtualMachineMetrics.
type VirtualMachineMetricsList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the VMs' usages.
	Items []VirtualMachineMetrics `json:"items"`
}
