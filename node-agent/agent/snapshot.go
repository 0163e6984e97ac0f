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
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// snapshotWorkers reconcile the VirtualMachineSnapshots and
// VirtualMachineRestores of the VMs bound to this hypervisor. The objects
// cannot be filtered by the VM's node on the server, so their informers
// watch the whole cluster (the agent's RBAC allows it) and only objects of
// VMs in the agent's VM cache, or snapshots whose data this node holds
// (status.nodeName), are enqueued.
type snapshotWorkers struct {
	a *Agent
	// hv is nil when the Hypervisor implementation cannot take snapshots.
	hv       hypervisor.Snapshotter
	factory  informers.SharedInformerFactory
	snaps    listers.VirtualMachineSnapshotLister
	restores listers.VirtualMachineRestoreLister
	// byVM index the informers' objects by namespace/VM name.
	snapIndex, restoreIndex cache.Indexer
	synced                  []cache.InformerSynced
	snapQueue, restoreQueue workqueue.TypedRateLimitingInterface[string]
	locks                   vmLocks
}

const byVMIndex = "vm"

// snapshotWorkersPerKind is how many snapshots (and, apart, restores) are
// worked on at once. Each holds its VM's lock, so they only overlap for
// different VMs.
const snapshotWorkersPerKind = 2

// waitForDomain is how soon a snapshot of a VM whose domain is not defined
// yet (its disks are being provisioned) looks again.
const waitForDomain = 2 * time.Second

func (a *Agent) initSnapshots() error {
	w := &snapshotWorkers{
		a:       a,
		factory: informers.NewSharedInformerFactory(a.cfg.Client, a.cfg.ResyncPeriod),
		snapQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vessel-agent-snapshots"}),
		restoreQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vessel-agent-restores"}),
	}
	w.hv, _ = a.hv.(hypervisor.Snapshotter)

	snaps := w.factory.Vessel().V1alpha1().VirtualMachineSnapshots()
	restores := w.factory.Vessel().V1alpha1().VirtualMachineRestores()
	if err := snaps.Informer().AddIndexers(cache.Indexers{byVMIndex: func(obj any) ([]string, error) {
		s, ok := obj.(*v1alpha1.VirtualMachineSnapshot)
		if !ok {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Spec.VirtualMachineName}, nil
	}}); err != nil {
		return fmt.Errorf("add snapshot index: %w", err)
	}
	if err := restores.Informer().AddIndexers(cache.Indexers{byVMIndex: func(obj any) ([]string, error) {
		r, ok := obj.(*v1alpha1.VirtualMachineRestore)
		if !ok {
			return nil, nil
		}
		return []string{r.Namespace + "/" + r.Spec.VirtualMachineName}, nil
	}}); err != nil {
		return fmt.Errorf("add restore index: %w", err)
	}
	if _, err := snaps.Informer().AddEventHandler(handler(func(obj any) {
		if s, ok := obj.(*v1alpha1.VirtualMachineSnapshot); ok && w.snapshotIsOurs(s) {
			enqueue(w.snapQueue, obj)
		}
	})); err != nil {
		return fmt.Errorf("add snapshot event handler: %w", err)
	}
	if _, err := restores.Informer().AddEventHandler(handler(func(obj any) {
		if r, ok := obj.(*v1alpha1.VirtualMachineRestore); ok && a.boundVM(r.Namespace, r.Spec.VirtualMachineName) != nil {
			enqueue(w.restoreQueue, obj)
		}
	})); err != nil {
		return fmt.Errorf("add restore event handler: %w", err)
	}
	// A VM bound here later, or whose domain appears, unblocks its
	// snapshots and restores.
	if _, err := a.factory.Vessel().V1alpha1().VirtualMachines().Informer().AddEventHandler(handler(func(obj any) {
		vm, ok := obj.(*v1alpha1.VirtualMachine)
		if !ok {
			return
		}
		w.enqueueForVM(vm.Namespace + "/" + vm.Name)
	})); err != nil {
		return fmt.Errorf("add VM event handler for snapshots: %w", err)
	}
	w.snaps, w.restores = snaps.Lister(), restores.Lister()
	w.snapIndex, w.restoreIndex = snaps.Informer().GetIndexer(), restores.Informer().GetIndexer()
	w.synced = []cache.InformerSynced{snaps.Informer().HasSynced, restores.Informer().HasSynced}
	a.snapshots = w
	return nil
}

func handler(f func(obj any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    f,
		UpdateFunc: func(_, obj any) { f(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			f(obj)
		},
	}
}

func enqueue(q workqueue.TypedRateLimitingInterface[string], obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	q.Add(key)
}

// enqueueForVM enqueues the snapshots and restores of a VM that still
// need work.
func (w *snapshotWorkers) enqueueForVM(vmKey string) {
	objs, _ := w.snapIndex.ByIndex(byVMIndex, vmKey)
	for _, obj := range objs {
		if s := obj.(*v1alpha1.VirtualMachineSnapshot); !snapshotDone(s) || s.DeletionTimestamp != nil {
			enqueue(w.snapQueue, s)
		}
	}
	objs, _ = w.restoreIndex.ByIndex(byVMIndex, vmKey)
	for _, obj := range objs {
		if r := obj.(*v1alpha1.VirtualMachineRestore); !restoreDone(r) {
			enqueue(w.restoreQueue, r)
		}
	}
}

func snapshotDone(s *v1alpha1.VirtualMachineSnapshot) bool {
	return s.Status.Phase == v1alpha1.SnapshotSucceeded || s.Status.Phase == v1alpha1.SnapshotFailed
}

// boundVM is the VM from the agent's cache (VMs bound to this hypervisor),
// or nil.
func (a *Agent) boundVM(namespace, name string) *v1alpha1.VirtualMachine {
	vm, err := a.lister.VirtualMachines(namespace).Get(name)
	if err != nil || vm.Spec.NodeName != a.cfg.HypervisorName {
		return nil
	}
	return vm
}

// snapshotIsOurs: the VM is bound here, or this node holds the data (the
// VM may be gone already).
func (w *snapshotWorkers) snapshotIsOurs(s *v1alpha1.VirtualMachineSnapshot) bool {
	return s.Status.NodeName == w.a.cfg.HypervisorName || w.a.boundVM(s.Namespace, s.Spec.VirtualMachineName) != nil
}

// restoreInProgress says a restore of vm is under way.
func (w *snapshotWorkers) restoreInProgress(vm *v1alpha1.VirtualMachine) bool {
	objs, _ := w.restoreIndex.ByIndex(byVMIndex, vm.Namespace+"/"+vm.Name)
	for _, obj := range objs {
		if r := obj.(*v1alpha1.VirtualMachineRestore); r.Status.Phase == v1alpha1.SnapshotInProgress && ownedBy(r, vm.UID) {
			return true
		}
	}
	return false
}

// ownedBy says obj's VM owner reference (set by the API on create) is the
// VM with uid: it was made for this VM, not for an earlier one of the
// same name.
func ownedBy(obj metav1.Object, uid types.UID) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Kind == "VirtualMachine" {
			return ref.UID == uid
		}
	}
	return true
}

// start starts the informers and waits for their caches.
func (w *snapshotWorkers) start(ctx context.Context) error {
	w.factory.Start(ctx.Done())
	if !cache.WaitForNamedCacheSyncWithContext(ctx, w.synced...) {
		return fmt.Errorf("snapshot and restore informers did not sync")
	}
	return nil
}

// run works on snapshots and restores until ctx ends.
func (w *snapshotWorkers) run(ctx context.Context) {
	defer w.factory.Shutdown()
	done := make(chan struct{})
	for i := 0; i < snapshotWorkersPerKind; i++ {
		go func() { runQueue(ctx, w.snapQueue, "snapshot", w.syncSnapshot); done <- struct{}{} }()
		go func() { runQueue(ctx, w.restoreQueue, "restore", w.syncRestore); done <- struct{}{} }()
	}
	<-ctx.Done()
	w.snapQueue.ShutDown()
	w.restoreQueue.ShutDown()
	for i := 0; i < 2*snapshotWorkersPerKind; i++ {
		<-done
	}
}

func runQueue(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], what string, sync func(context.Context, string) (time.Duration, error)) {
	for {
		key, quit := q.Get()
		if quit {
			return
		}
		requeue, err := sync(ctx, key)
		switch {
		case err != nil:
			klog.FromContext(ctx).V(2).Info("Sync failed, retrying", what, key, "err", err)
			q.AddRateLimited(key)
		case requeue > 0:
			q.Forget(key)
			q.AddAfter(key, requeue)
		default:
			q.Forget(key)
		}
		q.Done(key)
	}
}

// syncSnapshot takes, checks or cleans up one snapshot.
func (w *snapshotWorkers) syncSnapshot(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := w.snaps.VirtualMachineSnapshots(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	snap := cached.DeepCopy()
	vm := w.a.boundVM(ns, snap.Spec.VirtualMachineName)
	if vm != nil && !ownedBy(snap, vm.UID) {
		vm = nil // a VM of the same name, created after the snapshot's
	}
	if vm == nil && snap.Status.NodeName != w.a.cfg.HypervisorName {
		return 0, nil
	}
	switch {
	case snap.DeletionTimestamp != nil:
		return w.finalizeSnapshot(ctx, snap, vm)
	case snap.Status.Phase == v1alpha1.SnapshotSucceeded:
		return 0, w.checkSnapshot(ctx, snap, vm)
	case snap.Status.Phase == v1alpha1.SnapshotFailed:
		if vm != nil && slices.Contains(vm.Status.Snapshots, snap.Name) {
			return 0, w.updateVMSnapshotList(ctx, vm)
		}
		return 0, nil
	case vm == nil:
		// Its VM is gone; the garbage collector deletes the snapshot.
		return 0, nil
	}
	return w.takeSnapshot(ctx, snap, vm)
}

func includeMemory(s *v1alpha1.VirtualMachineSnapshot) bool {
	return s.Spec.IncludeMemory == nil || *s.Spec.IncludeMemory
}

// libvirtSnapshotName keys the libvirt snapshot by the object's UID: a
// snapshot deleted and re-created under the same name is a different one.
func libvirtSnapshotName(s *v1alpha1.VirtualMachineSnapshot) string { return string(s.UID) }

// takeSnapshot moves a Pending snapshot through InProgress to Succeeded or
// Failed. Every step is safe to repeat after a crash: the finalizer and
// status writes are idempotent, and the libvirt snapshot is looked up by
// name before one is taken.
func (w *snapshotWorkers) takeSnapshot(ctx context.Context, snap *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine) (time.Duration, error) {
	node := w.a.cfg.HypervisorName
	switch {
	case w.hv == nil:
		return 0, w.failSnapshot(ctx, snap, vm, "Unsupported", fmt.Sprintf("hypervisor %s cannot take snapshots", node))
	case vm.DeletionTimestamp != nil:
		return 0, w.failSnapshot(ctx, snap, vm, "VMDeleting", fmt.Sprintf("VM %s is being deleted", vm.Name))
	}
	vmKey := vm.Namespace + "/" + vm.Name
	release, ok := w.locks.tryLock(vmKey)
	if !ok {
		return vmBusyRetry, nil
	}
	defer release()
	// The cache may still show this agent's own InProgress write after the
	// snapshot succeeded: work from the API's copy.
	fresh, err := w.a.client.VesselV1alpha1().VirtualMachineSnapshots(snap.Namespace).Get(ctx, snap.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if fresh.UID != snap.UID || snapshotDone(fresh) || fresh.DeletionTimestamp != nil {
		return 0, nil // the next event for it does what is left
	}
	snap = fresh

	uid := string(vm.UID)
	dom, conflict, err := w.a.lookupDomain(ctx, uid)
	switch {
	case err != nil:
		return 0, err
	case conflict != "":
		return 0, w.failSnapshot(ctx, snap, vm, "DomainConflict", conflict)
	case dom == nil && vm.Status.Phase == v1alpha1.VirtualMachineFailed:
		return 0, w.failSnapshot(ctx, snap, vm, "NoDomain",
			fmt.Sprintf("VM %s has no domain on %s (it failed: see its conditions)", vm.Name, node))
	case dom == nil:
		return waitForDomain, nil // still provisioning
	}

	// The finalizer goes on before libvirt holds any data, so the object
	// cannot be deleted without the agent cleaning up. A snapshot deleted
	// meanwhile refuses new finalizers: then nothing is taken.
	if !slices.Contains(snap.Finalizers, v1alpha1.FinalizerSnapshotCleanup) {
		snap.Finalizers = append(snap.Finalizers, v1alpha1.FinalizerSnapshotCleanup)
		updated, err := w.a.client.VesselV1alpha1().VirtualMachineSnapshots(snap.Namespace).Update(ctx, snap, metav1.UpdateOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return 0, nil
			}
			// A conflict, or a deletion the cache has not shown yet: the
			// retry sees the newer object.
			return 0, fmt.Errorf("add finalizer: %w", err)
		}
		snap = updated
	}
	if snap.Status.Phase != v1alpha1.SnapshotInProgress || snap.Status.NodeName != node || snap.Status.VirtualMachineUID != uid {
		snap.Status.Phase = v1alpha1.SnapshotInProgress
		snap.Status.NodeName, snap.Status.VirtualMachineUID = node, uid
		snap.Status.Error = ""
		w.setSnapshotCondition(snap, metav1.ConditionFalse, "InProgress", "the snapshot is being taken")
		if snap, err = w.writeSnapshotStatus(ctx, snap); err != nil {
			return 0, err
		}
	}

	wantMemory := includeMemory(snap)
	start := time.Now()
	info, err := w.hv.CreateSnapshot(ctx, uid, hypervisor.SnapshotSpec{
		Name:        libvirtSnapshotName(snap),
		Description: fmt.Sprintf("vessel.dev VirtualMachineSnapshot %s/%s of VM %s (includeMemory=%t)", snap.Namespace, snap.Name, vm.Name, wantMemory),
	})
	switch {
	case errors.Is(err, hypervisor.ErrDisconnected):
		return 0, err
	case errors.Is(err, hypervisor.ErrNotFound):
		return 0, w.failSnapshot(ctx, snap, vm, "NoDomain", fmt.Sprintf("the domain of VM %s disappeared while the snapshot was taken", vm.Name))
	case err != nil:
		return 0, w.failSnapshot(ctx, snap, vm, "SnapshotFailed", err.Error())
	}
	took := time.Since(start)

	snap.Status.Phase = v1alpha1.SnapshotSucceeded
	snap.Status.ReadyToUse = true
	created := metav1.NewTime(info.CreationTime)
	if info.CreationTime.IsZero() {
		created = metav1.NewTime(w.a.now())
	}
	snap.Status.CreationTime = &created
	size := resource.NewQuantity(info.SizeBytes, resource.BinarySI)
	snap.Status.Size = size
	// A running guest's internal snapshot always holds its memory (QEMU
	// cannot snapshot only the disks of a running guest internally, and
	// external snapshots cannot be reverted here). With includeMemory=false
	// the saved memory is simply never used: a restore boots the guest
	// from the disks as they were, as from a crash-consistent disk copy.
	snap.Status.MemoryIncluded = info.Memory && wantMemory
	snap.Status.Error = ""
	msg := "the snapshot holds the VM's disks"
	switch {
	case snap.Status.MemoryIncluded:
		msg = "the snapshot holds the VM's disks and memory: a restore resumes the guest where it was"
	case info.Memory:
		msg = "the snapshot holds the VM's disks (taken while the guest ran, with includeMemory=false: a restore boots the guest from them)"
	}
	w.setSnapshotCondition(snap, metav1.ConditionTrue, "Succeeded", msg)
	if _, err := w.writeSnapshotStatus(ctx, snap); err != nil {
		return 0, err
	}
	klog.FromContext(ctx).V(2).Info("Took snapshot", "snapshot", snap.Namespace+"/"+snap.Name, "vm", vmKey,
		"memory", snap.Status.MemoryIncluded, "size", size.String(), "took", took)
	w.event(snap, corev1.EventTypeNormal, "SnapshotTaken", "Took snapshot of VM %s on %s (%s) in %.1fs", vm.Name, node, kindOfSnapshot(snap), took.Seconds())
	return 0, w.updateVMSnapshotList(ctx, vm)
}

func kindOfSnapshot(s *v1alpha1.VirtualMachineSnapshot) string {
	if s.Status.MemoryIncluded {
		return "disks and memory"
	}
	return "disks"
}

// checkSnapshot confirms a ready snapshot's data is still on this node (a
// person with virsh may have deleted it) and keeps the VM's list right.
func (w *snapshotWorkers) checkSnapshot(ctx context.Context, snap *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine) error {
	if vm == nil || w.hv == nil || string(vm.UID) != snap.Status.VirtualMachineUID || vm.DeletionTimestamp != nil {
		return nil
	}
	_, err := w.hv.LookupSnapshot(ctx, snap.Status.VirtualMachineUID, libvirtSnapshotName(snap))
	switch {
	case errors.Is(err, hypervisor.ErrSnapshotNotFound):
		return w.failSnapshot(ctx, snap, vm, "DataLost",
			fmt.Sprintf("the snapshot's data is no longer on hypervisor %s", w.a.cfg.HypervisorName))
	case err != nil && !errors.Is(err, hypervisor.ErrNotFound):
		return err
	}
	if slices.Contains(vm.Status.Snapshots, snap.Name) {
		return nil // the steady state: no API calls on every resync
	}
	return w.updateVMSnapshotList(ctx, vm)
}

// finalizeSnapshot deletes (or, with deletionPolicy Retain, keeps) the
// data of a snapshot being deleted, then releases its finalizer. When the
// VM is gone, its domain was undefined with its snapshot metadata and its
// overlay files (which held the data) removed: the finalizer is released
// all the same.
func (w *snapshotWorkers) finalizeSnapshot(ctx context.Context, snap *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine) (time.Duration, error) {
	if !slices.Contains(snap.Finalizers, v1alpha1.FinalizerSnapshotCleanup) {
		return 0, w.updateVMSnapshotList(ctx, vm)
	}
	if vm != nil {
		release, ok := w.locks.tryLock(vm.Namespace + "/" + vm.Name)
		if !ok {
			return vmBusyRetry, nil
		}
		defer release()
	}
	uid := snap.Status.VirtualMachineUID
	if uid == "" {
		for _, ref := range snap.OwnerReferences {
			if ref.Kind == "VirtualMachine" {
				uid = string(ref.UID)
			}
		}
	}
	kept := snap.Spec.DeletionPolicy == v1alpha1.SnapshotDeletionPolicyRetain
	if !kept && uid != "" && w.hv != nil {
		err := w.hv.DeleteSnapshot(ctx, uid, libvirtSnapshotName(snap))
		if err != nil && !errors.Is(err, hypervisor.ErrNotFound) && !errors.Is(err, hypervisor.ErrNotOwned) {
			return 0, err
		}
	}
	snaps := w.a.client.VesselV1alpha1().VirtualMachineSnapshots(snap.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := snaps.Get(ctx, snap.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != snap.UID {
			return nil
		}
		i := slices.Index(cur.Finalizers, v1alpha1.FinalizerSnapshotCleanup)
		if i < 0 {
			return nil
		}
		cur.Finalizers = slices.Delete(cur.Finalizers, i, i+1)
		_, err = snaps.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("remove finalizer: %w", err)
	}
	klog.FromContext(ctx).V(2).Info("Released deleted snapshot", "snapshot", snap.Namespace+"/"+snap.Name, "dataKept", kept)
	return 0, w.updateVMSnapshotList(ctx, vm)
}

// failSnapshot records a failure. The snapshot is not ready and never
// will be: a new snapshot object is the way to try again.
func (w *snapshotWorkers) failSnapshot(ctx context.Context, snap *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine, reason, msg string) error {
	snap.Status.Phase = v1alpha1.SnapshotFailed
	snap.Status.ReadyToUse = false
	snap.Status.Error = msg
	if snap.Status.NodeName == "" {
		snap.Status.NodeName = w.a.cfg.HypervisorName
	}
	if snap.Status.VirtualMachineUID == "" && vm != nil {
		snap.Status.VirtualMachineUID = string(vm.UID)
	}
	w.setSnapshotCondition(snap, metav1.ConditionFalse, reason, msg)
	if _, err := w.writeSnapshotStatus(ctx, snap); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Snapshot failed", "snapshot", snap.Namespace+"/"+snap.Name, "reason", reason, "err", msg)
	w.event(snap, corev1.EventTypeWarning, "SnapshotFailed", "%s", msg)
	return w.updateVMSnapshotList(ctx, vm)
}

func (w *snapshotWorkers) setSnapshotCondition(s *v1alpha1.VirtualMachineSnapshot, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
		Type: v1alpha1.SnapshotConditionReady, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: s.Generation, LastTransitionTime: metav1.NewTime(w.a.now()),
	})
}

func (w *snapshotWorkers) writeSnapshotStatus(ctx context.Context, s *v1alpha1.VirtualMachineSnapshot) (*v1alpha1.VirtualMachineSnapshot, error) {
	updated, err := w.a.client.VesselV1alpha1().VirtualMachineSnapshots(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update status of snapshot %s/%s: %w", s.Namespace, s.Name, err)
	}
	return updated, nil
}

// updateVMSnapshotList keeps the VM's status.snapshots equal to the names
// of its ready snapshots. It reads them from the API, not the cache, so a
// status this agent just wrote counts.
func (w *snapshotWorkers) updateVMSnapshotList(ctx context.Context, vm *v1alpha1.VirtualMachine) error {
	if vm == nil || vm.DeletionTimestamp != nil {
		return nil
	}
	list, err := w.a.client.VesselV1alpha1().VirtualMachineSnapshots(vm.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.virtualMachineName", vm.Name).String(),
	})
	if err != nil {
		return fmt.Errorf("list snapshots of VM %s: %w", vm.Name, err)
	}
	var names []string
	for _, s := range list.Items {
		if s.Status.ReadyToUse && s.Status.VirtualMachineUID == string(vm.UID) && s.DeletionTimestamp == nil {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	vms := w.a.client.VesselV1alpha1().VirtualMachines(vm.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := vms.Get(ctx, vm.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != vm.UID || slices.Equal(cur.Status.Snapshots, names) {
			return nil
		}
		cur.Status.Snapshots = names
		_, err = vms.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update snapshots of VM %s: %w", vm.Name, err)
	}
	return nil
}

// event records a Kubernetes Event about a snapshot or restore.
func (w *snapshotWorkers) event(obj runtime.Object, typ, reason, format string, args ...any) {
	if w.a.recorder == nil {
		return
	}
	w.a.recorder.Eventf(obj, typ, reason, format, args...)
}
