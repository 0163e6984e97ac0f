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

package hypervisor

import (
	"strconv"

	"k8s.io/apimachinery/pkg/fields"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
)

// kind tells the shared strategies how Hypervisors differ.
var kind = registry.Kind[*vessel.Hypervisor]{
	ResetFieldsVersion:   v1alpha1.SchemeGroupVersion.String(),
	PrepareForCreate:     func(h *vessel.Hypervisor) { h.Status = vessel.HypervisorStatus{} },
	KeepStatus:           func(h, old *vessel.Hypervisor) { h.Status = old.Status },
	KeepSpec:             func(h, old *vessel.Hypervisor) { h.Spec = old.Spec },
	Spec:                 func(h *vessel.Hypervisor) any { return h.Spec },
	Validate:             validation.ValidateHypervisor,
	ValidateUpdate:       validation.ValidateHypervisorUpdate,
	ValidateStatusUpdate: validation.ValidateHypervisorStatusUpdate,
	Fields: func(h *vessel.Hypervisor) fields.Set {
		return fields.Set{"spec.unschedulable": strconv.FormatBool(h.Spec.Unschedulable)}
	},
}
