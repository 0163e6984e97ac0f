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

// ValidateVirtualMachineBinding validates the body of the binding
// subresource. That its name matches the VM is the registry's check.
func ValidateVirtualMachineBinding(b *vessel.VirtualMachineBinding) field.ErrorList {
	return validateReferenceName(b.Target, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("target"))
}

// ValidateVirtualMachineActionOptions validates the body of the start, stop,
// restart, pause and unpause subresources. Dry run comes with the request's
// CreateOptions, which the apiserver validates itself.
func ValidateVirtualMachineActionOptions(o *vessel.VirtualMachineActionOptions) field.ErrorList {
	var allErrs field.ErrorList
	if o.GracePeriodSeconds != nil {
		allErrs = append(allErrs, validateGracePeriod(*o.GracePeriodSeconds, field.NewPath("gracePeriodSeconds"))...)
	}
	if o.Soft && o.GracePeriodSeconds != nil {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("gracePeriodSeconds"), "a soft restart does not stop the guest: give soft or gracePeriodSeconds, not both"))
	}
	return allErrs
}
