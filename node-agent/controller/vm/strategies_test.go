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
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	vmcontroller "github.com/vessel-vm/vessel/node-agent/controller/vm"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/internal/agenttest"
	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

// TestRunStrategies: guests that power themselves off stay off under
// RerunOnFailure and Once; a Manual VM waits for a start action.
func TestRunStrategies(t *testing.T) {
	e := agenttest.New(t)
	needs.Tool(t, "virsh") // reads the domain's memory
	e.StartAgent()
	suffix := rand.String(5)
	powerOff := "#!/bin/sh\necho powering off; poweroff -f\n"
	rerun := e.Create(e.GuestVM("rerun-off-"+suffix, v1alpha1.RunStrategyRerunOnFailure, powerOff))
	once := e.Create(e.GuestVM("once-off-"+suffix, v1alpha1.RunStrategyOnce, powerOff))
	manual := e.Create(e.GuestVM("manual-"+suffix, v1alpha1.RunStrategyManual, ""))

	for _, vm := range []*v1alpha1.VirtualMachine{rerun, once} {
		got := e.WaitVM(vm.Name, "stopped by the guest", agenttest.BootTimeout, func(vm *v1alpha1.VirtualMachine) bool {
			return vm.Status.Phase == v1alpha1.VirtualMachineStopped && vm.Status.StopReason == "GuestShutdown"
		})
		if got.Status.StartedAt == nil {
			t.Errorf("VM %s: never reported as started", vm.Name)
		}
	}
	got := e.WaitPhase(manual.Name, v1alpha1.VirtualMachineStopped, 60*time.Second)
	if got.Status.StartedAt != nil {
		t.Errorf("Manual VM started without a start action: %s", agenttest.Describe(got))
	}

	// They stay off.
	time.Sleep(3 * time.Second)
	for _, vm := range []*v1alpha1.VirtualMachine{rerun, once, manual} {
		if d := e.Domain(vm); d == nil || d.State != hypervisor.StateShutoff {
			t.Errorf("VM %s: domain %+v, want defined and shut off", vm.Name, d)
		}
		if got := e.Get(vm.Name); got.Status.Phase != v1alpha1.VirtualMachineStopped {
			t.Errorf("VM %s: %s, want to stay Stopped", vm.Name, agenttest.Describe(got))
		}
	}

	// A start action runs the Manual VM.
	vms := e.Client.VesselV1alpha1().VirtualMachines(agenttest.Namespace)
	started, err := vms.Start(e.Ctx, manual.Name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	got = e.WaitPhase(manual.Name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	if got.Status.ObservedPowerActionID != started.Spec.PowerAction.ID {
		t.Errorf("start action not recorded: %s", agenttest.Describe(got))
	}
	// A forced stop (grace 0) destroys it at once.
	zero := int64(0)
	if _, err := vms.Stop(e.Ctx, manual.Name, &v1alpha1.VirtualMachineActionOptions{GracePeriodSeconds: &zero}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	got = e.WaitPhase(manual.Name, v1alpha1.VirtualMachineStopped, 30*time.Second)
	if got.Status.StopReason != "Requested" {
		t.Errorf("forced stop: %s", agenttest.Describe(got))
	}

	// A spec edited while stopped is applied at the next start.
	e.Update(manual.Name, func(vm *v1alpha1.VirtualMachine) { vm.Spec.Memory = resource.MustParse("112Mi") })
	if _, err := vms.Start(e.Ctx, manual.Name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	got = e.WaitPhase(manual.Name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	if mem := domainMaxMemoryKiB(t, e, got); mem != 112*1024 {
		t.Errorf("domain memory after the edit: %d KiB, want %d", mem, 112*1024)
	}
	// Edited while running: applied later, and status says so.
	e.Update(manual.Name, func(vm *v1alpha1.VirtualMachine) { vm.Spec.CPUs = 2 })
	e.WaitVM(manual.Name, "RestartRequired", 30*time.Second, func(vm *v1alpha1.VirtualMachine) bool {
		c := agenttest.Condition(vm, vmcontroller.ConditionRestartRequired)
		return c != nil && c.Status == metav1.ConditionTrue && vm.Status.Phase == v1alpha1.VirtualMachineRunning
	})
}

// domainMaxMemoryKiB reads the domain's memory with virsh.
func domainMaxMemoryKiB(t *testing.T, e *agenttest.Env, vm *v1alpha1.VirtualMachine) int {
	t.Helper()
	out, err := exec.Command("virsh", "-c", e.LibvirtHost.URI(), "dominfo", string(vm.UID)).Output()
	if err != nil {
		t.Fatalf("virsh dominfo: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "Max" && f[1] == "memory:" {
			n, _ := strconv.Atoi(f[2])
			return n
		}
	}
	t.Fatalf("no memory in dominfo: %s", out)
	return 0
}
