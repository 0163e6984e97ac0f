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

package vm_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/internal/agenttest"
	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

// TestAgentRestart stops the agent while three guests run (as a crash
// would: nothing is shut down) and starts a new one: it adopts the guests
// without restarting them, cleans up the domain of a VM deleted while it
// was away, and leaves a domain Vessel does not own alone. Then QEMU of a
// RerunOnFailure VM is killed: the agent starts it again.
func TestAgentRestart(t *testing.T) {
	e := agenttest.New(t)
	e.StartAgent()
	ctx := e.Ctx
	vms := e.Client.VesselV1alpha1().VirtualMachines(agenttest.Namespace)

	suffix := rand.String(5)
	names := []string{"rerun-" + suffix, "always-" + suffix, "orphan-" + suffix}
	strategies := []v1alpha1.RunStrategy{v1alpha1.RunStrategyRerunOnFailure, v1alpha1.RunStrategyAlways, v1alpha1.RunStrategyAlways}
	created := map[string]*v1alpha1.VirtualMachine{}
	for i, name := range names {
		created[name] = e.Create(e.GuestVM(name, strategies[i], ""))
	}
	pids := map[string]int{}
	for _, name := range names {
		vm := e.WaitPhase(name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
		e.WaitConsole(vm, agenttest.BootTimeout, "VESSEL-BOOT done")
		pids[name] = e.QEMUPID(vm)
	}

	// A domain without Vessel's metadata, on the same libvirtd.
	foreign := defineForeignDomain(t, e)

	e.StopAgent()

	// Deleted while no agent runs; the finalizer is dropped by hand, so
	// only its domain is left behind.
	orphan := created[names[2]]
	if err := vms.Delete(ctx, orphan.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cur := e.Get(orphan.Name)
	cur.Finalizers = nil
	if _, err := vms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("drop finalizer: %v", err)
	}

	e.StartAgent()
	for _, name := range names[:2] {
		vm := e.WaitVM(name, "Running under the new agent", 30*time.Second, func(vm *v1alpha1.VirtualMachine) bool {
			return vm.Status.Phase == v1alpha1.VirtualMachineRunning
		})
		if pid := e.QEMUPID(vm); pid != pids[name] {
			t.Errorf("VM %s: QEMU pid %d, was %d: the new agent restarted the guest", name, pid, pids[name])
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, statErr := os.Stat(filepath.Dir(e.ConsolePath(orphan)))
		return e.Domain(orphan) == nil && os.IsNotExist(statErr), nil
	})
	if err != nil {
		t.Errorf("orphaned domain of %s or its directory not cleaned up: %+v", orphan.Name, e.Domain(orphan))
	}
	if foreign != "" {
		out, err := exec.Command("virsh", "-q", "-c", e.LibvirtHost.URI(), "domstate", foreign).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "shut off") {
			t.Errorf("foreign domain %s was touched: %s %v", foreign, out, err)
		}
	}

	// QEMU of the RerunOnFailure VM dies: it is started again.
	rerun := e.Get(names[0])
	if err := syscall.Kill(pids[rerun.Name], syscall.SIGKILL); err != nil {
		t.Fatalf("kill QEMU: %v", err)
	}
	rerun = e.WaitVM(rerun.Name, "running again after QEMU was killed", agenttest.BootTimeout, func(vm *v1alpha1.VirtualMachine) bool {
		if vm.Status.Phase != v1alpha1.VirtualMachineRunning || vm.Status.StopReason != "Crashed" {
			return false
		}
		d := e.Domain(vm)
		return d != nil && d.State == hypervisor.StateRunning
	})
	if pid := e.QEMUPID(rerun); pid == pids[rerun.Name] {
		t.Errorf("VM %s: QEMU pid unchanged (%d) after kill", rerun.Name, pid)
	}
	e.WaitConsole(rerun, agenttest.BootTimeout, "VESSEL-BOOT done")
}

// defineForeignDomain defines (without starting) a domain that has no
// Vessel metadata and returns its name, or "" without virsh (a failure
// under VESSEL_E2E).
func defineForeignDomain(t *testing.T, e *agenttest.Env) string {
	t.Helper()
	if !needs.HasTool(t, "virsh") {
		return ""
	}
	name := "foreign-" + rand.String(6)
	x := `<domain type='qemu'><name>` + name + `</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>` +
		`<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>`
	f := filepath.Join(t.TempDir(), "foreign.xml")
	if err := os.WriteFile(f, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("virsh", "-q", "-c", e.LibvirtHost.URI(), "define", f).CombinedOutput(); err != nil {
		t.Fatalf("define foreign domain: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("virsh", "-q", "-c", e.LibvirtHost.URI(), "undefine", name).Run() })
	return name
}

// TestBadChecksum: an image whose sha256 does not match fails provisioning
// clearly, and no domain is defined.
func TestBadChecksum(t *testing.T) {
	e := agenttest.New(t)
	e.StartAgent()
	name := "badsum-" + rand.String(5)
	vm := e.GuestVM(name, v1alpha1.RunStrategyAlways, "")
	wrong := strings.Repeat("0", 64)
	vm.Spec.Disks[0].Image.SHA256 = wrong
	created := e.Create(vm)

	got := e.WaitPhase(name, v1alpha1.VirtualMachineFailed, 60*time.Second)
	c := agenttest.Condition(got, v1alpha1.VirtualMachineConditionProvisioned)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "ImageChecksumMismatch" || !strings.Contains(c.Message, "sha256 mismatch") {
		t.Errorf("Provisioned condition: %+v, want False/ImageChecksumMismatch", c)
	}
	var disk *v1alpha1.DiskStatus
	for i := range got.Status.Disks {
		if got.Status.Disks[i].Name == "data" {
			disk = &got.Status.Disks[i]
		}
	}
	if disk == nil || disk.Phase != v1alpha1.DiskFailed || !strings.Contains(disk.Message, wrong) {
		t.Errorf("disk status: %+v, want Failed with the expected checksum in the message", disk)
	}
	if c := agenttest.Condition(got, v1alpha1.VirtualMachineConditionReady); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Ready condition: %+v, want False", c)
	}
	if d := e.Domain(created); d != nil {
		t.Errorf("a domain was defined for a VM whose image failed: %+v", d)
	}
	// Nothing unverified lands in the image cache.
	if _, err := os.Stat(filepath.Join(e.StateDir, "images", "sha256-"+wrong)); !os.IsNotExist(err) {
		t.Errorf("bad image in the cache (%v)", err)
	}

	// Deleting the failed VM still clears its finalizer.
	vms := e.Client.VesselV1alpha1().VirtualMachines(agenttest.Namespace)
	if err := vms.Delete(e.Ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(e.Ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := vms.Get(ctx, name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Errorf("failed VM not deleted")
	}
}
