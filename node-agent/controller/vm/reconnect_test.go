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
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/internal/agenttest"
	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

// TestLibvirtConnectionLoss: the agent's connection to libvirtd drops while
// a guest runs; the agent reconnects, re-subscribes to lifecycle events and
// carries on: a stop requested after the drop is carried out and seen.
func TestLibvirtConnectionLoss(t *testing.T) {
	needs.Libvirt(t)
	proxy := agenttest.NewSocketProxy(t)
	e := agenttest.NewWith(t, agenttest.Options{Socket: proxy.Path})
	e.StartAgent()
	name := "reconnect-" + rand.String(5)
	e.Create(e.GuestVM(name, v1alpha1.RunStrategyRerunOnFailure, ""))
	vm := e.WaitPhase(name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	e.WaitConsole(vm, agenttest.BootTimeout, "VESSEL-BOOT done")
	pid := e.QEMUPID(vm)

	proxy.Cut()
	time.Sleep(500 * time.Millisecond)
	if got := e.QEMUPID(vm); got != pid {
		t.Fatalf("guest restarted when the connection dropped: pid %d -> %d", pid, got)
	}
	vms := e.Client.VesselV1alpha1().VirtualMachines(agenttest.Namespace)
	if _, err := vms.Stop(e.Ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineStopped, 60*time.Second)
	if vm.Status.StopReason != "Requested" {
		t.Errorf("after stop: %s", agenttest.Describe(vm))
	}
	if d := e.Domain(vm); d == nil || d.State != hypervisor.StateShutoff {
		t.Errorf("domain after stop: %+v", d)
	}
}
