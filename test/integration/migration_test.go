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
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// A bound VM moves only with a binding that names a migration of it that
// succeeded from its hypervisor to the binding's target; a migration is
// owned by its VM and names one that exists.
func TestRebindingNeedsASucceededMigration(t *testing.T) {
	s := startServer(t)
	ns := unique(t)
	createVM(t, s, ns, newVM("a"))
	bindVM(t, s, ns, "a", "hv-1")
	migrations := s.Client.VesselV1alpha1().VirtualMachineMigrations(ns)
	m, err := migrations.Create(t.Context(), &v1alpha1.VirtualMachineMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "m"},
		Spec:       v1alpha1.VirtualMachineMigrationSpec{VirtualMachineName: "a"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.OwnerReferences) != 1 || m.OwnerReferences[0].Name != "a" {
		t.Errorf("owner references %+v, want the VM", m.OwnerReferences)
	}
	bind := func(annotations map[string]string) error {
		_, err := vms(s, ns).Bind(t.Context(), "a", &v1alpha1.VirtualMachineBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "a", Annotations: annotations}, Target: "hv-2",
		}, metav1.CreateOptions{})
		return err
	}
	wantAPIError(t, bind(nil), 409, "only a VirtualMachineMigration moves it")
	wantAPIError(t, bind(map[string]string{v1alpha1.AnnotationMigration: "m"}), 409, "is not of this VM")
	if vm := getVM(t, s, ns, "a"); vm.Spec.NodeName != "hv-1" {
		t.Errorf("nodeName %q after refused rebinds, want hv-1", vm.Spec.NodeName)
	}

	_, err = migrations.Create(t.Context(), &v1alpha1.VirtualMachineMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "none"},
		Spec:       v1alpha1.VirtualMachineMigrationSpec{VirtualMachineName: "nope"},
	}, metav1.CreateOptions{})
	wantAPIError(t, err, 422, "no such VirtualMachine")
}

// A migration of a VM that cannot move for a reason its caller can act on
// at once is refused with 409 and that reason: another migration moves
// the VM, or the VM has snapshots libvirt would not carry.
func TestMigrationOfABusyVMIsRefused(t *testing.T) {
	s := startServer(t)
	ns := unique(t)
	createVM(t, s, ns, newVM("a"))
	bindVM(t, s, ns, "a", "hv-1")
	createVM(t, s, ns, newVM("b"))
	bindVM(t, s, ns, "b", "hv-1")
	migrations := s.Client.VesselV1alpha1().VirtualMachineMigrations(ns)
	create := func(name, vm string) error {
		_, err := migrations.Create(t.Context(), &v1alpha1.VirtualMachineMigration{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1alpha1.VirtualMachineMigrationSpec{VirtualMachineName: vm},
		}, metav1.CreateOptions{})
		return err
	}
	fail := func(name string) {
		m, err := migrations.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m.Status.Phase, m.Status.Reason = v1alpha1.MigrationFailed, "test"
		if _, err := migrations.UpdateStatus(t.Context(), m, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := create("first", "a"); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, create("second", "a"), 409, "migration first is moving VM a already (Pending): wait for it to end, or delete it to cancel it")
	if err := create("other-vm", "b"); err != nil {
		t.Errorf("a migration of another VM: %v", err)
	}
	fail("first")
	if err := create("after-first", "a"); err != nil {
		t.Fatalf("a migration after the first failed: %v", err)
	}
	fail("after-first")

	if _, err := s.Client.VesselV1alpha1().VirtualMachineSnapshots(ns).Create(t.Context(), &v1alpha1.VirtualMachineSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "before-upgrade"},
		Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: "a"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, create("with-snapshot", "a"), 409, "VM a has snapshots (before-upgrade), and libvirt does not migrate a domain with snapshots")
	if err := s.Client.VesselV1alpha1().VirtualMachineSnapshots(ns).Delete(t.Context(), "before-upgrade", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := create("without-snapshot", "a"); err != nil {
		t.Errorf("a migration once the snapshot is gone: %v", err)
	}
}
