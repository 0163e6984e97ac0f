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
	"fmt"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// MaxPoolReplicas bounds spec.replicas and spec.warm.ready of a pool.
const MaxPoolReplicas = 1000

// poolLabels are set by the pool controller on the pool's VMs.
var poolLabels = []string{vessel.LabelPool, vessel.LabelPoolMember}

// ValidateVirtualMachinePool validates a VirtualMachinePool on create.
func ValidateVirtualMachinePool(p *vessel.VirtualMachinePool, opts Options) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&p.ObjectMeta, true, apimachineryvalidation.NameIsDNSLabel, field.NewPath("metadata"))
	allErrs = append(allErrs, validatePoolSpec(&p.Spec, newHostPathPolicy(opts, p.Namespace), newBridgePolicy(opts, nil), field.NewPath("spec"))...)
	return allErrs
}

// ValidateVirtualMachinePoolUpdate validates an update of a pool. Every
// field may change: a new template applies to VMs made afterwards.
func ValidateVirtualMachinePoolUpdate(newP, oldP *vessel.VirtualMachinePool, opts Options) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newP.ObjectMeta, &oldP.ObjectMeta, field.NewPath("metadata"))
	policy := newHostPathPolicy(opts, newP.Namespace)
	if oldP.Spec.Template.Spec != nil {
		policy.unchanged = hostPathsOf(oldP.Spec.Template.Spec)
	}
	allErrs = append(allErrs, validatePoolSpec(&newP.Spec, policy, newBridgePolicy(opts, oldP.Spec.Template.Spec), field.NewPath("spec"))...)
	return allErrs
}

func validatePoolSpec(spec *vessel.VirtualMachinePoolSpec, policy hostPathPolicy, bridges bridgePolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateReplicas(spec.Replicas, fldPath.Child("replicas"))...)

	tmplPath := fldPath.Child("template")
	meta := spec.Template.Metadata
	labelsPath := tmplPath.Child("metadata", "labels")
	allErrs = append(allErrs, metav1validation.ValidateLabels(meta.Labels, labelsPath)...)
	for _, l := range poolLabels {
		if _, ok := meta.Labels[l]; ok {
			allErrs = append(allErrs, field.Forbidden(labelsPath.Key(l), "is set by the pool"))
		}
	}
	allErrs = append(allErrs, apimachineryvalidation.ValidateAnnotations(meta.Annotations, tmplPath.Child("metadata", "annotations"))...)

	specPath := tmplPath.Child("spec")
	switch {
	case spec.Warm == nil && spec.Template.Spec == nil:
		allErrs = append(allErrs, field.Required(specPath, "the pool's VMs boot from the template's spec unless spec.warm names a snapshot to clone"))
	case spec.Warm != nil && spec.Template.Spec != nil:
		allErrs = append(allErrs, field.Forbidden(specPath, "must not be set with spec.warm: the pool's VMs are clones of the snapshot's VM"))
	case spec.Template.Spec != nil:
		allErrs = append(allErrs, validateVirtualMachineSpec(spec.Template.Spec, policy, bridges, specPath)...)
		if spec.Template.Spec.NodeName != "" {
			allErrs = append(allErrs, field.Forbidden(specPath.Child("nodeName"), "is set through the binding subresource"))
		}
		if spec.Template.Spec.PowerAction != nil {
			allErrs = append(allErrs, field.Forbidden(specPath.Child("powerAction"), "is set by the VM's action subresources"))
		}
	}

	if w := spec.Warm; w != nil {
		warmPath := fldPath.Child("warm")
		allErrs = append(allErrs, validateReferenceName(w.SnapshotName, apimachineryvalidation.NameIsDNSSubdomain, warmPath.Child("snapshotName"))...)
		if w.Ready < 0 || w.Ready > MaxPoolReplicas {
			allErrs = append(allErrs, field.Invalid(warmPath.Child("ready"), w.Ready, fmt.Sprintf("must be between 0 and %d", MaxPoolReplicas)))
		}
	}
	return allErrs
}

func validateReplicas(replicas *int32, fldPath *field.Path) field.ErrorList {
	switch {
	case replicas == nil:
		return field.ErrorList{field.Required(fldPath, "")}
	case *replicas < 0 || *replicas > MaxPoolReplicas:
		return field.ErrorList{field.Invalid(fldPath, *replicas, fmt.Sprintf("must be between 0 and %d", MaxPoolReplicas))}
	}
	return nil
}

// ValidateVirtualMachinePoolStatusUpdate validates an update through the
// status subresource.
func ValidateVirtualMachinePoolStatusUpdate(newP, oldP *vessel.VirtualMachinePool) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newP.ObjectMeta, &oldP.ObjectMeta, field.NewPath("metadata"))
	statusPath := field.NewPath("status")
	s := &newP.Status
	for _, c := range []struct {
		name  string
		value int32
	}{{"replicas", s.Replicas}, {"runningReplicas", s.RunningReplicas}, {"warmReplicas", s.WarmReplicas}, {"readyWarmReplicas", s.ReadyWarmReplicas}} {
		if c.value < 0 {
			allErrs = append(allErrs, field.Invalid(statusPath.Child(c.name), c.value, apimachineryvalidation.IsNegativeErrorMsg))
		}
	}
	allErrs = append(allErrs, validateConditions(s.Conditions, statusPath.Child("conditions"))...)
	return allErrs
}
