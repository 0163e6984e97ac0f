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

// FinalizerSnapshotCleanup holds a VirtualMachineSnapshot whose data may
// exist on a hypervisor until that hypervisor's agent has deleted the data
// (deletionPolicy Delete) or left it (Retain). The agent adds it just
// before it takes the snapshot, so a snapshot that never reached an agent
// (VM not bound, hypervisor down) is deleted at once.
const FinalizerSnapshotCleanup = "vessel.dev/snapshot-cleanup"

// Condition types of snapshots and restores.
const (
	// SnapshotConditionReady is True while the snapshot can be restored.
	SnapshotConditionReady = "Ready"
	// RestoreConditionComplete is True once the VM has been restored.
	RestoreConditionComplete = "Complete"
)
