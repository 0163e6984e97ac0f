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

package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/controller/heartbeat"
	snapshotcontroller "github.com/vessel-vm/vessel/controller/snapshot"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/internal/agenttest"
)

// markerUserData writes v1 to the data disk on the first boot only and
// prints the marker's content at every boot, so a boot after a restore
// shows which disk state it found.
const markerUserData = `#!/bin/sh
[ -f /mnt/disk/marker ] || { echo v1 > /mnt/disk/marker; sync; }
echo "MARKER=$(cat /mnt/disk/marker)"
`

// TestSnapshotDiskRestore: a disk snapshot taken while the guest runs
// (includeMemory=false) and one taken while it is stopped bring back the
// data disk's content; a restore boots the guest again. Then: snapshots
// survive an agent restart, deletion removes the libvirt data (Delete) or
// keeps it (Retain), and deleting the VM leaves no snapshot stuck.
func TestSnapshotDiskRestore(t *testing.T) {
	e := agenttest.New(t)
	e.StartAgent()
	name := "snapdisk-" + rand.String(5)
	vm := e.Create(e.GuestVM(name, v1alpha1.RunStrategyAlways, markerUserData))
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	e.WaitConsole(vm, agenttest.BootTimeout, "MARKER=v1", "VESSEL-BOOT done")

	// 1. Running guest, includeMemory=false.
	running := e.Snapshot(vm, "running-disk", false, v1alpha1.SnapshotDeletionPolicyDelete)
	if running.Status.MemoryIncluded || running.Status.Size == nil || running.Status.CreationTime == nil ||
		running.Status.NodeName != e.HypervisorName || running.Status.VirtualMachineUID != string(vm.UID) {
		t.Errorf("running disk snapshot status: %+v", running.Status)
	}
	e.WaitVM(name, "status.snapshots lists "+running.Name, 10*time.Second, func(vm *v1alpha1.VirtualMachine) bool {
		return slices.Equal(vm.Status.Snapshots, []string{running.Name})
	})
	sh := e.Shell(vm)
	if got := sh.Run("echo v2 > /mnt/disk/marker; sync; cat /mnt/disk/marker", 20*time.Second); got != "v2" {
		t.Fatalf("marker after writing v2: %q", got)
	}
	sh.Close()
	e.Restore(vm, running.Name)
	e.WaitConsoleAfterRestore(vm, "MARKER=v1", "VESSEL-BOOT done")
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	sh = e.Shell(vm)
	if got := sh.Run("cat /mnt/disk/marker", 20*time.Second); got != "v1" {
		t.Errorf("marker after restoring %s: %q, want v1", running.Name, got)
	}

	// 2. Stopped guest: a shut-off snapshot, restored into the running VM.
	if got := sh.Run("echo v3 > /mnt/disk/marker; sync; cat /mnt/disk/marker", 20*time.Second); got != "v3" {
		t.Fatalf("marker after writing v3: %q", got)
	}
	sh.Close()
	vms := e.Client.VesselV1alpha1().VirtualMachines(agenttest.Namespace)
	if _, err := vms.Stop(e.Ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineStopped, 60*time.Second)
	stopped := e.Snapshot(vm, "stopped", true, v1alpha1.SnapshotDeletionPolicyDelete)
	if stopped.Status.MemoryIncluded {
		t.Errorf("snapshot of a stopped VM says memoryIncluded")
	}
	if _, err := vms.Start(e.Ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	e.WaitConsole(vm, agenttest.BootTimeout, "MARKER=v3", "VESSEL-BOOT done")
	sh = e.Shell(vm)
	if got := sh.Run("echo v4 > /mnt/disk/marker; sync; cat /mnt/disk/marker", 20*time.Second); got != "v4" {
		t.Fatalf("marker after writing v4: %q", got)
	}
	sh.Close()
	e.Restore(vm, stopped.Name)
	e.WaitConsoleAfterRestore(vm, "MARKER=v3", "VESSEL-BOOT done")

	// 3. A VM that should not run stays stopped; its disks are reverted.
	if _, err := vms.Stop(e.Ctx, name, &v1alpha1.VirtualMachineActionOptions{GracePeriodSeconds: ptr(int64(0))}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineStopped, 60*time.Second)
	e.Restore(vm, running.Name)
	if d := e.Domain(vm); d == nil || d.State != hypervisor.StateShutoff {
		t.Errorf("domain after restoring a halted VM: %+v, want shut off", d)
	}
	if got := e.Get(name); got.Status.Phase != v1alpha1.VirtualMachineStopped {
		t.Errorf("VM after restoring while halted: %s", agenttest.Describe(got))
	}
	if _, err := vms.Start(e.Ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	e.WaitConsole(vm, agenttest.BootTimeout, "MARKER=v1", "VESSEL-BOOT done")

	// 4. Agent restart: libvirt keeps the snapshots; the agent finds them
	// again, and takes a snapshot requested while it was away.
	e.StopAgent()
	away := e.CreateSnapshot(vm, "while-away", false, v1alpha1.SnapshotDeletionPolicyDelete)
	e.StartAgent()
	e.WaitSnapshot(away.Name, v1alpha1.SnapshotSucceeded)
	for _, s := range []string{running.Name, stopped.Name, away.Name} {
		if got := e.GetSnapshot(s); !got.Status.ReadyToUse {
			t.Errorf("snapshot %s not ready after the agent restarted: %+v", s, got.Status)
		}
	}
	e.WaitVM(name, "all three snapshots listed", 30*time.Second, func(vm *v1alpha1.VirtualMachine) bool {
		return slices.Equal(vm.Status.Snapshots, sortedStrings(running.Name, stopped.Name, away.Name))
	})

	// 5. Deletion: Delete removes the libvirt snapshot, Retain keeps it.
	retained := e.Snapshot(vm, "retained", false, v1alpha1.SnapshotDeletionPolicyRetain)
	for _, s := range []*v1alpha1.VirtualMachineSnapshot{stopped, retained} {
		if !slices.Contains(e.GetSnapshot(s.Name).Finalizers, v1alpha1.FinalizerSnapshotCleanup) {
			t.Errorf("snapshot %s has no %s finalizer", s.Name, v1alpha1.FinalizerSnapshotCleanup)
		}
		e.DeleteSnapshot(s.Name)
	}
	if _, err := e.Libvirt.LookupSnapshot(e.Ctx, string(vm.UID), string(stopped.UID)); !errors.Is(err, hypervisor.ErrSnapshotNotFound) {
		t.Errorf("libvirt snapshot of %s (Delete) after deletion: %v, want not found", stopped.Name, err)
	}
	if _, err := e.Libvirt.LookupSnapshot(e.Ctx, string(vm.UID), string(retained.UID)); err != nil {
		t.Errorf("libvirt snapshot of %s (Retain) after deletion: %v, want kept", retained.Name, err)
	}
	e.WaitVM(name, "deleted snapshots unlisted", 30*time.Second, func(vm *v1alpha1.VirtualMachine) bool {
		return slices.Equal(vm.Status.Snapshots, sortedStrings(running.Name, away.Name))
	})

	// 6. Deleting the VM: the agent undefines the domain with its snapshot
	// metadata and removes the overlays that held the data. The garbage
	// collector (not running in this test: done by hand) then deletes the
	// snapshots, and their finalizers are released without a domain.
	if err := vms.Delete(e.Ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete VM: %v", err)
	}
	err := wait.PollUntilContextTimeout(e.Ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := vms.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("VM not deleted: %v", err)
	}
	for _, s := range []string{running.Name, away.Name} {
		e.DeleteSnapshot(s)
	}
}

// TestSnapshotMemoryRestore: a snapshot with memory of a running guest,
// restored some seconds later, puts the guest back where it was: its
// counter and uptime go back and it does not boot again.
func TestSnapshotMemoryRestore(t *testing.T) {
	e := agenttest.New(t)
	e.StartAgent()
	// A counter on the console: number and uptime, every second.
	userData := "#!/bin/sh\n( i=0; while :; do i=$((i+1)); echo \"TICK $i $(cut -d' ' -f1 /proc/uptime)\"; sleep 1; done ) >/dev/console 2>&1 &\n"
	name := "snapmem-" + rand.String(5)
	vm := e.Create(e.GuestVM(name, v1alpha1.RunStrategyAlways, userData))
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineRunning, agenttest.BootTimeout)
	e.WaitConsole(vm, agenttest.BootTimeout, "VESSEL-BOOT done", "TICK 3 ")

	snap := e.Snapshot(vm, "mem", true, v1alpha1.SnapshotDeletionPolicyDelete)
	if !snap.Status.MemoryIncluded || snap.Status.Size == nil || snap.Status.Size.Value() < 16<<20 {
		t.Errorf("memory snapshot status: memoryIncluded=%v size=%v, want memory and at least 16Mi", snap.Status.MemoryIncluded, snap.Status.Size)
	}
	atSnapshot := lastTick(e.ConsoleText(vm))
	// Let the guest move on.
	e.WaitConsole(vm, 60*time.Second, fmt.Sprintf("TICK %d ", atSnapshot.n+6))
	before := lastTick(e.ConsoleText(vm))
	t.Logf("ticks: %+v at the snapshot, %+v before the restore", atSnapshot, before)

	r := e.Restore(vm, snap.Name)
	if c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.RestoreConditionComplete); c == nil || !strings.Contains(c.Message, "resumed") {
		t.Errorf("restore condition: %+v, want the guest resumed", c)
	}
	after := e.WaitConsoleAfterRestore(vm, "TICK ")
	first := firstTick(after)
	t.Logf("first tick after the restore: %+v", first)
	switch {
	case first.n == 0:
		t.Errorf("no tick after the restore:\n%s", after)
	case first.n >= before.n || first.uptime >= before.uptime:
		t.Errorf("the guest did not go back: tick %+v after the restore, %+v before it", first, before)
	case first.n > atSnapshot.n+3:
		t.Errorf("the guest resumed at tick %+v, want close to the snapshot's %+v", first, atSnapshot)
	}
	if strings.Contains(after, "VESSEL-GUEST READY") {
		t.Errorf("the guest booted again after the restore:\n%s", agenttest.Tail(after, 1500))
	}
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineRunning, 30*time.Second)
	if d := e.Domain(vm); d == nil || d.State != hypervisor.StateRunning {
		t.Errorf("domain after the restore: %+v", d)
	}
	// The guest keeps running from there.
	e.WaitConsole(vm, 30*time.Second, fmt.Sprintf("TICK %d ", first.n+3))
}

// TestSnapshotFailures: snapshots and restores nobody can carry out end
// Failed with the reason and leave nothing behind.
func TestSnapshotFailures(t *testing.T) {
	e := agenttest.New(t)
	// The apiserver's own controllers wait 30 s and check every 5 s; these
	// are as the apiserver runs them, only faster.
	// They stop before the server does (cleanups run last-in first-out):
	// open watches would hold up its shutdown.
	ctx, cancel := context.WithCancel(e.Ctx)
	factory := informers.NewSharedInformerFactory(e.Client, 0)
	snaps := snapshotcontroller.New(e.Client, factory)
	snaps.PendingTimeout, snaps.Period = 2*time.Second, 500*time.Millisecond
	monitor, err := heartbeat.New(e.Client, factory)
	if err != nil {
		t.Fatal(err)
	}
	monitor.Grace, monitor.Period = 5*time.Second, 500*time.Millisecond
	factory.Start(ctx.Done())
	t.Cleanup(func() { cancel(); factory.Shutdown() })
	go snaps.Run(ctx)
	go monitor.Run(ctx)

	e.StartAgent()
	name := "snapfail-" + rand.String(5)
	vm := e.Create(e.GuestVM(name, v1alpha1.RunStrategyHalted, ""))
	vm = e.WaitPhase(name, v1alpha1.VirtualMachineStopped, agenttest.BootTimeout)
	ready := e.Snapshot(vm, "ready", true, v1alpha1.SnapshotDeletionPolicyDelete)

	// A restore naming a missing snapshot is refused by the API.
	restores := e.Client.VesselV1alpha1().VirtualMachineRestores(agenttest.Namespace)
	_, err = restores.Create(e.Ctx, &v1alpha1.VirtualMachineRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "to-nothing"},
		Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: name, SnapshotName: "does-not-exist"},
	}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "no such VirtualMachineSnapshot") {
		t.Errorf("restore to a missing snapshot: %v, want Invalid: no such VirtualMachineSnapshot", err)
	}

	// The agent goes down; the heartbeat monitor marks its Hypervisor not
	// Ready; a snapshot and a restore requested now fail with the reason.
	e.StopAgent()
	hvs := e.Client.VesselV1alpha1().Hypervisors()
	err = wait.PollUntilContextTimeout(e.Ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		hv, err := hvs.Get(ctx, e.HypervisorName, metav1.GetOptions{})
		return err == nil && !meta.IsStatusConditionTrue(hv.Status.Conditions, v1alpha1.HypervisorConditionReady), nil
	})
	if err != nil {
		t.Fatalf("hypervisor %s still Ready after its agent stopped", e.HypervisorName)
	}
	down := e.CreateSnapshot(vm, "agent-down", true, v1alpha1.SnapshotDeletionPolicyDelete)
	got := e.WaitSnapshot(down.Name, v1alpha1.SnapshotFailed)
	if want := "hypervisor " + e.HypervisorName + " is not ready"; !strings.Contains(got.Status.Error, want) || got.Status.ReadyToUse {
		t.Errorf("snapshot while the agent is down: %+v, want Failed: %s", got.Status, want)
	}
	r, err := restores.Create(e.Ctx, &v1alpha1.VirtualMachineRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-down"},
		Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: name, SnapshotName: ready.Name},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create restore: %v", err)
	}
	gotR := e.WaitRestore(r.Name, v1alpha1.SnapshotFailed)
	if !strings.Contains(gotR.Status.Error, "is not ready") || gotR.Status.Complete {
		t.Errorf("restore while the agent is down: %+v", gotR.Status)
	}

	// Nothing half-done: no finalizer (deleted at once), no libvirt data,
	// and the agent, back, leaves the failed objects alone.
	e.StartAgent()
	time.Sleep(3 * time.Second)
	if got := e.GetSnapshot(down.Name); got.Status.Phase != v1alpha1.SnapshotFailed || len(got.Finalizers) != 0 {
		t.Errorf("failed snapshot after the agent came back: finalizers %v, status %+v", got.Finalizers, got.Status)
	}
	if _, err := e.Libvirt.LookupSnapshot(e.Ctx, string(vm.UID), string(down.UID)); !errors.Is(err, hypervisor.ErrSnapshotNotFound) {
		t.Errorf("libvirt snapshot of the failed snapshot: %v, want none", err)
	}
	if got := e.Get(name); !slices.Equal(got.Status.Snapshots, []string{ready.Name}) {
		t.Errorf("VM status.snapshots: %v, want only %s", got.Status.Snapshots, ready.Name)
	}
	if _, err := restores.Create(e.Ctx, &v1alpha1.VirtualMachineRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "to-failed"},
		Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: name, SnapshotName: down.Name},
	}, metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("restore to a failed snapshot: %v, want Invalid: not ready", err)
	}
	e.DeleteSnapshot(down.Name)

	// A VM that was never bound: no agent to take its snapshot.
	unbound := e.GuestVM("unbound-"+rand.String(5), v1alpha1.RunStrategyHalted, "")
	unbound.Spec.NodeSelector = map[string]string{"vessel.dev/test-nowhere": "true"}
	if _, err := e.Client.VesselV1alpha1().VirtualMachines(agenttest.Namespace).Create(e.Ctx, unbound, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create unbound VM: %v", err)
	}
	lonely := e.CreateSnapshot(unbound, "unbound", true, v1alpha1.SnapshotDeletionPolicyDelete)
	if got := e.WaitSnapshot(lonely.Name, v1alpha1.SnapshotFailed); got.Status.Error != "VM is not bound to a hypervisor" {
		t.Errorf("snapshot of an unbound VM: %+v", got.Status)
	}
}

func ptr[T any](v T) *T { return &v }

func sortedStrings(s ...string) []string {
	slices.Sort(s)
	return s
}

type tick struct {
	n      int
	uptime float64
}

var tickRE = regexp.MustCompile(`TICK (\d+) ([0-9.]+)\n`)

func ticks(text string) []tick {
	var out []tick
	for _, m := range tickRE.FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		u, _ := strconv.ParseFloat(m[2], 64)
		out = append(out, tick{n, u})
	}
	return out
}

func lastTick(text string) tick {
	t := ticks(text)
	if len(t) == 0 {
		return tick{}
	}
	return t[len(t)-1]
}

func firstTick(text string) tick {
	t := ticks(text)
	if len(t) == 0 {
		return tick{}
	}
	return t[0]
}
