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
	"bytes"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	ac "github.com/vessel-vm/vessel/generated/applyconfiguration/vessel/v1alpha1"
)

func TestApply(t *testing.T) {
	s := startServer(t)

	apply := func(t *testing.T, ns, manager string, force bool, spec *ac.VirtualMachineSpecApplyConfiguration) (*v1alpha1.VirtualMachine, error) {
		t.Helper()
		return vms(s, ns).Apply(t.Context(), ac.VirtualMachine("a", ns).WithSpec(spec), metav1.ApplyOptions{FieldManager: manager, Force: force})
	}
	mustApply := func(t *testing.T, ns, manager string, spec *ac.VirtualMachineSpecApplyConfiguration) *v1alpha1.VirtualMachine {
		t.Helper()
		vm, err := apply(t, ns, manager, false, spec)
		if err != nil {
			t.Fatalf("apply as %s: %v", manager, err)
		}
		return vm
	}
	cpus := func(n int32) *ac.VirtualMachineSpecApplyConfiguration { return ac.VirtualMachineSpec().WithCPUs(n) }
	spec := fieldpath.MakePathOrDie("spec")
	specCPUs := fieldpath.MakePathOrDie("spec", "cpus")
	status := fieldpath.MakePathOrDie("status")

	t.Run("apply creates with defaults", func(t *testing.T) {
		ns := unique(t)
		vm := mustApply(t, ns, "alice", cpus(2))
		if vm.Generation != 1 || vm.Spec.CPUs != 2 || vm.Status.Phase != v1alpha1.VirtualMachinePending {
			t.Errorf("applied VM: generation %d, cpus %d, phase %q; want 1, 2, Pending", vm.Generation, vm.Spec.CPUs, vm.Status.Phase)
		}
		if vm.Spec.Memory.String() != "128Mi" || vm.Spec.RunStrategy != v1alpha1.RunStrategyAlways {
			t.Errorf("applied VM not defaulted: %+v", vm.Spec)
		}
		owned := managedFields(t, vm, "alice", "")
		if !owned.Has(specCPUs) {
			t.Errorf("alice does not own spec.cpus: %s", owned)
		}
		// Defaults belong to nobody, so no manager conflicts over them.
		if owned.Has(fieldpath.MakePathOrDie("spec", "memory")) {
			t.Errorf("alice owns the defaulted spec.memory: %s", owned)
		}
		// Applying the same configuration again changes nothing.
		again := mustApply(t, ns, "alice", cpus(2))
		if again.ResourceVersion != vm.ResourceVersion {
			t.Errorf("a no-op apply wrote the VM: resourceVersion %s -> %s", vm.ResourceVersion, again.ResourceVersion)
		}
	})

	t.Run("two managers conflict on spec.cpus", func(t *testing.T) {
		ns := unique(t)
		mustApply(t, ns, "alice", cpus(2))
		_, err := apply(t, ns, "bob", false, cpus(4))
		st := wantAPIError(t, err, 409, `conflict with "alice"`)
		if st.Reason != metav1.StatusReasonConflict || st.Details == nil || len(st.Details.Causes) != 1 ||
			st.Details.Causes[0].Type != metav1.CauseTypeFieldManagerConflict || st.Details.Causes[0].Field != ".spec.cpus" {
			t.Errorf("conflict does not name .spec.cpus as a field manager conflict: %+v", st)
		}
		if got := getVM(t, s, ns, "a").Spec.CPUs; got != 2 {
			t.Errorf("cpus = %d after a refused apply, want 2", got)
		}

		// Agreeing on the value is no conflict: both then own the field.
		vm := mustApply(t, ns, "bob", cpus(2))
		if !managedFields(t, vm, "alice", "").Has(specCPUs) || !managedFields(t, vm, "bob", "").Has(specCPUs) {
			t.Errorf("spec.cpus is not shared by alice and bob: %+v", vm.ManagedFields)
		}
	})

	t.Run("force takes ownership", func(t *testing.T) {
		ns := unique(t)
		mustApply(t, ns, "alice", cpus(2))
		vm, err := apply(t, ns, "bob", true, cpus(4))
		if err != nil {
			t.Fatalf("forced apply: %v", err)
		}
		if vm.Spec.CPUs != 4 || vm.Generation != 2 {
			t.Errorf("after forced apply: cpus %d, generation %d; want 4, 2", vm.Spec.CPUs, vm.Generation)
		}
		if !managedFields(t, vm, "bob", "").Has(specCPUs) || managedFields(t, vm, "alice", "").Has(specCPUs) {
			t.Errorf("spec.cpus not moved from alice to bob: %+v", vm.ManagedFields)
		}
		// Now alice is the one who conflicts.
		_, err = apply(t, ns, "alice", false, cpus(2))
		wantAPIError(t, err, 409, `conflict with "bob"`)
	})

	t.Run("a field left out of the next apply is removed", func(t *testing.T) {
		ns := unique(t)
		vm := mustApply(t, ns, "alice", cpus(2).WithMemory(resource.MustParse("1Gi")).WithNodeSelector(map[string]string{"zone": "a"}))
		if vm.Spec.Memory.String() != "1Gi" {
			t.Fatalf("memory = %s, want 1Gi", vm.Spec.Memory.String())
		}
		vm = mustApply(t, ns, "alice", cpus(2))
		if vm.Spec.Memory.String() != "128Mi" || len(vm.Spec.NodeSelector) != 0 {
			t.Errorf("memory %s, nodeSelector %v; want the default 128Mi and none", vm.Spec.Memory.String(), vm.Spec.NodeSelector)
		}
	})

	t.Run("disks merge by name across managers", func(t *testing.T) {
		ns := unique(t)
		disk := func(name string) *ac.DiskApplyConfiguration {
			return ac.Disk().WithName(name).WithBlank(ac.BlankSource().WithSize(resource.MustParse("1Gi")))
		}
		mustApply(t, ns, "alice", ac.VirtualMachineSpec().WithDisks(disk("root")))
		vm := mustApply(t, ns, "bob", ac.VirtualMachineSpec().WithDisks(disk("data")))
		if len(vm.Spec.Disks) != 2 || vm.Spec.Disks[0].Name != "root" || vm.Spec.Disks[1].Name != "data" {
			t.Errorf("disks = %+v, want alice's root and bob's data", vm.Spec.Disks)
		}
		// Each manager removes only its own entry.
		vm = mustApply(t, ns, "alice", ac.VirtualMachineSpec())
		if len(vm.Spec.Disks) != 1 || vm.Spec.Disks[0].Name != "data" {
			t.Errorf("disks = %+v after alice let go of root, want just data", vm.Spec.Disks)
		}
	})

	t.Run("status applied through the main resource is ignored", func(t *testing.T) {
		ns := unique(t)
		cfg := ac.VirtualMachine("a", ns).
			WithSpec(cpus(2)).
			WithStatus(ac.VirtualMachineStatus().WithPhase(v1alpha1.VirtualMachineRunning).WithNodeName("forged"))
		vm, err := vms(s, ns).Apply(t.Context(), cfg, metav1.ApplyOptions{FieldManager: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if vm.Status.Phase != v1alpha1.VirtualMachinePending || vm.Status.NodeName != "" {
			t.Errorf("status = %+v, want the server's initial status", vm.Status)
		}
		if owned := managedFields(t, vm, "alice", ""); !owned.WithPrefix(status[0]).Empty() || !owned.Has(specCPUs) {
			t.Errorf("alice's fields %s: want spec.cpus and no status (reset fields)", owned)
		}
		// Also on an update of an existing VM.
		vm, err = vms(s, ns).Apply(t.Context(), cfg, metav1.ApplyOptions{FieldManager: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if vm.Status.Phase != v1alpha1.VirtualMachinePending {
			t.Errorf("status = %+v after a second apply, want Pending", vm.Status)
		}
	})

	t.Run("status applied through ApplyStatus is kept, spec is not", func(t *testing.T) {
		ns := unique(t)
		mustApply(t, ns, "alice", cpus(2))
		cfg := ac.VirtualMachine("a", ns).
			WithSpec(cpus(8)).
			WithStatus(ac.VirtualMachineStatus().WithPhase(v1alpha1.VirtualMachineRunning).WithNodeName("hv-1"))
		vm, err := vms(s, ns).ApplyStatus(t.Context(), cfg, metav1.ApplyOptions{FieldManager: "agent"})
		if err != nil {
			t.Fatal(err)
		}
		if vm.Status.Phase != v1alpha1.VirtualMachineRunning || vm.Status.NodeName != "hv-1" {
			t.Errorf("status = %+v, want phase Running on hv-1", vm.Status)
		}
		if vm.Spec.CPUs != 2 || vm.Generation != 1 {
			t.Errorf("spec written through ApplyStatus: cpus %d, generation %d; want 2, 1", vm.Spec.CPUs, vm.Generation)
		}
		owned := managedFields(t, vm, "agent", "status")
		if !owned.Has(fieldpath.MakePathOrDie("status", "phase")) || !owned.WithPrefix(spec[0]).Empty() {
			t.Errorf("agent's status fields %s: want status.phase and no spec", owned)
		}
		if got := getVM(t, s, ns, "a"); got.Status.Phase != v1alpha1.VirtualMachineRunning {
			t.Errorf("stored phase = %q, want Running", got.Status.Phase)
		}
	})
}

// managedFields returns the fields manager owns through subresource ("" for
// the main resource), empty when it owns none.
func managedFields(t *testing.T, obj metav1.Object, manager, subresource string) *fieldpath.Set {
	t.Helper()
	out := &fieldpath.Set{}
	for _, entry := range obj.GetManagedFields() {
		if entry.Manager != manager || entry.Subresource != subresource || entry.FieldsV1 == nil {
			continue
		}
		set := &fieldpath.Set{}
		if err := set.FromJSON(bytes.NewReader(entry.FieldsV1.Raw)); err != nil {
			t.Fatalf("parse managed fields of %s: %v", manager, err)
		}
		out = out.Union(set)
	}
	return out
}
