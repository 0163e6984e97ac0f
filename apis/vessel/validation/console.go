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

// ValidateVirtualMachineConsoleOptions validates the query of the console
// subresource (and of log, which reads tailBytes only).
func ValidateVirtualMachineConsoleOptions(o *vessel.VirtualMachineConsoleOptions) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateNonnegativeField(o.TailBytes, field.NewPath("tailBytes"))
	if o.Force && o.ReadOnly {
		allErrs = append(allErrs, field.Invalid(field.NewPath("force"), o.Force, "a read-only session cannot take the console input over"))
	}
	return allErrs
}
