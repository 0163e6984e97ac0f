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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

var supportedMigrationPhases = []vessel.MigrationPhase{
	vessel.MigrationPending, vessel.MigrationScheduling, vessel.MigrationRunning, vessel.MigrationSucceeded, vessel.MigrationFailed,
}

// ValidateVirtualMachineMigration validates a VirtualMachineMigration on create.
func ValidateVirtualMachineMigration(m *vessel.VirtualMachineMigration) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&m.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	specPath := field.NewPath("spec")
	allErrs = append(allErrs, validateReferenceName(m.Spec.VirtualMachineName, apimachineryvalidation.NameIsDNSLabel, specPath.Child("virtualMachineName"))...)
	allErrs = append(allErrs, validateOptionalReferenceName(m.Spec.TargetHypervisor, apimachineryvalidation.NameIsDNSSubdomain, specPath.Child("targetHypervisor"))...)
	return allErrs
}

// ValidateVirtualMachineMigrationUpdate validates an update of a migration:
// what moves where is fixed when it is asked for.
func ValidateVirtualMachineMigrationUpdate(newM, oldM *vessel.VirtualMachineMigration) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newM.ObjectMeta, &oldM.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, apimachineryvalidation.ValidateImmutableField(newM.Spec, oldM.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateVirtualMachineMigrationStatusUpdate validates an update through
// the status subresource. A finished migration stays finished, and its
// source and target never change once set.
func ValidateVirtualMachineMigrationStatusUpdate(newM, oldM *vessel.VirtualMachineMigration) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newM.ObjectMeta, &oldM.ObjectMeta, field.NewPath("metadata"))
	statusPath := field.NewPath("status")
	s, o := &newM.Status, &oldM.Status
	allErrs = append(allErrs, validateOptionalEnum(s.Phase, supportedMigrationPhases, statusPath.Child("phase"))...)
	allErrs = append(allErrs, validateOptionalReferenceName(s.Source, apimachineryvalidation.NameIsDNSSubdomain, statusPath.Child("source"))...)
	allErrs = append(allErrs, validateOptionalReferenceName(s.Target, apimachineryvalidation.NameIsDNSSubdomain, statusPath.Child("target"))...)
	if (o.Phase == vessel.MigrationSucceeded || o.Phase == vessel.MigrationFailed) && s.Phase != o.Phase {
		allErrs = append(allErrs, field.Forbidden(statusPath.Child("phase"), "a finished migration stays "+string(o.Phase)))
	}
	if o.Source != "" && s.Source != o.Source {
		allErrs = append(allErrs, field.Forbidden(statusPath.Child("source"), "may not change once set"))
	}
	if o.Target != "" && s.Target != o.Target {
		allErrs = append(allErrs, field.Forbidden(statusPath.Child("target"), "may not change once set"))
	}
	if o.AcceptedTime != nil && (s.AcceptedTime == nil || !s.AcceptedTime.Equal(o.AcceptedTime)) {
		allErrs = append(allErrs, field.Forbidden(statusPath.Child("acceptedTime"), "may not change once set"))
	}
	if s.AcceptedTime != nil && o.AcceptedTime == nil && o.Phase != vessel.MigrationRunning {
		allErrs = append(allErrs, field.Forbidden(statusPath.Child("acceptedTime"), "only a running migration is taken on, not a "+string(o.Phase)+" one"))
	}
	if s.Phase == vessel.MigrationRunning && (s.Source == "" || s.Target == "") {
		allErrs = append(allErrs, field.Required(statusPath.Child("target"), "a running migration has a source and a target"))
	}
	for name, v := range map[string]int64{"transferredBytes": s.TransferredBytes, "totalBytes": s.TotalBytes, "memoryPagesTransferred": s.MemoryPagesTransferred} {
		if v < 0 {
			allErrs = append(allErrs, field.Invalid(statusPath.Child(name), v, apimachineryvalidation.IsNegativeErrorMsg))
		}
	}
	if s.Progress < 0 || s.Progress > 100 {
		allErrs = append(allErrs, field.Invalid(statusPath.Child("progress"), s.Progress, "must be between 0 and 100"))
	}
	for name, d := range map[string]*metav1.Duration{"downtime": s.Downtime, "duration": s.Duration} {
		if d != nil && d.Duration < 0 {
			allErrs = append(allErrs, field.Invalid(statusPath.Child(name), d.String(), apimachineryvalidation.IsNegativeErrorMsg))
		}
	}
	allErrs = append(allErrs, validateStatusMessage(s.Reason, statusPath.Child("reason"))...)
	return allErrs
}
