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
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"context"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/internal/agenttest"
)

// TestLifecycle walks one VM through its whole life on real libvirt and
// QEMU: create, provision from URL images, boot with cloud-init, stop,
// start, restart, pause, unpause and delete.
func TestLifecycle(t *testing.T) {
	e := agenttest.New(t)
	e.StartAgent()
	ctx := e.Ctx

	// The agent registers its Hypervisor and heartbeats it.
	hvs := e.Client.VesselV1alpha1().Hypervisors()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		hv, err := hvs.Get(ctx, e.HypervisorName, metav1.GetOptions{})
		return err == nil && hv.Status.LastHeartbeatTime != nil && hv.Status.QEMUVersion != "", nil
	})
	if err != nil {
		t.Fatalf("hypervisor %s not registered: %v", e.HypervisorName, err)
	}
	hv, _ := hvs.Get(ctx, e.HypervisorName, metav1.GetOptions{})
	if hv.Labels["vessel.dev/test"] != "true" || hv.Status.Capacity.CPUs < 1 || hv.Status.Capacity.Memory.IsZero() || hv.Status.LibvirtVersion == "" {
		t.Errorf("hypervisor status incomplete: labels=%v status=%+v", hv.Labels, hv.Status)
	}

	marker := "VESSEL-MARKER-" + rand.String(8)
	userData := "#!/bin/sh\necho " + marker + " > /mnt/disk/marker; echo " + marker + "\n"
	name := "life-" + rand.String(5)
	vm := e.Create(e.GuestVM(name, v1alpha1.RunStrategyAlways, userData))

	vm = e.WaitPhase(name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	if vm.Status.NodeName != e.HypervisorName || vm.Status.StartedAt == nil || vm.Status.ObservedGeneration != vm.Generation {
		t.Errorf("running status incomplete: %s", agenttest.Describe(vm))
	}
	if c := agenttest.Condition(vm, v1alpha1.VirtualMachineConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready condition not True: %s", agenttest.Describe(vm))
	}
	for _, d := range vm.Status.Disks {
		if d.Phase != v1alpha1.DiskReady {
			t.Errorf("disk %s is %s, want Ready", d.Name, d.Phase)
		}
	}
	e.WaitConsole(vm, agenttest.BootTimeout, "VESSEL-GUEST READY", marker, "VESSEL-DISK mounted", "VESSEL-CLOUDINIT done rc=0", "VESSEL-BOOT done")
	// The default interface is Managed: its address is the lease of the
	// agent's own DHCP server, from the default pool.
	vm = e.WaitVM(name, "DHCP address in status", 30*time.Second, func(vm *v1alpha1.VirtualMachine) bool {
		if len(vm.Status.Interfaces) != 1 {
			return false
		}
		is := vm.Status.Interfaces[0]
		return strings.HasPrefix(is.IPAddress, "10.200.") && is.MACAddress != "" &&
			len(is.IPAddresses) == 1 && is.IPAddresses[0].Source == v1alpha1.IPAddressSourceDHCP
	})
	if d := e.Domain(vm); d == nil || d.State != hypervisor.StateRunning || d.Owner.Name != name {
		t.Fatalf("domain of %s: %+v, want running and owned", name, d)
	}
	vms := e.Client.VesselV1alpha1().VirtualMachines(agenttest.Namespace)

	// Stop: ACPI power button, the guest powers itself off.
	if _, err := vms.Stop(ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineStopped, 60*time.Second)
	if d := e.Domain(vm); d == nil || d.State != hypervisor.StateShutoff {
		t.Errorf("domain after stop: %+v, want shut off", d)
	}
	if vm.Status.StopReason != agentStopRequested || vm.Status.ObservedPowerActionID != vm.Spec.PowerAction.ID {
		t.Errorf("after stop: %s", agenttest.Describe(vm))
	}
	consoleAfterStop, _ := os.ReadFile(e.ConsolePath(vm))
	if !containsAny(string(consoleAfterStop), "VESSEL-ACPI power-button", "VESSEL-SHUTDOWN") {
		t.Errorf("guest did not see the ACPI power button; console:\n%s", agenttest.Tail(string(consoleAfterStop), 1500))
	}

	// Start again.
	if _, err := vms.Start(ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	e.WaitConsole(vm, agenttest.BootTimeout, "VESSEL-BOOT done")
	firstStart := vm.Status.StartedAt.DeepCopy()

	// Restart: graceful stop then start; startedAt moves.
	time.Sleep(1100 * time.Millisecond) // startedAt has second precision
	restarted, err := vms.Restart(ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	vm = e.WaitVM(name, "restart carried out", agenttest.BootTimeout, func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Status.ObservedPowerActionID == restarted.Spec.PowerAction.ID && vm.Status.Phase == v1alpha1.VirtualMachineRunning
	})
	if !vm.Status.StartedAt.After(firstStart.Time) {
		t.Errorf("startedAt did not move on restart: %v -> %v", firstStart, vm.Status.StartedAt)
	}
	e.WaitConsole(vm, agenttest.BootTimeout, "VESSEL-BOOT done")

	// Pause and unpause.
	if _, err := vms.Pause(ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("pause: %v", err)
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachinePaused, 30*time.Second)
	if d := e.Domain(vm); d == nil || d.State != hypervisor.StatePaused {
		t.Errorf("domain after pause: %+v, want paused", d)
	}
	if c := agenttest.Condition(vm, v1alpha1.VirtualMachineConditionPaused); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Paused condition not True: %s", agenttest.Describe(vm))
	}
	if _, err := vms.Unpause(ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("unpause: %v", err)
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineRunning, 30*time.Second)
	if d := e.Domain(vm); d == nil || d.State != hypervisor.StateRunning {
		t.Errorf("domain after unpause: %+v, want running", d)
	}

	// Delete: the finalizer holds the VM until the domain and files are gone.
	vmDir := e.ConsolePath(vm)[:len(e.ConsolePath(vm))-len("/console.log")]
	if err := vms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := vms.Get(ctx, name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("VM %s not deleted: %s", name, agenttest.Describe(e.Get(name)))
	}
	if d := e.Domain(vm); d != nil {
		t.Errorf("domain still defined after delete: %+v", d)
	}
	if _, err := os.Stat(vmDir); !os.IsNotExist(err) {
		t.Errorf("VM directory %s still exists (%v)", vmDir, err)
	}
	if entries, _ := os.ReadDir(e.StateDir + "/images"); len(entries) != 3 {
		t.Errorf("image cache should keep the 3 images, has %d", len(entries))
	}
}

const agentStopRequested = "Requested"

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if len(sub) > 0 && len(s) >= len(sub) {
			for i := 0; i+len(sub) <= len(s); i++ {
				if s[i:i+len(sub)] == sub {
					return true
				}
			}
		}
	}
	return false
}
