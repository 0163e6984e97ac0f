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

var (
	supportedDeletionPolicies = []vessel.SnapshotDeletionPolicy{vessel.SnapshotDeletionPolicyDelete, vessel.SnapshotDeletionPolicyRetain}
	supportedSnapshotPhases   = []vessel.SnapshotPhase{vessel.SnapshotPending, vessel.SnapshotInProgress, vessel.SnapshotSucceeded, vessel.SnapshotFailed}
)

// ValidateVirtualMachineSnapshot validates a VirtualMachineSnapshot on create.
func ValidateVirtualMachineSnapshot(s *vessel.VirtualMachineSnapshot) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&s.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateVirtualMachineSnapshotSpec(&s.Spec, field.NewPath("spec"))...)
	return allErrs
}

func validateVirtualMachineSnapshotSpec(spec *vessel.VirtualMachineSnapshotSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateReferenceName(spec.VirtualMachineName, apimachineryvalidation.NameIsDNSLabel, fldPath.Child("virtualMachineName"))...)
	if spec.IncludeMemory == nil {
		allErrs = append(allErrs, field.Required(fldPath.Child("includeMemory"), ""))
	}
	allErrs = append(allErrs, validateEnum(spec.DeletionPolicy, supportedDeletionPolicies, fldPath.Child("deletionPolicy"))...)
	return allErrs
}

// ValidateVirtualMachineSnapshotUpdate validates an update of a snapshot: its
// spec describes data already taken and never changes.
func ValidateVirtualMachineSnapshotUpdate(newS, oldS *vessel.VirtualMachineSnapshot) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newS.ObjectMeta, &oldS.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, apimachineryvalidation.ValidateImmutableField(newS.Spec, oldS.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateVirtualMachineSnapshotStatusUpdate validates an update through the
// status subresource.
func ValidateVirtualMachineSnapshotStatusUpdate(newS, oldS *vessel.VirtualMachineSnapshot) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newS.ObjectMeta, &oldS.ObjectMeta, field.NewPath("metadata"))

	statusPath := field.NewPath("status")
	status := &newS.Status
	allErrs = append(allErrs, validateOptionalEnum(status.Phase, supportedSnapshotPhases, statusPath.Child("phase"))...)
	if status.Size != nil && status.Size.Sign() < 0 {
		allErrs = append(allErrs, field.Invalid(statusPath.Child("size"), status.Size.String(), apimachineryvalidation.IsNegativeErrorMsg))
	}
	allErrs = append(allErrs, validateOptionalReferenceName(status.NodeName, apimachineryvalidation.NameIsDNSSubdomain, statusPath.Child("nodeName"))...)
	allErrs = append(allErrs, validateStatusMessage(status.Error, statusPath.Child("error"))...)
	allErrs = append(allErrs, validateConditions(status.Conditions, statusPath.Child("conditions"))...)
	return allErrs
}

// ValidateVirtualMachineRestore validates a VirtualMachineRestore on create.
func ValidateVirtualMachineRestore(r *vessel.VirtualMachineRestore) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&r.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))

	specPath := field.NewPath("spec")
	allErrs = append(allErrs, validateReferenceName(r.Spec.VirtualMachineName, apimachineryvalidation.NameIsDNSLabel, specPath.Child("virtualMachineName"))...)
	allErrs = append(allErrs, validateReferenceName(r.Spec.SnapshotName, apimachineryvalidation.NameIsDNSSubdomain, specPath.Child("snapshotName"))...)
	return allErrs
}

// ValidateVirtualMachineRestoreUpdate validates an update of a restore: what
// to restore is fixed when the restore is asked for.
func ValidateVirtualMachineRestoreUpdate(newR, oldR *vessel.VirtualMachineRestore) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newR.ObjectMeta, &oldR.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, apimachineryvalidation.ValidateImmutableField(newR.Spec, oldR.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateVirtualMachineRestoreStatusUpdate validates an update through the
// status subresource.
func ValidateVirtualMachineRestoreStatusUpdate(newR, oldR *vessel.VirtualMachineRestore) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newR.ObjectMeta, &oldR.ObjectMeta, field.NewPath("metadata"))

	statusPath := field.NewPath("status")
	status := &newR.Status
	allErrs = append(allErrs, validateOptionalEnum(status.Phase, supportedSnapshotPhases, statusPath.Child("phase"))...)
	allErrs = append(allErrs, validateStatusMessage(status.Error, statusPath.Child("error"))...)
	allErrs = append(allErrs, validateConditions(status.Conditions, statusPath.Child("conditions"))...)
	return allErrs
}
