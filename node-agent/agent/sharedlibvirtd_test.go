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

package agent_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/internal/agenttest"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

// TestControlPlanesSharingALibvirtdLeaveEachOthersGuestsAlone: two control
// planes (each an apiserver with its own etcd) whose agents use the same
// hypervisor name share this host's libvirtd, as test clusters beside a
// `make up` system do. Each runs a VM default/demo. Through several resyncs
// (each collects orphans) both guests keep their QEMU processes; deleting
// one VM removes only its domain.
func TestControlPlanesSharingALibvirtdLeaveEachOthersGuestsAlone(t *testing.T) {
	name := "shared-" + rand.String(6)
	a := agenttest.NewWith(t, agenttest.Options{HypervisorName: name})
	b := agenttest.NewWith(t, agenttest.Options{HypervisorName: name})
	if a.HypervisorName != b.HypervisorName {
		t.Fatalf("hypervisor names %q and %q differ", a.HypervisorName, b.HypervisorName)
	}
	a.StartAgent()
	b.StartAgent()
	const vmName = "demo"
	vmA := a.Create(a.GuestVM(vmName, v1alpha1.RunStrategyAlways, ""))
	vmB := b.Create(b.GuestVM(vmName, v1alpha1.RunStrategyAlways, ""))
	vmA = a.WaitPhase(vmName, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	vmB = b.WaitPhase(vmName, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	a.WaitConsole(vmA, agenttest.BootTimeout, "VESSEL-BOOT done")
	b.WaitConsole(vmB, agenttest.BootTimeout, "VESSEL-BOOT done")
	domA, domB := a.Domain(vmA), b.Domain(vmB)
	if domA.Name == domB.Name {
		t.Fatalf("both VMs %s got the domain name %q", vmName, domA.Name)
	}
	if domA.Owner.HypervisorUID == "" || domA.Owner.HypervisorUID == domB.Owner.HypervisorUID {
		t.Fatalf("domains stamped with hypervisor UIDs %q and %q, want two different ones", domA.Owner.HypervisorUID, domB.Owner.HypervisorUID)
	}
	pidA, pidB := a.QEMUPID(vmA), b.QEMUPID(vmB)

	// The agents resync (and collect orphans) every 5 s; each sees the
	// other's domain, with its own hypervisor name, and no VM for it.
	time.Sleep(12 * time.Second)
	for _, c := range []struct {
		e   *agenttest.Env
		vm  *v1alpha1.VirtualMachine
		pid int
	}{{a, vmA, pidA}, {b, vmB, pidB}} {
		if got := c.e.Get(vmName); got.Status.Phase != v1alpha1.VirtualMachineRunning {
			t.Errorf("VM %s of hypervisor UID %s after the resyncs: %s", vmName, c.e.HypervisorUID(), agenttest.Describe(got))
		}
		if pid := c.e.QEMUPID(c.vm); pid != c.pid {
			t.Errorf("VM %s of hypervisor UID %s: QEMU pid %d, was %d: the other agent took its guest", vmName, c.e.HypervisorUID(), pid, c.pid)
		}
	}

	// Deleting A's VM removes A's domain only.
	if err := a.Client.VesselV1alpha1().VirtualMachines(agenttest.Namespace).Delete(a.Ctx, vmName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a.WaitGone(vmName, 60*time.Second)
	if d := a.Domain(vmA); d != nil {
		t.Errorf("domain %s still defined after its VM was deleted: %+v", d.Name, d)
	}
	time.Sleep(6 * time.Second) // one more resync of each agent
	if d := b.Domain(vmB); d == nil || d.State != hypervisor.StateRunning {
		t.Errorf("the other control plane's domain after the delete: %+v, want running", d)
	}
	if pid := b.QEMUPID(vmB); pid != pidB {
		t.Errorf("the other control plane's guest: QEMU pid %d, was %d", pid, pidB)
	}
	if got := b.Get(vmName); got.Status.Phase != v1alpha1.VirtualMachineRunning {
		t.Errorf("the other control plane's VM after the delete: %s", agenttest.Describe(got))
	}
}
