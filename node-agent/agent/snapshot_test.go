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
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	"github.com/vessel-vm/vessel/node-agent/console"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
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
	e := newEnv(t)
	e.startAgent()
	name := "snapdisk-" + rand.String(5)
	vm := e.create(e.guestVM(name, v1alpha1.RunStrategyAlways, markerUserData))
	vm = e.waitPhase(name, v1alpha1.VirtualMachineRunning, bootTimeout)
	e.waitConsole(vm, bootTimeout, "MARKER=v1", "VESSEL-BOOT done")

	// 1. Running guest, includeMemory=false.
	running := e.snapshot(vm, "running-disk", false, v1alpha1.SnapshotDeletionPolicyDelete)
	if running.Status.MemoryIncluded || running.Status.Size == nil || running.Status.CreationTime == nil ||
		running.Status.NodeName != e.hvName || running.Status.VirtualMachineUID != string(vm.UID) {
		t.Errorf("running disk snapshot status: %+v", running.Status)
	}
	e.waitVM(name, "status.snapshots lists "+running.Name, 10*time.Second, func(vm *v1alpha1.VirtualMachine) bool {
		return slices.Equal(vm.Status.Snapshots, []string{running.Name})
	})
	sh := e.shell(vm)
	if got := sh.run("echo v2 > /mnt/disk/marker; sync; cat /mnt/disk/marker", 20*time.Second); got != "v2" {
		t.Fatalf("marker after writing v2: %q", got)
	}
	sh.close()
	e.restore(vm, running.Name)
	e.waitConsoleAfterRestore(vm, "MARKER=v1", "VESSEL-BOOT done")
	vm = e.waitPhase(name, v1alpha1.VirtualMachineRunning, bootTimeout)
	sh = e.shell(vm)
	if got := sh.run("cat /mnt/disk/marker", 20*time.Second); got != "v1" {
		t.Errorf("marker after restoring %s: %q, want v1", running.Name, got)
	}

	// 2. Stopped guest: a shut-off snapshot, restored into the running VM.
	if got := sh.run("echo v3 > /mnt/disk/marker; sync; cat /mnt/disk/marker", 20*time.Second); got != "v3" {
		t.Fatalf("marker after writing v3: %q", got)
	}
	sh.close()
	vms := e.client.VesselV1alpha1().VirtualMachines(testNamespace)
	if _, err := vms.Stop(e.ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	vm = e.waitPhase(name, v1alpha1.VirtualMachineStopped, 60*time.Second)
	stopped := e.snapshot(vm, "stopped", true, v1alpha1.SnapshotDeletionPolicyDelete)
	if stopped.Status.MemoryIncluded {
		t.Errorf("snapshot of a stopped VM says memoryIncluded")
	}
	if _, err := vms.Start(e.ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	vm = e.waitPhase(name, v1alpha1.VirtualMachineRunning, bootTimeout)
	e.waitConsole(vm, bootTimeout, "MARKER=v3", "VESSEL-BOOT done")
	sh = e.shell(vm)
	if got := sh.run("echo v4 > /mnt/disk/marker; sync; cat /mnt/disk/marker", 20*time.Second); got != "v4" {
		t.Fatalf("marker after writing v4: %q", got)
	}
	sh.close()
	e.restore(vm, stopped.Name)
	e.waitConsoleAfterRestore(vm, "MARKER=v3", "VESSEL-BOOT done")

	// 3. A VM that should not run stays stopped; its disks are reverted.
	if _, err := vms.Stop(e.ctx, name, &v1alpha1.VirtualMachineActionOptions{GracePeriodSeconds: ptr(int64(0))}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	vm = e.waitPhase(name, v1alpha1.VirtualMachineStopped, 60*time.Second)
	e.restore(vm, running.Name)
	if d := e.domain(vm); d == nil || d.State != hypervisor.StateShutoff {
		t.Errorf("domain after restoring a halted VM: %+v, want shut off", d)
	}
	if got := e.get(name); got.Status.Phase != v1alpha1.VirtualMachineStopped {
		t.Errorf("VM after restoring while halted: %s", describe(got))
	}
	if _, err := vms.Start(e.ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	vm = e.waitPhase(name, v1alpha1.VirtualMachineRunning, bootTimeout)
	e.waitConsole(vm, bootTimeout, "MARKER=v1", "VESSEL-BOOT done")

	// 4. Agent restart: libvirt keeps the snapshots; the agent finds them
	// again, and takes a snapshot requested while it was away.
	e.stopAgent()
	away := e.createSnapshot(vm, "while-away", false, v1alpha1.SnapshotDeletionPolicyDelete)
	e.startAgent()
	e.waitSnapshot(away.Name, v1alpha1.SnapshotSucceeded)
	for _, s := range []string{running.Name, stopped.Name, away.Name} {
		if got := e.getSnapshot(s); !got.Status.ReadyToUse {
			t.Errorf("snapshot %s not ready after the agent restarted: %+v", s, got.Status)
		}
	}
	e.waitVM(name, "all three snapshots listed", 30*time.Second, func(vm *v1alpha1.VirtualMachine) bool {
		return slices.Equal(vm.Status.Snapshots, sortedStrings(running.Name, stopped.Name, away.Name))
	})

	// 5. Deletion: Delete removes the libvirt snapshot, Retain keeps it.
	retained := e.snapshot(vm, "retained", false, v1alpha1.SnapshotDeletionPolicyRetain)
	for _, s := range []*v1alpha1.VirtualMachineSnapshot{stopped, retained} {
		if !slices.Contains(e.getSnapshot(s.Name).Finalizers, v1alpha1.FinalizerSnapshotCleanup) {
			t.Errorf("snapshot %s has no %s finalizer", s.Name, v1alpha1.FinalizerSnapshotCleanup)
		}
		e.deleteSnapshot(s.Name)
	}
	if _, err := e.lv.LookupSnapshot(e.ctx, string(vm.UID), string(stopped.UID)); !errors.Is(err, hypervisor.ErrSnapshotNotFound) {
		t.Errorf("libvirt snapshot of %s (Delete) after deletion: %v, want not found", stopped.Name, err)
	}
	if _, err := e.lv.LookupSnapshot(e.ctx, string(vm.UID), string(retained.UID)); err != nil {
		t.Errorf("libvirt snapshot of %s (Retain) after deletion: %v, want kept", retained.Name, err)
	}
	e.waitVM(name, "deleted snapshots unlisted", 30*time.Second, func(vm *v1alpha1.VirtualMachine) bool {
		return slices.Equal(vm.Status.Snapshots, sortedStrings(running.Name, away.Name))
	})

	// 6. Deleting the VM: the agent undefines the domain with its snapshot
	// metadata and removes the overlays that held the data. The garbage
	// collector (not running in this test: done by hand) then deletes the
	// snapshots, and their finalizers are released without a domain.
	if err := vms.Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete VM: %v", err)
	}
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := vms.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("VM not deleted: %v", err)
	}
	for _, s := range []string{running.Name, away.Name} {
		e.deleteSnapshot(s)
	}
}

// TestSnapshotMemoryRestore: a snapshot with memory of a running guest,
// restored some seconds later, puts the guest back where it was: its
// counter and uptime go back and it does not boot again.
func TestSnapshotMemoryRestore(t *testing.T) {
	e := newEnv(t)
	e.startAgent()
	// A counter on the console: number and uptime, every second.
	userData := "#!/bin/sh\n( i=0; while :; do i=$((i+1)); echo \"TICK $i $(cut -d' ' -f1 /proc/uptime)\"; sleep 1; done ) >/dev/console 2>&1 &\n"
	name := "snapmem-" + rand.String(5)
	vm := e.create(e.guestVM(name, v1alpha1.RunStrategyAlways, userData))
	vm = e.waitPhase(name, v1alpha1.VirtualMachineRunning, bootTimeout)
	e.waitConsole(vm, bootTimeout, "VESSEL-BOOT done", "TICK 3 ")

	snap := e.snapshot(vm, "mem", true, v1alpha1.SnapshotDeletionPolicyDelete)
	if !snap.Status.MemoryIncluded || snap.Status.Size == nil || snap.Status.Size.Value() < 16<<20 {
		t.Errorf("memory snapshot status: memoryIncluded=%v size=%v, want memory and at least 16Mi", snap.Status.MemoryIncluded, snap.Status.Size)
	}
	atSnapshot := lastTick(e.consoleText(vm))
	// Let the guest move on.
	e.waitConsole(vm, 60*time.Second, fmt.Sprintf("TICK %d ", atSnapshot.n+6))
	before := lastTick(e.consoleText(vm))
	t.Logf("ticks: %+v at the snapshot, %+v before the restore", atSnapshot, before)

	r := e.restore(vm, snap.Name)
	if c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.RestoreConditionComplete); c == nil || !strings.Contains(c.Message, "resumed") {
		t.Errorf("restore condition: %+v, want the guest resumed", c)
	}
	after := e.waitConsoleAfterRestore(vm, "TICK ")
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
		t.Errorf("the guest booted again after the restore:\n%s", tail(after, 1500))
	}
	vm = e.waitPhase(name, v1alpha1.VirtualMachineRunning, 30*time.Second)
	if d := e.domain(vm); d == nil || d.State != hypervisor.StateRunning {
		t.Errorf("domain after the restore: %+v", d)
	}
	// The guest keeps running from there.
	e.waitConsole(vm, 30*time.Second, fmt.Sprintf("TICK %d ", first.n+3))
}

// TestSnapshotFailures: snapshots and restores nobody can carry out end
// Failed with the reason and leave nothing behind.
func TestSnapshotFailures(t *testing.T) {
	e := newEnv(t)
	// The apiserver's own controllers wait 30 s and check every 5 s; these
	// are as the apiserver runs them, only faster.
	// They stop before the server does (cleanups run last-in first-out):
	// open watches would hold up its shutdown.
	ctx, cancel := context.WithCancel(e.ctx)
	factory := informers.NewSharedInformerFactory(e.client, 0)
	snaps := snapshotcontroller.New(e.client, factory)
	snaps.PendingTimeout, snaps.Period = 2*time.Second, 500*time.Millisecond
	monitor := heartbeat.New(e.client, factory)
	monitor.Grace, monitor.Period = 5*time.Second, 500*time.Millisecond
	factory.Start(ctx.Done())
	t.Cleanup(func() { cancel(); factory.Shutdown() })
	go snaps.Run(ctx)
	go monitor.Run(ctx)

	e.startAgent()
	name := "snapfail-" + rand.String(5)
	vm := e.create(e.guestVM(name, v1alpha1.RunStrategyHalted, ""))
	vm = e.waitPhase(name, v1alpha1.VirtualMachineStopped, bootTimeout)
	ready := e.snapshot(vm, "ready", true, v1alpha1.SnapshotDeletionPolicyDelete)

	// A restore naming a missing snapshot is refused by the API.
	restores := e.client.VesselV1alpha1().VirtualMachineRestores(testNamespace)
	_, err := restores.Create(e.ctx, &v1alpha1.VirtualMachineRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "to-nothing"},
		Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: name, SnapshotName: "does-not-exist"},
	}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "no such VirtualMachineSnapshot") {
		t.Errorf("restore to a missing snapshot: %v, want Invalid: no such VirtualMachineSnapshot", err)
	}

	// The agent goes down; the heartbeat monitor marks its Hypervisor not
	// Ready; a snapshot and a restore requested now fail with the reason.
	e.stopAgent()
	hvs := e.client.VesselV1alpha1().Hypervisors()
	err = wait.PollUntilContextTimeout(e.ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		hv, err := hvs.Get(ctx, e.hvName, metav1.GetOptions{})
		return err == nil && !meta.IsStatusConditionTrue(hv.Status.Conditions, v1alpha1.HypervisorConditionReady), nil
	})
	if err != nil {
		t.Fatalf("hypervisor %s still Ready after its agent stopped", e.hvName)
	}
	down := e.createSnapshot(vm, "agent-down", true, v1alpha1.SnapshotDeletionPolicyDelete)
	got := e.waitSnapshot(down.Name, v1alpha1.SnapshotFailed)
	if want := "hypervisor " + e.hvName + " is not ready"; !strings.Contains(got.Status.Error, want) || got.Status.ReadyToUse {
		t.Errorf("snapshot while the agent is down: %+v, want Failed: %s", got.Status, want)
	}
	r, err := restores.Create(e.ctx, &v1alpha1.VirtualMachineRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-down"},
		Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: name, SnapshotName: ready.Name},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create restore: %v", err)
	}
	gotR := e.waitRestore(r.Name, v1alpha1.SnapshotFailed)
	if !strings.Contains(gotR.Status.Error, "is not ready") || gotR.Status.Complete {
		t.Errorf("restore while the agent is down: %+v", gotR.Status)
	}

	// Nothing half-done: no finalizer (deleted at once), no libvirt data,
	// and the agent, back, leaves the failed objects alone.
	e.startAgent()
	time.Sleep(3 * time.Second)
	if got := e.getSnapshot(down.Name); got.Status.Phase != v1alpha1.SnapshotFailed || len(got.Finalizers) != 0 {
		t.Errorf("failed snapshot after the agent came back: finalizers %v, status %+v", got.Finalizers, got.Status)
	}
	if _, err := e.lv.LookupSnapshot(e.ctx, string(vm.UID), string(down.UID)); !errors.Is(err, hypervisor.ErrSnapshotNotFound) {
		t.Errorf("libvirt snapshot of the failed snapshot: %v, want none", err)
	}
	if got := e.get(name); !slices.Equal(got.Status.Snapshots, []string{ready.Name}) {
		t.Errorf("VM status.snapshots: %v, want only %s", got.Status.Snapshots, ready.Name)
	}
	if _, err := restores.Create(e.ctx, &v1alpha1.VirtualMachineRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "to-failed"},
		Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: name, SnapshotName: down.Name},
	}, metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("restore to a failed snapshot: %v, want Invalid: not ready", err)
	}
	e.deleteSnapshot(down.Name)

	// A VM that was never bound: no agent to take its snapshot.
	unbound := e.guestVM("unbound-"+rand.String(5), v1alpha1.RunStrategyHalted, "")
	unbound.Spec.NodeSelector = map[string]string{"vessel.dev/test-nowhere": "true"}
	if _, err := e.client.VesselV1alpha1().VirtualMachines(testNamespace).Create(e.ctx, unbound, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create unbound VM: %v", err)
	}
	lonely := e.createSnapshot(unbound, "unbound", true, v1alpha1.SnapshotDeletionPolicyDelete)
	if got := e.waitSnapshot(lonely.Name, v1alpha1.SnapshotFailed); got.Status.Error != "VM is not bound to a hypervisor" {
		t.Errorf("snapshot of an unbound VM: %+v", got.Status)
	}
}

func ptr[T any](v T) *T { return &v }

func sortedStrings(s ...string) []string {
	slices.Sort(s)
	return s
}

// createSnapshot creates a snapshot object named <vm>-<suffix>.
func (e *env) createSnapshot(vm *v1alpha1.VirtualMachine, suffix string, memory bool, policy v1alpha1.SnapshotDeletionPolicy) *v1alpha1.VirtualMachineSnapshot {
	e.t.Helper()
	s, err := e.client.VesselV1alpha1().VirtualMachineSnapshots(testNamespace).Create(e.ctx, &v1alpha1.VirtualMachineSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: vm.Name + "-" + suffix},
		Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: vm.Name, IncludeMemory: &memory, DeletionPolicy: policy},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create snapshot of %s: %v", vm.Name, err)
	}
	return s
}

// snapshot takes a snapshot and waits until it is ready.
func (e *env) snapshot(vm *v1alpha1.VirtualMachine, suffix string, memory bool, policy v1alpha1.SnapshotDeletionPolicy) *v1alpha1.VirtualMachineSnapshot {
	e.t.Helper()
	s := e.createSnapshot(vm, suffix, memory, policy)
	s = e.waitSnapshot(s.Name, v1alpha1.SnapshotSucceeded)
	if !s.Status.ReadyToUse {
		e.t.Fatalf("snapshot %s Succeeded but not ready: %+v", s.Name, s.Status)
	}
	e.t.Logf("snapshot %s: memory=%v size=%v", s.Name, s.Status.MemoryIncluded, s.Status.Size)
	return s
}

func (e *env) getSnapshot(name string) *v1alpha1.VirtualMachineSnapshot {
	e.t.Helper()
	s, err := e.client.VesselV1alpha1().VirtualMachineSnapshots(testNamespace).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("get snapshot %s: %v", name, err)
	}
	return s
}

// waitSnapshot waits for a final phase; reaching the other one fails.
func (e *env) waitSnapshot(name string, phase v1alpha1.SnapshotPhase) *v1alpha1.VirtualMachineSnapshot {
	e.t.Helper()
	var last *v1alpha1.VirtualMachineSnapshot
	start := time.Now()
	err := wait.PollUntilContextTimeout(e.ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := e.client.VesselV1alpha1().VirtualMachineSnapshots(testNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = s
		if s.Status.Phase == v1alpha1.SnapshotFailed && phase != v1alpha1.SnapshotFailed {
			return false, fmt.Errorf("snapshot failed: %s", s.Status.Error)
		}
		return s.Status.Phase == phase, nil
	})
	if err != nil {
		e.t.Fatalf("snapshot %s: phase %s not reached: %v; last status: %+v", name, phase, err, last)
	}
	e.t.Logf("snapshot %s: %s after %.1fs", name, phase, time.Since(start).Seconds())
	return last
}

func (e *env) deleteSnapshot(name string) {
	e.t.Helper()
	snaps := e.client.VesselV1alpha1().VirtualMachineSnapshots(testNamespace)
	if err := snaps.Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		e.t.Fatalf("delete snapshot %s: %v", name, err)
	}
	err := wait.PollUntilContextTimeout(e.ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := snaps.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		s, _ := snaps.Get(e.ctx, name, metav1.GetOptions{})
		e.t.Fatalf("snapshot %s still exists after delete: %+v", name, s)
	}
}

// restore restores vm from a snapshot and waits until it succeeded. It
// remembers the console log's length, for waitConsoleAfterRestore.
func (e *env) restore(vm *v1alpha1.VirtualMachine, snapshot string) *v1alpha1.VirtualMachineRestore {
	e.t.Helper()
	consoleMarks.Store(vm.UID, len(e.consoleText(vm)))
	r, err := e.client.VesselV1alpha1().VirtualMachineRestores(testNamespace).Create(e.ctx, &v1alpha1.VirtualMachineRestore{
		ObjectMeta: metav1.ObjectMeta{GenerateName: vm.Name + "-restore-"},
		Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: vm.Name, SnapshotName: snapshot},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create restore of %s: %v", vm.Name, err)
	}
	r = e.waitRestore(r.Name, v1alpha1.SnapshotSucceeded)
	if !r.Status.Complete || r.Status.RestoreTime == nil {
		e.t.Errorf("restore %s succeeded with status %+v", r.Name, r.Status)
	}
	return r
}

func (e *env) waitRestore(name string, phase v1alpha1.SnapshotPhase) *v1alpha1.VirtualMachineRestore {
	e.t.Helper()
	var last *v1alpha1.VirtualMachineRestore
	start := time.Now()
	err := wait.PollUntilContextTimeout(e.ctx, 50*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		r, err := e.client.VesselV1alpha1().VirtualMachineRestores(testNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = r
		if r.Status.Phase == v1alpha1.SnapshotFailed && phase != v1alpha1.SnapshotFailed {
			return false, fmt.Errorf("restore failed: %s", r.Status.Error)
		}
		return r.Status.Phase == phase, nil
	})
	if err != nil {
		e.t.Fatalf("restore %s: phase %s not reached: %v; last status: %+v", name, phase, err, last)
	}
	e.t.Logf("restore %s: %s after %.1fs", name, phase, time.Since(start).Seconds())
	return last
}

// consoleMarks is each VM's console log length when its last restore
// began, by VM UID.
var consoleMarks sync.Map

func (e *env) consoleText(vm *v1alpha1.VirtualMachine) string {
	b, _ := os.ReadFile(e.consolePath(vm))
	return strings.ReplaceAll(string(b), "\r", "")
}

// waitConsoleAfterRestore waits until the console output written since
// the restore began holds every marker, and returns that output. A revert
// starts a new QEMU, and virtlogd then starts the log afresh: a log shorter
// than before the restore is all new.
func (e *env) waitConsoleAfterRestore(vm *v1alpha1.VirtualMachine, markers ...string) string {
	e.t.Helper()
	var text string
	mark := 0
	if v, ok := consoleMarks.Load(vm.UID); ok {
		mark = v.(int)
	}
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, bootTimeout, true, func(context.Context) (bool, error) {
		text = e.consoleText(vm)
		if len(text) >= mark {
			text = text[mark:]
		}
		for _, m := range markers {
			if !strings.Contains(text, m) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		e.t.Fatalf("VM %s: console after the restore lacks %q; it has:\n%s", vm.Name, markers, tail(text, 2000))
	}
	return text
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

// guestShell types commands into a guest's serial console through
// libvirt (the agent under test holds no console session).
type guestShell struct {
	t      *testing.T
	in     *io.PipeWriter
	cancel context.CancelFunc
	done   <-chan error

	mu  sync.Mutex
	out bytes.Buffer
}

func (e *env) shell(vm *v1alpha1.VirtualMachine) *guestShell {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	pr, pw := io.Pipe()
	s := &guestShell{t: e.t, in: pw, cancel: cancel}
	done, err := (&console.Libvirt{}).Open(ctx, string(vm.UID), pr, s)
	if err != nil {
		cancel()
		e.t.Fatalf("open console of %s: %v", vm.Name, err)
	}
	s.done = done
	e.t.Cleanup(s.close)
	return s
}

func (s *guestShell) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *guestShell) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.ReplaceAll(s.out.String(), "\r", "")
}

// run types cmd and returns what it printed, trimmed. The begin and end
// markers are computed by the guest's shell ($((1))), so the echo of the
// typed line never matches them.
func (s *guestShell) run(cmd string, timeout time.Duration) string {
	s.t.Helper()
	id := rand.String(6)
	begin, end := "B"+id+"1\n", "E"+id+"1"
	from := len(s.text())
	if _, err := fmt.Fprintf(s.in, "echo B%s$((1)); %s; echo E%s$((1))\r", id, cmd, id); err != nil {
		s.t.Fatalf("type into the console: %v", err)
	}
	var out string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		text := s.text()[from:]
		b := strings.Index(text, begin)
		if b < 0 {
			return false, nil
		}
		rest := text[b+len(begin):]
		e := strings.Index(rest, end)
		if e < 0 {
			return false, nil
		}
		out = strings.TrimSpace(rest[:e])
		return true, nil
	})
	if err != nil {
		s.t.Fatalf("console command %q gave no answer within %s; console:\n%s", cmd, timeout, tail(s.text()[from:], 1500))
	}
	return out
}

func (s *guestShell) close() {
	_ = s.in.Close()
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}
