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

package validation

import (
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// Reasons a guest last stopped, as documented on status.stopReason.
const (
	StopReasonRequested     = "Requested"
	StopReasonGuestShutdown = "GuestShutdown"
	StopReasonCrashed       = "Crashed"
)

// maxStatusMessageBytes bounds free-text status messages, like the
// message of a metav1.Condition.
const maxStatusMessageBytes = 32 * 1024

var (
	supportedVirtualMachinePhases = []vessel.VirtualMachinePhase{
		vessel.VirtualMachinePending,
		vessel.VirtualMachineScheduled,
		vessel.VirtualMachineProvisioning,
		vessel.VirtualMachineStarting,
		vessel.VirtualMachineRunning,
		vessel.VirtualMachineMigrating,
		vessel.VirtualMachinePaused,
		vessel.VirtualMachineStopping,
		vessel.VirtualMachineStopped,
		vessel.VirtualMachineFailed,
	}
	supportedDiskPhases  = []vessel.DiskPhase{vessel.DiskPending, vessel.DiskImporting, vessel.DiskReady, vessel.DiskFailed}
	supportedStopReasons = []string{StopReasonRequested, StopReasonGuestShutdown, StopReasonCrashed}
)

// ValidateVirtualMachineStatusUpdate validates an update through the status
// subresource. The spec is not checked: the status strategy keeps the stored one.
func ValidateVirtualMachineStatusUpdate(newVM, oldVM *vessel.VirtualMachine) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newVM.ObjectMeta, &oldVM.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, validateVirtualMachineStatus(&newVM.Status, field.NewPath("status"))...)
	return allErrs
}

func validateVirtualMachineStatus(status *vessel.VirtualMachineStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateOptionalEnum(status.Phase, supportedVirtualMachinePhases, fldPath.Child("phase"))...)
	allErrs = append(allErrs, validateConditions(status.Conditions, fldPath.Child("conditions"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(status.ObservedGeneration, fldPath.Child("observedGeneration"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(status.ObservedPowerActionID, fldPath.Child("observedPowerActionID"))...)
	allErrs = append(allErrs, validateOptionalReferenceName(status.NodeName, apimachineryvalidation.NameIsDNSSubdomain, fldPath.Child("nodeName"))...)
	allErrs = append(allErrs, validateOptionalEnum(status.StopReason, supportedStopReasons, fldPath.Child("stopReason"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(status.RestartCount), fldPath.Child("restartCount"))...)
	allErrs = append(allErrs, validateInterfaceStatuses(status.Interfaces, fldPath.Child("interfaces"))...)
	allErrs = append(allErrs, validateDiskStatuses(status.Disks, fldPath.Child("disks"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(status.ConsoleLogBytes, fldPath.Child("consoleLogBytes"))...)

	snapshotsPath := fldPath.Child("snapshots")
	seen := make(map[string]bool, len(status.Snapshots))
	for i, name := range status.Snapshots {
		idxPath := snapshotsPath.Index(i)
		allErrs = append(allErrs, validateReferenceName(name, apimachineryvalidation.NameIsDNSSubdomain, idxPath)...)
		if seen[name] {
			allErrs = append(allErrs, field.Duplicate(idxPath, name))
		}
		seen[name] = true
	}
	return allErrs
}

// validateDiskStatuses checks each disk's reported provisioning state.
func validateDiskStatuses(disks []vessel.DiskStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	names := make(map[string]bool, len(disks))
	for i := range disks {
		disk := &disks[i]
		idxPath := fldPath.Index(i)
		namePath := idxPath.Child("name")
		allErrs = append(allErrs, validateReferenceName(disk.Name, apimachineryvalidation.NameIsDNSLabel, namePath)...)
		if disk.Name != "" {
			if names[disk.Name] {
				allErrs = append(allErrs, field.Duplicate(namePath, disk.Name))
			}
			names[disk.Name] = true
		}
		allErrs = append(allErrs, validateOptionalEnum(disk.Phase, supportedDiskPhases, idxPath.Child("phase"))...)
		allErrs = append(allErrs, validateStatusMessage(disk.Message, idxPath.Child("message"))...)
	}
	return allErrs
}

// validateStatusMessage bounds a free-text status message.
func validateStatusMessage(msg string, fldPath *field.Path) field.ErrorList {
	if len(msg) > maxStatusMessageBytes {
		return field.ErrorList{field.TooLong(fldPath, "", maxStatusMessageBytes)}
	}
	return nil
}
