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

// AnnotationMigration is set by the migration controller on a VM while a
// VirtualMachineMigration moves it, to the migration's name: the VM's
// status phase is Migrating and its agents leave its domain to the
// migration.
const AnnotationMigration = "vessel.dev/migration"

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineMigration moves a running VM to another hypervisor without
// stopping its guest: a live migration that copies its node-local disks
// too. It is the only way a bound VM changes hypervisor.
type VirtualMachineMigration struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec names the VM and, optionally, where it goes.
	// +optional
	Spec VirtualMachineMigrationSpec `json:"spec,omitempty"`
	// Status is the migration's progress. Read-only.
	// +optional
	Status VirtualMachineMigrationStatus `json:"status,omitempty"`
}

// VirtualMachineMigrationSpec is the desired migration.
type VirtualMachineMigrationSpec struct {
	// VirtualMachineName is the VM to move, in the migration's namespace.
	// Its guest must be running.
	VirtualMachineName string `json:"virtualMachineName"`
	// TargetHypervisor is where the VM goes. Empty: the scheduler picks a
	// Ready, schedulable hypervisor with room that matches the VM's
	// nodeSelector, other than the one the VM runs on.
	// +optional
	TargetHypervisor string `json:"targetHypervisor,omitempty"`
}

// MigrationPhase is where a migration is.
// +enum
type MigrationPhase string

const (
	// MigrationPending: not looked at yet.
	MigrationPending MigrationPhase = "Pending"
	// MigrationScheduling: waiting for a target that fits and a Ready
	// source (see reason); failed after 5 minutes.
	MigrationScheduling MigrationPhase = "Scheduling"
	// MigrationRunning: the source hypervisor is copying the guest.
	MigrationRunning MigrationPhase = "Running"
	// MigrationSucceeded: the guest runs on the target and the VM is bound
	// to it.
	MigrationSucceeded MigrationPhase = "Succeeded"
	// MigrationFailed: the guest still runs on the source; see reason.
	MigrationFailed MigrationPhase = "Failed"
)

// VirtualMachineMigrationStatus is the observed state of a migration.
type VirtualMachineMigrationStatus struct {
	// Phase is Pending, Scheduling, Running, Succeeded or Failed.
	// +optional
	Phase MigrationPhase `json:"phase,omitempty"`
	// VirtualMachineUID is the UID of the VM being moved.
	// +optional
	VirtualMachineUID string `json:"virtualMachineUID,omitempty"`
	// Source is the hypervisor the guest runs on when the migration starts.
	// +optional
	Source string `json:"source,omitempty"`
	// Target is the hypervisor the guest moves to.
	// +optional
	Target string `json:"target,omitempty"`
	// StartTime is when the guest started moving.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// AcceptedTime is when the source hypervisor's agent took the
	// migration on, before it touched the guest. A migration its agent
	// has not taken on a while after it started fails, and the agent
	// never takes a failed one on: one of the two wins.
	// +optional
	AcceptedTime *metav1.Time `json:"acceptedTime,omitempty"`
	// EndTime is when the migration succeeded or failed.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`
	// HandedOver is set once the VM of a Succeeded migration was bound to
	// its target: a migration hands its VM over once, never again (the VM
	// may have moved on since).
	// +optional
	HandedOver bool `json:"handedOver,omitempty"`
	// TransferredBytes is how much memory and disk data has been sent.
	// +optional
	TransferredBytes int64 `json:"transferredBytes,omitempty"`
	// TotalBytes is libvirt's estimate of all there is to send (memory and
	// disks); it grows while a busy guest dirties memory.
	// +optional
	TotalBytes int64 `json:"totalBytes,omitempty"`
	// Progress is the percentage of TotalBytes sent (0-100).
	// +optional
	Progress int32 `json:"progress,omitempty"`
	// MemoryPagesTransferred counts the guest memory pages sent, repeated
	// sends of pages the guest dirtied included.
	// +optional
	MemoryPagesTransferred int64 `json:"memoryPagesTransferred,omitempty"`
	// Downtime is how long the guest was paused for the switch-over.
	// +optional
	Downtime *metav1.Duration `json:"downtime,omitempty"`
	// Duration is how long the guest took to move, from StartTime.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// Reason says why the migration waits (Scheduling) or failed.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineMigrationList is a list of migrations.
type VirtualMachineMigrationList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items is the list of migrations.
	Items []VirtualMachineMigration `json:"items"`
}
