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
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

// counting starts a counting guest "counter" in namespace ns (made if
// need be) and returns it once it counts, with its hypervisor and QEMU pid.
func counting(t *testing.T, e *framework.Env, ns string) (*v1alpha1.VirtualMachine, launcher.Hypervisor, int) {
	t.Helper()
	namespace(t, e, ns)
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).Create(context.Background(), countingVM(ns, "counter"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vm := e.WaitPhase(t, ns, "counter", v1alpha1.VirtualMachineRunning)
	e.WaitLog(t, vm, "VESSEL-COUNT 2")
	return vm, e.HypervisorOf(t, vm), framework.QEMUPID(t, string(vm.UID))
}

// moving starts a counting guest in its own namespace, starts its
// migration and waits until data is flowing; it returns the VM, the source
// and target hypervisors, the migration and the source QEMU's pid.
func moving(t *testing.T, e *framework.Env, ns string) (*v1alpha1.VirtualMachine, launcher.Hypervisor, launcher.Hypervisor, *v1alpha1.VirtualMachineMigration, int) {
	t.Helper()
	ctx := context.Background()
	vm, source, pid := counting(t, e, ns)
	out := e.MustKubectl(t, "admin", "vm", "migrate", "counter", "-n", ns)
	name := strings.TrimPrefix(strings.Fields(out)[0], "virtualmachinemigration.vessel.dev/")
	var m *v1alpha1.VirtualMachineMigration
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		cur, err := e.Admin.VesselV1alpha1().VirtualMachineMigrations(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		m = cur
		if cur.Status.Phase == v1alpha1.MigrationSucceeded || cur.Status.Phase == v1alpha1.MigrationFailed {
			return false, fmt.Errorf("migration ended before it could be interrupted: %+v", cur.Status)
		}
		return cur.Status.Phase == v1alpha1.MigrationRunning && cur.Status.TransferredBytes > 0 && cur.Status.Progress < 60, nil
	})
	if err != nil {
		t.Fatalf("migration %s/%s never got under way: %v; last %+v", ns, name, err, m)
	}
	return vm, source, e.Hypervisor(t, m.Status.Target), m, pid
}

// staysOnSource checks the guest runs on the source only, in the same
// QEMU, bound there and Running, and counts on.
func staysOnSource(t *testing.T, e *framework.Env, vm *v1alpha1.VirtualMachine, source launcher.Hypervisor, pid int) {
	t.Helper()
	vm = e.WaitVM(t, vm.Namespace, vm.Name, time.Minute, "Running on "+source.Name, func(v *v1alpha1.VirtualMachine) bool {
		return v.Spec.NodeName == source.Name && v.Status.Phase == v1alpha1.VirtualMachineRunning
	})
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		doms := e.DomainsOf(t, vm)
		return len(doms) == 1 && doms[0] == source.Name, nil
	})
	if err != nil {
		t.Fatalf("domains of the VM are on %v, want only on %s", e.DomainsOf(t, vm), source.Name)
	}
	if st := e.DomState(t, vm); st != "running" {
		t.Fatalf("the source's domain is %q", st)
	}
	if got := framework.QEMUPID(t, string(vm.UID)); got != pid {
		t.Fatalf("QEMU pid %d, was %d: the guest did not stay in its process", got, pid)
	}
	before := lastCount(e.ConsoleLog(vm))
	e.WaitLog(t, vm, fmt.Sprintf("VESSEL-COUNT %d", before+2))
	if n := strings.Count(e.ConsoleLog(vm), "VESSEL-GUEST READY"); n != 1 {
		t.Fatalf("the guest booted %d times", n)
	}
}

// Deleting a running migration aborts it: the guest stays on the source,
// in the same QEMU, and nothing is left on the target.
func TestDeletingARunningMigrationCancelsIt(t *testing.T) {
	e := env(t)
	dumpAgentLogs(t, e)
	vm, source, target, m, pid := moving(t, e, "migration-cancel")
	e.MustKubectl(t, "admin", "delete", "vmim", m.Name, "-n", m.Namespace)
	staysOnSource(t, e, vm, source, pid)
	if _, err := os.Stat(framework.VMDir(target, vm)); !os.IsNotExist(err) {
		t.Errorf("the target kept the VM's directory (%v)", err)
	}
}

// A target agent killed mid-migration fails the migration with a reason;
// the guest runs on at the source, and once the target's agent is back
// nothing of it is left there.
func TestTargetAgentKilledMidMigration(t *testing.T) {
	e := env(t)
	dumpAgentLogs(t, e)
	vm, source, target, m, pid := moving(t, e, "migration-kill-target")
	if err := e.Cluster.KillAgent(target.Name); err != nil {
		t.Fatal(err)
	}
	failed := waitMigration(t, e, m)
	if failed.Status.Phase != v1alpha1.MigrationFailed || failed.Status.Reason == "" {
		t.Fatalf("migration status %+v, want Failed with a reason", failed.Status)
	}
	t.Logf("reason: %s", failed.Status.Reason)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.Cluster.RestartAgent(ctx, target.Name); err != nil {
		t.Fatal(err)
	}
	staysOnSource(t, e, vm, source, pid)
}

// A source agent killed mid-migration: exactly one guest runs afterwards,
// where the VM is bound and the migration says.
func TestSourceAgentKilledMidMigration(t *testing.T) {
	e := env(t)
	dumpAgentLogs(t, e)
	vm, source, _, m, pid := moving(t, e, "migration-kill-source")
	if err := e.Cluster.KillAgent(source.Name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.Cluster.RestartAgent(ctx, source.Name); err != nil {
		t.Fatal(err)
	}
	ended := waitMigration(t, e, m)
	t.Logf("migration status after the source agent's restart: %+v", ended.Status)
	if ended.Status.Phase == v1alpha1.MigrationSucceeded {
		t.Logf("the guest had moved before the agent died")
		return
	}
	if ended.Status.Reason == "" {
		t.Fatalf("failed migration without a reason: %+v", ended.Status)
	}
	staysOnSource(t, e, vm, source, pid)
}

// The vessel-apiserver killed mid-migration (its embedded etcd with it):
// the guest moves on between the agents, and once the server is back the
// migration ends, the VM is bound where its one guest runs, and the
// migration says so.
func TestAPIServerKilledMidMigration(t *testing.T) {
	e := env(t)
	dumpAgentLogs(t, e)
	vm, source, target, m, pid := moving(t, e, "migration-kill-apiserver")
	if err := e.Cluster.Kill(launcher.VesselAPIServerComponent(1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := e.Cluster.RestartVesselAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	ended := waitMigration(t, e, m)
	t.Logf("migration status after the vessel-apiserver's restart: %+v", ended.Status)
	if ended.Status.Phase == v1alpha1.MigrationFailed {
		if ended.Status.Reason == "" {
			t.Fatalf("failed migration without a reason: %+v", ended.Status)
		}
		staysOnSource(t, e, vm, source, pid)
		return
	}
	vm = e.WaitVM(t, vm.Namespace, vm.Name, 2*time.Minute, "bound to "+target.Name+" and Running", func(v *v1alpha1.VirtualMachine) bool {
		return v.Spec.NodeName == target.Name && v.Status.Phase == v1alpha1.VirtualMachineRunning
	})
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		doms := e.DomainsOf(t, vm)
		return len(doms) == 1 && doms[0] == target.Name, nil
	})
	if err != nil {
		t.Fatalf("domains of the VM are on %v, want only on %s", e.DomainsOf(t, vm), target.Name)
	}
	if st := e.DomState(t, vm); st != "running" {
		t.Fatalf("the target's domain is %q", st)
	}
}

func waitMigration(t *testing.T, e *framework.Env, m *v1alpha1.VirtualMachineMigration) *v1alpha1.VirtualMachineMigration {
	t.Helper()
	var last *v1alpha1.VirtualMachineMigration
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		cur, err := e.Admin.VesselV1alpha1().VirtualMachineMigrations(m.Namespace).Get(ctx, m.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = cur
		return cur.Status.Phase == v1alpha1.MigrationSucceeded || cur.Status.Phase == v1alpha1.MigrationFailed, nil
	})
	if err != nil {
		t.Fatalf("migration %s/%s did not end: %+v", m.Namespace, m.Name, last)
	}
	return last
}

// A migration started while the source's agent is down (killed a moment
// before, so its hypervisor still looks Ready) fails once the agent has
// not taken it on in time, saying so; the agent, back, does not start it
// late: the guest never left its QEMU on the source.
func TestSourceAgentDownWhenTheMigrationStarts(t *testing.T) {
	e := env(t)
	dumpAgentLogs(t, e)
	ns := "migration-source-down"
	ctx := context.Background()
	vm, source, pid := counting(t, e, ns)
	if err := e.Cluster.KillAgent(source.Name); err != nil {
		t.Fatal(err)
	}
	out := e.MustKubectl(t, "admin", "vm", "migrate", "counter", "-n", ns)
	name := strings.TrimPrefix(strings.Fields(out)[0], "virtualmachinemigration.vessel.dev/")
	m, err := e.Admin.VesselV1alpha1().VirtualMachineMigrations(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ended := waitMigration(t, e, m)
	t.Logf("migration status: %+v", ended.Status)
	want := "the agent of hypervisor " + source.Name + " did not take the migration on within"
	if ended.Status.Phase != v1alpha1.MigrationFailed || !strings.Contains(ended.Status.Reason, want) {
		t.Fatalf("migration %s: %s (%s), want Failed: %s", name, ended.Status.Phase, ended.Status.Reason, want)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := e.Cluster.RestartAgent(rctx, source.Name); err != nil {
		t.Fatal(err)
	}
	staysOnSource(t, e, vm, source, pid)
	if cur, err := e.Admin.VesselV1alpha1().VirtualMachineMigrations(ns).Get(ctx, name, metav1.GetOptions{}); err != nil || cur.Status.Phase != v1alpha1.MigrationFailed || cur.Status.AcceptedTime != nil {
		t.Fatalf("after the agent's return the migration is %+v (err %v), want Failed and never taken on", cur.Status, err)
	}
}
