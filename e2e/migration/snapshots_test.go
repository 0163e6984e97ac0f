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

package migration

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

// A VM with a snapshot does not move (libvirt refuses domains with
// snapshot metadata, and the disk copy would not carry the qcow2's
// internal snapshots): the migration is refused with 409 Conflict, the
// reason and what to do, the guest stays where it was; once the snapshot
// is deleted it moves.
func TestVMWithSnapshotsDoesNotMove(t *testing.T) {
	e := env(t)
	dumpAgentLogs(t, e)
	ns := namespace(t, e, "migration-snapshots")
	ctx := context.Background()
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).Create(ctx, countingVM(ns, "snapped"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vm := e.WaitPhase(t, ns, "snapped", v1alpha1.VirtualMachineRunning)
	e.WaitLog(t, vm, "VESSEL-COUNT 1")
	e.MustKubectl(t, "admin", "vm", "-n", ns, "snapshot", "snapped", "before-move", "--wait")
	pid := framework.QEMUPID(t, string(vm.UID))

	out, err := e.Kubectl(t, "admin", "vm", "migrate", "snapped", "-n", ns, "--wait")
	t.Logf("kubectl vm migrate of a VM with a snapshot:\n%s", out)
	if err == nil {
		t.Fatal("kubectl vm migrate --wait succeeded for a VM with a snapshot")
	}
	for _, want := range []string{"cannot migrate VM " + ns + "/snapped", "has snapshots (before-move)", "Delete them first (kubectl delete vmsnap -n " + ns + " before-move)"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl vm migrate lacks %q", want)
		}
	}
	if list, err := e.Admin.VesselV1alpha1().VirtualMachineMigrations(ns).List(ctx, metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Errorf("a refused migration was stored (err %v): %+v", err, list)
	}
	if got := e.DomainsOf(t, vm); len(got) != 1 || got[0] != vm.Spec.NodeName {
		t.Fatalf("domains of the VM are on %v, want only on %s", got, vm.Spec.NodeName)
	}
	if now := framework.QEMUPID(t, string(vm.UID)); now != pid {
		t.Fatalf("QEMU pid %d, was %d", now, pid)
	}

	e.MustKubectl(t, "admin", "-n", ns, "delete", "vmsnap", "before-move", "--wait=true", "--timeout=2m")
	out = e.MustKubectl(t, "admin", "vm", "migrate", "snapped", "-n", ns, "--wait")
	if !strings.Contains(out, "Succeeded") {
		t.Fatalf("after the snapshot's deletion the VM did not move:\n%s", out)
	}
	e.WaitVM(t, ns, "snapped", time.Minute, "Running on another hypervisor", func(cur *v1alpha1.VirtualMachine) bool {
		return cur.Spec.NodeName != vm.Spec.NodeName && cur.Status.Phase == v1alpha1.VirtualMachineRunning
	})
}
