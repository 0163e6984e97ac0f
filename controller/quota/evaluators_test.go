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

package quota

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apiserver/pkg/admission"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// Admission hands the evaluator internal objects; it charges them as the
// controller counts versioned ones.
func TestVMUsageOfAnInternalObject(t *testing.T) {
	vm := &vessel.VirtualMachine{Spec: vessel.VirtualMachineSpec{
		CPUs:   4,
		Memory: resource.MustParse("2Gi"),
		Disks: []vessel.Disk{
			{Name: "root", Image: &vessel.ImageSource{URL: "https://example.com/a.img"}},
			{Name: "data", Blank: &vessel.BlankSource{Size: resource.MustParse("20Gi")}},
		},
	}}
	e := &vmEvaluator{}
	got, err := e.Usage(vm)
	if err != nil {
		t.Fatal(err)
	}
	want := list("count/virtualmachines.vessel.dev", "1", "vessel.dev/requests.cpu", "4", "vessel.dev/requests.memory", "2Gi", "vessel.dev/requests.storage", "20Gi")
	if !equal(got, want) {
		t.Errorf("usage %v, want %v", got, want)
	}
	if _, err := e.Usage(&vessel.Hypervisor{}); err == nil {
		t.Error("a Hypervisor got a usage")
	}
	matching := e.MatchingResources([]corev1.ResourceName{"requests.cpu", "pods", RequestsCPU, VirtualMachineCount})
	if len(matching) != 2 {
		t.Errorf("matches %v; requests.cpu and pods are kube-controller-manager's", matching)
	}
}

func TestVMEvaluatorHandlesCreatesAndResizes(t *testing.T) {
	e := &vmEvaluator{}
	for _, tc := range []struct {
		op   admission.Operation
		sub  string
		want bool
	}{
		{admission.Create, "", true},
		{admission.Update, "", true},
		{admission.Update, "status", false},
		{admission.Create, "binding", false},
		{admission.Delete, "", false},
	} {
		a := admission.NewAttributesRecord(nil, nil, vessel.Kind("VirtualMachine").WithVersion(""), "ns", "vm",
			vessel.Resource("virtualmachines").WithVersion("v1alpha1"), tc.sub, tc.op, nil, false, nil)
		if got := e.Handles(a); got != tc.want {
			t.Errorf("Handles(%s %s) = %v, want %v", tc.op, tc.sub, got, tc.want)
		}
	}
}
