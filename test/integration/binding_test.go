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

package integration

import (
	"slices"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
)

func TestBinding(t *testing.T) {
	s := startServer(t)

	bind := func(t *testing.T, ns string, binding *v1alpha1.VirtualMachineBinding, opts metav1.CreateOptions) (*v1alpha1.VirtualMachine, error) {
		return vms(s, ns).Bind(t.Context(), binding.Name, binding, opts)
	}
	binding := func(name, target string) *v1alpha1.VirtualMachineBinding {
		return &v1alpha1.VirtualMachineBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Target: target}
	}

	t.Run("first bind", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		vm, err := bind(t, ns, binding("a", "hv-1"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if vm.Spec.NodeName != "hv-1" {
			t.Errorf("spec.nodeName = %q, want hv-1", vm.Spec.NodeName)
		}
		if !slices.Contains(vm.Finalizers, v1alpha1.FinalizerNodeCleanup) {
			t.Errorf("finalizers = %v, want %s", vm.Finalizers, v1alpha1.FinalizerNodeCleanup)
		}
		if vm.Status.Phase != v1alpha1.VirtualMachineScheduled {
			t.Errorf("status.phase = %q, want Scheduled", vm.Status.Phase)
		}
		c := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionScheduled)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "Bound" || c.ObservedGeneration != vm.Generation || c.LastTransitionTime.IsZero() {
			t.Errorf("Scheduled condition = %+v, want True, reason Bound, observedGeneration %d", c, vm.Generation)
		}
		if vm.Generation != 2 {
			t.Errorf("generation = %d, want 2: binding changes spec", vm.Generation)
		}
		if got := getVM(t, s, ns, "a"); !apiequality.Semantic.DeepEqual(got, vm) {
			t.Errorf("stored VM %+v differs from the bind response %+v", got, vm)
		}
	})

	t.Run("second bind is a conflict", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		bindVM(t, s, ns, "a", "hv-1")
		for _, target := range []string{"hv-2", "hv-1"} {
			_, err := bind(t, ns, binding("a", target), metav1.CreateOptions{})
			wantAPIError(t, err, 409, `VM is already bound to "hv-1"`)
		}
		if vm := getVM(t, s, ns, "a"); vm.Spec.NodeName != "hv-1" || vm.Generation != 2 {
			t.Errorf("nodeName %q, generation %d after refused binds; want hv-1, 2", vm.Spec.NodeName, vm.Generation)
		}
	})

	t.Run("preconditions", func(t *testing.T) {
		ns := unique(t)
		vm := createVM(t, s, ns, newVM("a"))

		wrongUID := binding("a", "hv-1")
		wrongUID.UID = "00000000-0000-0000-0000-000000000000"
		_, err := bind(t, ns, wrongUID, metav1.CreateOptions{})
		wantAPIError(t, err, 409, "Precondition failed: UID in precondition")

		relabelled := vm.DeepCopy()
		relabelled.Labels = map[string]string{"moved": "on"}
		if _, err := vms(s, ns).Update(t.Context(), relabelled, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		staleRV := binding("a", "hv-1")
		staleRV.ResourceVersion = vm.ResourceVersion
		_, err = bind(t, ns, staleRV, metav1.CreateOptions{})
		wantAPIError(t, err, 409, "Precondition failed: ResourceVersion in precondition")

		if got := getVM(t, s, ns, "a"); got.Spec.NodeName != "" {
			t.Fatalf("failed preconditions bound the VM to %q", got.Spec.NodeName)
		}
		rightUID := binding("a", "hv-1")
		rightUID.UID = vm.UID
		if _, err := bind(t, ns, rightUID, metav1.CreateOptions{}); err != nil {
			t.Errorf("bind with the VM's UID: %v", err)
		}
	})

	t.Run("dry run changes nothing", func(t *testing.T) {
		ns := unique(t)
		before := createVM(t, s, ns, newVM("a"))
		vm, err := bind(t, ns, binding("a", "hv-1"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if vm.Spec.NodeName != "hv-1" {
			t.Errorf("dry-run response nodeName = %q, want hv-1", vm.Spec.NodeName)
		}
		if got := getVM(t, s, ns, "a"); got.ResourceVersion != before.ResourceVersion || got.Spec.NodeName != "" {
			t.Errorf("dry-run bind was stored: nodeName %q", got.Spec.NodeName)
		}
	})

	t.Run("bind to a missing VM is NotFound", func(t *testing.T) {
		_, err := bind(t, unique(t), binding("missing", "hv-1"), metav1.CreateOptions{})
		wantAPIError(t, err, 404, `virtualmachines.vessel.dev "missing" not found`)
	})

	t.Run("malformed bindings", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		_, err := vms(s, ns).Bind(t.Context(), "a", binding("b", "hv-1"), metav1.CreateOptions{})
		wantAPIError(t, err, 400, "name in URL does not match name in VirtualMachineBinding")
		_, err = bind(t, ns, binding("a", ""), metav1.CreateOptions{})
		wantAPIError(t, err, 422, "target")
		_, err = bind(t, ns, binding("a", "Not_A_Node"), metav1.CreateOptions{})
		wantAPIError(t, err, 422, "target")
		if got := getVM(t, s, ns, "a"); got.Spec.NodeName != "" {
			t.Errorf("malformed binding bound the VM to %q", got.Spec.NodeName)
		}
	})

	t.Run("bind of a VM being deleted is a conflict", func(t *testing.T) {
		ns := unique(t)
		vm := newVM("a")
		vm.Finalizers = []string{"example.com/hold"}
		createVM(t, s, ns, vm)
		if err := vms(s, ns).Delete(t.Context(), "a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := bind(t, ns, binding("a", "hv-1"), metav1.CreateOptions{})
		wantAPIError(t, err, 409, "VM is being deleted")
		releaseFinalizers(t, s, ns, "a")
	})

	t.Run("nodeName cannot be set by Update", func(t *testing.T) {
		ns := unique(t)
		vm := createVM(t, s, ns, newVM("a"))
		vm.Spec.NodeName = "hv-1"
		_, err := vms(s, ns).Update(t.Context(), vm, metav1.UpdateOptions{})
		st := wantAPIError(t, err, 422, "may only be set through the binding subresource")
		wantCause(t, st, "spec.nodeName")

		bound := bindVM(t, s, ns, "a", "hv-1")
		for _, node := range []string{"hv-2", ""} {
			vm := bound.DeepCopy()
			vm.Spec.NodeName = node
			_, err := vms(s, ns).Update(t.Context(), vm, metav1.UpdateOptions{})
			wantAPIError(t, err, 422, "spec.nodeName")
		}
		if got := getVM(t, s, ns, "a"); got.Spec.NodeName != "hv-1" {
			t.Errorf("nodeName = %q, want hv-1", got.Spec.NodeName)
		}
	})

	t.Run("nodeName cannot be set on create", func(t *testing.T) {
		ns := unique(t)
		vm := newVM("a")
		vm.Spec.NodeName = "hv-1"
		_, err := vms(s, ns).Create(t.Context(), vm, metav1.CreateOptions{})
		st := wantAPIError(t, err, 422, "may not be set on create")
		wantCause(t, st, "spec.nodeName")
		if list, err := vms(s, ns).List(t.Context(), metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
			t.Errorf("list after refused create: %v, %v; want nothing stored", vmNames(list), err)
		}
	})
}

// wantCause fails t unless an Invalid error names field among its causes.
func wantCause(t testing.TB, st metav1.Status, field string) {
	t.Helper()
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			if c.Field == field {
				return
			}
		}
	}
	t.Errorf("error causes %+v do not name %s", st.Details, field)
}

// releaseFinalizers removes every finalizer of a VM, as the node agent does
// once it has cleaned up.
func releaseFinalizers(t testing.TB, s *apiservertesting.TestServer, ns, name string) {
	t.Helper()
	vm := getVM(t, s, ns, name)
	vm.Finalizers = nil
	if _, err := vms(s, ns).Update(t.Context(), vm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("remove finalizers of VM %s/%s: %v", ns, name, err)
	}
}
