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

package metrics

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineMetrics is the resource usage of one VirtualMachine, named
// and namespaced like it.
type VirtualMachineMetrics struct {
	metav1.TypeMeta
	metav1.ObjectMeta

	// Timestamp is when the usage was read; CPU is averaged over Window
	// before it.
	Timestamp metav1.Time
	Window    metav1.Duration
	// Usage has cpu (cores) and memory (bytes).
	Usage corev1.ResourceList
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineMetricsList is a list of VirtualMachineMetrics.
type VirtualMachineMetricsList struct {
	metav1.TypeMeta
	metav1.ListMeta

	Items []VirtualMachineMetrics
}
