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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels the pool controller puts on a pool's VirtualMachines.
const (
	// LabelPool names the VirtualMachinePool a VM belongs to.
	LabelPool = "vessel.dev/pool"
	// LabelPoolMember is PoolMemberReplica for a VM the pool has handed
	// out and PoolMemberWarm for one it keeps ready to hand out.
	LabelPoolMember = "vessel.dev/pool-member"
	// PoolMemberReplica marks a VM counted in the pool's replicas.
	PoolMemberReplica = "replica"
	// PoolMemberWarm marks a paused memory clone kept ready.
	PoolMemberWarm = "warm"
)

// +genclient
// +genclient:method=GetScale,verb=get,subresource=scale,result=k8s.io/api/autoscaling/v1.Scale
// +genclient:method=UpdateScale,verb=update,subresource=scale,input=k8s.io/api/autoscaling/v1.Scale,result=k8s.io/api/autoscaling/v1.Scale
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachinePool keeps a number of VirtualMachines made from one
// template, the way a ReplicaSet keeps pods. With warm set it also keeps
// some paused memory clones of a snapshot, resumed from memory and told
// their identity ahead of time: scaling up hands those out first, which
// takes as long as unpausing a guest. `kubectl scale vmpool` works.
type VirtualMachinePool struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec is the desired pool.
	// +optional
	Spec VirtualMachinePoolSpec `json:"spec,omitempty"`
	// Status counts the pool's VMs. Read-only.
	// +optional
	Status VirtualMachinePoolStatus `json:"status,omitempty"`
}

// VirtualMachinePoolSpec is the desired pool.
type VirtualMachinePoolSpec struct {
	// Replicas is how many VMs the pool hands out. Defaults to 1.
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Template is what every VM of the pool gets: its labels and
	// annotations, and, without warm, its spec (each VM boots from it).
	// With warm, the VMs are clones of the snapshot's VM and the template
	// must not have a spec.
	Template VirtualMachineTemplate `json:"template"`
	// Warm makes the pool's VMs memory clones of a snapshot and keeps some
	// ready to hand out.
	// +optional
	Warm *WarmPool `json:"warm,omitempty"`
}

// VirtualMachineTemplate describes the VMs a pool makes.
type VirtualMachineTemplate struct {
	// Metadata holds the VMs' labels and annotations.
	// +optional
	Metadata VirtualMachineTemplateMetadata `json:"metadata,omitempty"`
	// Spec is the VMs' spec; required unless the pool is warm.
	// +optional
	Spec *VirtualMachineSpec `json:"spec,omitempty"`
}

// VirtualMachineTemplateMetadata is the metadata a pool gives its VMs.
type VirtualMachineTemplateMetadata struct {
	// Labels of every VM of the pool (besides vessel.dev/pool and
	// vessel.dev/pool-member, which the pool sets).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations of every VM of the pool.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// WarmPool keeps paused memory clones of a snapshot ready.
type WarmPool struct {
	// SnapshotName is a VirtualMachineSnapshot, in the pool's namespace,
	// that holds memory: every VM of the pool is a memory clone of it.
	SnapshotName string `json:"snapshotName"`
	// Ready is how many clones the pool keeps resumed from memory and
	// paused besides its replicas. Scaling up unpauses these first and then
	// makes new ones.
	Ready int32 `json:"ready"`
}

// Condition types of a VirtualMachinePool.
const (
	// PoolConditionReplicaFailure is True when the pool cannot make the
	// VMs it should (its clones or creates fail); the message says why.
	PoolConditionReplicaFailure = "ReplicaFailure"
)

// VirtualMachinePoolStatus counts a pool's VMs.
type VirtualMachinePoolStatus struct {
	// Replicas is how many VMs the pool has handed out.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// RunningReplicas is how many of those have a running guest.
	// +optional
	RunningReplicas int32 `json:"runningReplicas,omitempty"`
	// WarmReplicas is how many warm clones the pool has, ready or not.
	// +optional
	WarmReplicas int32 `json:"warmReplicas,omitempty"`
	// ReadyWarmReplicas is how many warm clones are resumed from memory
	// and paused: ready to hand out at once.
	// +optional
	ReadyWarmReplicas int32 `json:"readyWarmReplicas,omitempty"`
	// Selector selects the VMs counted in replicas (for the scale
	// subresource).
	// +optional
	Selector string `json:"selector,omitempty"`
	// ObservedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are detailed observations (ReplicaFailure).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachinePoolList is a list of pools.
type VirtualMachinePoolList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items is the list of pools.
	Items []VirtualMachinePool `json:"items"`
}
