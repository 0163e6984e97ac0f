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

package pool

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/registry"
)

// kind tells the shared strategies how VirtualMachinePools differ; opts
// carries the host path roots the template's VM spec is checked against.
func kind(opts validation.Options) registry.Kind[*vessel.VirtualMachinePool] {
	return registry.Kind[*vessel.VirtualMachinePool]{
		Namespaced:         true,
		ResetFieldsVersion: v1alpha1.SchemeGroupVersion.String(),
		PrepareForCreate: func(p *vessel.VirtualMachinePool) {
			p.Status = vessel.VirtualMachinePoolStatus{}
		},
		KeepStatus: func(p, old *vessel.VirtualMachinePool) { p.Status = old.Status },
		KeepSpec:   func(p, old *vessel.VirtualMachinePool) { p.Spec = old.Spec },
		Spec:       func(p *vessel.VirtualMachinePool) any { return p.Spec },
		Validate: func(p *vessel.VirtualMachinePool) field.ErrorList {
			return validation.ValidateVirtualMachinePool(p, opts)
		},
		ValidateUpdate: func(p, old *vessel.VirtualMachinePool) field.ErrorList {
			return validation.ValidateVirtualMachinePoolUpdate(p, old, opts)
		},
		ValidateStatusUpdate: validation.ValidateVirtualMachinePoolStatusUpdate,
	}
}
