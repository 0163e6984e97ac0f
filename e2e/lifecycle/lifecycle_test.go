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

package lifecycle

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/e2e/pidfile"
	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

func TestMain(m *testing.M) { framework.Main(m) }

// The README's quick start, step by step, as alice in team-a: the example
// VM runs, its cloud-init script ran in the guest, and every power action
// reaches the libvirt domain.
func TestQuickStartExample(t *testing.T) {
	e := framework.Require(t)
	root, err := launcher.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The example as shipped, renamed: the VM demo is the user's.
	const ns, name = "team-a", "quickstart"
	example, err := os.ReadFile(filepath.Join(root, "examples", "vm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(t.TempDir(), "vm.yaml")
	renamed := strings.Replace(string(example), "name: demo", "name: "+name, 1)
	if err := os.WriteFile(manifest, []byte(renamed), 0o644); err != nil {
		t.Fatal(err)
	}
	e.MustKubectl(t, "alice", "apply", "-f", manifest)
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "vm", name, "--wait=false") })

	vm := e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
	e.MustKubectl(t, "alice", "-n", ns, "wait", "vm/"+name, "--for=jsonpath={.status.phase}=Running", "--timeout=10s")
	e.WaitLog(t, vm, "VESSEL-GUEST READY")
	e.WaitLog(t, vm, "hello from cloud-init on "+name)
	if got := e.DomState(t, vm); got != "running" {
		t.Fatalf("domain %s is %q, want running", vm.UID, got)
	}
	out := e.MustKubectl(t, "alice", "-n", ns, "get", "vm", name)
	if !strings.Contains(out, "Running") {
		t.Errorf("kubectl get vm shows no Running:\n%s", out)
	}

	e.MustKubectl(t, "alice", "vm", "-n", ns, "stop", name)
	e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineStopped)
	if got := e.DomState(t, vm); got != "shut off" {
		t.Errorf("after stop, domain is %q, want shut off", got)
	}
	if out, err := e.Kubectl(t, "alice", "vm", "-n", ns, "stop", name); err == nil || !strings.Contains(out, "already stopped") {
		t.Errorf("a second stop should be refused as already stopped; got %v:\n%s", err, out)
	}

	e.MustKubectl(t, "alice", "vm", "-n", ns, "start", name)
	vm = e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
	started := vm.Status.StartedAt.Time

	e.MustKubectl(t, "alice", "vm", "-n", ns, "restart", name)
	e.WaitVM(t, ns, name, 2*time.Minute, "restart", func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Status.Phase == v1alpha1.VirtualMachineRunning && vm.Status.StartedAt != nil && vm.Status.StartedAt.After(started)
	})

	// Transitions are Kubernetes Events on the VM, readable by its tenant.
	events := e.MustKubectl(t, "alice", "-n", ns, "get", "events",
		"--field-selector", "involvedObject.kind=VirtualMachine,involvedObject.name="+name)
	for _, reason := range []string{"Started", "Stopped", "Running"} {
		if !strings.Contains(events, reason) {
			t.Errorf("no %s event for the VM; events:\n%s", reason, events)
		}
	}

	e.MustKubectl(t, "alice", "vm", "-n", ns, "pause", name)
	e.WaitPhase(t, ns, name, v1alpha1.VirtualMachinePaused)
	if got := e.DomState(t, vm); got != "paused" {
		t.Errorf("after pause, domain is %q, want paused", got)
	}
	e.MustKubectl(t, "alice", "vm", "-n", ns, "unpause", name)
	vm = e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)

	e.MustKubectl(t, "alice", "-n", ns, "delete", "vm", name, "--timeout=120s")
	if out, err := e.Kubectl(t, "alice", "-n", ns, "get", "vm", name); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("VM still there after delete: %v\n%s", err, out)
	}
	if hvs := e.DomainsOf(t, vm); len(hvs) > 0 {
		t.Errorf("domain %s still defined on %v after the VM was deleted", vm.UID, hvs)
	}
	if _, err := os.Stat(framework.VMDir(e.HypervisorOf(t, vm), vm)); !os.IsNotExist(err) {
		t.Errorf("the VM's files are still on the node: %v", err)
	}
}

// A VM that fits no hypervisor stays Pending and says why.
func TestUnschedulableVMSaysWhy(t *testing.T) {
	e := framework.Require(t)
	vm := framework.GuestVM("default", "nowhere")
	vm.Spec.NodeSelector = map[string]string{"pool": "gpu"}
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines("default").Create(t.Context(), vm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "delete", "vm", "nowhere", "--wait=false") })
	got := e.WaitVM(t, "default", "nowhere", time.Minute, "Scheduled=False", func(vm *v1alpha1.VirtualMachine) bool {
		c := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionScheduled)
		return c != nil && c.Status == "False"
	})
	c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.VirtualMachineConditionScheduled)
	want := fmt.Sprintf("0/%[1]d hypervisors are available: %[1]d didn't match the VM's nodeSelector.", len(e.Hypervisors))
	if got.Status.Phase != v1alpha1.VirtualMachinePending || c.Reason != "Unschedulable" || c.Message != want {
		t.Errorf("phase %s, condition %+v", got.Status.Phase, c)
	}
}

// libvirtd restarts (an upgrade, a crash): guests keep running under their
// QEMU, the agent reconnects, and the VM is still Running and still obeys.
// The libvirtd is the VM's hypervisor's own, stopped as an upgrade would
// (SIGTERM) and started again by the launcher in the same namespaces.
func TestAlwaysVMSurvivesLibvirtdRestart(t *testing.T) {
	e := framework.Require(t)
	const ns, name = "default", "steady"
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).Create(t.Context(), framework.GuestVM(ns, name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "vm", name, "--wait=false") })
	vm := e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
	e.WaitLog(t, vm, "VESSEL-BOOT done")
	hv := e.HypervisorOf(t, vm)
	pid := qemuPID(t, hv, vm)

	e.RestartLibvirtd(t, hv.Name)

	if got := e.DomState(t, vm); got != "running" {
		t.Fatalf("after the libvirtd restart the domain is %q", got)
	}
	if got := qemuPID(t, hv, vm); got != pid {
		t.Errorf("QEMU pid %d after the libvirtd restart, was %d: the guest was restarted", got, pid)
	}
	// The agent is connected again: a stop is carried out.
	e.MustKubectl(t, "admin", "vm", "-n", ns, "stop", name)
	e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineStopped)
	e.MustKubectl(t, "admin", "vm", "-n", ns, "start", name)
	e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
}

// kill -9 of the agent while three guests run: the guests go on (same
// QEMU processes), and the restarted agent adopts them without a reboot and
// obeys the next action.
func TestAgentCrashKeepsGuests(t *testing.T) {
	e := framework.Require(t)
	const ns = "default"
	names := []string{"adopt-a", "adopt-b", "adopt-c"}
	pids := map[string]int{}
	for _, name := range names {
		if _, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).Create(t.Context(), framework.GuestVM(ns, name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "vm", name, "--wait=false") })
	}
	started := map[string]time.Time{}
	vms := map[string]*v1alpha1.VirtualMachine{}
	for _, name := range names {
		vm := e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
		e.WaitLog(t, vm, "VESSEL-BOOT done")
		vms[name] = vm
		pids[name] = framework.QEMUPID(t, string(vm.UID))
		started[name] = vm.Status.StartedAt.Time
	}

	// Every agent dies; each guest's, whichever hypervisor it is on.
	for _, hv := range e.Hypervisors {
		if err := e.Cluster.KillAgent(hv.Name); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		if got := e.DomState(t, vms[name]); got != "running" {
			t.Errorf("%s is %q with the agents dead, want running", name, got)
		}
	}
	for _, hv := range e.Hypervisors {
		if err := e.Cluster.RestartAgent(t.Context(), hv.Name); err != nil {
			t.Fatal(err)
		}
	}
	// The new agent proves it is in charge by carrying out a stop.
	e.MustKubectl(t, "admin", "vm", "-n", ns, "stop", names[0])
	e.WaitPhase(t, ns, names[0], v1alpha1.VirtualMachineStopped)
	for _, name := range names[1:] {
		vm := e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
		if got := framework.QEMUPID(t, string(vm.UID)); got != pids[name] {
			t.Errorf("%s: QEMU pid %d after the agent restart, was %d: the guest was restarted", name, got, pids[name])
		}
		if !vm.Status.StartedAt.Time.Equal(started[name]) {
			t.Errorf("%s: startedAt moved from %v to %v", name, started[name], vm.Status.StartedAt.Time)
		}
	}
}

// qemuPID is the pid of the VM's QEMU as its hypervisor's libvirtd
// records it.
func qemuPID(t *testing.T, hv launcher.Hypervisor, vm *v1alpha1.VirtualMachine) int {
	t.Helper()
	domain := hypervisor.DomainName(vm.Namespace, vm.Name, string(vm.UID))
	pid, err := pidfile.Read(hv.LibvirtHost().QEMUPIDFile(domain))
	if err != nil {
		t.Fatalf("QEMU pid of %s: %v", domain, err)
	}
	return pid
}
