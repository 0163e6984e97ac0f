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

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
)

func init() {
	localSchemeBuilder.Register(addFieldLabelConversionFuncs)
}

// Field selectors served for each kind, beyond metadata.name and
// metadata.namespace. The registry's GetAttrs must publish the same fields.
var selectableFields = map[string][]string{
	"VirtualMachine":          {"spec.nodeName", "status.phase"},
	"VirtualMachineSnapshot":  {"spec.virtualMachineName", "status.phase"},
	"VirtualMachineRestore":   {"spec.virtualMachineName", "spec.snapshotName"},
	"Hypervisor":              {"spec.unschedulable"},
	"VirtualMachineClone":     {"spec.source.virtualMachineName", "spec.source.snapshotName", "spec.target.name", "status.phase"},
	"VirtualMachineMigration": {"spec.virtualMachineName", "status.phase", "status.source", "status.target"},
}

func addFieldLabelConversionFuncs(scheme *runtime.Scheme) error {
	for kind, fields := range selectableFields {
		allowed := map[string]bool{"metadata.name": true, "metadata.namespace": true}
		for _, f := range fields {
			allowed[f] = true
		}
		err := scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind(kind),
			func(label, value string) (string, string, error) {
				if allowed[label] {
					return label, value, nil
				}
				return "", "", fmt.Errorf("field label not supported for %s: %s", kind, label)
			})
		if err != nil {
			return err
		}
	}
	return nil
}
