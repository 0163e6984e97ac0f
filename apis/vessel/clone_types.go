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

package vessel

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineClone makes a new VirtualMachine from a VM or from one of its
// snapshots. A memory clone resumes a new, already booted guest from the
// source's memory, on the hypervisor that holds that memory; a disks-only
// clone boots from the source's disks as they were. Either way the new VM
// has its own UID, domain UUID, MAC addresses, VM generation ID and
// copy-on-write disks, and the source is not changed.
type VirtualMachineClone struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec names the source and the new VM.
	// +optional
	Spec VirtualMachineCloneSpec `json:"spec,omitempty"`
	// Status is the clone's progress. Read-only.
	// +optional
	Status VirtualMachineCloneStatus `json:"status,omitempty"`
}

// VirtualMachineCloneSpec is the desired clone.
type VirtualMachineCloneSpec struct {
	// Source is the VM or snapshot to clone, in the clone's namespace.
	Source CloneSource `json:"source"`
	// Target describes the new VirtualMachine.
	Target CloneTarget `json:"target"`
	// Memory resumes the new VM from the source's memory, so its guest runs
	// on from where the source's was without booting (the default). False
	// clones the disks only and boots the new VM from them.
	// +optional
	Memory *bool `json:"memory,omitempty"`
}

// CloneSource is what a clone copies. Exactly one member must be set.
type CloneSource struct {
	// VirtualMachineName clones this VM as it is now. A memory clone needs
	// its guest running (or paused): the guest pauses while its memory and
	// disks are saved (a fraction of a second), then runs on.
	// +optional
	VirtualMachineName string `json:"virtualMachineName,omitempty"`
	// SnapshotName clones the VM as a VirtualMachineSnapshot saved it. A
	// memory clone needs a snapshot that holds memory (taken of a running
	// VM with includeMemory): such a snapshot also keeps a memory image
	// and frozen copies of the disks next to the VM's files, which every
	// clone of it shares.
	// +optional
	SnapshotName string `json:"snapshotName,omitempty"`
}

// CloneTarget is the VirtualMachine a clone makes.
type CloneTarget struct {
	// Name of the new VirtualMachine (a DNS label); it must not exist yet.
	Name string `json:"name"`
	// Labels of the new VM.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations of the new VM.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// Paused leaves the new VM's guest paused once it has been resumed from
	// memory and told its new identity (spec.paused of the new VM): warm
	// pools keep such clones ready to hand out.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// ClonePhase is where a clone is.
// +enum
type ClonePhase string

const (
	// ClonePending: the new VM is not created yet.
	ClonePending ClonePhase = "Pending"
	// CloneInProgress: the new VM exists; its hypervisor is making its
	// disks and domain.
	CloneInProgress ClonePhase = "InProgress"
	// CloneSucceeded: the new VM's domain exists (and, for a memory clone,
	// its guest runs on from the source's memory).
	CloneSucceeded ClonePhase = "Succeeded"
	// CloneFailed: see error and conditions.
	CloneFailed ClonePhase = "Failed"
)

// VirtualMachineCloneStatus is the observed state of a clone.
type VirtualMachineCloneStatus struct {
	// Phase is Pending, InProgress, Succeeded or Failed.
	// +optional
	Phase ClonePhase `json:"phase,omitempty"`
	// VirtualMachineName is the new VM, once created.
	// +optional
	VirtualMachineName string `json:"virtualMachineName,omitempty"`
	// VirtualMachineUID is the new VM's UID (and its domain's UUID).
	// +optional
	VirtualMachineUID string `json:"virtualMachineUID,omitempty"`
	// SourceVirtualMachineUID is the UID of the VM that was cloned.
	// +optional
	SourceVirtualMachineUID string `json:"sourceVirtualMachineUID,omitempty"`
	// NodeName is the hypervisor the new VM runs on: the one holding the
	// source's memory and disks.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// MemoryRestored is true when the new guest resumed from the source's
	// memory rather than booting.
	// +optional
	MemoryRestored bool `json:"memoryRestored,omitempty"`
	// IdentityAcknowledged is true when the guest confirmed, on its Vessel
	// identity port, that it took its new identity (hostname, instance ID,
	// MAC addresses). Guests without a handler for that port never do; they
	// still get a new VM generation ID and a new cloud-init instance ID.
	// +optional
	IdentityAcknowledged bool `json:"identityAcknowledged,omitempty"`
	// StartTime is when the clone was picked up.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime is when the clone succeeded or failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Duration is how long the clone took, from its creation to the new
	// guest running from memory (or, for a disks-only clone, to its domain
	// being defined).
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// Error says why the clone failed.
	// +optional
	Error string `json:"error,omitempty"`
	// Conditions are detailed observations (Ready).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineCloneList is a list of clones.
type VirtualMachineCloneList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items is the list of clones.
	Items []VirtualMachineClone `json:"items"`
}
