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

package app

import (
	"bytes"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestProgressPrintsEachPhaseOnceOnOneLine(t *testing.T) {
	var out bytes.Buffer
	p := &progress{out: &out, prefix: "snapshot team-a/demo-1: "}
	for _, ph := range []string{"Pending", "Pending", "InProgress", "InProgress", "Succeeded"} {
		p.phase(ph)
	}
	s := &v1alpha1.VirtualMachineSnapshot{Status: v1alpha1.VirtualMachineSnapshotStatus{
		MemoryIncluded: true, Size: resource.NewQuantity(84303462, resource.BinarySI)}}
	p.end(" (" + describeSnapshot(s) + ") in 0.4s")
	if want := "snapshot team-a/demo-1: Pending... InProgress... Succeeded (memory, 80.4Mi) in 0.4s\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 8192: "8Ki", 84303462: "80.4Mi", 3 << 30: "3Gi"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestExplainCreateNamesTheField(t *testing.T) {
	vm := &target{Namespace: "team-a", Name: "demo"}
	invalid := apierrors.NewInvalid(schema.GroupKind{Group: "vessel.dev", Kind: "VirtualMachineRestore"}, "demo-restore-x",
		field.ErrorList{field.Invalid(field.NewPath("spec", "snapshotName"), "nope", "no such VirtualMachineSnapshot in this namespace")})
	want := `cannot restore VM team-a/demo: spec.snapshotName: Invalid value: "nope": no such VirtualMachineSnapshot in this namespace`
	if got := explainCreate(invalid, "restore", vm); got.Error() != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "vessel.dev", Resource: "virtualmachinesnapshots"}, "", nil)
	if got := explainCreate(forbidden, "snapshot", vm); got == nil || !bytes.Contains([]byte(got.Error()), []byte("you are not allowed to snapshot VM team-a/demo")) {
		t.Errorf("forbidden: %v", got)
	}
}
