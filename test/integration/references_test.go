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
	"net/http"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// Snapshots and restores name their VM and snapshot; the API refuses what
// cannot be done instead of leaving it to fail later on a node, and ties
// them to the VM so they are garbage-collected with it.
func TestSnapshotAndRestoreReferences(t *testing.T) {
	s := startServer(t)
	ns := "default"
	vm := createVM(t, s, ns, newVM("web"))
	createVM(t, s, ns, newVM("db"))
	snaps := s.Client.VesselV1alpha1().VirtualMachineSnapshots(ns)
	restores := s.Client.VesselV1alpha1().VirtualMachineRestores(ns)

	_, err := snaps.Create(t.Context(), &v1alpha1.VirtualMachineSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan"},
		Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: "nope"},
	}, metav1.CreateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, "spec.virtualMachineName: Invalid value: \"nope\": no such VirtualMachine in this namespace")

	snap := createSnapshot(t, s, ns, "web-1", "web", false)
	if refs := snap.OwnerReferences; len(refs) != 1 || refs[0].UID != vm.UID || refs[0].Kind != "VirtualMachine" || refs[0].Name != "web" {
		t.Errorf("snapshot owner references = %+v, want the VM web (%s)", refs, vm.UID)
	}

	restore := func(name, vmName, snapName string) error {
		_, err := restores.Create(t.Context(), &v1alpha1.VirtualMachineRestore{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: vmName, SnapshotName: snapName},
		}, metav1.CreateOptions{})
		return err
	}
	wantAPIError(t, restore("r1", "web", "missing"), http.StatusUnprocessableEntity, "no such VirtualMachineSnapshot in this namespace")
	wantAPIError(t, restore("r2", "web", "web-1"), http.StatusUnprocessableEntity, "the snapshot is not ready to use (phase Pending)")
	wantAPIError(t, restore("r3", "db", "web-1"), http.StatusUnprocessableEntity, `the snapshot is of VM "web", not "db"`)
	wantAPIError(t, restore("r4", "gone", "web-1"), http.StatusUnprocessableEntity, "no such VirtualMachine in this namespace")
	if list, err := restores.List(t.Context(), metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Fatalf("refused restores were stored: %v, %v", list, err)
	}

	createSnapshot(t, s, ns, "web-2", "web", true)
	if err := restore("r5", "web", "web-2"); err != nil {
		t.Fatalf("restore from a ready snapshot of the VM: %v", err)
	}
}
