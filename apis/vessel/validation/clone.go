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
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

var supportedClonePhases = []vessel.ClonePhase{vessel.ClonePending, vessel.CloneInProgress, vessel.CloneSucceeded, vessel.CloneFailed}

// ValidateVirtualMachineClone validates a VirtualMachineClone on create.
func ValidateVirtualMachineClone(c *vessel.VirtualMachineClone) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&c.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	specPath := field.NewPath("spec")
	allErrs = append(allErrs, validateCloneSource(&c.Spec.Source, specPath.Child("source"))...)
	allErrs = append(allErrs, validateCloneTarget(&c.Spec.Target, specPath.Child("target"))...)
	if c.Spec.Memory == nil {
		allErrs = append(allErrs, field.Required(specPath.Child("memory"), ""))
	}
	return allErrs
}

func validateCloneSource(s *vessel.CloneSource, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	switch {
	case s.VirtualMachineName != "" && s.SnapshotName != "":
		allErrs = append(allErrs, field.Invalid(fldPath, "virtualMachineName, snapshotName", "exactly one of virtualMachineName and snapshotName must be set"))
	case s.VirtualMachineName != "":
		allErrs = append(allErrs, validateReferenceName(s.VirtualMachineName, apimachineryvalidation.NameIsDNSLabel, fldPath.Child("virtualMachineName"))...)
	case s.SnapshotName != "":
		allErrs = append(allErrs, validateReferenceName(s.SnapshotName, apimachineryvalidation.NameIsDNSSubdomain, fldPath.Child("snapshotName"))...)
	default:
		allErrs = append(allErrs, field.Required(fldPath, "one of virtualMachineName and snapshotName must be set"))
	}
	return allErrs
}

func validateCloneTarget(t *vessel.CloneTarget, fldPath *field.Path) field.ErrorList {
	// The new VM's name follows the VM rules: it becomes a domain name and
	// the guest's hostname.
	allErrs := validateReferenceName(t.Name, apimachineryvalidation.NameIsDNSLabel, fldPath.Child("name"))
	allErrs = append(allErrs, metav1validation.ValidateLabels(t.Labels, fldPath.Child("labels"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateAnnotations(t.Annotations, fldPath.Child("annotations"))...)
	return allErrs
}

// ValidateVirtualMachineCloneUpdate validates an update of a clone: what it
// clones is fixed when it is asked for.
func ValidateVirtualMachineCloneUpdate(newC, oldC *vessel.VirtualMachineClone) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newC.ObjectMeta, &oldC.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, apimachineryvalidation.ValidateImmutableField(newC.Spec, oldC.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateVirtualMachineCloneStatusUpdate validates an update through the
// status subresource.
func ValidateVirtualMachineCloneStatusUpdate(newC, oldC *vessel.VirtualMachineClone) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newC.ObjectMeta, &oldC.ObjectMeta, field.NewPath("metadata"))
	statusPath := field.NewPath("status")
	status := &newC.Status
	allErrs = append(allErrs, validateOptionalEnum(status.Phase, supportedClonePhases, statusPath.Child("phase"))...)
	allErrs = append(allErrs, validateOptionalReferenceName(status.VirtualMachineName, apimachineryvalidation.NameIsDNSLabel, statusPath.Child("virtualMachineName"))...)
	allErrs = append(allErrs, validateOptionalReferenceName(status.NodeName, apimachineryvalidation.NameIsDNSSubdomain, statusPath.Child("nodeName"))...)
	if status.Duration != nil && status.Duration.Duration < 0 {
		allErrs = append(allErrs, field.Invalid(statusPath.Child("duration"), status.Duration.String(), apimachineryvalidation.IsNegativeErrorMsg))
	}
	allErrs = append(allErrs, validateStatusMessage(status.Error, statusPath.Child("error"))...)
	allErrs = append(allErrs, validateConditions(status.Conditions, statusPath.Child("conditions"))...)
	return allErrs
}
