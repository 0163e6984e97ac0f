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

package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

func restoreDone(r *v1alpha1.VirtualMachineRestore) bool {
	return r.Status.Phase == v1alpha1.SnapshotSucceeded || r.Status.Phase == v1alpha1.SnapshotFailed
}

// syncRestore carries out one restore: it checks the snapshot once more
// (the API checked it on create, but it may have been deleted or lost its
// data since), marks the restore InProgress, reverts the domain and leaves
// the guest in the state the VM's run strategy asks for. It holds the VM's
// lock throughout, and the VM reconciler also stays away while the restore
// is InProgress, so nothing starts or stops the guest behind its back.
func (w *snapshotWorkers) syncRestore(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := w.restores.VirtualMachineRestores(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	r := cached.DeepCopy()
	vm := w.a.boundVM(ns, r.Spec.VirtualMachineName)
	if vm == nil || restoreDone(r) || r.DeletionTimestamp != nil {
		return 0, nil
	}
	vmKey := vm.Namespace + "/" + vm.Name
	if !ownedBy(r, vm.UID) {
		return 0, w.failRestore(ctx, r, "VMRecreated", fmt.Sprintf("VM %s was deleted and re-created after the restore was requested", vm.Name))
	}
	if vm.DeletionTimestamp != nil {
		return 0, w.failRestore(ctx, r, "VMDeleting", fmt.Sprintf("VM %s is being deleted", vm.Name))
	}
	snap, reason, msg, err := w.restorableSnapshot(ctx, r, vm)
	if err != nil {
		return 0, err
	}
	if msg != "" {
		return 0, w.failRestore(ctx, r, reason, msg)
	}
	if w.hv == nil {
		return 0, w.failRestore(ctx, r, "Unsupported", fmt.Sprintf("hypervisor %s cannot restore snapshots", w.a.cfg.HypervisorName))
	}

	release, ok := w.locks.tryLock(vmKey)
	if !ok {
		return vmBusyRetry, nil
	}
	defer release()
	// A revert is not idempotent (it throws away what the guest did since),
	// so the restore is read from the API, not the cache: an event for an
	// older version (this agent's own InProgress write, say) must not run
	// a finished restore again.
	fresh, err := w.a.client.VesselV1alpha1().VirtualMachineRestores(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if fresh.UID != r.UID || restoreDone(fresh) || fresh.DeletionTimestamp != nil {
		return 0, nil
	}
	r = fresh
	// Whatever happens, the VM reconciler looks at the guest afterwards.
	defer w.a.queue.Add(vmKey)

	uid := string(vm.UID)
	dom, conflict, err := w.a.lookupDomain(ctx, uid)
	switch {
	case err != nil:
		return 0, err
	case conflict != "":
		return 0, w.failRestore(ctx, r, "DomainConflict", conflict)
	case dom == nil:
		return 0, w.failRestore(ctx, r, "NoDomain", fmt.Sprintf("VM %s has no domain on %s", vm.Name, w.a.cfg.HypervisorName))
	}
	if r.Status.Phase != v1alpha1.SnapshotInProgress {
		r.Status.Phase = v1alpha1.SnapshotInProgress
		w.setRestoreCondition(r, metav1.ConditionFalse, "InProgress", "the VM is being reverted to snapshot "+snap.Name)
		if r, err = w.writeRestoreStatus(ctx, r); err != nil {
			return 0, err
		}
	}

	plan := planRestore(vm, dom, snap.Status.MemoryIncluded)
	start := time.Now()
	err = w.hv.RevertToSnapshot(ctx, uid, libvirtSnapshotName(snap), plan.target)
	if err == nil && plan.boot {
		err = w.a.hv.Start(ctx, uid, vm.Spec.Paused)
		if err == nil {
			t := metav1.NewTime(w.a.now())
			w.a.runtime(vmKey, uid).lastStart = &t
		}
	}
	switch {
	case errors.Is(err, hypervisor.ErrDisconnected):
		return 0, err // still InProgress: retried once libvirtd is back
	case errors.Is(err, hypervisor.ErrSnapshotNotFound):
		return 0, w.failRestore(ctx, r, "DataLost", fmt.Sprintf("the data of snapshot %s is no longer on hypervisor %s", snap.Name, w.a.cfg.HypervisorName))
	case err != nil:
		return 0, w.failRestore(ctx, r, "RevertFailed", err.Error())
	}
	took := time.Since(start)

	now := metav1.NewTime(w.a.now())
	r.Status.Phase = v1alpha1.SnapshotSucceeded
	r.Status.Complete = true
	r.Status.RestoreTime = &now
	r.Status.Error = ""
	w.setRestoreCondition(r, metav1.ConditionTrue, "Succeeded", plan.describe(snap.Name))
	if _, err := w.writeRestoreStatus(ctx, r); err != nil {
		return 0, err
	}
	klog.FromContext(ctx).V(2).Info("Restored VM", "vm", vmKey, "snapshot", snap.Name, "target", plan.target, "boot", plan.boot, "took", took)
	w.event(r, corev1.EventTypeNormal, "Restored", "Restored VM %s from snapshot %s in %.1fs: %s", vm.Name, snap.Name, took.Seconds(), plan.describe(snap.Name))
	return 0, nil
}

// restorableSnapshot returns the snapshot to restore, or why it cannot be
// (reason and msg set).
func (w *snapshotWorkers) restorableSnapshot(ctx context.Context, r *v1alpha1.VirtualMachineRestore, vm *v1alpha1.VirtualMachine) (*v1alpha1.VirtualMachineSnapshot, string, string, error) {
	snap, err := w.snaps.VirtualMachineSnapshots(r.Namespace).Get(r.Spec.SnapshotName)
	if apierrors.IsNotFound(err) {
		// The cache may lag behind a snapshot made just before.
		snap, err = w.a.client.VesselV1alpha1().VirtualMachineSnapshots(r.Namespace).Get(ctx, r.Spec.SnapshotName, metav1.GetOptions{})
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, "SnapshotNotFound", fmt.Sprintf("snapshot %s does not exist", r.Spec.SnapshotName), nil
	case err != nil:
		return nil, "", "", err
	case snap.Spec.VirtualMachineName != vm.Name || snap.Status.VirtualMachineUID != string(vm.UID):
		return nil, "WrongVM", fmt.Sprintf("snapshot %s is of VM %s (uid %s), not of VM %s (uid %s)",
			snap.Name, snap.Spec.VirtualMachineName, snap.Status.VirtualMachineUID, vm.Name, vm.UID), nil
	case snap.DeletionTimestamp != nil:
		return nil, "SnapshotDeleting", fmt.Sprintf("snapshot %s is being deleted", snap.Name), nil
	case !snap.Status.ReadyToUse:
		return nil, "SnapshotNotReady", fmt.Sprintf("snapshot %s is not ready to use (phase %s)", snap.Name, snap.Status.Phase), nil
	}
	return snap, "", "", nil
}

// restorePlan is how a revert is carried out.
type restorePlan struct {
	target hypervisor.RevertTarget
	// boot starts the guest after a revert that left it shut off.
	boot bool
	// resumed says the guest continues from the saved memory.
	resumed bool
}

// planRestore decides how to revert: a snapshot with memory into a VM that
// should run resumes the guest where it was (paused if spec.paused); a
// disk-only one reverts the disks with the domain off and boots the guest
// from them; a VM that should not run gets its disks reverted and stays
// off. Whether the VM should run is the run strategy's answer for the VM as
// it is now: a restore does not change what the user asked for.
func planRestore(vm *v1alpha1.VirtualMachine, dom *hypervisor.Domain, memory bool) restorePlan {
	run := shouldRun(powerInput{
		Strategy:         vm.Spec.RunStrategy,
		Action:           vm.Spec.PowerAction,
		ObservedActionID: vm.Status.ObservedPowerActionID,
		StopReason:       vm.Status.StopReason,
		EverStarted:      vm.Status.StartedAt != nil,
		Active:           dom.State.Active(),
	})
	switch {
	case !run:
		return restorePlan{target: hypervisor.RevertShutoff}
	case memory && vm.Spec.Paused:
		return restorePlan{target: hypervisor.RevertPaused, resumed: true}
	case memory:
		return restorePlan{target: hypervisor.RevertRunning, resumed: true}
	}
	return restorePlan{target: hypervisor.RevertShutoff, boot: true}
}

func (p restorePlan) describe(snapshot string) string {
	switch {
	case p.resumed:
		return fmt.Sprintf("the guest resumed from the memory saved in snapshot %s", snapshot)
	case p.boot:
		return fmt.Sprintf("the disks were reverted to snapshot %s and the guest booted from them", snapshot)
	}
	return fmt.Sprintf("the disks were reverted to snapshot %s; the VM stays stopped, as its run strategy says", snapshot)
}

func (w *snapshotWorkers) failRestore(ctx context.Context, r *v1alpha1.VirtualMachineRestore, reason, msg string) error {
	r.Status.Phase = v1alpha1.SnapshotFailed
	r.Status.Complete = false
	r.Status.Error = msg
	w.setRestoreCondition(r, metav1.ConditionFalse, reason, msg)
	if _, err := w.writeRestoreStatus(ctx, r); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Restore failed", "restore", r.Namespace+"/"+r.Name, "reason", reason, "err", msg)
	w.event(r, corev1.EventTypeWarning, "RestoreFailed", "%s", msg)
	return nil
}

func (w *snapshotWorkers) setRestoreCondition(r *v1alpha1.VirtualMachineRestore, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&r.Status.Conditions, metav1.Condition{
		Type: v1alpha1.RestoreConditionComplete, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: r.Generation, LastTransitionTime: metav1.NewTime(w.a.now()),
	})
}

func (w *snapshotWorkers) writeRestoreStatus(ctx context.Context, r *v1alpha1.VirtualMachineRestore) (*v1alpha1.VirtualMachineRestore, error) {
	updated, err := w.a.client.VesselV1alpha1().VirtualMachineRestores(r.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update status of restore %s/%s: %w", r.Namespace, r.Name, err)
	}
	return updated, nil
}
